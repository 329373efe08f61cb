"""Every change type and many column types arrive on Kafka exactly as committed.

Integration test: the connector runs as a real ``cdc run`` process against the devstack. Each
statement returns its rows as PostgreSQL's own text form at that moment; each event's values must
say the same thing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from psycopg import pq

from cdc.events import UNAVAILABLE
from cdc.values import EXACT, decoder
from tests.support.exact import COLUMNS, NOT_EXPRESSIBLE, ROWS, SCHEMA
from tests.support.harness import (
    CdcProcess,
    Event,
    current_wal_lsn,
    read_topics,
    slot_confirmed_lsn,
    wait_for,
    write_config,
)

RETURNING = "RETURNING " + ", ".join(COLUMNS)


def output_text(conn: psycopg.Connection[Any], statement: str) -> list[list[str | None]]:
    """Rows exactly as the types' output functions print them (what logical decoding sees)."""
    res = conn.pgconn.exec_(statement.encode())
    assert res.status == pq.ExecStatus.TUPLES_OK, res.error_message
    return [
        [
            None if (v := res.get_value(r, c)) is None else bytes(v).decode()
            for c in range(res.nfields)
        ]
        for r in range(res.ntuples)
    ]


def wire_to_internal(event: Event) -> dict[str, Any]:
    """The event's ``after`` as cdc's decoders gave it, before the exact encodings (base64,
    ISO 8601, JSON arrays: tests/unit/test_values.py checks those), as sinks read it back."""
    assert event.headers["cdc-values"] == b"exact"
    assert event.value is not None
    types = orjson.loads(event.headers["cdc-types"])
    codec = decoder(types, EXACT)
    assert codec is not None
    after = codec(event.value["after"])
    assert after is not None
    return after


def as_pg_text(value: Any, column: str) -> str | None:
    """The event's value written back in PostgreSQL's text form, for comparison."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "t" if value else "f"
    if column == "by":
        return "\\x" + str(value)  # the decoders' bytea: bare hex digits
    return str(value)


def assert_row_matches(
    after: dict[str, Any], expected: dict[str, str | None], unavailable: set[str]
) -> None:
    assert set(after) == set(COLUMNS)
    for column, text in expected.items():
        value = after[column]
        if column in unavailable:
            assert value == UNAVAILABLE
        elif column in ("f4", "f8") and isinstance(value, str):
            assert value == text, column  # NaN, Infinity: text (pgoutput)
        elif column in ("f4", "f8") and value is not None and text is not None:
            assert isinstance(value, float)
            assert value == float(text), column  # same double, however printed
        else:
            assert as_pg_text(value, column) == text, column


@pytest.mark.parametrize(
    ("client", "plugin"),
    [("kafka-python", "wal2json"), ("confluent-kafka", "wal2json"), ("kafka-python", "pgoutput")],
)
def test_every_change_type_and_column_type_arrives_exactly(
    tmp_path: Path, database: str, kafka_bootstrap: str, unique: str, client: str, plugin: str
) -> None:
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(SCHEMA)
    config = write_config(
        tmp_path / "cdc.toml",
        database,
        kafka_bootstrap,
        name=f"ex{unique}",
        kafka_client=client,
        plugin=plugin,
    )
    cdc = CdcProcess(config, tmp_path / "cdc.log")
    slot = f"cdc_ex{unique}"
    try:
        wait_for(lambda: slot_confirmed_lsn(database, slot), 30, "the connector's slot")
        expected: list[tuple[str, dict[str, str | None] | None, set[str]]] = []
        with psycopg.connect(database, autocommit=True) as conn:

            def run(op: str, statement: str, unavailable: set[str] = frozenset()) -> None:  # type: ignore[assignment]
                for row in output_text(conn, statement):
                    expected.append((op, dict(zip(COLUMNS, row, strict=True)), set(unavailable)))

            for values in ROWS:
                run("c", f"INSERT INTO everything VALUES {values} {RETURNING}")
            run("u", f"UPDATE everything SET i4 = i4 - 1 WHERE id = 2 {RETURNING}", {"big"})
            run("u", f"UPDATE everything SET big = 'small now', t = NULL WHERE id = 2 {RETURNING}")
            with conn.transaction():
                run("c", f"INSERT INTO everything (id, t) VALUES (10, 'in a tx') {RETURNING}")
                run("u", f"UPDATE everything SET t = 'again' WHERE id = 10 {RETURNING}")
                conn.execute("DELETE FROM everything WHERE id = 10")
                expected.append(("d", {"id": "10"}, set()))
            run("d-then-c", f"UPDATE everything SET id = 20 WHERE id = 3 {RETURNING}")
            conn.execute("DELETE FROM everything WHERE id = 1")
            expected.append(("d", {"id": "1"}, set()))
            conn.execute("TRUNCATE everything")
            expected.append(("t", None, set()))
        end = current_wal_lsn(database)
        wait_for(
            lambda: slot_confirmed_lsn(database, slot) >= end, 60, "the slot to confirm the end"
        )
    finally:
        assert cdc.stop() == 0, cdc.output()

    events = read_topics(kafka_bootstrap, [f"ex{unique}.public.everything"])
    data = [e for e in events if e.value is not None]
    tombstones = [e for e in events if e.value is None]
    ops = [e.op for e in data]
    assert ops == ["c", "c", "c", "c", "u", "u", "c", "u", "d", "d", "c", "d", "t"]
    assert len(tombstones) == 3  # after each delete (including the key move)

    by_position = iter(data)
    for op, row, unavailable in expected:
        if op == "d-then-c":
            moved_from, moved_to = next(by_position), next(by_position)
            assert moved_from.op == "d" and moved_from.key == {"id": 3}
            assert moved_to.op == "c" and moved_to.key == {"id": 20}
            assert moved_to.value is not None and row is not None
            assert_row_matches(wire_to_internal(moved_to), row, unavailable)
            continue
        event = next(by_position)
        assert event.op == op
        assert event.value is not None
        if op == "t":
            assert event.value["before"] is None and event.value["after"] is None
            continue
        assert row is not None
        assert event.key == {"id": int(row["id"] or 0)}
        if op == "d":
            assert event.value["after"] is None
            assert event.value["before"] == {"id": int(row["id"] or 0)}
            continue
        after = wire_to_internal(event)
        key = int(row["id"] or 0)
        want = dict(row)
        for column in NOT_EXPRESSIBLE.get(key, ()) if plugin == "wal2json" else ():
            assert after[column] is None  # documented limitation of wal2json 2.5
            want[column] = None
        assert_row_matches(after, want, unavailable)
        assert event.value["source"]["table"] == "everything"
        assert event.value["source"]["snapshot"] == "false"

    # Event ids: unique, and commit LSN + index.
    ids = [e.event_id for e in data]
    assert len(set(ids)) == len(ids)
    for e in data:
        assert e.value is not None
        commit, index = (int(x) for x in (e.event_id or "").split(":"))
        assert commit >= e.value["source"]["lsn"]
        assert index == e.value["transaction"]["total_order"] - 1
