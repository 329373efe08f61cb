"""Which source position may be acknowledged: the heart of "lose nothing".

A source position may be confirmed only when every event at or before it is durable in Kafka.
Kafka acks arrive out of order (partitions are independent) and on the client's I/O thread, so the
tracker keeps, per source transaction in commit order, how many of its records are still unacked,
and confirms the end of the longest prefix of finished transactions. Acks are only queued on the
I/O thread; all counting happens on the reader's thread, so there is no lock on the hot path.
"""

from __future__ import annotations

__all__ = ["AckTracker", "Txn"]

from collections import deque
from typing import Any


class Txn:
    """One source transaction's delivery state."""

    __slots__ = ("callback", "closed", "end", "pending")

    def __init__(self, end: int) -> None:
        self.end = end
        """Source position just after the transaction (what to confirm once it is delivered)."""
        self.pending = 0
        """Records sent and not yet acked."""
        self.closed = False
        """Its commit was read: no more records will come."""
        self.callback: Any = None
        """The publisher's callback for its records (:meth:`ConfluentPublisher.callback`)."""


class AckTracker:
    """Transactions in commit order, each with its unacked record count."""

    def __init__(self) -> None:
        self._open: deque[Txn] = deque()
        self._acks: deque[Txn] = deque()  # appended by the Kafka I/O thread; deque ops are atomic
        self._sent = 0  # records sent whose acks have not been counted yet

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

    def confirmable(self) -> int | None:
        """The end of the newest transaction that, with all before it, is fully on Kafka."""
        acks = self._acks
        while acks:
            acks.popleft().pending -= 1
            self._sent -= 1
        position = None
        open_ = self._open
        while open_ and open_[0].closed and open_[0].pending == 0:
            done = open_.popleft()
            done.callback = None  # it refers to the transaction: no cycle left for the cyclic GC
            position = done.end
        return position

    @property
    def idle(self) -> bool:
        """Nothing read is still waiting for Kafka (acks not yet counted count as waiting)."""
        return not self._open and not self._acks

    @property
    def unacked(self) -> int:
        """Records sent and not yet acked (from any thread's point of view, an upper bound)."""
        return self._sent - len(self._acks)
