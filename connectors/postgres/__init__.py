"""The PostgreSQL source connector (wal2json or pgoutput)."""

from __future__ import annotations

__all__ = ["PostgresConnector"]

import threading
from collections.abc import Sequence

from cdc.config import ConnectorConfig, KafkaConfig
from cdc.findings import Finding
from cdc.metrics import Families
from connectors.postgres.check import check_source
from connectors.postgres.source import PostgresSource
from connectors.postgres.stats import SourceStats
from connectors.postgres.status import (
    request_incremental_snapshot,
    slot_status,
    snapshot_status,
)


class PostgresConnector:
    """Streams one database's committed changes into Kafka (see :class:`cdc.plugins.Connector`)."""

    def __init__(self, config: ConnectorConfig, kafka: KafkaConfig) -> None:
        self.config = config
        self.kafka = kafka
        self.stats = SourceStats(config.name)
        """Its numbers for ``/metrics``, across supervised restarts."""

    def check(self, *, full_identity: bool = False) -> list[Finding]:
        return check_source(self.config, full_identity=full_identity)

    def run(self, stop: threading.Event, started: threading.Event | None = None) -> None:
        PostgresSource(self.config, self.kafka, self.stats).run(stop, started)

    def status(self) -> list[Finding]:
        return slot_status(self.config) + snapshot_status(self.config)

    def request_snapshot(self, tables: Sequence[str]) -> list[Finding]:
        return request_incremental_snapshot(self.config, tables)

    def collect(self, out: Families) -> None:
        self.stats.collect(out)

    def readiness(self) -> str | None:
        return self.stats.readiness()
