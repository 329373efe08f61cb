"""The values modes end to end (issue 22): ``values = "debezium"`` writes, for a table of every
type, the values Debezium 3.6.1 wrote for the same statements (tests/fixtures/debezium, captured
by bench/debezium_capture.py), its envelope and its snapshot markers, and skips truncates; the
exact mode's values decode back to exactly what cdc's decoders read.

Integration tests (real PostgreSQL 15 and Kafka).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest

from bench.debezium_capture import DDL, ROWS
from cdc.values import EXACT, decoder
from tests.support.harness import (
    CdcProcess,
    Event,
    current_wal_lsn,
    read_topics,
    slot_confirmed_lsn,
    wait_for,
    write_config,
)

FIXTURES = Path(__file__).parent.parent / "fixtures" / "debezium"
NOT_REPRODUCED = {"dom"}  # Debezium writes a domain over int as a number; cdc its text
WAL2JSON_NULLS = {"f4", "f8", "n"}  # wal2json 2.5 sends NaN, Infinity as null (FACTS.md)


def _fixture(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (FIXTURES / f"{name}.jsonl").read_text().splitlines()]


def _run(tmp_path: Path, database: str, kafka: str, name: str, **keys: Any) -> list[Event]:
    """The capture's statements through a connector ``name`` with ``keys``; its records."""
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(DDL)
    config = write_config(
        tmp_path / "cdc.toml", database, kafka, name=name, kafka_client="confluent-kafka", **keys
    )
    cdc = CdcProcess(config, tmp_path / "cdc.log")
    try:
        wait_for(lambda: slot_confirmed_lsn(database, f"cdc_{name}"), 30, "the slot")
        with psycopg.connect(database, autocommit=True) as conn:
            for statement in ROWS:
                conn.execute(statement)
        end = current_wal_lsn(database)
        wait_for(lambda: slot_confirmed_lsn(database, f"cdc_{name}") >= end, 60, "the changes")
    finally:
        assert cdc.stop() == 0, cdc.output()
    return read_topics(kafka, [f"{name}.public.every_type"])


@pytest.mark.parametrize("plugin", ["pgoutput", "wal2json"])
def test_the_debezium_mode_writes_what_debezium_wrote(
    tmp_path: Path, database: str, kafka_bootstrap: str, unique: str, plugin: str
) -> None:
    events = _run(tmp_path, database, kafka_bootstrap, f"dm{unique}", plugin=plugin,
                  values="debezium")  # fmt: skip
    theirs = [r for r in _fixture("debezium-defaults") if r["value"] is not None]
    ours = [e for e in events if e.value is not None]
    # Truncates are skipped as Debezium skips them; tombstones follow deletes in both.
    assert [e.op for e in ours] == [r["value"]["op"] for r in theirs]
    assert len(events) - len(ours) == 2
    # the first transaction streamed: no commit before it, as Debezium's [null,"..."]
    assert theirs[0]["value"]["source"]["sequence"].startswith("[null,")
    assert ours[0].value is not None
    assert ours[0].value["source"]["sequence"].startswith("[null,")
    compared = 0
    for event, record in zip(ours, theirs, strict=True):
        assert event.value is not None
        assert event.key == record["key"]
        assert event.headers["cdc-values"] == (
            b"debezium;decimal=precise;time=adaptive;binary=bytes;interval=numeric"
        )
        assert set(event.value) == set(record["value"])
        assert set(event.value["source"]) == set(record["value"]["source"])
        source = event.value["source"]
        # Debezium's last commit LSN is where the last commit ended, where the capture's next
        # statement's change begins: so is cdc's
        their_source = record["value"]["source"]
        if json.loads(their_source["sequence"])[0] == str(their_source["lsn"]):
            assert json.loads(source["sequence"])[0] == str(source["lsn"])
        assert source["name"] == f"dm{unique}"  # the topic prefix, as Debezium's
        assert source["ts_us"] == source["ts_ms"] * 1000
        assert event.value["transaction"] is None
        assert event.value["ts_ns"] // 1_000_000 == event.value["ts_ms"]
        for image in ("before", "after"):
            mine, want = event.value[image], record["value"][image]
            assert (mine is None) == (want is None)
            for column, value in (want or {}).items():
                if column in NOT_REPRODUCED:
                    continue
                if plugin == "wal2json" and mine[column] is None and column in WAL2JSON_NULLS:
                    continue
                assert mine[column] == value, (image, column)
                compared += 1
    assert compared > 240


@pytest.mark.parametrize("plugin", ["pgoutput", "wal2json"])
def test_the_exact_mode_decodes_back_to_what_cdc_read(
    tmp_path: Path, database: str, kafka_bootstrap: str, unique: str, plugin: str
) -> None:
    events = _run(tmp_path, database, kafka_bootstrap, f"em{unique}", plugin=plugin)
    theirs = [r for r in _fixture(f"cdc-{plugin}") if r["value"] is not None]
    ours = [e for e in events if e.value is not None]
    assert [e.op for e in ours] == [r["value"]["op"] for r in theirs]  # truncate included
    for event, record in zip(ours, theirs, strict=True):
        assert event.value is not None
        assert event.headers["cdc-values"] == b"exact"
        assert event.value["source"]["name"] == f"em{unique}"  # the connector's name
        if event.op == "t":
            continue
        codec = decoder(orjson.loads(event.headers["cdc-types"]), EXACT)
        assert codec is not None
        for image in ("before", "after"):
            assert codec(event.value[image]) == record["value"][image], image
        assert codec(event.key) == record["key"]


@pytest.mark.parametrize(
    ("rows", "want"),
    [
        (
            {"a": 3, "b": 1, "c": 2},
            {
                "a": ["first", "true", "last_in_data_collection"],
                # a table's only row is its last as well: Debezium says that
                "b": ["last_in_data_collection"],
                "c": ["first_in_data_collection", "last"],
            },
        ),
        (
            # "first" is the first table's first row only (Debezium's firstTable): none here
            {"a": 0, "b": 2, "c": 1},
            {"a": [], "b": ["first_in_data_collection", "last_in_data_collection"], "c": ["last"]},
        ),
    ],
)
def test_the_debezium_mode_marks_a_snapshots_first_and_last_rows(
    tmp_path: Path,
    database: str,
    kafka_bootstrap: str,
    unique: str,
    rows: dict[str, int],
    want: dict[str, list[str]],
) -> None:
    """The markers of Debezium's RelationalSnapshotChangeEventSource: last (the snapshot's
    last row) before first (the first table's first row) before last_in_data_collection before
    first_in_data_collection."""
    with psycopg.connect(database, autocommit=True) as conn:
        for table, count in rows.items():
            conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY)")
            conn.execute(f"INSERT INTO {table} SELECT generate_series(1, {count})")
    name = f"sm{unique}"
    config = write_config(tmp_path / "cdc.toml", database, kafka_bootstrap, name=name,
                          snapshot="initial_only", values="debezium")  # fmt: skip
    cdc = CdcProcess(config, tmp_path / "cdc.log")
    assert cdc.proc.wait(timeout=120) == 0, cdc.output()
    markers = {}
    for table, count in rows.items():
        events = read_topics(kafka_bootstrap, [f"{name}.public.{table}"]) if count else []
        markers[table] = [e.value["source"]["snapshot"] for e in events if e.value is not None]
    assert markers == want
