"""Flink SQL reads cdc's topics with ``'format' = 'debezium-json'`` into natural types, exactly.

Integration test on the devstack, with a real consumer: Flink 2.2 in local mode
(tests/consumers/flink, built by tests/support/flink.py into the devstack cache) reads the
topic of a ``REPLICA IDENTITY FULL`` table of every type the README lists, through an initial
snapshot, inserts, updates (one leaving a TOASTed value unchanged), deletes and their
tombstones, a primary-key change, a transaction and a truncate (``skipped_operations = "t"``),
with DECIMAL, TIMESTAMP(6), TIMESTAMP_LTZ(6), DATE, TIME, BYTES, ARRAY<INT>, ARRAY<STRING> and
STRING columns. Applying Flink's changelog (every retraction must find its row) gives the source
table as it was before the truncate, row for row.

What Flink cannot hold is not written (docs/consumers.md says what to do about each): numeric
NaN and values past DECIMAL(38, 18), infinite dates and timestamps (the job fails), time
24:00:00 (read as 00:00:00). Time's fractions of a second are dropped by Flink's JSON formats:
``tm`` is compared to the second. Intervals and timetz are STRING columns compared by what they
denote (PostgreSQL reads them back).
"""

from __future__ import annotations

import struct
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import pq, sql

from tests.support import flink
from tests.support.exact import COLUMNS, SCHEMA
from tests.support.harness import (
    CdcProcess,
    current_wal_lsn,
    slot_confirmed_lsn,
    wait_for,
    write_config,
)

FLINK_TYPES = {
    "id": "BIGINT", "i2": "SMALLINT", "i4": "INT", "i8": "BIGINT", "n": "DECIMAL(38, 18)",
    "n2": "DECIMAL(12, 2)", "f4": "FLOAT", "f8": "DOUBLE", "b": "BOOLEAN", "by": "BYTES",
    "d": "DATE", "ts": "TIMESTAMP(6)", "tstz": "TIMESTAMP_LTZ(6)", "tm": "TIME",
    "ai": "ARRAY<INT>", "at": "ARRAY<STRING>", "dom": "INT", "o": "BIGINT",
}  # fmt: skip
"""The natural Flink type of each column; STRING for the others (their text, as cdc sends)."""

COLUMN_TYPES = [(c, FLINK_TYPES.get(c, "STRING")) for c in COLUMNS]

# The exact table's rows (tests/support/exact.py) without what Flink cannot hold: numeric NaN,
# infinite dates and timestamps, 24:00:00. BC years and years past 9999 instead.
SNAPSHOT_ROWS = [
    "(1, -32768, -2147483648, -9223372036854775808, -12345678901234567890.123456789012345678,"
    " -9999999999.99, -3.4e38, -1.7976931348623157e308, false, '', '', '', '\\x',"
    " '00000000-0000-0000-0000-000000000000', '4713-01-01 BC', '4713-01-01 00:00:00 BC',"
    " '4713-01-01 00:00:00+00 BC', '00:00', '00:00+14', '-178000000 years', '[]', '{}', '{}',"
    " '{}', 'sad', 1, '0.0.0.0', '00:00:00:00:00:00', 'empty', -92233720368547758.08, B'',"
    " '(0,0)', '', 0, '')",
    "(2, 32767, 2147483647, 9223372036854775807, 12345678901234567890.123456789012345678,"
    " 9999999999.99, 3.4e38, 1.0000000000000002, true, 'quote '' \" backslash \\ newline"
    " \n tab \t \"value\":1 é 漢字 🎉', 'héllo', 'ab', '\\xdeadbeef00ff',"
    " 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '2024-02-29', '2024-01-02 03:04:05.123456',"
    " '2024-01-02 03:04:05.123456+05:30', '23:59:59.999999', '12:00-03:30',"
    ' \'1 year 2 mons 3 days 04:05:06.789\', \'{"a": [1, 2.50, {"value": 3}], "b": null}\','
    " '{\"big\": 123456789012345678901234567890, \"f\": 1.10}', '{1,NULL,-3}',"
    ' \'{"a b","c,d",NULL,"\\\\","NULL","{x}"}\', \'ünïcode\', 2147483647,'
    " '2001:db8::1/64', '08:00:2b:01:02:03', '[1,5)', 92233720368547758.07, B'10101',"
    " '(1.5,-2.25)', 'a fat cat', 4294967295, repeat('toast', 2000))",
    "(3" + ", NULL" * (len(COLUMNS) - 1) + ")",
    "(4, 0, 0, 0, 0.000000000000000001, 0, 'NaN', 'Infinity', true, 'x', 'x', 'x', '\\x00',"
    " NULL, '10000-01-01', '294276-12-31 23:59:59.999999', '294276-12-31 23:59:59.999999+00',"
    " '12:34:56.789', '23:59:59.999999+14:59', '-1 days -00:00:00.000001', 'null', 'null',"
    " '{NULL}', '{\"\"}', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
]

