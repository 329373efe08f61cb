"""Captures the Kafka Connect schemas Debezium 3.6 gives change events under its options.

The ground truth for ``cdc.values.schemas`` beyond Debezium's defaults (which
``bench/debezium_capture.py`` captures with whole records): the capture's table of every type and
a table of precisions (``time(3)``, ``timestamp(0)``, ``numeric(5)``, arrays of several types),
one insert each, drained by Debezium's engine with JsonConverter's schemas under several option
sets. Each record's key and value schema go, as the bytes JsonConverter wrote, to
``tests/fixtures/debezium/debezium-option-schemas.jsonl``, one JSON object a line::

    eval "$(scripts/devstack env)"; .venv/bin/python -m bench.debezium_capture_schemas [--out F]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import psycopg

from bench.common import Stack, scratch_database
from bench.debezium_capture import DDL, ROWS, _wait
from bench.debezium_engine import DebeziumEngine, build

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "debezium" / "debezium-option-schemas.jsonl"

PRECISIONS_DDL = """
CREATE TABLE precisions (
    id int PRIMARY KEY,
    t0 time(0), t3 time(3), t6 time(6), ts0 timestamp(0), ts3 timestamp(3),
    tsz3 timestamptz(3), ttz3 timetz(3), n5 numeric(5), n52 numeric(5, 2),
    ia int[], ba bytea[], na numeric(10, 2)[], tsa timestamp[], da date[], ta text[],
    ua uuid[], ea mood[], f8a double precision[], iva interval[]
);
"""
PRECISIONS_ROW = "INSERT INTO precisions (id) VALUES (1)"


def _options(decimal: str, time_: str, binary: str, interval: str) -> dict[str, str]:
    # All four always: the bench engine's own default decimal mode is string, not Debezium's.
    return {
        "decimal.handling.mode": decimal,
        "time.precision.mode": time_,
        "binary.handling.mode": binary,
        "interval.handling.mode": interval,
    }


OPTIONS = {
    "defaults": _options("precise", "adaptive", "bytes", "numeric"),
    "string-isostring-base64-string": _options("string", "isostring", "base64", "string"),
    "double-connect-hex-numeric": _options("double", "connect", "hex", "numeric"),
    "precise-microseconds-urlsafe-numeric": _options(
        "precise", "adaptive_time_microseconds", "base64-url-safe", "numeric"
    ),
}
TABLES = ("every_type", "precisions")


def read_schemas(kafka: str, topics: list[str], settle_s: float = 3.0) -> dict[str, bytes]:
    """Per topic, the first record's ``key`` and ``value`` schema bytes, as written."""
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
    found: dict[str, bytes] = {}
    idle_since = time.monotonic()
    while time.monotonic() - idle_since < settle_s and len(found) < 2 * len(topics):
        msg = consumer.poll(0.5)
        if msg is None or msg.error():
            continue
        idle_since = time.monotonic()
        for half, raw in (("key", msg.key()), ("value", msg.value())):
            if raw and f"{msg.topic()}/{half}" not in found:
                found[f"{msg.topic()}/{half}"] = _schema_bytes(raw)
    consumer.close()
    return found


def _schema_bytes(record: bytes) -> bytes:
    """The ``schema`` of a ``{"schema":...,"payload":...}`` record, as its bytes."""
    start = len(b'{"schema":')
    assert record.startswith(b'{"schema":'), record[:40]
    return record[start : record.rindex(b',"payload":')]


def capture(out: Path) -> None:
    stack = Stack.from_env()
    build()
    prefix = f"caps{int(time.time())}"
    lines = []
    with scratch_database(stack, f"{prefix}db") as dsn, tempfile.TemporaryDirectory() as tmp:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(DDL)
            conn.execute(PRECISIONS_DDL)
            conn.execute("CREATE PUBLICATION cap FOR TABLE every_type, precisions")
            for name in OPTIONS:
                conn.execute(
                    "SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (_slot(name),)
                )
            conn.execute(ROWS[0])
            conn.execute(PRECISIONS_ROW)
            end = conn.execute("SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn").fetchone()
            assert end is not None
        for name, options in OPTIONS.items():
            topic_prefix = f"{prefix}-{name}"
            work = Path(tmp) / name
            work.mkdir()
            extra = {"converter.schemas.enable": "true", **options}
            tables = [f"public.{t}" for t in TABLES]
            engine = DebeziumEngine(
                dsn, stack.kafka, _slot(name), "cap", topic_prefix, tables, work, extra=extra
            )
            with engine:
                _wait(dsn, _slot(name), int(end[0]))
            topics = [f"{topic_prefix}.public.{t}" for t in TABLES]
            found = read_schemas(stack.kafka, topics)
            for table, topic in zip(TABLES, topics, strict=True):
                lines.append(
                    b'{"options":%b,"prefix":%b,"table":"%b","key":%b,"value":%b}'
                    % (
                        json.dumps(options, sort_keys=True).encode(),
                        json.dumps(topic).encode(),
                        table.encode(),
                        found[f"{topic}/key"],
                        found[f"{topic}/value"],
                    )
                )
            print(f"{name}: {len(found)} schemas")
    out.write_bytes(b"".join(line + b"\n" for line in lines))
    print(f"-> {out}")


def _slot(name: str) -> str:
    return "caps_" + name.replace("-", "_")[:40]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    capture(parser.parse_args().out)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
