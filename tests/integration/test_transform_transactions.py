"""The transaction topic under SIGKILL (issue 21, item 6), both plugins: ``cdc run`` is killed
while multi-table transactions stream, then started again. Afterwards every END record on the
topic was appended after a copy of each of its transaction's events (Kafka timestamps: the
producer stamps a record when it is sent, and an END is sent only once its events are acked),
counts them exactly, and nothing committed is missing.

Integration tests (real PostgreSQL 15 and Kafka).
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from kafka import KafkaConsumer, TopicPartition

from tests.integration.test_transform_messages import two_tables_config
from tests.support.harness import CdcProcess, wait_for

MESSAGES = '[[connectors.messages]]\nprefixes = ["audit"]\n'


@dataclass(frozen=True)
class Stamped:
    topic: str
    offset: int
    timestamp: int
    value: Any
    event_id: str | None


def read_stamped(kafka: str, topics: list[str]) -> list[Stamped]:
    """Every record of ``topics`` (one partition each) with its Kafka timestamp."""
    consumer = KafkaConsumer(bootstrap_servers=kafka, enable_auto_commit=False)
    try:
        parts = [TopicPartition(t, 0) for t in topics if consumer.partitions_for_topic(t)]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        end = consumer.end_offsets(parts)
        out: list[Stamped] = []
        deadline = time.monotonic() + 30
        while any(consumer.position(tp) < end[tp] for tp in parts):
            assert time.monotonic() < deadline, "topics not read to their end"
            for tp, records in consumer.poll(timeout_ms=500, max_records=10_000).items():
                for r in records:
                    event_id = dict(r.headers).get("cdc-event-id")
                    out.append(
                        Stamped(
                            tp.topic,
                            r.offset,
                            r.timestamp,
                            None if r.value is None else orjson.loads(r.value),
                            None if event_id is None else event_id.decode(),
                        )
                    )
        return out
    finally:
        consumer.close()


def streamed(log: Path) -> int:
    """How many sessions of the log's ``cdc run`` processes began streaming."""
    return log.read_text(errors="replace").count("streaming slot")


class Writer(threading.Thread):
    """Multi-table transactions, each with a message, until stopped; counts those committed."""

    def __init__(self, dsn: str) -> None:
        super().__init__(daemon=True)
        self.dsn = dsn
        self.stop = threading.Event()
        self.committed = 0

    def run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            n = 0
            while not self.stop.is_set():
                n += 1
                with conn.transaction():
                    conn.execute(
                        "INSERT INTO a SELECT %s * 10 + g, 'x' FROM generate_series(0, 4) g", (n,)
                    )
                    conn.execute("INSERT INTO b VALUES (%s, 'y')", (n,))
                    conn.execute("SELECT pg_logical_emit_message(true, 'audit', %s)", (str(n),))
                    conn.execute("UPDATE a SET v = 'z' WHERE id = %s", (n * 10,))
                self.committed = n


@pytest.mark.parametrize("plugin", ["wal2json", "pgoutput"])
def test_no_end_precedes_its_events_across_a_sigkill(
    tmp_path: Path, database: str, kafka_bootstrap: str, unique: str, plugin: str
) -> None:
    name = f"txk{unique}"
    config = two_tables_config(tmp_path, database, kafka_bootstrap, name, plugin, MESSAGES)
    topics = [f"{name}.public.a", f"{name}.public.b", f"{name}.message.audit"]
    transaction_topic = f"{name}.transaction"
    cdc = CdcProcess(config, tmp_path / "cdc.log")
    writer = Writer(database)
    try:
        wait_for(lambda: "streaming slot" in cdc.output(), 30, "the connector to stream")
        writer.start()
        for kill in range(1, 4):
            time.sleep(0.5)
            cdc.kill()  # mid-run: transactions read, records in flight, ENDs waiting
            cdc = CdcProcess(config, tmp_path / "cdc.log")
            wait_for(lambda k=kill: streamed(tmp_path / "cdc.log") > k, 30, "a restart")
        time.sleep(0.5)
        writer.stop.set()
        writer.join(10)
        committed = writer.committed

        def ends() -> list[Stamped] | None:
            found = read_stamped(kafka_bootstrap, [transaction_topic])
            done = {r.value["id"] for r in found if r.value["status"] == "END"}
            return found if len(done) >= committed else None

        boundaries = wait_for(ends, 60, "every transaction's END")
    finally:
        writer.stop.set()
        cdc.stop()
    records = read_stamped(kafka_bootstrap, topics)
    assert "Traceback" not in cdc.output()
    assert committed > 20, committed

    # Each event's copies (re-sent after the kill: the same id), by transaction.
    first_sent: dict[str, int] = {}
    by_txn: dict[str, dict[str, str]] = defaultdict(dict)
    for r in records:
        if r.value is None:
            continue
        assert r.event_id is not None
        first_sent[r.event_id] = min(first_sent.get(r.event_id, r.timestamp), r.timestamp)
        txn = r.value["transaction"]["id"]
        collection = (
            r.value["message"]["prefix"]
            if r.value["op"] == "m"
            else f"{r.value['source']['schema']}.{r.value['source']['table']}"
        )
        by_txn[txn][r.event_id] = collection
    end_records = [r for r in boundaries if r.value["status"] == "END"]
    resent = len(end_records) - len({r.value["id"] for r in end_records})
    for end in end_records:
        events = by_txn[end.value["id"]]
        assert events, f"END {end.value['id']} without events"
        late = [i for i in events if first_sent[i] > end.timestamp]
        assert not late, f"END {end.value['id']} at {end.timestamp} before {late}"
        counted = {d["data_collection"]: d["event_count"] for d in end.value["data_collections"]}
        expected: dict[str, int] = defaultdict(int)
        for collection in events.values():
            expected[collection] += 1
        assert counted == expected, end.value
        assert counted == {"public.a": 6, "public.b": 1, "audit": 1}
    # Nothing missing: every committed transaction, whole.
    assert len(by_txn) == len({r.value["id"] for r in end_records}) == committed
    rows_b = {r.event_id for r in records if r.topic.endswith(".public.b") and r.value}
    assert len(rows_b) == committed
    print(f"{plugin}: {committed} transactions, {len(end_records)} ENDs ({resent} re-sent)")
