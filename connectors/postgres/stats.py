"""What a PostgreSQL connector counts for ``/metrics`` and says to ``/readyz``.

One :class:`SourceStats` per connector of ``cdc run``, kept across sessions and supervised
restarts. The stream loop writes plain numbers into it (per event only the per-table count, a
dict entry bumped; the rest once per read); :meth:`SourceStats.collect` turns them into metric
families when ``/metrics`` is scraped, on the server's thread.
"""

from __future__ import annotations

__all__ = ["SourceStats"]

import math
import time
from collections import Counter, defaultdict

from cdc.metrics import Families, age
from connectors.postgres.progress import Progress

STALL_S = 30.0
"""The stream loop turns at least every 0.2 s: this long without a turn, it is stuck."""


class SourceStats:
    """A connector's numbers (see the module docstring); implements the stream's ``Counts``."""

    def __init__(self, name: str) -> None:
        self.labels = {"connector": name}
        self.published = 0
        """Events published (handed to the producer), snapshot reads included."""
        self.acked = 0
        """Records Kafka acked while streaming (tombstones included)."""
        self.by_table: defaultdict[tuple[str, str, str], int] = defaultdict(int)
        """``(schema, table, op)`` -> events published."""
        self.transactions = 0
        """Source transactions whose every record Kafka acked (confirmable)."""
        self.acked_ts_ms = 0
        """Commit time of the newest such transaction that carried a change."""
        self.in_flight = 0
        self.caught_up = False
        """The last read found nothing waiting, nothing is in flight, and the server has
        decoded its WAL as far as it went at the last look (:attr:`wal_end`)."""
        self.caught_up_at = 0.0
        """``time.time()`` when the connector was last caught up."""
        self.last_event = 0.0
        """``time.time()`` of the read that last published an event."""
        self.confirmed = 0
        self.wal_end = 0
        """The server's current WAL position (``pg_current_wal_lsn()``), looked up every few
        seconds by the stream loop."""
        self.state = "starting"
        self.problem: str | None = None
        """Why the connector is not streaming, while it retries."""
        self.kafka_out_since: float | None = None
        """Monotonic time since which Kafka acknowledges nothing while records wait."""
        self.turned = 0.0
        """``time.monotonic()`` of the stream loop's last turn."""
        self.sessions = 0
        self.errors: Counter[str] = Counter()
        """Session failures by kind (the error's class name)."""
        self.snapshots: dict[tuple[str, str], Progress] = {}
        """``(kind, schema.table)`` -> the progress of its newest snapshot (initial or
        incremental)."""

    def session_started(self) -> None:
        self.sessions += 1
        self.state = "starting"

    def failed(self, e: BaseException, text: str) -> None:
        self.errors[type(e).__name__] += 1
        self.state = "reconnecting"
        self.problem = text
        self.caught_up = False

    def streaming(self) -> None:
        self.state, self.problem = "streaming", None
        self.turned = time.monotonic()

    def snapshot(self, kind: str, progress: Progress) -> Progress:
        self.snapshots[(kind, progress.label)] = progress
        return progress

    def readiness(self) -> str | None:
        if self.state in ("snapshotting", "done"):  # done: an initial_only snapshot delivered
            return None
        if self.state != "streaming":
            return f"{self.state}: {self.problem}" if self.problem else self.state
        if self.kafka_out_since is not None:
            quiet = time.monotonic() - self.kafka_out_since
            return f"Kafka has acknowledged nothing for {quiet:.0f} s while records wait"
        quiet = time.monotonic() - self.turned
        if quiet > STALL_S:
            return f"the stream loop has not turned for {quiet:.0f} s"
        return None

    def collect(self, out: Families) -> None:
        c = self.labels
        now = time.time()
        for (schema, table, op), n in list(self.by_table.items()):
            out.counter(
                "cdc_connector_events_published",
                "Change events published to Kafka, by source table and op (c, u, d, r, t).",
                {**c, "table": f"{schema}.{table}", "op": op},
                n,
            )
        out.counter(
            "cdc_connector_records_acked",
            "Records Kafka acknowledged while streaming (tombstones included).",
            c,
            self.acked,
        )
        out.gauge(
            "cdc_connector_records_in_flight",
            "Records sent to Kafka and not acknowledged yet.",
            c,
            self.in_flight,
        )
        out.counter(
            "cdc_connector_transactions_acked",
            "Source transactions whose every record Kafka acknowledged.",
            c,
            self.transactions,
        )
        out.gauge(
            "cdc_connector_confirmed_lsn",
            "The position confirmed to PostgreSQL (everything before it is on Kafka), as a number.",
            c,
            self.confirmed,
        )
        out.gauge(
            "cdc_connector_wal_end_lsn",
            "The server's current WAL position (pg_current_wal_lsn), as a number.",
            c,
            self.wal_end or math.nan,
        )
        out.gauge(
            "cdc_connector_lag_bytes",
            "WAL the slot holds for the connector: the server's WAL position minus the"
            " confirmed one.",
            c,
            max(0, self.wal_end - self.confirmed) if self.wal_end and self.confirmed else math.nan,
        )
        # Behind: since the newest change acked, or since it was last caught up if later (a
        # change that arrived after a long idle is not hours late).
        behind = max(self.acked_ts_ms / 1000, self.caught_up_at)
        lag = 0.0 if self.caught_up else age(now, behind)
        out.gauge(
            "cdc_connector_replication_lag_seconds",
            "Now minus the commit time of the newest change Kafka acknowledged; 0 when idle and"
            " caught up.",
            c,
            lag,
        )
        out.gauge(
            "cdc_connector_seconds_since_last_event",
            "Seconds since the connector last published an event.",
            c,
            age(now, self.last_event),
        )
        for (kind, table), p in list(self.snapshots.items()):
            labels = {**c, "table": table, "kind": kind}
            out.gauge(
                "cdc_connector_snapshot_rows_read",
                "Rows of a table its newest snapshot read so far.",
                labels,
                p.done,
            )
            out.gauge(
                "cdc_connector_snapshot_rows_estimated",
                "Rows PostgreSQL estimates the table holds (pg_class.reltuples), when the"
                " snapshot began.",
                labels,
                p.total if p.total is not None else math.nan,
            )
            out.states(
                "cdc_connector_snapshot_state",
                "1 for the state of a table's newest snapshot.",
                labels,
                ("running", "done", "stopped"),
                p.state,
            )
        out.states(
            "cdc_connector_state",
            "1 for what the connector is doing.",
            c,
            ("starting", "snapshotting", "streaming", "reconnecting", "done"),
            self.state,
        )
        out.counter(
            "cdc_connector_reconnects",
            "Sessions started again after a failure.",
            c,
            max(0, self.sessions - 1),
        )
        for kind, n in list(self.errors.items()):
            out.counter(
                "cdc_connector_errors",
                "Session failures, by kind (SourceUnavailable, KafkaUnavailable, ...).",
                {**c, "kind": kind},
                n,
            )
