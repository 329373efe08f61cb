"""Debezium's columns a record did not type, decoded by the target table's column types.

A record Debezium wrote without schema says nothing of its columns' types (``19724`` may be an
``integer`` or the ``date`` 2024-01-02), and one with schema leaves them open for plain strings
(``binary.handling.mode=base64`` writes a ``bytea`` as a ``string``). :mod:`cdc.records` marks
those columns (:attr:`~cdc.records.SinkEvent.undecoded`); a target decodes them here, with its
table's types and its sink's Debezium options (``decimal_handling_mode`` ...), before it plans
the batch. A record it cannot type (no schema and no target table, or a column the table lacks)
is refused with the reason, for the dead-letter topic.
"""

from __future__ import annotations

__all__ = ["Foreign", "options_of", "pending"]

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from cdc.config import PostgresSinkConfig, SqliteSinkConfig
from cdc.events import UNAVAILABLE
from cdc.records import SinkEvent, key_id
from cdc.values.from_debezium import Decoder, Options, decode_into, type_decoder

ColumnTypes = Callable[[str, str], Mapping[str, str] | None]
"""``(source schema, source table)`` -> the target table's column types (``format_type``'s
text), None when the target has no such table."""


def options_of(config: PostgresSinkConfig | SqliteSinkConfig) -> Options:
    """The Debezium options a sink's config gives for the records without schema."""
    return Options(
        decimal=config.decimal_handling_mode,
        time=config.time_precision_mode,
        binary=config.binary_handling_mode,
        interval=config.interval_handling_mode,
    )


def pending(events: Sequence[SinkEvent]) -> bool:
    """Whether any of ``events`` has columns to decode (one attribute read per event)."""
    return any(e.undecoded for e in events)


class Foreign:
    """Decodes events' :attr:`~cdc.records.SinkEvent.undecoded` columns for one target.

    ``column_types`` None: the target keeps no PostgreSQL types (SQLite's affinities), so only
    records whose schema typed every column it needs can be stored."""

    def __init__(self, options: Options, column_types: ColumnTypes | None, what: str) -> None:
        self.options = options
        self.column_types = column_types
        self.what = what
        self._tables: dict[tuple[str, str], Mapping[str, str] | None] = {}
        self._looked: set[tuple[str, str]] = set()
        """Tables looked up during the batch being decoded."""
        self._decoders: dict[str, Decoder | None] = {}
        """PostgreSQL type -> its decoder under :attr:`options`."""

    def forget(self) -> None:
        """Look the target's tables up again (after DDL, or a rolled back transaction)."""
        self._tables.clear()

    def decode(
        self, events: Sequence[SinkEvent]
    ) -> tuple[list[SinkEvent], list[tuple[SinkEvent, str]]]:
        """``events`` with their undecoded columns decoded, and those refused with why."""
        out: list[SinkEvent] = []
        refused: list[tuple[SinkEvent, str]] = []
        self._looked = set()
        for event in events:
            if not event.undecoded:
                out.append(event)
                continue
            decoded = self._event(event)
            if isinstance(decoded, str):
                refused.append((event, decoded))
            else:
                out.append(decoded)
        return out, refused

    def _types(self, source: tuple[str, str], columns: frozenset[str]) -> Mapping[str, str] | None:
        if self.column_types is None:
            return None
        if source in self._tables:
            types = self._tables[source]
            if source in self._looked or (types is not None and columns <= types.keys()):
                return types
        # A table not seen yet, or columns it lacked: looked up again, once a batch.
        types = self._tables[source] = self.column_types(*source)
        self._looked.add(source)
        return types

    def _event(self, event: SinkEvent) -> SinkEvent | str:
        columns = event.undecoded
        schemaless = not event.types
        types = self._types((event.schema, event.table), columns)
        label = f"{event.schema}.{event.table}"
        if types is None:
            if schemaless:
                return (
                    f"table {label}: a record without schema and without cdc-event-id (read as"
                    f" Debezium's) and {self.what}: enable schemas in Debezium's converters"
                    " (key.converter.schemas.enable and value.converter.schemas.enable = true)"
                    + ("" if self.column_types is None else " or create the target table")
                )
            return dataclasses.replace(event, undecoded=frozenset())  # plain strings: text
        if schemaless and not columns <= types.keys():
            absent = ", ".join(sorted(columns - types.keys()))
            return (
                f"table {label}: a record without schema and without cdc-event-id (read as"
                f" Debezium's) has columns the target table lacks ({absent}): add them to the"
                " target table, or enable schemas in Debezium's converters"
            )
        pairs = [(c, self._decoder(types[c])) for c in columns if c in types]
        decoders = [(c, d) for c, d in pairs if d is not None]
        if schemaless:
            kept = types
        else:
            kept = {**{c: types[c] for c in columns if c in types}, **event.types}
        if not decoders:  # text, inet, ranges...: Debezium writes them as cdc does
            return dataclasses.replace(event, types=kept, undecoded=frozenset())
        key, before, after = _copy(event.key), _copy(event.before), _copy(event.after)
        for image in (key, before, after):
            if image:
                decode_into(image, decoders)
        decoded = dataclasses.replace(
            event,
            key=key,
            before=before,
            after=after,
            types=kept,
            undecoded=frozenset(),
            key_id=None,
            unavailable=_placeholders(after) if after else event.unavailable,
        )
        decoded.key_id = None if key is None else key_id(decoded)
        return decoded

    def _decoder(self, pg_type: str) -> Decoder | None:
        if pg_type not in self._decoders:
            self._decoders[pg_type] = type_decoder(pg_type, self.options)
        return self._decoders[pg_type]


def _copy(image: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if image is None else dict(image)


def _placeholders(after: dict[str, Any]) -> frozenset[str]:
    return frozenset(c for c, v in after.items() if v == UNAVAILABLE)
