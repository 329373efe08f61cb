"""What every sink made of a :class:`~cdc.sink.target.Target` shares: ``cdc run``'s worker (the
sink runtime) and ``cdc status``'s lag. A target's module adds only its ``check`` and ``target``."""

from __future__ import annotations

__all__ = ["SinkSettings", "TargetSink"]

import threading
from abc import ABC, abstractmethod
from typing import Generic, Protocol, TypeVar

from cdc.config import KafkaConfig
from cdc.findings import Finding
from cdc.metrics import Families
from cdc.sink.lag import consumer_lag
from cdc.sink.runtime import SinkRuntime
from cdc.sink.stats import SinkStats
from cdc.sink.target import Target


class SinkSettings(Protocol):
    """What every sink's configuration has (:class:`cdc.config.PostgresSinkConfig`, ...)."""

    @property
    def name(self) -> str: ...
    @property
    def group_id(self) -> str: ...
    @property
    def topics(self) -> tuple[str, ...]: ...


C = TypeVar("C", bound=SinkSettings)


class TargetSink(ABC, Generic[C]):
    """A sink (:class:`cdc.plugins.Sink`) that applies its topics to one :class:`Target`."""

    def __init__(self, config: C, kafka: KafkaConfig) -> None:
        self.config = config
        self.kafka = kafka
        self.stats = SinkStats(config.name)
        """Its numbers for ``/metrics``, across supervised restarts."""

    @abstractmethod
    def target(self) -> Target:
        """A new connection to the store (raises ``TargetUnavailable`` or ``Refused``)."""

    @abstractmethod
    def check(self) -> list[Finding]:
        """``cdc check``: can the store be reached and written?"""

    def run(self, stop: threading.Event, started: threading.Event | None = None) -> None:
        c = self.config
        runtime = SinkRuntime(
            c.name, c.group_id, c.topics, self.kafka, self.target, stats=self.stats
        )
        runtime.run(stop, started)

    def status(self) -> list[Finding]:
        c = self.config
        return consumer_lag(c.name, c.group_id, c.topics, self.kafka, self.target)

    def collect(self, out: Families) -> None:
        self.stats.collect(out)

    def readiness(self) -> str | None:
        return self.stats.readiness()
