"""Kafka Connect (standalone, Apache Kafka's jars) with Debezium's JDBC sink connector over
records in cdc's ``schemas = true`` layout: the target table ends equal to the source.

The source is the capture's table of every type (bench/debezium_capture.py), written by the
same statements; the records are the capture's (tests/fixtures/debezium), each wrapped with the
schema :mod:`cdc.values.schemas` gives: cdc's records in the exact encodings (cdc.values'
encoder on the capture's cdc records), and Debezium 3.6.1's own records (its defaults). One
Connect worker (one JVM) runs one JDBC sink per topic, ``insert.mode=upsert``,
``delete.enabled=true``, ``primary.key.mode=record_key``, into tables created beforehand with
the source's types (``schema.evolution=none``). What the sink cannot apply is left out of the
stream, and said why, in ``REFUSED``. Before that, Kafka Connect's JsonConverter reads every
record and writes back the very schema bytes it read.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from confluent_kafka import Producer
from kafka.admin import KafkaAdminClient, NewTopic
from psycopg import sql

from bench.debezium_capture import DDL, ROWS
from cdc.values import EXACT, ValueMode, encoder
from cdc.values.schemas import schemas, wrap
from tests.support.connect import ConnectStandalone, jdbc_url, json_converter_round_trip
from tests.support.services import fresh_database

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "debezium"
TABLE = "every_type"

pytestmark = pytest.mark.consumers


@dataclass(frozen=True, slots=True)
class Cell:
    """A value the target does not get as the source has it: ``source`` (the column's text in
    the source) ends as ``target`` in the target. With ``wire`` set the sink refuses the value
    (the task fails), so the stream carries null instead of ``wire``."""

    column: str
    source: str
    target: str | None
    why: str
    wire: Any = None


@dataclass(frozen=True, slots=True)
class Refused:
    """What a stream leaves out or loses because of the JDBC sink, and why."""

    columns: dict[str, str]
    rows: dict[int, str]
    cells: tuple[Cell, ...] = ()


# JsonConverter (Kafka 4.1.1) writes a float's NaN and infinities as the strings "NaN",
# "Infinity", "-Infinity", but reads those strings as 0.0 (JsonNode.doubleValue() of a text
# node), and reads numbers as BigDecimal, which has no -0: silently.
FLOATS = (
    Cell("f4", "NaN", "0", 'JsonConverter reads "NaN" as 0.0'),
    Cell("f8", "-Infinity", "0", 'JsonConverter reads "-Infinity" as 0.0'),
    Cell("f8", "-0", "0", "JsonConverter reads -0.0 as 0.0"),
)

REFUSED = {
    "exact": Refused(
        {},
        {},
        (
            *FLOATS,
            # The sink binds an IsoDate as text: PostgreSQL refuses ISO's year 0 (1 BC):
            # "date/time field value out of range: "0000-01-01"".
            Cell("d", "0001-01-01 BC", None, "PostgreSQL refuses year 0000", wire="0000-01-01"),
        ),
    ),
    "debezium": Refused(
        {
            # Debezium's Point struct is written with PostGIS's ST_GeomFromWKB: "function
            # public.st_geomfromwkb(bytea, integer) does not exist" on a PostgreSQL without it.
            "pt": "needs PostGIS in the target",
            # Debezium moves a timetz to UTC ("01:04:05.123456Z" for 03:04:05.123456+02): the
            # sink writes that; equal as a time of day, not as a timetz.
            "ttz": "Debezium's value is in UTC",
        },
        {
            # Its t = 24:00:00 is MicroTime 86400000000: the task fails with
            # "java.time.DateTimeException: Invalid value for NanoOfDay (valid values 0 -
            # 86399999999999): 86400000000000"; its infinite date and timestamp are Debezium's
            # epoch extremes, not infinity.
            2: "24:00:00 kills the task; infinities are not infinity",
        },
        (
            *FLOATS,
            # Debezium's own encodings lose these; the sink writes what they say.
            Cell("n", "1.10", "1.1", "the sink binds a VariableScaleDecimal as a double"),
            Cell(
                "iv",
                "1 year 2 mons 3 days 04:05:06.789",
                "10303:05:06.789",
                "MicroDuration is microseconds: months and days become hours",
            ),
            Cell(
                "iv",
                "-1 days -00:00:00.000001",
                "-24:00:00.000001",
                "MicroDuration is microseconds: days become hours",
            ),
        ),
    ),
}

# The source's statements but the delete of row 2 and the truncate, so that the edge values of
# row 2 stay in the tables compared.
SOURCE_STATEMENTS = [s for s in ROWS if not s.startswith(("DELETE", "TRUNCATE"))]


def _records(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (FIXTURES / name).read_text().splitlines()]


def _types() -> tuple[tuple[str, str], ...]:
    """The table's cdc-types in column order (the fixture's headers are sorted by name)."""
    by_name = _records("cdc-pgoutput.jsonl")[0]["headers"]["cdc-types"]
    dbz = _records("debezium-defaults-schemas.jsonl")[0]["value"]["schema"]
    return tuple((f["field"], by_name[f["field"]]) for f in dbz["fields"][0]["fields"])


def _kept(record: dict[str, Any]) -> bool:
    """Not the truncate, nor the delete of row 2 (or its tombstone): as SOURCE_STATEMENTS."""
    key, value = record["key"], record["value"]
    if key is None:  # the truncate
        return False
    if "schema" in key:  # Debezium's records, with schemas
        key, value = key["payload"], value and value["payload"]
    return not (key["id"] == 2 and (value is None or value["op"] == "d"))


def exact_records(prefix: str) -> list[tuple[bytes, bytes | None]]:
    """cdc's records of the capture (cdc-pgoutput.jsonl, cdc's internal form of the values) in
    the exact encodings (cdc.values' encoder), with schemas: (key, value)."""
    types = _types()
    codec = encoder(types, EXACT)
    assert codec is not None
    found = schemas(prefix, types, ("id",), EXACT)
    assert found.key is not None
    out: list[tuple[bytes, bytes | None]] = []
    for record in filter(_kept, _records("cdc-pgoutput.jsonl")):
        key = wrap(found.key, orjson.dumps(record["key"]))
        value = record["value"]
        if value is None:
            out.append((key, None))  # a tombstone
            continue
        payload = {**value, "before": codec(value["before"]), "after": codec(value["after"])}
        out.append((key, wrap(found.value, orjson.dumps(payload))))
    return out


def debezium_records(prefix: str) -> list[tuple[bytes, bytes | None]]:
    """Debezium 3.6.1's records of the capture (its defaults), with the schemas of
    :func:`schemas` (equal to Debezium's: tests/unit/test_schemas.py)."""
    found = schemas(
        prefix, _types(), ("id",), ValueMode("debezium"), None, (("posint", "integer"),),
        (("mood", "sad,happy"),),
    )  # fmt: skip
    assert found.key is not None
    out: list[tuple[bytes, bytes | None]] = []
    for record in filter(_kept, _records("debezium-defaults-schemas.jsonl")):
        value = record["value"]
        out.append(
            (
                wrap(found.key, orjson.dumps(record["key"]["payload"])),
                wrap(found.value, orjson.dumps(value["payload"])),
            )
        )
    return out


def _without(
    records: list[tuple[bytes, bytes | None]], refused: Refused
) -> list[tuple[bytes, bytes | None]]:
    """The records minus the rows, columns (from schema and payload) and values the sink
    refuses (null instead)."""
    nulled = [(c.column, c.wire) for c in refused.cells if c.wire is not None]
    out: list[tuple[bytes, bytes | None]] = []
    for key, value in records:
        if orjson.loads(key)["payload"]["id"] in refused.rows:
            continue
        if value is None:
            out.append((key, value))
            continue
        record = orjson.loads(value)
        for half in record["schema"]["fields"][:2]:
            half["fields"] = [f for f in half["fields"] if f["field"] not in refused.columns]
        for half in ("before", "after"):
            if (row := record["payload"][half]) is not None:
                for column in refused.columns:
                    row.pop(column, None)
                for column, wire in nulled:
                    if row.get(column) == wire:
                        row[column] = None
        out.append((key, orjson.dumps(record)))
    return out


def _expected(
    rows: list[tuple[str | None, ...]], columns: list[str], refused: Refused
) -> list[tuple[str | None, ...]]:
    """The source's rows as the target gets them: without the refused rows, lost values as
    the sink writes them."""
    changes = {(columns.index(c.column), c.source): c.target for c in refused.cells}
    return [
        tuple(changes.get((i, v), v) if v is not None else v for i, v in enumerate(row))
        for row in rows
        if int(row[0] or 0) not in refused.rows
    ]


def _produce(kafka: str, topic: str, records: list[tuple[bytes, bytes | None]]) -> None:
    admin = KafkaAdminClient(bootstrap_servers=kafka)
    try:
        admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        admin.close()
    producer = Producer({"bootstrap.servers": kafka, "enable.idempotence": True})
    errors: list[str] = []

    def delivered(error: Any, _message: Any) -> None:
        if error is not None:
            errors.append(str(error))

    for key, value in records:
        producer.produce(topic, key=key, value=value, on_delivery=delivered)
    assert producer.flush(30) == 0
    assert not errors, errors


def _table_text(dsn: str, table: str, columns: list[str]) -> list[tuple[str | None, ...]]:
    """Every row as the columns' text output (what the types print), by id."""
    query = sql.SQL("SELECT {} FROM {} ORDER BY id").format(
        sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(c)) for c in columns),
        sql.Identifier(table),
    )
    with psycopg.connect(dsn) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        return conn.execute(query).fetchall()


