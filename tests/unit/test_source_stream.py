"""The connector's streaming loop (:func:`connectors.postgres.stream.stream`) on captured
pgoutput messages, with a publisher whose acks the test holds back and then lets go: no server
needed. Its fakes are typed by the loop's Protocols, and mypy checks them.

Nothing is confirmed to PostgreSQL before Kafka acked it; once every record is acked, the slot
hears so within a fraction of a second (it hears at most once a second while records are in
flight), so that a burst shows delivered when it is.
"""

from __future__ import annotations

import logging
import struct
import threading
import time
from collections import Counter
from typing import Any

import pytest

from cdc.acks import DeliveryWatch
from cdc.config import parse_config
from cdc.events import Change, Record, SourceInfo
from cdc.kafka import BUFFER_BYTES
from connectors.postgres import stream as stream_module
from connectors.postgres.decoding import Commit
from connectors.postgres.pgoutput import PgOutputDecoder
from connectors.postgres.replication import Keepalive
from connectors.postgres.source import PostgresSource
from connectors.postgres.stream import CONFIRM_BUSY_S, Confirmation, stream
from tests.support.decoding import FakeCatalog, messages
from tests.support.harness import wait_for

CONFIG = """
[kafka]
bootstrap_servers = "127.0.0.1:1"
[[connectors]]
name = "fake"
dsn = "host=127.0.0.1 dbname=fake"
plugin = "pgoutput"
snapshot = "never"
"""


class FakeRepl:
    """Serves the fixture's messages as XLogData once, then nothing; keeps the statuses sent."""

    waited = False

    def __init__(self, payloads: list[tuple[bytes, int]]) -> None:
        header = struct.Struct(">QQq")
        self.pending = [b"w" + header.pack(lsn, lsn, 0) + data for data, lsn in payloads]
        self.statuses: list[tuple[float, int]] = []  # (when, flushed)

    def read(self, timeout_s: float = 0.2) -> list[bytes]:
        self.waited = not self.pending
        if not self.pending:
            time.sleep(min(timeout_s, 0.01))
            return []
        out, self.pending = self.pending, []
        return out

    def send_status(self, written: int, flushed: int, applied: int) -> None:
        self.statuses.append((time.monotonic(), flushed))


class HeldPublisher:
    """Takes records; acks them only once ``release`` is set, in :meth:`poll`."""

    unacked_bytes = 0

    def __init__(self) -> None:
        self.release = threading.Event()
        self.waiting: list[Any] = []
        self.sent = 0

    @staticmethod
    def callback(on_ack: Any, on_error: Any, *args: Any) -> Any:
        return lambda: on_ack(*args)

    def send_with(self, record: Record, callback: Any) -> None:
        self.waiting.append(callback)
        self.sent += 1

    def poll(self, timeout_s: float = 0.0) -> None:
        if self.release.is_set():
            waiting, self.waiting = self.waiting, []
            for callback in waiting:
                callback()
        elif timeout_s:
            time.sleep(timeout_s)

    def flush(self, timeout_s: float) -> None:
        self.poll()


class NoSnapshots:
    def on_change(self, change: Change, txn_end: int) -> list[Change] | None:
        return None

    def reread(self, schema: str, table: str, why: str) -> None:
        pass

    def tick(self, confirmed: int) -> None:
        pass


def stream_thread(
    source: PostgresSource, repl: FakeRepl, publisher: HeldPublisher, stop: threading.Event
) -> threading.Thread:
    """The connector's streaming loop over ``repl``'s messages, on a thread not started yet."""

    def run() -> None:
        # Called here, not through Thread's args, so that mypy checks the fakes' types.
        stream(
            stop,
            repl,
            PgOutputDecoder(FakeCatalog(), lambda s, t: True),
            SourceInfo("fake", "fake", "fake"),
            publisher,
            NoSnapshots(),
            source.confirmation,
            source.stats,
            source._delivery,
            source._settings,
        )

    return threading.Thread(target=run)