pytestmark = pytest.mark.consumers


def changes(conn: psycopg.Connection[Any]) -> None:
    """Streamed changes of every kind, after the snapshot."""
    conn.execute(
        "INSERT INTO everything (id, n, f8, t, by, d, ts, tstz, tm, ai, at, big) VALUES"
        " (5, 1.5, -0.0, 'five', '\\x0102', '0001-01-01', '2000-01-01 00:00:00',"
        " '1999-12-31 23:59:59.5-01', '01:02:03.4', '{5}', '{five}', repeat('big', 5000)),"
        " (6, -1, 5e-324, 'six', '\\xff', '1970-01-01', '1970-01-01 00:00:00.000001',"
        " '1970-01-01 00:00:00+00', '00:00:01', '{}', '{}', NULL)"
    )
    # Other columns change, the TOASTed one does not: its value comes from the before image.
    conn.execute("UPDATE everything SET i4 = i4 - 1 WHERE id = 2")
    conn.execute("UPDATE everything SET t = 'five again', ai = '{5,55}' WHERE id = 5")
    conn.execute(
        "UPDATE everything SET n = n / 3, d = d + 1, ts = ts + interval '1 day',"
        " tstz = tstz - interval '1 microsecond', by = '\\xcafe', at = '{\"x y\"}' WHERE id = 1"
    )
    conn.execute("DELETE FROM everything WHERE id = 4")  # and its tombstone
    conn.execute("UPDATE everything SET id = 30 WHERE id = 3")  # a key change: delete, create
    conn.execute("UPDATE everything SET id = 31, big = 'moved' WHERE id = 30")
    with conn.transaction():
        conn.execute("INSERT INTO everything (id, t) VALUES (10, 'in a tx')")
        conn.execute("UPDATE everything SET t = 'again' WHERE id = 10")
        conn.execute("DELETE FROM everything WHERE id = 10")
        conn.execute("INSERT INTO everything (id, t) VALUES (11, 'stays')")
    conn.execute("DELETE FROM everything WHERE id = 6")
    conn.execute("UPDATE everything SET big = repeat('new', 4000) WHERE id = 5")


PG_TEXT = "-c TimeZone=UTC -c DateStyle=ISO -c IntervalStyle=postgres"
"""The session settings of the source's text below (and of the readings of intervals)."""


def source_text(conn: psycopg.Connection[Any]) -> list[list[str | None]]:
    """The source's rows in PostgreSQL's text output (what logical decoding sees)."""
    query = "SELECT " + ", ".join(COLUMNS) + " FROM everything"
    res = conn.pgconn.exec_(query.encode())
    assert res.status == pq.ExecStatus.TUPLES_OK, res.error_message
    return [
        [
            None if (v := res.get_value(r, c)) is None else bytes(v).decode()
            for c in range(len(COLUMNS))
        ]
        for r in range(res.ntuples)
    ]


Convert = Callable[[Any], Any]


def _as_is(value: Any) -> Any:
    return value


def _decimal(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)  # equal whatever the scale: 1.5 == 1.50


def _float_bits(fmt: str) -> Convert:
    # The same float whatever the decimal digits printed: compare the bits (NaN, -0.0 too).
    return lambda v: None if v is None else struct.pack(fmt, float(v))


def _seconds(text: str | None) -> str | None:
    return None if text is None else text.split(".")[0]


def _flink_seconds(value: str | None) -> str | None:
    return _seconds(flink.pg_text("TIME", value))