def _wait_applied(
    connect: ConnectStandalone,
    dsn: str,
    table: str,
    columns: list[str],
    expected: list[tuple[str | None, ...]],
    timeout_s: float = 60,
) -> list[tuple[str | None, ...]]:
    """The target table once it equals ``expected`` (or as it is after ``timeout_s``); fails at
    once when a sink's task fails."""
    deadline = time.monotonic() + timeout_s
    got: list[tuple[str | None, ...]] = []
    while time.monotonic() < deadline:
        if (trace := connect.failed_task()) is not None:
            pytest.fail(f"a JDBC sink's task failed:\n{trace}")
        try:
            got = _table_text(dsn, table, columns)
        except psycopg.Error:
            got = []  # not written yet
        if got == expected:
            break
        time.sleep(0.5)
    return got


def _differences(
    got: list[tuple[str | None, ...]], expected: list[tuple[str | None, ...]], columns: list[str]
) -> list[tuple[str | None, str, str | None, str | None]]:
    """(id, column, target, source) of every value that differs; rows missing on one side as
    column ``*``."""
    found = {row[0]: row for row in got}
    out: list[tuple[str | None, str, str | None, str | None]] = []
    for row in expected:
        have = found.pop(row[0], None)
        if have is None:
            out.append((row[0], "*", None, "the row"))
            continue
        out.extend((row[0], c, h, w) for c, h, w in zip(columns, have, row, strict=True) if h != w)
    out.extend((i, "*", "the row", None) for i in found)
    return out


