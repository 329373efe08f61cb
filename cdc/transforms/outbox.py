"""The outbox event router (``[[connectors.outbox]]``), as Debezium's: each row inserted into an
outbox table is published as a domain event.

Topic from the ``topic`` template (``outbox.event.{aggregatetype}`` by default), key the
``aggregateid`` as text, value the ``payload`` as it is (json/jsonb: its JSON text; text: its
UTF-8; bytea: its bytes; NULL: a null value), headers ``cdc-event-id`` (the change's id), ``id`` and
``type`` (as text). Deletes, truncates and snapshot reads publish nothing (an outbox row is an
event once, when inserted: a snapshot would publish old events again); updates neither, with a
warning once per table, as Debezium does.
"""

from __future__ import annotations

__all__ = ["Outbox", "check_outbox"]

import logging
from typing import TYPE_CHECKING, Any

import orjson

from cdc.events import EVENT_ID_HEADER, OUTBOX_HEADER, Change, Record, SourceInfo
from cdc.globs import is_plain
from cdc.transforms.routes import MAX_VALUES, safe_topic, template_fields

if TYPE_CHECKING:
    from cdc.config.models import OutboxConfig
    from cdc.transforms import TableInfo

log = logging.getLogger(__name__)

OUTBOX_FIELDS = frozenset({"aggregatetype", "topic_prefix", "schema", "table"})


def check_outbox(config: OutboxConfig) -> None:
    """ValueError when the table is not ``schema.table`` or the template is bad."""
    schema, dot, table = config.table.partition(".")
    if not (schema and dot and table) or "." in table or not is_plain(config.table):
        raise ValueError(f"outbox table {config.table!r} must be schema.table (no globs)")
    template_fields(config.topic, OUTBOX_FIELDS, "outbox topic template")


def _text(value: Any) -> bytes:
    """A value as the text of its JSON encoding (a text as it is)."""
    return value.encode() if type(value) is str else orjson.dumps(value)


class Outbox:
    """One outbox table's inserts as domain events."""

    def __init__(self, config: OutboxConfig) -> None:
        self.config = config
        c = config
        self._id, self._type = c.id_column, c.type_column
        self._aggregate_type, self._aggregate_id = c.aggregate_type_column, c.aggregate_id_column
        self._payload = c.payload_column
        self._table = c.table.encode()
        self._topics: dict[str, str] = {}
        self._bytea: tuple[tuple[tuple[str, str], ...], bool] | None = None
        self._warned = False
        self._last_delete: tuple[int, int] | None = None

    def records(self, change: Change, source: SourceInfo) -> list[Record]:
        """The domain event of an insert; nothing for other changes."""
        op = change.op
        if op != "c":
            if op == "d":
                self._last_delete = (change.commit_lsn, change.lsn)
            elif op == "u":
                self._update(change)
            return []
        if self._last_delete == (change.commit_lsn, change.lsn):
            # A delete and a create at one LSN: an update that changed the key, which the
            # decoders publish as both. Still an update.
            self._update(change)
            return []
        after = change.after or {}
        kind = after.get(self._aggregate_type)
        kind_text = kind if type(kind) is str else _text(kind).decode()
        topic = self._topics.get(kind_text)
        if topic is None:
            if len(self._topics) >= MAX_VALUES:
                self._topics.clear()
            topic = self._topics[kind_text] = safe_topic(
                self.config.topic.format(
                    aggregatetype=kind_text,
                    topic_prefix=source.topic_prefix,
                    schema=change.schema,
                    table=change.table,
                ),
                f"outbox {change.schema}.{change.table} ({self._aggregate_type} ="
                f" {kind_text[:40]!r})",
            )
        aggregate_id = after.get(self._aggregate_id)
        payload = after.get(self._payload)
        value: bytes | None
        if payload is None:
            value = None
        elif type(payload) is str:
            # bytea arrives as hex digits (cdc's encoding); json/jsonb/text as their text.
            value = bytes.fromhex(payload) if self._is_bytea(change.types) else payload.encode()
        else:
            value = orjson.dumps(payload)
        headers = [
            (EVENT_ID_HEADER, b"%d:%d" % (change.commit_lsn, change.index)),
            (OUTBOX_HEADER, self._table),
        ]
        if (event_id := after.get(self._id)) is not None:
            headers.append(("id", _text(event_id)))
        if (event_type := after.get(self._type)) is not None:
            headers.append(("type", _text(event_type)))
        key = None if aggregate_id is None else _text(aggregate_id)
        return [Record(topic, key, value, headers)]

    def _is_bytea(self, types: tuple[tuple[str, str], ...]) -> bool:
        cached = self._bytea
        if cached is not None and cached[0] is types:
            return cached[1]
        found = dict(types).get(self._payload) == "bytea"
        self._bytea = (types, found)
        return found

    def _update(self, change: Change) -> None:
        if not self._warned:
            self._warned = True
            log.warning(
                "outbox table %s.%s: an update (event %s) is not published, nor any later"
                " one: outbox rows are events, published when inserted (as Debezium does)",
                change.schema,
                change.table,
                change.event_id,
            )

    @staticmethod
    def problems(config: OutboxConfig, name: str, info: TableInfo) -> list[str]:
        """Errors: a configured column the table does not have, named."""
        return [
            f"outbox table {name}: {option} {column!r}: no such column"
            for option, column in (
                ("id_column", config.id_column),
                ("aggregate_type_column", config.aggregate_type_column),
                ("aggregate_id_column", config.aggregate_id_column),
                ("type_column", config.type_column),
                ("payload_column", config.payload_column),
            )
            if column not in info.columns
        ]