def comparable_rows(
    conn: psycopg.Connection[Any], source: list[list[str | None]], materialised: Counter[Any]
) -> tuple[Counter[tuple[Any, ...]], Counter[tuple[Any, ...]]]:
    """Source rows and Flink's rows in one form per column, as multisets."""

    def read_back(pg_type: str) -> Convert:
        def read(value: Any) -> Any:
            if value is None:
                return None
            row = conn.execute(
                sql.SQL("SELECT %s::{}::text").format(sql.SQL(pg_type)), (value,)
            ).fetchone()
            return None if row is None else row[0]

        return read

    # Per column: (from the source's text, from Flink's value).
    per_column: list[tuple[Convert, Convert]] = []
    for name, kind in COLUMN_TYPES:
        if kind.startswith("DECIMAL"):
            per_column.append((_decimal, _decimal))
        elif kind in ("FLOAT", "DOUBLE"):
            bits = _float_bits(">f" if kind == "FLOAT" else ">d")
            per_column.append((bits, bits))
        elif kind == "TIME":
            per_column.append((_seconds, _flink_seconds))
        elif name in ("iv", "tmtz"):
            per_column.append((_as_is, read_back("interval" if name == "iv" else "timetz")))
        else:
            per_column.append((_as_is, partial(flink.pg_text, kind)))
    want = Counter(tuple(f(v) for (f, _), v in zip(per_column, row, strict=True)) for row in source)
    got: Counter[tuple[Any, ...]] = Counter()
    for row, count in materialised.items():
        values = [list(v) if isinstance(v, tuple) else v for v in row]
        got[tuple(f(v) for (_, f), v in zip(per_column, values, strict=True))] += count
    return want, got


def test_flink_materialises_the_source_table_from_cdc_topic(
    tmp_path: Path, database: str, kafka_bootstrap: str, unique: str
) -> None:
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(SCHEMA)
        conn.execute("ALTER TABLE everything REPLICA IDENTITY FULL")
        for values in SNAPSHOT_ROWS:
            conn.execute(f"INSERT INTO everything VALUES {values}")
    config = write_config(
        tmp_path / "cdc.toml",
        database,
        kafka_bootstrap,
        name=f"fl{unique}",
        plugin="pgoutput",
        snapshot="initial",
        skipped_operations="t",
    )
    cdc = CdcProcess(config, tmp_path / "cdc.log")
    slot = f"cdc_fl{unique}"
    try:
        # Streaming starts once the snapshot is on Kafka. Not before the workload: its TRUNCATE is
        # not MVCC-safe, a snapshot reading the table after it commits finds it empty.
        wait_for(lambda: f"streaming slot {slot}" in cdc.output(), 60, "the snapshot")
        with psycopg.connect(database, autocommit=True, options=PG_TEXT) as conn:
            changes(conn)
            source = source_text(conn)
            # Not published (skipped_operations): Flink fails on op "t". Flink's table keeps
            # the rows, as they were before it.
            conn.execute("TRUNCATE everything")
        end = current_wal_lsn(database)
        wait_for(
            lambda: slot_confirmed_lsn(database, slot) >= end, 60, "the slot to confirm the end"
        )
    finally:
        assert cdc.stop() == 0, cdc.output()

    topic = f"fl{unique}.public.everything"
    result = flink.run(kafka_bootstrap, topic, COLUMN_TYPES, flink.ISO_TIMESTAMPS)
    kinds = Counter(c.kind for c in result.changes)
    # 4 snapshot reads, 4 inserts, 5 updates, 3 deletes, 2 key changes (a delete and a create).
    assert kinds == {"+I": 4 + 4 + 2, "-U": 5, "+U": 5, "-D": 3 + 2}, kinds
    materialised = flink.materialise(result.changes)

    with psycopg.connect(database, autocommit=True, options=PG_TEXT) as conn:
        want, got = comparable_rows(conn, source, materialised)
    assert sum(want.values()) == 5
    missing, extra = want - got, got - want
    assert not missing and not extra, (
        f"rows only in the source: {list(missing)}\nrows only in Flink: {list(extra)}"
    )
    print(f"flink: {result.seconds:.1f} s, phases {result.phases}")
