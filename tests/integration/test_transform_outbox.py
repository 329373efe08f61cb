"""The outbox through Kafka, both plugins: each inserted outbox row is one event whose value is
the payload written (jsonb as PostgreSQL prints it, bytea as its bytes), keyed by the aggregate id,
with the id and type headers; rows inserted and deleted in one transaction too (the WAL still
holds the insert); updates, deletes and the initial snapshot's reads publish nothing."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from kafka import KafkaConsumer, TopicPartition

from tests.support.harness import CdcProcess, slot_confirmed_lsn, wait_for

SCHEMA = """
CREATE TABLE outbox (id uuid PRIMARY KEY, aggregatetype text NOT NULL, aggregateid text NOT NULL,
                     type text NOT NULL, payload jsonb);
CREATE TABLE raw_box (event_id bigint PRIMARY KEY, kind text, agg bigint, what text, body bytea);
INSERT INTO outbox VALUES (gen_random_uuid(), 'Order', 'old', 'Old', '{"before": "start"}');
"""


def read_raw(kafka: str, topics: list[str]) -> list[tuple[str, Any, Any, dict[str, bytes]]]:
    """``(topic, key, value, headers)`` of every record of ``topics``, as bytes: an outbox
    event's key and value are not JSON."""
    consumer = KafkaConsumer(bootstrap_servers=kafka, enable_auto_commit=False)
    try:
        parts = [
            TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or ()
        ]
        if not parts:  # not created yet
            return []
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        end = consumer.end_offsets(parts)
        found: list[tuple[str, Any, Any, dict[str, bytes]]] = []
        deadline = time.monotonic() + 30
        while any(consumer.position(tp) < end[tp] for tp in parts):
            assert time.monotonic() < deadline, "topics not read to their end in time"
            for tp, records in consumer.poll(timeout_ms=500).items():
                found += [(tp.topic, r.key, r.value, dict(r.headers)) for r in records]
        return found
    finally:
        consumer.close()


def config(tmp_path: Path, kafka: str, name: str, dsn: str, plugin: str) -> Path:
    path = tmp_path / "cdc.toml"
    path.write_text(
        f'[kafka]\nbootstrap_servers = "{kafka}"\n'
        f'[[connectors]]\nname = "{name}"\ndsn = "{dsn}"\nplugin = "{plugin}"\n'
        'snapshot = "initial"\ntables = ["public.*"]\n'
        f'[[connectors.outbox]]\ntable = "public.outbox"\n'
        f'topic = "{name}.event.{{aggregatetype}}"\n'
        '[[connectors.outbox]]\ntable = "public.raw_box"\n'
        'topic = "{topic_prefix}.raw.{aggregatetype}"\n'
        'id_column = "event_id"\naggregate_type_column = "kind"\naggregate_id_column = "agg"\n'
        'type_column = "what"\npayload_column = "body"\n'
    )
    return path


@pytest.mark.parametrize("plugin", ["wal2json", "pgoutput"])
def test_outbox_events_are_the_payloads_written(
    tmp_path: Path, database: str, kafka_bootstrap: str, unique: str, plugin: str
) -> None:
    name = f"ob{unique}"
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(SCHEMA)
    cdc = CdcProcess(config(tmp_path, kafka_bootstrap, name, database, plugin), tmp_path / "log")
    written: list[tuple[str, str, str, str, str | None]] = []
    try:
        wait_for(lambda: slot_confirmed_lsn(database, f"cdc_{name}"), 60, "the slot")
        with psycopg.connect(database, autocommit=True) as conn:

            def emit(kind: str, agg: str, what: str, payload: str | None) -> str:
                event_id = str(uuid.uuid4())
                conn.execute(
                    "INSERT INTO outbox VALUES (%s, %s, %s, %s, %s::jsonb)",
                    (event_id, kind, agg, what, payload),
                )
                row = conn.execute("SELECT %s::jsonb::text", (payload,)).fetchone()
                assert row is not None
                written.append((event_id, kind, agg, what, row[0]))
                return event_id

            emit("Order", "1", "OrderCreated", '{"total":"9.90","lines":[1,2],"é":"☃"}')
            emit("Customer", "c7", "CustomerMoved", '{"city":"Zürich"}')
            emit("Order", "1", "OrderPaid", None)
            # Debezium's advice: insert and delete in the same transaction; the WAL holds both.
            with conn.transaction():
                gone = emit("Order", "2", "OrderCreated", '{"kept":"small"}')
                conn.execute("DELETE FROM outbox WHERE id = %s", (gone,))
            conn.execute("UPDATE outbox SET type = 'Changed'")  # nothing published
            conn.execute("DELETE FROM outbox WHERE aggregateid = 'c7'")  # nothing published
            conn.execute(
                "INSERT INTO raw_box VALUES (1, 'Blob', 77, 'Raw', '\\x00ff10'::bytea),"
                " (2, 'Blob', 78, NULL, NULL)"
            )
        topics = [f"{name}.event.Order", f"{name}.event.Customer"]
        raw = [f"{name}.raw.Blob"]
        wait_for(lambda: len(read_raw(kafka_bootstrap, topics)) >= 4, 60, "the outbox events")
        wait_for(lambda: len(read_raw(kafka_bootstrap, raw)) >= 2, 60, "the raw events")
        # The row events of an outbox table are not published (publish_rows = false).
        assert read_raw(kafka_bootstrap, [f"{name}.public.outbox"]) == []
    finally:
        assert cdc.stop() == 0, cdc.output()[-3000:]
    log = cdc.output()
    assert log.count("outbox table public.outbox: an update") == 1, log[-3000:]

    got = sorted(
        (
            h["id"].decode(),
            topic.rsplit(".", 1)[1],
            key.decode(),
            h["type"].decode(),
            None if value is None else value.decode(),
        )
        for topic, key, value, h in read_raw(kafka_bootstrap, topics)
    )
    assert got == sorted(written, key=lambda w: w[0])  # the old row (a snapshot read): not there
    assert all(h["cdc-event-id"] for *_, h in read_raw(kafka_bootstrap, topics))
    assert [(k, v, h.get("type"), h["id"]) for _, k, v, h in read_raw(kafka_bootstrap, raw)] == [
        (b"77", b"\x00\xff\x10", b"Raw", b"1"),
        (b"78", None, None, b"2"),
    ]
