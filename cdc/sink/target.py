"""What a sink target is: the Protocol the sink runtime applies batches through, and what it
rejects."""

from __future__ import annotations

__all__ = ["DLQ_SUFFIX", "Partition", "Rejected", "Target", "TargetUnavailable", "partition_names"]


from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from cdc.errors import TargetUnavailable
from cdc.records import SinkEvent

DLQ_SUFFIX = ".dlq"
Partition = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Rejected:
    """A record that will not be applied, and why."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    reason: str


class Target(Protocol):
    """A store events are applied to, idempotently.

    Each :meth:`apply` is one atomic transaction: the events' effects and the new offsets are
    committed together or not at all. Applying any event again, in any order, never changes the
    result and never moves a row back to an older version (``SinkEvent.version``).
    """

    def stored_offsets(self, group: str, partitions: Sequence[Partition]) -> dict[Partition, int]:
        """The next offset to read per partition, as last committed; absent when never."""
        ...

    def apply(
        self,
        group: str,
        events: Sequence[SinkEvent],
        offsets: dict[Partition, int],
        before_commit: Callable[[list[tuple[SinkEvent, str]]], None],
        plan: Any = None,
    ) -> None:
        """Apply ``events``, store ``offsets``; call ``before_commit`` with the events the store
        rejected (and their reasons) just before committing, inside the transaction.

        A target may also have ``plan(events)``, which the runtime then calls on its consuming
        thread, while the batch before is applied, and passes its result here as ``plan``: work
        done there is off the applying thread. Whatever ``plan`` assumed, ``apply`` checks."""
        ...

    def close(self) -> None: ...


def partition_names(partitions: Iterable[tuple[str, int]]) -> str:
    """``topic[partition], ...`` of TopicPartitions or ``(topic, partition)`` pairs."""
    return ", ".join(sorted(f"{t}[{p}]" for t, p in partitions)) or "nothing"
