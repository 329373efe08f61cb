"""Logical decoding messages and transaction boundaries through Kafka (issue 21, items 5 and
6), both plugins: transactional and non-transactional messages arrive on their prefix's topic
with their content exact, unmatched prefixes and rolled-back transactional messages publish
nothing, and every transaction's END record counts exactly the events published for it.

Integration tests (real PostgreSQL 15 and Kafka).
"""

from __future__ import annotations

import base64
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.support.harness import CdcProcess, Event, read_topics, wait_for, write_config

MESSAGES = """
[[connectors.messages]]
prefixes = ["audit*"]
[[connectors.messages]]
prefixes = ["pay/*"]
topic = "{topic_prefix}.payments"
"""


def two_tables_config(
    tmp_path: Path, database: str, kafka: str, name: str, plugin: str, messages: str
) -> Path:
    """Tables ``a`` and ``b``, and a connector ``name`` on them with the transaction topic on
    and the ``[[connectors.messages]]`` rules ``messages``: its config file."""
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("CREATE TABLE a (id int PRIMARY KEY, v text)")
        conn.execute("CREATE TABLE b (id int PRIMARY KEY, v text)")
    config = write_config(
        tmp_path / "cdc.toml",
        database,
        kafka,
        name=name,
        kafka_client="confluent-kafka",
        plugin=plugin,
        transaction_topic=True,
    )
    config.write_text(config.read_text() + messages)
    return config


def run_workload(dsn: str, exact_bytes: bytes) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        with conn.transaction():  # two tables, a message between their changes
            conn.execute("INSERT INTO a VALUES (1, 'one'), (2, 'two')")
            conn.execute("SELECT pg_logical_emit_message(true, 'audit', %s::bytea)", (exact_bytes,))
            conn.execute("INSERT INTO b VALUES (10, 'ten')")
            conn.execute("SELECT pg_logical_emit_message(true, 'ignored', 'not published')")
            conn.execute("UPDATE a SET v = 'uno' WHERE id = 1")
        with conn.transaction():  # a delete (and its tombstone), a message of the second rule
            conn.execute("DELETE FROM b WHERE id = 10")
            conn.execute("INSERT INTO b VALUES (11, 'eleven')")
            conn.execute("SELECT pg_logical_emit_message(true, 'pay/v1', 'paid 10')")
        # Non-transactional: published whatever becomes of the transaction that emitted it.
        conn.execute("SELECT pg_logical_emit_message(false, 'audit.nt', 'outside')")
        with conn.transaction():
            conn.execute("INSERT INTO a VALUES (3, 'three')")
            conn.execute("SELECT pg_logical_emit_message(false, 'audit.nt', 'survives')")
            conn.execute("SELECT pg_logical_emit_message(true, 'audit', 'rolled back')")
            raise psycopg.Rollback
        with conn.transaction():
            conn.execute("SELECT pg_logical_emit_message(true, 'audit', 'alone')")
        with conn.transaction():  # only unmatched messages: no BEGIN, no END
            conn.execute("SELECT pg_logical_emit_message(true, 'nobody', 'x')")
        with conn.transaction():
            conn.execute("INSERT INTO a VALUES (4, 'four')")


@pytest.mark.parametrize("plugin", ["wal2json", "pgoutput"])
def test_messages_and_transaction_boundaries(
    tmp_path: Path, database: str, kafka_bootstrap: str, unique: str, plugin: str
) -> None:
    name = f"msg{unique}"
    config = two_tables_config(tmp_path, database, kafka_bootstrap, name, plugin, MESSAGES)
    # pgoutput's content is exact bytes; wal2json 2.5 cuts it at a NUL (docs say so).
    exact = b'\xff\x00\x01bytes\xfe\n"' if plugin == "pgoutput" else b'\xff\x01bytes\xfe\n"\\'
    cdc = CdcProcess(config, tmp_path / "cdc.log")
    try:
        wait_for(lambda: "streaming slot" in cdc.output(), 30, "the connector to stream")
        run_workload(database, exact)
        topics = [
            f"{name}.public.a",
            f"{name}.public.b",
            f"{name}.message.audit",
            f"{name}.message.audit.nt",
            f"{name}.payments",
            f"{name}.transaction",
        ]

        def all_there() -> list[Event] | None:
            try:
                events = read_topics(kafka_bootstrap, topics, timeout_s=10)
            except Exception:
                return None
            ends = [e for e in events if e.topic.endswith(".transaction")]
            return events if len(ends) == 8 else None  # 4 transactions: BEGIN and END each

        events = wait_for(all_there, 60, "every record")
    finally:
        cdc.stop()
    assert "Traceback" not in cdc.output()

    def content(topic: str) -> list[bytes]:
        return [
            base64.b64decode(e.value["message"]["content"])
            for e in events
            if e.topic == topic and e.value is not None
        ]

    assert content(f"{name}.message.audit") == [exact, b"alone"]
    assert content(f"{name}.message.audit.nt") == [b"outside", b"survives"]
    assert content(f"{name}.payments") == [b"paid 10"]
    assert not [e for e in events if e.value and "message" in e.value and e.value["message"]
                ["prefix"] in ("ignored", "nobody")]  # fmt: skip
    audit = next(e for e in events if e.topic == f"{name}.message.audit")
    assert audit.key == {"prefix": "audit"}
    assert audit.value is not None and audit.value["op"] == "m"
    nt = next(e for e in events if e.topic == f"{name}.message.audit.nt")
    assert nt.value is not None and nt.value["transaction"] is None
    assert nt.event_id == f"{nt.value['source']['lsn'] - 1}:0"

    # Ids: a transactional message's index is counted with its transaction's changes.
    first_txn = audit.value["transaction"]["id"]
    ids = sorted(
        (int(e.event_id.split(":")[1]), e.topic.rsplit(".", 1)[-1])
        for e in events
        if e.event_id and e.value and (e.value.get("transaction") or {}).get("id") == first_txn
    )
    assert ids == [(0, "a"), (1, "a"), (2, "audit"), (3, "b"), (5, "a")]  # 4: 'ignored'

    # Every END counts exactly the events published for its transaction; each has a BEGIN.
    published: dict[str, Counter[str]] = defaultdict(Counter)
    for e in events:
        if e.topic.endswith(".transaction") or e.value is None:
            continue
        txn = e.value.get("transaction")
        if txn is None:
            continue
        if e.value["op"] == "m":
            published[txn["id"]][e.value["message"]["prefix"]] += 1
        else:
            source = e.value["source"]
            published[txn["id"]][f"{source['schema']}.{source['table']}"] += 1
    boundaries = [e.value for e in events if e.topic == f"{name}.transaction"]
    assert all(b is not None for b in boundaries)
    begins = [b["id"] for b in boundaries if b and b["status"] == "BEGIN"]
    ends: dict[str, Any] = {b["id"]: b for b in boundaries if b and b["status"] == "END"}
    assert sorted(begins) == sorted(ends) == sorted(published)
    for txn_id, end in ends.items():
        counted = {d["data_collection"]: d["event_count"] for d in end["data_collections"]}
        assert counted == dict(published[txn_id]), txn_id
        assert end["event_count"] == sum(published[txn_id].values())
    assert ends[first_txn]["data_collections"] == [
        {"data_collection": "public.a", "event_count": 3},
        {"data_collection": "audit", "event_count": 1},
        {"data_collection": "public.b", "event_count": 1},
    ]
    end_key = next(e.key for e in events if e.topic == f"{name}.transaction")
    assert end_key == {"id": begins[0]}
