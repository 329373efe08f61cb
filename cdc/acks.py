"""Which source position may be acknowledged: the heart of "lose nothing".

A source position may be confirmed only when every event at or before it is durable in Kafka.
Kafka acks arrive out of order (partitions are independent) and on the client's I/O thread, so the
tracker keeps, per source transaction in commit order, how many of its records are still unacked,
and confirms the end of the longest prefix of finished transactions. Acks are only queued on the
I/O thread; all counting happens on the reader's thread, so there is no lock on the hot path.
"""

from __future__ import annotations

__all__ = ["AckTracker", "DeliveryWatch", "Txn"]

import logging
from collections import deque
from typing import Any

log = logging.getLogger(__name__)

STALL_S = 10.0
"""No ack for this long while records wait: Kafka is not answering (it acks in milliseconds)."""
STALL_REPEAT_S = 30.0
"""While it lasts, the warning is repeated this often, with what is waiting then."""


class Txn:
    """One source transaction's delivery state."""

    __slots__ = ("callback", "closed", "end", "pending", "ts_ms")

    def __init__(self, end: int) -> None:
        self.end = end
        """Source position just after the transaction (what to confirm once it is delivered)."""
        self.pending = 0
        """Records sent and not yet acked."""
        self.closed = False
        """Its commit was read: no more records will come."""
        self.callback: Any = None
        """The publisher's callback for its records (:meth:`ConfluentPublisher.callback`)."""
        self.ts_ms = 0
        """Its commit time, once a change of it was published (0: none was)."""


class AckTracker:
    """Transactions in commit order, each with its unacked record count."""

    def __init__(self) -> None:
        self._open: deque[Txn] = deque()
        self._acks: deque[Txn] = deque()  # appended by the Kafka I/O thread; deque ops are atomic
        self._sent = 0  # records sent whose acks have not been counted yet
        self.acked_records = 0
        """Records Kafka acked, counted so far (tombstones included)."""
        self.transactions = 0
        """Transactions found confirmable so far."""
        self.confirmed_ts_ms = 0
        """Commit time of the newest of them that carried a change (0: none yet)."""

    def begin(self, end: int) -> Txn:
        txn = Txn(end)
        self._open.append(txn)
        return txn

    def sent(self, txn: Txn) -> None:
        txn.pending += 1
        self._sent += 1

    def acked(self, txn: Txn) -> None:
        """Called from any thread when Kafka acked one record of ``txn``."""
        self._acks.append(txn)

    @staticmethod
    def commit(txn: Txn) -> None:
        txn.closed = True

    def count(self) -> None:
        """Count the acks that arrived (:attr:`acked_records`, each transaction's pending)."""
        acks = self._acks
        before = self._sent
        while acks:
            acks.popleft().pending -= 1
            self._sent -= 1
        self.acked_records += before - self._sent  # once per call, not per record

    def confirmable(self) -> int | None:
        """The end of the newest transaction that, with all before it, is fully on Kafka."""
        self.count()
        position = None
        open_ = self._open
        while open_ and open_[0].closed and open_[0].pending == 0:
            done = open_.popleft()
            done.callback = None  # it refers to the transaction: no cycle left for the cyclic GC
            position = done.end
            self.transactions += 1
            if done.ts_ms:
                self.confirmed_ts_ms = done.ts_ms
        return position

    @property
    def idle(self) -> bool:
        """Nothing read is still waiting for Kafka (acks not yet counted count as waiting)."""
        return not self._open and not self._acks

    @property
    def unacked(self) -> int:
        """Records sent and not yet acked (from any thread's point of view, an upper bound)."""
        return self._sent - len(self._acks)

    @property
    def oldest(self) -> Txn | None:
        """The oldest transaction not yet confirmable (after :meth:`confirmable`)."""
        return self._open[0] if self._open else None


class DeliveryWatch:
    """Says when Kafka stops acknowledging while records wait, and when it is back.

    :meth:`tick` runs once per turn of the reader's loop, not per record: it compares the
    tracker's ack count with the last turn's. It outlives sessions, so an outage that ends a
    session (delivery errors, a broker that refuses connections) is reported back only when
    acks flow again.
    """

    def __init__(self, subject: str, stall_s: float = STALL_S) -> None:
        self.subject = subject
        self.stall_s = stall_s
        self.out_since: float | None = None
        """When the last ack came before the current outage; None while Kafka answers."""
        self._acked = 0
        self._progress = 0.0
        self._head: Txn | None = None
        self._head_since = 0.0
        self._warn_at = 0.0

    def session(self, tracker: AckTracker, now: float) -> None:
        """A new session's tracker: its counts start again from nothing."""
        self._acked = tracker.acked_records
        self._progress = self._head_since = now
        self._head = None

    def tick(self, tracker: AckTracker, now: float) -> None:
        acked = tracker.acked_records
        head = tracker.oldest
        if head is not self._head:
            # The oldest waiting transaction changed: its records were sent from about now.
            self._head, self._head_since = head, now
        if acked != self._acked:
            self._acked, self._progress = acked, now
            if self.out_since is not None:
                log.info(
                    "%s: Kafka acknowledges again, after %.0f s without acks; %d record(s) waiting",
                    self.subject,
                    now - self.out_since,
                    tracker.unacked,
                )
                self.out_since = None
            return
        waiting = tracker.unacked
        if waiting <= 0:
            self._progress = now  # nothing asked of Kafka: nothing to wait for
            return
        if self.out_since is None:
            if now - self._progress < self.stall_s:
                return
            self.out_since = self._progress
        elif now < self._warn_at:
            return
        self._warn_at = now + STALL_REPEAT_S
        log.warning(
            "%s: Kafka has acknowledged nothing for %.0f s; %d record(s) waiting, the oldest"
            " for %.0f s; the confirmed LSN stays until it answers",
            self.subject,
            now - self.out_since,
            waiting,
            now - self._head_since,
        )