def test_jdbc_sink_over_cdc_schemas_makes_the_target_equal_the_source(
    pg_dsn: str, kafka_bootstrap: str, unique: str, tmp_path: Path
) -> None:
    started = time.monotonic()
    with (
        fresh_database(pg_dsn, f"cdct_{unique}_src") as source,
        fresh_database(pg_dsn, f"cdct_{unique}_dst") as target,
    ):
        with psycopg.connect(source, autocommit=True) as conn:
            conn.execute(DDL)
            for statement in SOURCE_STATEMENTS:
                conn.execute(statement)
        columns = [c for c, _ in _types()]
        url, credentials = jdbc_url(target)
        connectors = []
        streams = {
            "exact": exact_records(f"cdct{unique}.exact.public.{TABLE}"),
            "debezium": debezium_records(f"cdct{unique}.debezium.public.{TABLE}"),
        }
        # JsonConverter reads every record and writes the very schemas it read.
        wrapped = [r for records in streams.values() for pair in records for r in pair if r]
        assert set(json_converter_round_trip(wrapped, tmp_path / "round-trip")) == {"same"}
        with psycopg.connect(target, autocommit=True) as conn:
            conn.execute(DDL.replace("ALTER TABLE every_type REPLICA IDENTITY FULL;", ""))
        for mode, records in streams.items():
            refused = REFUSED[mode]
            with psycopg.connect(target, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("CREATE TABLE {} (LIKE every_type INCLUDING ALL)").format(
                        sql.Identifier(f"{TABLE}_{mode}")
                    )
                )
                for column in refused.columns:
                    conn.execute(
                        sql.SQL("ALTER TABLE {} DROP COLUMN {}").format(
                            sql.Identifier(f"{TABLE}_{mode}"), sql.Identifier(column)
                        )
                    )
            topic = f"cdct{unique}.{mode}.public.{TABLE}"
            _produce(
                kafka_bootstrap,
                topic,
                _without(records, refused),
            )
            connectors.append(
                {
                    "name": f"jdbc-{mode}-{unique}",
                    "connector.class": "io.debezium.connector.jdbc.JdbcSinkConnector",
                    "tasks.max": "1",
                    "topics": topic,
                    "connection.url": url,
                    **credentials,
                    "insert.mode": "upsert",
                    "delete.enabled": "true",
                    "primary.key.mode": "record_key",
                    "schema.evolution": "none",
                    "collection.name.format": f"{TABLE}_{mode}",
                    "use.time.zone": "UTC",
                }
            )
        with ConnectStandalone(tmp_path / "connect", kafka_bootstrap, connectors) as connect:
            running_s = connect.wait_running(120)
            for mode, refused in REFUSED.items():
                kept = [c for c in columns if c not in refused.columns]
                expected = _expected(_table_text(source, TABLE, kept), kept, refused)

                got = _wait_applied(connect, target, f"{TABLE}_{mode}", kept, expected)
                differences = _differences(got, expected, kept)
                assert differences == [], f"{mode}: {differences}"
    print(
        f"Connect worker running after {running_s:.1f} s; test {time.monotonic() - started:.1f} s"
    )
