"""The decoder registry: each logical decoding plugin by name, with its decoder and its own
``START_REPLICATION`` options, so that nothing else branches on the plugin's name."""

from __future__ import annotations

__all__ = ["DECODERS", "Decoded", "Decoder", "DecoderPlugin", "decoder_plugin"]

from collections.abc import Callable
from typing import Protocol

from cdc.config import ConnectorConfig
from cdc.events import Change
from connectors.postgres.decoding import Begin, Catalog, Commit, Message
from connectors.postgres.pgoutput import PGOUTPUT
from connectors.postgres.wal2json import WAL2JSON

Decoded = Begin | Change | tuple[Change, ...] | Commit | Message | None
"""What one message decodes to: a transaction's bounds, its changes, a logical decoding message,
or nothing to publish."""


class Decoder(Protocol):
    """Bytes of one XLogData payload in, events out; no I/O (what the stream loop needs)."""

    rereads: list[tuple[str, str, str]]
    """``(schema, table, why)`` of tables to read again; the stream loop clears it."""
    truncated: dict[tuple[str, str], set[tuple[str, str]]]
    """Per partitioned table, the partitions the current transaction truncated."""
    messages: bool
    """Decode logical decoding messages (else they are dropped, and take no index)."""

    def decode(self, payload: bytes, lsn: int) -> Decoded: ...

    def forget_routes(self) -> None:
        """Partition trees changed: look up again which table a change is published under."""


class DecoderPlugin(Protocol):
    """A logical decoding plugin: its name (the slot's plugin), options and decoder."""

    name: str
    publication: bool
    """It decodes a table's changes only while the table is in a publication (pgoutput)."""
    binary: bool
    """Its output is binary (``pg_logical_slot_peek_binary_changes``)."""
    install_hint: str
    """What to install when the server cannot load it ('' when it comes with PostgreSQL)."""
    probe_options: dict[str, str]
    """The fewest options that make it decode (``cdc check``'s probe)."""

    def options(
        self, config: ConnectorConfig, partition_schemas: frozenset[str] = frozenset()
    ) -> dict[str, str]:
        """``START_REPLICATION`` options for ``config`` (``partition_schemas``: the schemas
        holding partitions of captured partitioned tables)."""
        ...

    def decoder(
        self,
        catalog: Catalog,
        selected: Callable[[str, str], bool],
        root: Callable[[str, str, int], tuple[str, str]] | None = None,
        subject: str = "cdc",
    ) -> Decoder:
        """A decoder of the tables ``selected`` says are captured; ``root``: the name a
        partition's changes are published under."""
        ...


DECODERS: dict[str, DecoderPlugin] = {p.name: p for p in (WAL2JSON, PGOUTPUT)}


def decoder_plugin(name: str) -> DecoderPlugin:
    """The plugin a connector's ``plugin`` names (the config allows only these)."""
    return DECODERS[name]
