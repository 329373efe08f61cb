"""Extension points: the protocols connectors and sinks implement, and the registry that finds them.

Plugins register under the entry-point groups ``cdc.connectors`` (keyed by the config's
``plugin``) and ``cdc.sinks`` (keyed by the sink's ``type``). The core reaches them only through
:func:`connector_for` and :func:`sink_for`, so it never imports ``connectors`` or ``sinks``.
"""

from __future__ import annotations

__all__ = ["Connector", "Sink", "connector_for", "sink_for"]

import threading
from collections.abc import Sequence
from importlib.metadata import entry_points
from typing import Protocol

from cdc.config import ConnectorConfig, KafkaConfig, PostgresSinkConfig, SqliteSinkConfig
from cdc.errors import CdcError
from cdc.findings import Finding
from cdc.metrics import Families


class Connector(Protocol):
    """A source: one database's committed row changes, published to Kafka as events.

    Delivery: at least once. A position in the source is acknowledged only after Kafka has acked
    every event at or before it, so a crash anywhere loses nothing and at worst publishes a
    change again, with the same event id. Resume rule: on start, reading resumes just after the
    last position acknowledged to the source.
    """

    def __init__(self, config: ConnectorConfig, kafka: KafkaConfig) -> None: ...

    def check(self, *, full_identity: bool = False) -> list[Finding]:
        """Probe the source without changing it (beyond temporary objects); one finding a fact.

        ``full_identity``: also say which captured tables do not log whole old rows (``cdc
        check --full-identity``)."""
        ...

    def run(self, stop: threading.Event, started: threading.Event | None = None) -> None:
        """Stream until ``stop`` is set; return after in-flight work is delivered or dropped.

        Set ``started`` once connected and streaming (or snapshotting): a permanent error
        before that stops ``cdc run``; after it, the worker is restarted with backoff."""
        ...

    def status(self) -> list[Finding]:
        """Where the connector stands: its slot, the confirmed position, the lag, snapshots."""
        ...

    def request_snapshot(self, tables: Sequence[str]) -> list[Finding]:
        """Ask the running connector, through the source, for an incremental snapshot."""
        ...

    def collect(self, out: Families) -> None:
        """Its metrics, for ``/metrics`` (:class:`cdc.metrics.Observed`)."""
        ...

    def readiness(self) -> str | None:
        """None while streaming or snapshotting; else why not (``/readyz``)."""
        ...


class Sink(Protocol):
    """A consumer that applies events from Kafka to a target store, idempotently.

    Delivery: events arrive at least once and, across partitions, in any order. The sink commits
    the Kafka offsets it consumed in the same target transaction as the rows they produced, and
    never lets an event move a row back to an older source position. Resume rule: on start and
    on every partition assignment, consumption resumes at the offsets stored in the target.
    """

    def __init__(
        self, config: PostgresSinkConfig | SqliteSinkConfig, kafka: KafkaConfig
    ) -> None: ...

    def check(self) -> list[Finding]:
        """Probe the target store without changing it; one finding a fact."""
        ...

    def run(self, stop: threading.Event, started: threading.Event | None = None) -> None:
        """Consume and apply until ``stop`` is set; leave no half-applied batch behind.

        Set ``started`` once connected to Kafka and the target (see :class:`Connector`)."""
        ...

    def status(self) -> list[Finding]:
        """Where the sink stands: its consumer lag."""
        ...

    def collect(self, out: Families) -> None:
        """Its metrics, for ``/metrics`` (:class:`cdc.metrics.Observed`)."""
        ...

    def readiness(self) -> str | None:
        """None while consuming with its target reachable; else why not (``/readyz``)."""
        ...


def _load(group: str, name: str) -> type:
    found = entry_points(group=group, name=name)
    if not found:
        raise CdcError(
            f"no plugin named {name!r} in entry-point group {group!r}; is the cdc package installed"
            " (pip install -e .)?"
        )
    plugin: type = next(iter(found)).load()
    return plugin


def connector_for(config: ConnectorConfig, kafka: KafkaConfig) -> Connector:
    """The connector that serves ``config.plugin``."""
    cls = _load("cdc.connectors", config.plugin)
    connector: Connector = cls(config, kafka)
    return connector


def sink_for(config: PostgresSinkConfig | SqliteSinkConfig, kafka: KafkaConfig) -> Sink:
    """The sink that serves ``config.type``."""
    cls = _load("cdc.sinks", config.type)
    sink: Sink = cls(config, kafka)
    return sink
