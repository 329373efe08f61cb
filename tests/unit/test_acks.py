"""AckTracker: confirm a position only when it and everything before it is acked."""

from __future__ import annotations

import gc
import logging
import random
import weakref

import pytest

from cdc.acks import AckTracker, DeliveryWatch
from cdc.kafka import ConfluentPublisher


def test_confirms_only_the_fully_acked_prefix() -> None:
    t = AckTracker()
    a, b = t.begin(10), t.begin(20)
    for txn in (a, a, b):
        t.sent(txn)
    t.commit(a)
    t.commit(b)
    t.acked(b)  # b is complete, but a is not: nothing may be confirmed
    assert t.confirmable() is None
    t.acked(a)
    assert t.confirmable() is None
    t.acked(a)
    assert t.confirmable() == 20
    assert t.idle


def test_an_open_transaction_holds_back_even_when_acked() -> None:
    t = AckTracker()
    a = t.begin(10)
    t.sent(a)
    t.acked(a)
    assert t.confirmable() is None  # its commit has not been read: more records may come
    assert not t.idle
    t.commit(a)
    assert t.confirmable() == 10


def test_empty_transactions_confirm_at_once() -> None:
    t = AckTracker()
    t.commit(t.begin(5))
    assert t.confirmable() == 5


def test_random_ack_order_never_confirms_an_unacked_record() -> None:
    rng = random.Random(7)
    t = AckTracker()
    records = []
    for end in range(1, 200):
        txn = t.begin(end)
        for _ in range(rng.randrange(0, 4)):
            t.sent(txn)
            records.append((end, txn))
        t.commit(txn)
    rng.shuffle(records)
    remaining = {end: sum(1 for e, _ in records if e == end) for end in range(1, 200)}
    confirmed = 0
    for end, txn in records:
        t.acked(txn)
        remaining[end] -= 1
        position = t.confirmable()
        if position is not None:
            assert position > confirmed
            confirmed = position
        # Every transaction at or before the confirmed position is fully acked.
        assert all(remaining[e] == 0 for e in range(1, confirmed + 1))
    assert t.confirmable() in (None, 199)
    assert confirmed == 199


def test_a_delivered_transaction_is_freed_without_the_cyclic_gc() -> None:
    """The publisher's callback, made once per transaction and kept on it, refers back to it:
    once delivered, the transaction lets go of it, so reference counting frees both."""
    gc.collect()
    gc.disable()
    try:
        t = AckTracker()
        txn = t.begin(10)
        txn.callback = ConfluentPublisher.callback(t.acked, lambda e: None, txn)
        # Watched through the callback, not gc.collect(): other tests' threads may leave cycles.
        callback = weakref.ref(txn.callback)
        t.sent(txn)
        t.commit(txn)
        txn.callback(None, None)  # Kafka acked the record
        assert t.confirmable() == 10
        del txn
        assert callback() is None
    finally:
        gc.enable()


def _warnings(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    found = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "cdc.acks"]
    caplog.clear()
    return found


def test_delivery_watch_says_when_kafka_stops_acking_and_when_it_is_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Issue 18, item 6, on a fake clock: records waiting and no ack for STALL_S is a WARNING
    (how many wait, the oldest's age), repeated every STALL_REPEAT_S; the first ack after it is
    an INFO line with how long Kafka was out. A quiet Kafka with nothing waiting is no outage."""
    caplog.set_level(logging.INFO, logger="cdc.acks")
    tracker, watch = AckTracker(), DeliveryWatch("connector shop", stall_s=10)
    watch.session(tracker, 0.0)
    watch.tick(tracker, 100.0)  # idle for 100 s: nothing waits, nothing to say
    assert _warnings(caplog) == []
    t = tracker.begin(1)
    for _ in range(3):
        tracker.sent(t)
    tracker.commit(t)
    tracker.acked(t)  # one of three acked at 101
    tracker.confirmable()
    watch.tick(tracker, 101.0)
    watch.tick(tracker, 105.0)
    watch.tick(tracker, 110.9)
    assert _warnings(caplog) == []
    u = tracker.begin(2)
    tracker.sent(u)
    watch.tick(tracker, 111.0)
    assert _warnings(caplog) == [
        (
            logging.WARNING,
            "connector shop: Kafka has acknowledged nothing for 10 s; 3 record(s) waiting, the"
            " oldest for 10 s; the confirmed LSN stays until it answers",
        )
    ]
    watch.tick(tracker, 120.0)
    assert _warnings(caplog) == []  # not at every turn of the loop
    watch.tick(tracker, 141.0)
    assert _warnings(caplog) == [
        (
            logging.WARNING,
            "connector shop: Kafka has acknowledged nothing for 40 s; 3 record(s) waiting, the"
            " oldest for 40 s; the confirmed LSN stays until it answers",
        )
    ]
    # The session ends (delivery errors); the next one's tracker starts from nothing and has
    # nothing acked yet: still out, and no "back" line before an ack.
    tracker = AckTracker()
    watch.session(tracker, 150.0)
    watch.tick(tracker, 150.0)
    t = tracker.begin(3)
    tracker.sent(t)
    tracker.sent(t)
    watch.tick(tracker, 160.0)
    assert _warnings(caplog) == []
    watch.tick(tracker, 172.0)
    assert [level for level, _ in _warnings(caplog)] == [logging.WARNING]
    tracker.acked(t)
    tracker.confirmable()
    watch.tick(tracker, 178.0)
    assert _warnings(caplog) == [
        (
            logging.INFO,
            "connector shop: Kafka acknowledges again, after 77 s without acks; 1 record(s)"
            " waiting",
        )
    ]
    assert watch.out_since is None
    watch.tick(tracker, 185.0)
    assert _warnings(caplog) == []
    assert tracker.acked_records == 1
