"""Transaction boundaries (issue 21, item 6) through the streaming loop, with a publisher whose
acks the test gives record by record: the END record is sent only once every other record of
its transaction is acked, and the slot is confirmed past a transaction only once its END is."""

from __future__ import annotations

import struct
import threading
import time
from typing import Any

import orjson
import pytest

from cdc.config import KafkaConfig, parse_config
from cdc.events import Change, Record, SourceInfo
from cdc.kafka.types import ConsumedRecord, TopicPartition
from cdc.sink.runtime import SinkRuntime
from cdc.transforms.messages import Messages
from cdc.transforms.transactions import Boundaries, is_boundary_or_message
from connectors.postgres.decoding import Message
from connectors.postgres.pgoutput import PgOutputDecoder
from connectors.postgres.source import PostgresSource
from connectors.postgres.stream import stream
from tests.support.decoding import FakeCatalog
from tests.support.harness import wait_for
from tests.support.memory_target import MemoryTarget
from tests.unit.test_source_stream import CONFIG as STREAM_CONFIG
from tests.unit.test_source_stream import FakeRepl, NoSnapshots

CONFIG = (
    STREAM_CONFIG
    + """transaction_topic = true
[[connectors.messages]]
prefixes = ["audit"]
"""
)
SOURCE = SourceInfo("fake", "fake", "fake")
FILTERED_A = """[[connectors.filters]]
tables = ["public.a"]
where = "id >= 0"
"""


def begin(commit_lsn: int, xid: int) -> bytes:
    return b"B" + struct.pack(">Qqi", commit_lsn, 5_000_000, xid)


def commit(commit_lsn: int, end_lsn: int) -> bytes:
    return b"C" + struct.pack(">BQQq", 0, commit_lsn, end_lsn, 5_000_000)


def relation(relid: int, table: bytes) -> bytes:
    column = b"\x01id\x00" + struct.pack(">Ii", 20, -1)
    return b"R" + struct.pack(">I", relid) + b"public\x00" + table + b"\x00d\x00\x01" + column


def insert(relid: int, value: int) -> bytes:
    text = str(value).encode()
    return b"I" + struct.pack(">I", relid) + b"N\x00\x01t" + struct.pack(">i", len(text)) + text


def delete(relid: int, value: int) -> bytes:
    text = str(value).encode()
    return b"D" + struct.pack(">I", relid) + b"K\x00\x01t" + struct.pack(">i", len(text)) + text


def message(transactional: bool, lsn: int, prefix: bytes, content: bytes) -> bytes:
    return (
        b"M" + struct.pack(">BQ", int(transactional), lsn) + prefix + b"\x00"
        + struct.pack(">I", len(content)) + content
    )  # fmt: skip


class AckOnRequest:
    """Keeps every record sent; acks, in :meth:`poll`, those the test names."""

    unacked_bytes = 0

    def __init__(self) -> None:
        self.records: list[Record] = []
        self._callbacks: list[Any] = []
        self.acked: set[int] = set()
        self.to_ack: set[int] = set()
        self.lock = threading.Lock()

    @staticmethod
    def callback(on_ack: Any, on_error: Any, *args: Any) -> Any:
        return lambda: on_ack(*args)

    def send_with(self, record: Record, callback: Any) -> None:
        with self.lock:
            self.records.append(record)
            self._callbacks.append(callback)

    def ack(self, *which: int) -> None:
        with self.lock:
            self.to_ack.update(which)

    def ack_all(self) -> None:
        with self.lock:
            self.to_ack.update(range(len(self.records)))

    def poll(self, timeout_s: float = 0.0) -> None:
        with self.lock:
            due = sorted(self.to_ack - self.acked)
            self.acked.update(due)
            callbacks = [self._callbacks[i] for i in due]
        for callback in callbacks:
            callback()
        if timeout_s and not due:
            time.sleep(timeout_s)

    def flush(self, timeout_s: float) -> None:
        self.poll()

    def sent(self) -> list[tuple[str, Any]]:
        with self.lock:
            return [
                (r.topic, None if r.value is None else orjson.loads(r.value)) for r in self.records
            ]