def test_confirmed_only_once_acked_and_at_once_when_all_is() -> None:
    config = parse_config(CONFIG)
    source = PostgresSource(config.connectors[0], config.kafka)
    payloads = messages()
    decoder = PgOutputDecoder(FakeCatalog(), lambda s, t: True)
    last_commit = [
        item for data, lsn in payloads if isinstance(item := decoder.decode(data, lsn), Commit)
    ][-1]
    repl, publisher, stop = FakeRepl(payloads), HeldPublisher(), threading.Event()
    streaming = stream_thread(source, repl, publisher, stop)
    streaming.start()
    try:
        wait_for(lambda: not repl.pending and publisher.sent, 10, "the messages to be read")
        time.sleep(0.2)
        assert publisher.sent >= 10
        assert all(flushed == 0 for _, flushed in repl.statuses), "confirmed before any ack"
        released = time.monotonic()
        publisher.release.set()
        wait_for(
            lambda: any(f == last_commit.end_lsn for _, f in repl.statuses),
            10,
            "the last commit's end to be confirmed",
            interval_s=0.01,
        )
        when = next(t for t, f in repl.statuses if f == last_commit.end_lsn)
        # Idle, it is sent within CONFIRM_IDLE_S (0.1 s); the busy cadence would wait until a
        # second after the stream started, 0.8 s after the release.
        assert when - released < CONFIRM_BUSY_S / 2, when - released
    finally:
        stop.set()
        streaming.join(10)
    assert source.confirmed == last_commit.end_lsn


