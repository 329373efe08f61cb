"""The services themselves: the devstack's Kafka carries a message, its PostgreSQL decodes with
wal2json. If these fail, every other integration test would fail for reasons of the stack.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import orjson
import psycopg
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

from tests.support.services import delete_test_topics


def test_kafka_message_round_trip(kafka_bootstrap: str, unique: str) -> None:
    topic = f"cdct.{unique}.roundtrip"
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        admin.close()
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    meta = producer.send(
        topic, key=b'{"id":1}', value=b'{"op":"c"}', headers=[("cdc-event-id", b"42:0")]
    ).get(timeout=30)
    producer.close()
    assert meta.offset == 0

    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap, enable_auto_commit=False)
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        records: list[Any] = []
        deadline = time.monotonic() + 30
        while not records and time.monotonic() < deadline:
            records = consumer.poll(timeout_ms=1000).get(tp, [])
    finally:
        consumer.close()
    assert len(records) == 1
    (record,) = records
    assert (record.key, record.value) == (b'{"id":1}', b'{"op":"c"}')
    assert list(record.headers) == [("cdc-event-id", b"42:0")]


def test_wal2json_slot_decodes_a_change(database: str, unique: str) -> None:
    slot = f"cdct_{unique}"
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
        conn.execute("SELECT pg_create_logical_replication_slot(%s, 'wal2json')", (slot,))
        conn.execute("INSERT INTO t VALUES (1, 'héllo')")
        rows = conn.execute(
            "SELECT data FROM pg_logical_slot_get_changes(%s, NULL, NULL,"
            " 'format-version', '2', 'include-lsn', 'true')",
            (slot,),
        ).fetchall()
        conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
    messages = [orjson.loads(data) for (data,) in rows]
    assert [m["action"] for m in messages] == ["B", "I", "C"]
    insert = messages[1]
    assert (insert["schema"], insert["table"]) == ("public", "t")
    assert {c["name"]: c["value"] for c in insert["columns"]} == {"id": 1, "v": "héllo"}
    assert "lsn" in messages[0]


def test_session_deletes_only_the_topics_of_its_tokens(kafka_bootstrap: str) -> None:
    """The suite's own clean-up (conftest): a topic holding a test's token goes, others stay."""
    token, other = secrets.token_hex(4), secrets.token_hex(4)
    mine, dlq, theirs = f"gc{token}.public.t", f"gc{token}.public.t.dlq", f"gc{other}.public.t"
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        admin.create_topics(
            [NewTopic(t, num_partitions=1, replication_factor=1) for t in (mine, dlq, theirs)]
        )
        assert sorted(delete_test_topics(kafka_bootstrap, {token})) == sorted([mine, dlq])
        deadline = time.monotonic() + 30
        while {mine, dlq} & set(admin.list_topics()) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = set(admin.list_topics())
        assert not {mine, dlq} & left
        assert theirs in left
        admin.delete_topics([theirs])
    finally:
        admin.close()