def run_stream(
    payloads: list[tuple[bytes, int]],
    publisher: AckOnRequest,
    text: str = CONFIG,
    snapshots: Any = None,
) -> Any:
    config = parse_config(text)
    source = PostgresSource(config.connectors[0], config.kafka)
    repl, stop = FakeRepl(payloads), threading.Event()
    catalog = FakeCatalog()
    catalog.relids.update({1: ("public", "a"), 2: ("public", "b")})

    def run() -> None:
        stream(
            stop,
            repl,
            PgOutputDecoder(catalog, lambda s, t: True),
            SOURCE,
            publisher,
            NoSnapshots() if snapshots is None else snapshots,
            source.confirmation,
            source.stats,
            source._delivery,
            source._settings,
        )

    thread = threading.Thread(target=run)
    thread.start()
    return source, repl, stop, thread


T1, T2, NT = 0x1000, 0x2000, 0x1800


def payloads() -> list[tuple[bytes, int]]:
    return [
        (begin(T1, 7), T1),
        (relation(1, b"a"), T1),
        (relation(2, b"b"), T1),
        (insert(1, 1), 0x900),
        (message(True, 0x950, b"audit", b"\x00\xff"), 0x950),
        (message(True, 0x960, b"other", b"x"), 0x960),  # no rule: not published, not counted
        (delete(2, 5), 0x980),  # a delete and its tombstone: one event
        (insert(1, 2), 0x990),
        (commit(T1, T1 + 0x30), T1 + 0x30),
        (message(False, NT, b"audit", b"own"), NT),
        (begin(T2, 8), T2),
        (insert(2, 3), 0x1900),
        (commit(T2, T2 + 0x30), T2 + 0x30),
        (begin(0x3000, 9), 0x3000),  # a transaction of an uncaptured table: nothing at all
        (commit(0x3000, 0x3030), 0x3030),
    ]


def test_end_only_after_the_rest_is_acked_and_confirmed_only_after_the_end() -> None:
    publisher = AckOnRequest()
    source, _, stop, thread = run_stream(payloads(), publisher)
    try:
        wait_for(lambda: len(publisher.records) >= 9, 10, "the records")
        time.sleep(0.3)
        sent = publisher.sent()
        topics = [t for t, _ in sent]
        # T1: BEGIN, 4 records and a tombstone; the message on its own; T2: BEGIN and 1 record.
        assert topics == [
            "fake.transaction",
            "fake.public.a",
            "fake.message.audit",
            "fake.public.b",
            "fake.public.b",
            "fake.public.a",
            "fake.message.audit",
            "fake.transaction",
            "fake.public.b",
        ], topics
        assert sent[0][1] == {
            "status": "BEGIN",
            "id": f"7:{T1}",
            "event_count": None,
            "data_collections": None,
            "ts_ms": 946_684_805_000,
        }
        assert sent[1][1]["transaction"]["id"] == f"7:{T1}"  # the events' transaction.id
        assert sent[7][1]["id"] == f"8:{T2}"
        # Everything of T1 but one record acked, T2 and the message all acked: no END yet.
        publisher.ack(0, 1, 2, 3, 4, 6, 7, 8)
        time.sleep(0.4)
        assert len(publisher.records) == 9, "an END before its transaction's records were acked"
        assert source.confirmed == 0
        publisher.ack(5)
        # T1's END, and T2's right after it (T2's records were all acked, and ENDs keep the
        # commit order).
        wait_for(lambda: len(publisher.records) == 11, 10, "the ENDs")
        time.sleep(0.3)
        assert source.confirmed == 0, "confirmed before T1's END was acked"
        end_t1 = publisher.sent()[9]
        assert end_t1 == (
            "fake.transaction",
            {
                "status": "END",
                "id": f"7:{T1}",
                "event_count": 4,
                "data_collections": [
                    {"data_collection": "public.a", "event_count": 2},
                    {"data_collection": "audit", "event_count": 1},
                    {"data_collection": "public.b", "event_count": 1},
                ],
                "ts_ms": 946_684_805_000,
            },
        )
        assert orjson.loads(publisher.records[9].key or b"") == {"id": f"7:{T1}"}
        end_t2 = publisher.sent()[10][1]
        assert (end_t2["id"], end_t2["event_count"]) == (f"8:{T2}", 1)
        publisher.ack(9)
        # T1 is delivered, and so is the message after it; not T2, whose END is not acked.
        wait_for(lambda: source.confirmed == NT, 10, "T1 and the message confirmed")
        time.sleep(0.3)
        assert source.confirmed == NT
        publisher.ack(10)
        wait_for(lambda: source.confirmed >= T2 + 0x30, 10, "T2 confirmed")
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()


