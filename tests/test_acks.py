"""AckTracker: confirm a position only when it and everything before it is acked."""

from __future__ import annotations

import gc
import random

from cdc.acks import AckTracker
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
        t.sent(txn)
        t.commit(txn)
        txn.callback(None, None)  # Kafka acked the record
        assert t.confirmable() == 10
        del txn
        assert gc.collect() == 0
    finally:
        gc.enable()
