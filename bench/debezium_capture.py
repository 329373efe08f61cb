"""Captures what Debezium 3.6 and cdc each publish for a table of every type, as fixtures.

The ground truth for making cdc's encodings Debezium's (issue 22): one table of every type the
README lists, REPLICA IDENTITY FULL, written once (inserts of ordinary and edge values, an
update, a delete, a truncate); then each reader drains a slot of its own over the same WAL:
Debezium (the engine of ``bench/debezium``) with its defaults, with the options that keep values
exact (``decimal.handling.mode=string``, ``time.precision.mode=isostring``,
``binary.handling.mode=base64``, ``interval.handling.mode=string``), with its defaults and
``schemas.enable``, and cdc on each plugin. Each reader's records (key, value, headers) go to
``tests/fixtures/debezium/NAME.jsonl``, one JSON object a line::

    eval "$(scripts/devstack env)"; .venv/bin/python -m bench.debezium_capture [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

from bench.common import CdcProcess, Stack, cdc_config, confirmed_lsn, scratch_database
from bench.debezium_engine import DebeziumEngine, build

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "debezium"

DDL = """
CREATE TYPE mood AS ENUM ('sad', 'happy');
CREATE DOMAIN posint AS integer CHECK (VALUE > 0);
CREATE TABLE every_type (
    id int PRIMARY KEY,
    i2 smallint, i4 integer, i8 bigint, o oid,
    f4 real, f8 double precision, n numeric, n102 numeric(10, 2), m money,
    b boolean, ba bytea, j json, jb jsonb, ai int[], at text[],
    ts timestamp, tsz timestamptz, d date, t time, ttz timetz, iv interval,
    u uuid, ip inet, mac macaddr, r int4range, pt point, tv tsvector, e mood,
    c char(5), vc varchar(10), tx text, dom posint
);
ALTER TABLE every_type REPLICA IDENTITY FULL;
"""

ROWS = [
    # Ordinary values.
    """INSERT INTO every_type VALUES (1, -32768, 2147483647, -9223372036854775808, 4000000000,
        1.5, 0.1, 12345678901234567890.123456789012345678, 12.34, 9.99,
        true, '\\xdeadbeef', '{"b": 1,  "a": [1, 2]}', '{"b": 1, "a": [1, 2]}', '{1,NULL,3}',
        '{"a b","c,d",NULL}',
        '2024-01-02 03:04:05.123456', '2024-01-02 03:04:05.123456+02', '2024-01-02',
        '03:04:05.123456', '03:04:05.123456+02', '1 year 2 mons 3 days 04:05:06.789',
        'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '192.168.0.1/24', '08:00:2b:01:02:03', '[1,10)',
        '(1.5,2.5)', 'a fat cat', 'happy', 'ab', 'varchar', 'text', 7)""",
    # Edge values: NaN, infinities, -0, the epoch's far ends, microseconds, NULLs.
    """INSERT INTO every_type VALUES (2, 0, 0, 0, 0,
        'NaN', '-Infinity', 'NaN', -0.01, -1.00,
        false, '\\x', 'null', '[]', '{}', '{}',
        'infinity', '-infinity', 'infinity', '24:00:00', '00:00:00-14',
        '-178000000 years', NULL, NULL, NULL, 'empty', NULL, '', 'sad', '', '', '', NULL)""",
    """INSERT INTO every_type (id, f8, ts, tsz, d, t, ttz, iv) VALUES (3, '-0',
        '0001-01-01 00:00:00', '4713-01-01 00:00:00+00 BC', '0001-01-01 BC', '00:00:00.000001',
        '23:59:59.999999+14:59', '-1 days -00:00:00.000001')""",
    "UPDATE every_type SET tx = 'changed', n = 1.10, ba = '\\x00ff', ai = '{4,5}' WHERE id = 1",
    "UPDATE every_type SET id = 4 WHERE id = 3",  # a key change
    "DELETE FROM every_type WHERE id = 2",
    "TRUNCATE every_type",
]

EXACT = {
    "decimal.handling.mode": "string",
    "time.precision.mode": "isostring",
    "binary.handling.mode": "base64",
    "interval.handling.mode": "string",
}
DEBEZIUM_READERS: dict[str, dict[str, str]] = {
    "debezium-defaults": {"decimal.handling.mode": "precise"},
    "debezium-exact-options": EXACT,
    "debezium-defaults-schemas": {
        "decimal.handling.mode": "precise",
        "converter.schemas.enable": "true",
    },
}
CDC_READERS = ("cdc-pgoutput", "cdc-wal2json")


def read_all(kafka: str, topics: list[str], settle_s: float = 3.0) -> list[dict[str, Any]]:
    """Every record of ``topics``, in offset order per partition, as JSON-ready dicts."""
    from confluent_kafka import Consumer  # noqa: PLC0415

    consumer = Consumer(
        {
            "bootstrap.servers": kafka,
            "group.id": f"capture-{time.time_ns()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe(topics)
    found: list[dict[str, Any]] = []
    idle_since = time.monotonic()
    while time.monotonic() - idle_since < settle_s:
        msg = consumer.poll(0.5)
        if msg is None or msg.error():
            continue
        idle_since = time.monotonic()
        found.append(
            {
                "topic": msg.topic(),
                "key": _text(msg.key()),
                "value": _text(msg.value()),
                "headers": {k: _text(v) for k, v in _headers(msg.headers())},
            }
        )
    consumer.close()
    return found


def _headers(headers: Any) -> list[tuple[str, bytes | None]]:
    return list(headers or [])


def _text(raw: bytes | str | None) -> Any:
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw if isinstance(raw, str) else raw.decode("utf-8", "backslashreplace")


def capture(out: Path) -> None:
    stack = Stack.from_env()
    build()
    out.mkdir(parents=True, exist_ok=True)
    readers = [*DEBEZIUM_READERS, *CDC_READERS]
    prefix = f"cap{int(time.time())}"
    with scratch_database(stack, f"{prefix}db") as dsn, tempfile.TemporaryDirectory() as tmp:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(DDL)
            conn.execute("CREATE PUBLICATION cap FOR TABLE every_type")
            for reader in readers:
                plugin = "wal2json" if reader.endswith("wal2json") else "pgoutput"
                conn.execute(
                    "SELECT pg_create_logical_replication_slot(%s, %s)",
                    (_slot(reader), plugin),
                )
            for statement in ROWS:
                conn.execute(statement)
            end = conn.execute("SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn").fetchone()
            assert end is not None
        for reader in readers:
            topic_prefix = f"{prefix}-{reader}"
            work = Path(tmp) / reader
            work.mkdir()
            if reader in DEBEZIUM_READERS:
                engine = DebeziumEngine(
                    dsn, stack.kafka, _slot(reader), "cap", topic_prefix,
                    ["public.every_type"], work, extra=DEBEZIUM_READERS[reader],
                )  # fmt: skip
                with engine:
                    _wait(dsn, _slot(reader), int(end[0]))
            else:
                plugin = reader.removeprefix("cdc-")
                extra = {"plugin": plugin, "publication": "cap"} if plugin == "pgoutput" else {}
                config = cdc_config(
                    stack.kafka,
                    client="confluent-kafka",
                    connectors=[
                        {
                            "name": reader,
                            "dsn": dsn,
                            "slot": _slot(reader),
                            "tables": ["public.every_type"],
                            "topic_prefix": topic_prefix,
                            "snapshot": "never",
                            **extra,
                        }
                    ],
                )
                with CdcProcess(reader, config, work):
                    _wait(dsn, _slot(reader), int(end[0]))
            records = read_all(stack.kafka, [f"{topic_prefix}.public.every_type"])
            path = out / f"{reader}.jsonl"
            with path.open("w") as f:
                for record in records:
                    f.write(json.dumps(record, sort_keys=True) + "\n")
            print(f"{reader}: {len(records)} records -> {path}")


def _slot(reader: str) -> str:
    return "cap_" + reader.replace("-", "_")


def _wait(dsn: str, slot: str, end: int, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(dsn, autocommit=True) as conn:
        while confirmed_lsn(conn, slot) < end:
            if time.monotonic() > deadline:
                raise TimeoutError(f"slot {slot} never confirmed the writes")
            time.sleep(0.2)
    time.sleep(1)  # the last records' acks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    capture(parser.parse_args().out)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