class ReadsOnB(NoSnapshots):
    """An insert into ``public.b`` is a signal: two incremental snapshot reads of ``public.a``
    are published instead."""

    def on_change(self, change: Change, txn_end: int) -> list[Change] | None:
        if change.table != "b":
            return None
        return [
            Change(
                "r",
                "public",
                "a",
                {"id": n},
                None,
                {"id": n},
                1,
                n,
                1,
                0,
                0,
                snapshot="incremental",
            )
            for n in (10, 11)
        ]


@pytest.mark.parametrize("rules", ["", FILTERED_A], ids=["plain", "filtered"])
def test_incremental_snapshot_reads_are_not_the_transactions_events(rules: str) -> None:
    # The reads' transaction.id is not the transaction's: they were counted in its END (and
    # made a BEGIN of their own) when their table had a transform, and not when it had none.
    publisher = AckOnRequest()
    payloads = [
        (begin(T1, 7), T1),
        (relation(1, b"a"), T1),
        (relation(2, b"b"), T1),
        (insert(2, 1), 0x900),  # the signal: its reads
        (insert(1, 1), 0x990),
        (commit(T1, T1 + 0x30), T1 + 0x30),
        (begin(T2, 8), T2),
        (insert(2, 2), 0x1900),  # reads only: no BEGIN, no END
        (commit(T2, T2 + 0x30), T2 + 0x30),
    ]
    source, _, stop, thread = run_stream(payloads, publisher, CONFIG + rules, ReadsOnB())
    try:

        def delivered() -> bool:
            publisher.ack_all()  # the ENDs too, once sent
            return bool(source.confirmed >= T2 + 0x30)

        wait_for(delivered, 10, "both confirmed")
    finally:
        stop.set()
        thread.join(10)
    bounds = [v for t, v in publisher.sent() if t == "fake.transaction"]
    assert [(b["status"], b["id"], b["event_count"]) for b in bounds] == [
        ("BEGIN", f"7:{T1}", None),
        ("END", f"7:{T1}", 1),
    ], bounds
    assert bounds[1]["data_collections"] == [{"data_collection": "public.a", "event_count": 1}]
    assert sum(t == "fake.public.a" for t, _ in publisher.sent()) == 5


def test_ends_keep_commit_order() -> None:
    publisher = AckOnRequest()
    _, _, stop, thread = run_stream(payloads(), publisher)
    try:
        wait_for(lambda: len(publisher.records) >= 9, 10, "the records")
        publisher.ack(6, 7, 8)  # T2 whole (and the message): its END waits for T1's
        time.sleep(0.4)
        assert len(publisher.records) == 9
        publisher.ack_all()
        wait_for(lambda: len(publisher.records) == 11, 10, "both ENDs")
        sent = publisher.sent()
        ends = [v["id"] for t, v in sent if t == "fake.transaction" and v["status"] == "END"]
        assert ends == [f"7:{T1}", f"8:{T2}"]
    finally:
        stop.set()
        thread.join(10)


class FlushAcks(AckOnRequest):
    """Acks nothing until flushed (as at a stop), then everything sent."""

    def flush(self, timeout_s: float) -> None:
        self.ack_all()
        self.poll()


