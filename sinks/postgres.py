"""The PostgreSQL sink: applies events to tables of another PostgreSQL database."""

from __future__ import annotations

__all__ = ["PostgresSink"]

import threading

import psycopg

from cdc.config import KafkaConfig, PostgresSinkConfig
from cdc.errors import NotYetImplemented, describe
from cdc.findings import Finding


class PostgresSink:
    """Applies events to PostgreSQL idempotently (see :class:`cdc.plugins.Sink`)."""

    def __init__(self, config: PostgresSinkConfig, kafka: KafkaConfig) -> None:
        self.config = config
        self.kafka = kafka

    def check(self) -> list[Finding]:
        subject = f"sink {self.config.name}"
        try:
            with psycopg.connect(self.config.dsn.conninfo, connect_timeout=5) as conn:
                version = conn.execute("SHOW server_version").fetchone()
        except psycopg.Error as e:
            reason = describe(e, self.config.dsn.password)
            return [Finding.fail(subject, f"cannot connect to {self.config.dsn}: {reason}")]
        shown = version[0] if version else "?"
        return [Finding.ok(subject, f"connected to {self.config.dsn} (PostgreSQL {shown})")]

    def run(self, stop: threading.Event) -> None:
        raise NotYetImplemented(
            f"sink {self.config.name}: applying events is not built yet (issue 4); nothing was read"
        )

    def status(self) -> list[Finding]:
        return [Finding.warn(f"sink {self.config.name}", "consumer lag: sinks are not built yet")]