def test_a_kafka_that_stops_acking_is_logged_and_so_is_its_return(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 18, item 6, through the streaming loop: acks held back past the stall time give a
    WARNING with the records waiting, their release an INFO line; the progress line says events
    published and records acked apart."""
    monkeypatch.setattr(stream_module, "PROGRESS_LOG_S", 0.2)
    caplog.set_level(logging.INFO)
    config = parse_config(CONFIG)
    source = PostgresSource(config.connectors[0], config.kafka)
    source._delivery = DeliveryWatch(source.subject, stall_s=0.5)
    repl, publisher, stop = FakeRepl(messages()), HeldPublisher(), threading.Event()
    streaming = stream_thread(source, repl, publisher, stop)

    def lines(level: int, text: str) -> list[str]:
        return [
            r.getMessage() for r in caplog.records if r.levelno == level and text in r.getMessage()
        ]

    streaming.start()
    try:
        wait_for(lambda: lines(logging.WARNING, "acknowledged nothing"), 10, "the warning")
        (warning, *_) = lines(logging.WARNING, "acknowledged nothing")
        assert warning.startswith("connector fake: Kafka has acknowledged nothing for ")
        assert f"; {publisher.sent} record(s) waiting, the oldest for " in warning
        assert lines(logging.INFO, "acknowledges again") == []
        wait_for(lambda: lines(logging.INFO, "; Kafka acked 0 records"), 10, "a progress line")
        publisher.release.set()
        wait_for(lambda: lines(logging.INFO, "acknowledges again"), 10, "the back line")
        (back,) = lines(logging.INFO, "acknowledges again")
        assert back.startswith("connector fake: Kafka acknowledges again, after ")
        sent = publisher.sent
        wait_for(lambda: lines(logging.INFO, f"; Kafka acked {sent} records"), 10, "progress")
    finally:
        stop.set()
        streaming.join(10)
    (progress, *_) = lines(logging.INFO, f"; Kafka acked {sent} records")
    assert "events published (" in progress and ", 0 waiting; confirmed LSN " in progress


def test_reading_waits_while_the_unacked_bytes_are_over_the_bound() -> None:
    """Memory is bounded in bytes too: with ``BUFFER_BYTES`` unacked (a few big rows), the loop
    reads nothing more until acks bring it under."""
    config = parse_config(CONFIG)
    source = PostgresSource(config.connectors[0], config.kafka)
    repl, publisher, stop = FakeRepl(messages()), HeldPublisher(), threading.Event()
    publisher.unacked_bytes = BUFFER_BYTES
    streaming = stream_thread(source, repl, publisher, stop)
    streaming.start()
    try:
        time.sleep(0.5)
        assert repl.pending and not publisher.sent, "read while over the byte bound"
        publisher.unacked_bytes = BUFFER_BYTES - 1
        wait_for(lambda: not repl.pending and publisher.sent, 10, "the messages to be read")
    finally:
        stop.set()
        streaming.join(10)


class StatusLog:
    """A replication connection that only keeps the statuses sent."""

    waited = False

    def __init__(self) -> None:
        self.sent: list[tuple[int, int, int]] = []

    def read(self, timeout_s: float) -> list[bytes]:
        return []

    def send_status(self, written: int, flushed: int, applied: int) -> None:
        self.sent.append((written, flushed, applied))


def test_confirmation_moves_only_to_acked_ends_and_to_the_server_end_when_idle() -> None:
    """The confirmation policy alone: acks move it; a keepalive's end of WAL only with heartbeats
    on and nothing in flight; a requested reply goes out at once, once."""
    heartbeats: list[float] = []
    c = Confirmation(heartbeat_s=60.0, heartbeat=lambda: heartbeats.append(1.0))
    c.session(0.0)
    c.keepalive(Keepalive(wal_end=500, send_time_us=0, reply_requested=True))
    c.acked(100, idle=False)
    assert c.confirmed == 100, "a transaction in flight: the server's end is not confirmable"
    c.acked(None, idle=True)
    assert c.confirmed == 500
    c.acked(300, idle=False)
    assert c.confirmed == 500, "never back"
    repl = StatusLog()
    c.tick(repl, 0.01, idle=True)
    assert repl.sent == [(500, 500, 500)] and not heartbeats
    c.tick(repl, 0.02, idle=True)
    assert len(repl.sent) == 1, "the reply was sent; nothing new to confirm"
    c.tick(repl, 60.0, idle=True)
    assert heartbeats == [1.0] and len(repl.sent) == 2  # heartbeat, and the status cadence
    quiet = Confirmation()
    quiet.session(0.0)
    quiet.keepalive(Keepalive(wal_end=500, send_time_us=0, reply_requested=False))
    quiet.acked(None, idle=True)
    assert quiet.confirmed == 0, "without heartbeats the server's end is never confirmed"


def test_the_loop_counts_what_metrics_show() -> None:
    """Issue 20: per table and op, transactions, records in flight, the newest acked commit
    time, and caught up only once everything read is acked."""
    config = parse_config(CONFIG)
    source = PostgresSource(config.connectors[0], config.kafka)
    stats = source.stats
    decoder = PgOutputDecoder(FakeCatalog(), lambda s, t: True)
    want: Counter[tuple[str, str, str]] = Counter()
    commits, newest = 0, 0
    for data, lsn in messages():
        item = decoder.decode(data, lsn)
        if isinstance(item, Commit):
            commits += 1
        for change in item if isinstance(item, tuple) else (item,):
            if isinstance(change, Change):
                want[change.schema, change.table, change.op] += 1
                newest = change.commit_ts_ms
    assert sum(want.values()) >= 10 and newest
    repl, publisher, stop = FakeRepl(messages()), HeldPublisher(), threading.Event()
    streaming = stream_thread(source, repl, publisher, stop)
    streaming.start()
    try:
        wait_for(lambda: not repl.pending and stats.in_flight, 10, "records in flight")
        time.sleep(0.1)
        assert stats.in_flight == publisher.sent
        assert (stats.transactions, stats.acked_ts_ms, stats.caught_up) == (0, 0, False)
        assert dict(stats.by_table) == dict(want)
        assert stats.last_event > 0
        publisher.release.set()
        wait_for(lambda: stats.caught_up, 10, "caught up")
        assert stats.in_flight == 0
        assert stats.transactions == commits
        assert stats.acked_ts_ms == newest
        assert stats.acked == publisher.sent
        assert stats.confirmed == source.confirmed > 0
    finally:
        stop.set()
        streaming.join(10)