def test_a_stop_sends_the_ends_of_what_its_flush_delivered() -> None:
    publisher = FlushAcks()
    source, _, stop, thread = run_stream(payloads(), publisher)
    try:
        wait_for(lambda: len(publisher.records) >= 9, 10, "the records")
        time.sleep(0.2)
        assert source.confirmed == 0
    finally:
        stop.set()
        thread.join(10)
    sent = publisher.sent()
    ends = [v["id"] for t, v in sent if t == "fake.transaction" and v["status"] == "END"]
    assert ends == [f"7:{T1}", f"8:{T2}"]
    assert source.confirmed == 0x3030  # the ENDs acked at the stop: everything delivered


def test_boundaries_alone() -> None:
    boundaries = Boundaries(SOURCE)
    boundaries.begin(3, 0x10, 77)
    assert boundaries.end() is None  # nothing published: no END (and no BEGIN was)
    boundaries.begin(4, 0x20, 78)
    first = boundaries.event("public.a", 1)
    assert first is not None and boundaries.event("public.a", 2) is None
    end = boundaries.end()
    assert end is not None and end.topic == "fake.transaction"
    assert orjson.loads(end.value or b"")["data_collections"] == [
        {"data_collection": "public.a", "event_count": 3}
    ]
    assert is_boundary_or_message(first.value) and is_boundary_or_message(end.value)
    assert not is_boundary_or_message(b'{"op":"c","after":{},"source":{}}')
    assert not is_boundary_or_message(b"not json") and not is_boundary_or_message(None)


def test_a_sink_skips_boundaries_and_messages_and_dead_letters_other_junk() -> None:
    """A sink whose globs match ``.transaction`` and ``.message`` topics: their records are no
    row change; skipped and counted, not dead-lettered; their offsets advance all the same."""
    boundaries = Boundaries(SOURCE)
    boundaries.begin(4, 0x20, 78)
    begin = boundaries.event("public.a", 1)
    end = boundaries.end()
    decoder = PgOutputDecoder(FakeCatalog(), lambda s, t: True)
    decoder.messages = True
    decoded = decoder.decode(message(False, 0x30, b"audit", b"\xff"), 0x30)
    assert begin is not None and end is not None and isinstance(decoded, Message)
    text = '[kafka]\nbootstrap_servers = "k:9092"\n[[connectors]]\nname = "fake"\n'
    text += 'dsn = "host=h dbname=d"\n[[connectors.messages]]\nprefixes = ["*"]\n'
    rules = parse_config(text).connectors[0]
    msg = Messages(rules.messages, "fake").record(decoded, SOURCE, 1)
    assert msg is not None
    runtime = SinkRuntime(
        "s", "g", ("fake.*",), KafkaConfig(bootstrap_servers=("x:1",)), MemoryTarget
    )
    runtime.target = MemoryTarget()
    batch = {
        TopicPartition("fake.transaction", 0): [
            ConsumedRecord(0, begin.key, begin.value, [], 0),
            ConsumedRecord(1, end.key, end.value, [], 0),
        ],
        TopicPartition(msg.topic, 0): [ConsumedRecord(5, msg.key, msg.value, msg.headers, 0)],
        TopicPartition("fake.junk", 0): [ConsumedRecord(7, None, b'{"status":"x"}', [], 0)],
        # An outbox event (its value the payload) on a topic the globs match: skipped too.
        TopicPartition("fake.orders", 0): [
            ConsumedRecord(3, b"42", b'{"total":1}', [("cdc-outbox", b"public.outbox")], 0)
        ],
    }
    prepared = runtime._prepare(batch)
    assert runtime.stats.skipped == 4
    assert [r.topic for r in prepared.bad] == ["fake.junk"]
    assert prepared.events == []
    assert prepared.offsets == {
        ("fake.transaction", 0): 2,
        (msg.topic, 0): 6,
        ("fake.junk", 0): 8,
        ("fake.orders", 0): 4,
    }
