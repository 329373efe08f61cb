"""What a sink counts for ``/metrics`` and says to ``/readyz``.

One :class:`SinkStats` per sink of ``cdc run``, kept across sessions and supervised restarts.
The runtime adds to it once per batch (the per-table counts are made on the consuming thread,
while the previous batch is applied); :meth:`SinkStats.collect` reads it when ``/metrics`` is
scraped.
"""

from __future__ import annotations

__all__ = ["SinkStats"]

import time
from collections import Counter
from collections.abc import Mapping
from typing import Protocol

from cdc.errors import describe
from cdc.metrics import Families, age
from cdc.sink.target import Partition

STALL_S = 60.0
"""The consuming loop turns at least every 0.2 s, or waits for a batch being applied (whose
retries say why): this long without a turn, it is stuck."""


class _Ranges(Protocol):
    @property
    def ranges(self) -> Mapping[Partition, tuple[int, int]]: ...


class SinkStats:
    """A sink's numbers (see the module docstring)."""

    def __init__(self, name: str) -> None:
        self.labels = {"sink": name}
        self.applied: Counter[tuple[str, str, str]] = Counter()
        """``(schema, table, op)`` -> events applied."""
        self.batches = 0
        self.dead_lettered = 0
        self.skipped = 0
        """Records that are no row change (transaction boundaries, logical decoding messages),
        skipped: their offsets advance like the others'."""
        self.target_retries = 0
        self.newest_ts_ms = 0
        """Source commit time of the newest event applied."""
        self.positions: dict[Partition, int] = {}
        """Next offset to apply of each assigned partition (from the target, then each batch)."""
        self.watch: _Ranges | None = None
        """Knows the (first, next) offsets of the partitions of its topics, looked up every few
        seconds on a thread of its own (:class:`cdc.sink.watch.TopicWatch`): read from there,
        as the consuming thread may be waiting for a batch held up by the target."""
        self.state = "starting"
        self.problem: str | None = None
        """Why the sink is not consuming, or why its target is unreachable, while it retries."""
        self.turned = 0.0
        self.applying_since: float | None = None
        """``time.monotonic()`` when the batch being applied was first tried."""
        self.sessions = 0
        self.errors: Counter[str] = Counter()

    def failed(self, e: BaseException, text: str) -> None:
        self.errors[type(e).__name__] += 1
        self.state, self.problem = "reconnecting", text

    def unreachable(self, e: BaseException) -> None:
        """The target did not answer; tried again."""
        self.problem = describe(e)

    def consuming(self) -> None:
        self.state, self.problem = "consuming", None
        self.turned = time.monotonic()

    def lag(self) -> dict[Partition, int]:
        """Records not yet applied, per assigned partition (as of the last offsets lookup)."""
        ends = self.watch.ranges if self.watch is not None else {}
        out = {}
        for partition, at in list(self.positions.items()):
            found = ends.get(partition)
            if found is not None:
                out[partition] = max(0, found[1] - max(at, found[0]))
        return out

    def readiness(self) -> str | None:
        if self.state != "consuming":
            return f"{self.state}: {self.problem}" if self.problem else self.state
        if self.problem:
            return f"target unreachable: {self.problem}"
        now = time.monotonic()
        since = self.applying_since
        if since is not None and now - since > STALL_S:
            return f"a batch has been applying for {now - since:.0f} s: the target is slow or held"
        if now - self.turned > STALL_S:
            return f"the consuming loop has not turned for {now - self.turned:.0f} s"
        return None

    def collect(self, out: Families) -> None:
        c = self.labels
        for (schema, table, op), n in list(self.applied.items()):
            out.counter(
                "cdc_sink_records_applied",
                "Events applied to the target, by source table and op (c, u, d, r, t).",
                {**c, "table": f"{schema}.{table}", "op": op},
                n,
            )
        out.counter("cdc_sink_batches", "Batches applied (one transaction each).", c, self.batches)
        lag = self.lag()
        for (topic, partition), n in sorted(lag.items()):
            out.gauge(
                "cdc_sink_consumer_lag_records",
                "Records of a partition not yet applied (end offset minus the sink's position,"
                " looked up every 5 s).",
                {**c, "topic": topic, "partition": str(partition)},
                n,
            )
        caught_up = bool(lag) and not any(lag.values())
        out.gauge(
            "cdc_sink_lag_seconds",
            "Now minus the source commit time of the newest event applied; 0 when caught up"
            " (NaN before its first batch).",
            c,
            0.0 if caught_up else age(time.time(), self.newest_ts_ms / 1000),
        )
        out.counter(
            "cdc_sink_dlq_records",
            "Records sent to the dead-letter topics ({topic}.dlq).",
            c,
            self.dead_lettered,
        )
        out.counter(
            "cdc_sink_skipped_records",
            "Records that are no row change (transaction boundaries, logical decoding"
            " messages), skipped.",
            c,
            self.skipped,
        )
        out.counter(
            "cdc_sink_target_retries",
            "Batches tried again because the target (or the DLQ) was unreachable.",
            c,
            self.target_retries,
        )
        out.states(
            "cdc_sink_state",
            "1 for what the sink is doing.",
            c,
            ("starting", "consuming", "reconnecting"),
            self.state,
        )
        for kind, n in list(self.errors.items()):
            out.counter(
                "cdc_sink_errors",
                "Session failures, by kind (KafkaUnavailable, TargetUnavailable, ...).",
                {**c, "kind": kind},
                n,
            )
