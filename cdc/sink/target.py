"""What a sink target is: the Protocol the sink runtime applies batches through, and what it
rejects. How to write one: docs/sinks.md ("Writing a target")."""

from __future__ import annotations

__all__ = ["DLQ_SUFFIX", "Partition", "Rejected", "Target", "TargetUnavailable", "partition_names"]


from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from cdc.errors import TargetUnavailable
from cdc.records import SinkEvent
from cdc.sink.plan import BatchPlan

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
    """A store events are applied to, idempotently: what a sink's ``type`` plugs into the
    runtime (:class:`cdc.sink.SinkRuntime`). Writing one is turning a :class:`BatchPlan` into
    the store's statements, and keeping four promises:

    - Atomic with offsets: each :meth:`apply` is one transaction; the events' effects, the new
      offsets and the dead-lettering of what it refused commit together or not at all.
    - Idempotent: applying any event again, in any order, in any batch, never changes the result.
    - Monotonic per version: a row never moves back to an older version (``SinkEvent.version``),
      a delete or truncate is never undone by an older event arriving later (the plan's delete
      markers and truncate floor, stored beside the rows).
    - Resume rule: :meth:`stored_offsets` returns, per partition, the offset *after* the last
      record of the last committed batch; the runtime reads from there after every assignment,
      so a crash anywhere replays at most the batch that did not commit.
    """

    def stored_offsets(self, group: str, partitions: Sequence[Partition]) -> dict[Partition, int]:
        """The next offset to read per partition, as last committed; absent when never."""
        ...

    def plan(self, events: Sequence[SinkEvent]) -> BatchPlan:
        """Plan a batch (:func:`cdc.sink.plan.plan_batch`) for the truncate floors this target
        last saw. Pure, no I/O: the runtime calls it on its consuming thread while the batch
        before is applied, so whatever it does is off the applying thread."""
        ...

    def apply(
        self,
        group: str,
        events: Sequence[SinkEvent],
        offsets: dict[Partition, int],
        before_commit: Callable[[list[tuple[SinkEvent, str]]], None],
        plan: BatchPlan | None = None,
    ) -> None:
        """Apply ``events`` (planned as ``plan``, else planned here), store ``offsets``; call
        ``before_commit`` with the events the plan or the store refused (and their reasons) just
        before committing, inside the transaction. ``plan`` may assume a stale truncate floor
        (a truncate committed since it was made): the target reads the stored floor inside its
        transaction and plans the table again when it moved
        (:meth:`cdc.sink.plan.TablePlan.again`)."""
        ...

    def close(self) -> None: ...


def partition_names(partitions: Iterable[tuple[str, int]]) -> str:
    """``topic[partition], ...`` of TopicPartitions or ``(topic, partition)`` pairs."""
    return ", ".join(sorted(f"{t}[{p}]" for t, p in partitions)) or "nothing"
