"""The SQLite sink: applies events to tables of a single SQLite file."""

from __future__ import annotations

__all__ = ["SqliteSink"]

import os
import threading
from pathlib import Path

from cdc.config import KafkaConfig, SqliteSinkConfig
from cdc.errors import NotYetImplemented
from cdc.findings import Finding


class SqliteSink:
    """Applies events to SQLite idempotently (see :class:`cdc.plugins.Sink`)."""

    def __init__(self, config: SqliteSinkConfig, kafka: KafkaConfig) -> None:
        self.config = config
        self.kafka = kafka

    def check(self) -> list[Finding]:
        subject = f"sink {self.config.name}"
        path = Path(self.config.path)
        if path.exists():
            if os.access(path, os.R_OK | os.W_OK):
                return [Finding.ok(subject, f"{path} exists and is writable")]
            return [Finding.fail(subject, f"{path} exists but is not readable and writable")]
        parent = path.parent if str(path.parent) else Path(".")
        if parent.is_dir() and os.access(parent, os.W_OK):
            return [Finding.ok(subject, f"{path} will be created on first run")]
        return [
            Finding.fail(subject, f"cannot create {path}: {parent} is not a writable directory")
        ]

    def run(self, stop: threading.Event) -> None:
        raise NotYetImplemented(
            f"sink {self.config.name}: applying events is not built yet (issue 4); nothing was read"
        )

    def status(self) -> list[Finding]:
        return [Finding.warn(f"sink {self.config.name}", "consumer lag: sinks are not built yet")]
