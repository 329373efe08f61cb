"""Events: the immutable facts cdc publishes, and their encoding on Kafka.

A :class:`Change` is one committed row change (or a snapshot read, or a truncate) as a source
connector decoded it. :func:`encode` turns it into a Kafka record: the topic, the key (the row's
primary key as JSON), the value (Debezium's PostgreSQL envelope as schemaless JSON) and the
``cdc-event-id`` header. Nothing here does I/O.
"""

from __future__ import annotations

__all__ = [
    "EVENT_ID_HEADER",
    "UNAVAILABLE",
    "UNAVAILABLE_HEADER",
    "Change",
    "Record",
    "SourceInfo",
    "debezium_source_block",
    "encode",
    "envelope",
    "topic_for",
]

import functools
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from cdc import __version__
from cdc.errors import CdcError
from cdc.values import EXACT, VALUES_HEADER, ValueMode, encoder
from cdc.values.schemas import schemas, wrap
from cdc.values.types import UNAVAILABLE as _UNAVAILABLE

log = logging.getLogger(__name__)

EVENT_ID_HEADER = "cdc-event-id"
UNAVAILABLE_HEADER = "cdc-unavailable"
TYPES_HEADER = "cdc-types"
MISSING_HEADER = "cdc-missing"
"""Header holding ``{"column": "value as text"}`` for columns added with a default: the value
that rows written before the column was added hold, though no event says it (PostgreSQL does
not rewrite them). Sinks give a column they add this default."""
TABLE_HEADER = "cdc-table"
"""``schema.table`` on routed records (:mod:`cdc.transforms.routes`): a topic may hold several
tables' events."""
OUTBOX_HEADER = "cdc-outbox"
"""``schema.table`` of the outbox table on its domain events (:mod:`cdc.transforms.outbox`):
their value is the payload, no row change, so a sink whose topics match them skips them."""
KEY_FIELD_HEADER = "cdc-key-field"
"""On routed records whose key holds the source table under this field (so keys of tables that
share a topic differ): sinks drop the field from the key."""
IDENTITY_HEADER = "cdc-identity"
"""``full`` on events of a table without a primary key whose REPLICA IDENTITY FULL makes the whole
row its key: sinks keep such a table as a multiset of rows."""
"""Header holding ``{"column": "source type"}`` for the columns of the event, so that sinks can
create target tables with the right types from a schemaless JSON event."""
UNAVAILABLE = _UNAVAILABLE
"""Stands in ``after`` for an unchanged TOASTed value the source did not send (as Debezium does);
the ``cdc-unavailable`` header lists those columns, so no real value can be mistaken for it."""

VERSION = f"cdc-{__version__}"
"""``source.version`` of every event."""

Op = Literal["c", "u", "d", "r", "t"]
Row = dict[str, Any]


@dataclass(slots=True)
class Change:
    """One committed change of one row, as decoded from the source.

    Never changed once made (``dataclasses.replace`` makes a new one). Not ``frozen``: a frozen
    dataclass sets each of its fields through ``object.__setattr__``, which makes building
    one slower, on a path taken for every row change. The decoders build it with positional
    arguments (:meth:`~connectors.postgres.decoding.RowDecoder._change`): keep the fields'
    order."""

    op: Op
    """``c`` insert, ``u`` update, ``d`` delete, ``r`` snapshot read, ``t`` truncate."""
    schema: str
    table: str
    key: Row | None
    """Primary-key (or replica-identity) columns and their values; None when the table has none
    (and for truncates)."""
    before: Row | None
    """The row before the change, as far as the source tells it (key columns only unless the
    table has REPLICA IDENTITY FULL); None for inserts, reads and truncates."""
    after: Row | None
    """The row after the change; None for deletes and truncates."""
    commit_lsn: int
    """LSN of the transaction's commit record: with ``index``, the event's identity."""
    index: int
    """Position of this change within its transaction, from 0."""
    lsn: int
    """LSN of the change itself (not unique: rows written by one COPY may share it)."""
    xid: int
    commit_ts_ms: int
    """Commit time, milliseconds since the Unix epoch."""
    unavailable: tuple[str, ...] = ()
    """Columns of ``after`` whose unchanged TOASTed value the source did not send."""
    types: tuple[tuple[str, str], ...] = ()
    """``(column, source type)`` of the columns the event carries (the ``cdc-types`` header)."""
    whole_row_key: bool = False
    """The table has no primary key and REPLICA IDENTITY FULL: ``key`` is the whole row."""
    snapshot: Literal[
        "true",
        "first",
        "first_in_data_collection",
        "last_in_data_collection",
        "last",
        "incremental",
        "false",
    ] = "false"
    """Debezium's marker: ``first``, ``first_in_data_collection`` and
    ``last_in_data_collection`` are written as ``true`` in the exact mode (cdc's envelope)."""
    last_commit_lsn: int = 0
    """Commit LSN of the transaction before this one (Debezium's ``sequence`` first element)."""
    total_order: int = field(default=0)
    """1-based position of the change in its transaction, across tables."""
    data_collection_order: int = field(default=0)
    """1-based position of the change among its transaction's changes to the same table."""
    missing: tuple[tuple[str, str], ...] = ()
    """``(column, text)``: the value rows written before the column was added hold, for columns
    added with a default (the ``cdc-missing`` header; PostgreSQL's ``attmissingval``)."""

    @property
    def event_id(self) -> str:
        """``"{commit_lsn}:{index}"``: unique per change, identical every time it is re-sent."""
        return f"{self.commit_lsn}:{self.index}"


@dataclass(frozen=True, slots=True)
class SourceInfo:
    """What every event of one connector says about where it came from."""

    name: str
    """The connector's name."""
    db: str
    topic_prefix: str
    values: ValueMode = EXACT
    """How values are encoded (``values`` and Debezium's options; :mod:`cdc.values`)."""
    transaction_blocks: bool = True
    """Write the ``transaction`` block (the debezium mode writes it only with the transaction
    topic, as Debezium does)."""
    schemas: bool = False
    """Write key and value in Kafka Connect's JSON-with-schema layout (``schemas = true``)."""


@dataclass(slots=True)
class Record:
    """A Kafka record ready to send (never changed once made; not frozen, for speed)."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


TOPIC_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
"""Characters Kafka forbids in topic names (each becomes ``_``)."""


_TOPIC_TABLES: dict[str, tuple[str, str]] = {}
"""Each topic :func:`topic_for` named, and the first table it named it for."""


@functools.cache
def topic_for(prefix: str, schema: str, table: str) -> str:
    """``{prefix}.{schema}.{table}``; characters Kafka forbids in names become ``_``. Tables
    whose names differ only there (``a%b`` and ``a_b``) share a topic: their events stay apart
    (each names its table, and sinks apply it to that table's target), but consumers of the
    topic see both, so it is logged, once per table."""
    topic = f"{prefix}.{TOPIC_UNSAFE.sub('_', schema)}.{TOPIC_UNSAFE.sub('_', table)}"
    first = _TOPIC_TABLES.setdefault(topic, (schema, table))
    if first != (schema, table):
        log.warning(
            "tables %s.%s and %s.%s share topic %s: Kafka forbids characters of their names,"
            " which become _; each event names its table",
            *first,
            schema,
            table,
            topic,
        )
    return topic


def source_block(
    source: SourceInfo,
    ts_ms: int,
    snapshot: str,
    last_commit_lsn: int,
    lsn: int,
    schema: str,
    table: str,
    xid: int | None,
) -> dict[str, Any]:
    """An event's ``source``, as Debezium's PostgreSQL connector writes it (row changes and
    logical decoding messages alike)."""
    return {
        "version": VERSION,
        "connector": "postgresql",
        "name": source.name,
        "ts_ms": ts_ms,
        "snapshot": snapshot,
        "db": source.db,
        "sequence": f'["{last_commit_lsn}","{lsn}"]',
        "schema": schema,
        "table": table,
        "txId": xid,
        "lsn": lsn,
        "xmin": None,
    }


def debezium_source_block(
    source: SourceInfo,
    ts_ms: int,
    snapshot: str,
    last_commit_lsn: int,
    lsn: int,
    schema: str,
    table: str,
    xid: int | None,
) -> dict[str, Any]:
    """An event's ``source`` in the debezium mode, as Debezium 3.6 writes it: ``name`` is the
    topic prefix, microseconds and nanoseconds beside the milliseconds, the origin fields."""
    commit_us = ts_ms * 1000
    return {
        "version": VERSION,
        "connector": "postgresql",
        "name": source.topic_prefix,
        "ts_ms": ts_ms,
        "snapshot": snapshot,
        "db": source.db,
        # null while no commit is known (the first transaction streamed, snapshot reads)
        "sequence": f'["{last_commit_lsn}","{lsn}"]' if last_commit_lsn else f'[null,"{lsn}"]',
        "ts_us": commit_us,
        "ts_ns": commit_us * 1000,
        "schema": schema,
        "table": table,
        "txId": xid,
        "lsn": lsn,
        "xmin": None,
        "origin": None,
        "origin_lsn": None,
    }


def envelope(change: Change, source: SourceInfo, now_ms: int) -> dict[str, Any]:
    """The record value of ``change``: Debezium's envelope, before it is JSON. :func:`encode`
    writes the same JSON, key for key, without building this dict in the exact mode."""
    c = change
    before, after = c.before, c.after
    if c.types and (codec := encoder(c.types, source.values)) is not None:
        before, after = codec(before), codec(after)
    if source.values.values != "exact":
        return _debezium_envelope(c, source, before, after, now_ms)
    snapshot = _FINER_MARKERS.get(c.snapshot, c.snapshot)
    return {
        "before": before,
        "after": after,
        "source": source_block(
            source, c.commit_ts_ms, snapshot, c.last_commit_lsn, c.lsn, c.schema, c.table, c.xid
        ),
        "op": change.op,
        "ts_ms": now_ms,
        "transaction": {
            "id": f"{change.xid}:{change.commit_lsn}",
            "total_order": change.total_order or change.index + 1,
            "data_collection_order": change.data_collection_order or change.index + 1,
        },
    }


_FINER_MARKERS = {
    "first": "true",
    "first_in_data_collection": "true",
    "last_in_data_collection": "true",
}


def encode(
    change: Change,
    source: SourceInfo,
    now_ms: int | None = None,
    key_field: tuple[str, str] | None = None,
) -> Record:
    """The Kafka record for ``change``: Debezium's envelope (:func:`envelope`), schemaless JSON,
    its values encoded in the connector's mode (:mod:`cdc.values`). ``key_field``: a field added
    to the key (a routed table's name, :mod:`cdc.transforms.routes`)."""
    mode = source.values
    before, after, key = change.before, change.after, change.key
    if change.types and (codec := encoder(change.types, mode)) is not None:
        before, after, key = codec(before), codec(after), codec(key)
    if key_field is not None and key is not None:
        key = {**key, key_field[0]: key_field[1]}
    if mode.values == "exact":
        snapshot = change.snapshot
        value = _value_template(
            source.name,
            source.db,
            change.schema,
            change.table,
            change.op,
            _FINER_MARKERS.get(snapshot, snapshot),
        ) % (
            orjson.dumps(before),
            orjson.dumps(after),
            change.commit_ts_ms,
            change.last_commit_lsn,
            change.lsn,
            change.xid,
            change.lsn,
            int(time.time() * 1000) if now_ms is None else now_ms,
            change.xid,
            change.commit_lsn,
            change.total_order or change.index + 1,
            change.data_collection_order or change.index + 1,
        )
    else:
        value = orjson.dumps(_debezium_envelope(change, source, before, after, now_ms))
    headers = [
        (EVENT_ID_HEADER, b"%d:%d" % (change.commit_lsn, change.index)),
        (VALUES_HEADER, mode.header),
    ]
    if types := change.types:
        cached = _PAIRS_JSON.get(id(types))
        encoded = cached[1] if cached is not None and cached[0] is types else _pairs_json(types)
        headers.append((TYPES_HEADER, encoded))
    if missing := change.missing:
        cached = _PAIRS_JSON.get(id(missing))
        encoded = cached[1] if cached is not None and cached[0] is missing else _pairs_json(missing)
        headers.append((MISSING_HEADER, encoded))
    if change.whole_row_key:
        headers.append((IDENTITY_HEADER, b"full"))
    if change.unavailable:
        headers.append((UNAVAILABLE_HEADER, orjson.dumps(list(change.unavailable))))
    encoded_key = None if key is None else orjson.dumps(key)
    topic = topic_for(source.topic_prefix, change.schema, change.table)
    if source.schemas:
        value, encoded_key = _with_schemas(
            change, source, topic, (before, after), key, value, encoded_key
        )
    return Record(topic, encoded_key, value, headers)


def _with_schemas(
    change: Change,
    source: SourceInfo,
    topic: str,
    images: tuple[Row | None, Row | None],
    key: Row | None,
    value: bytes,
    encoded_key: bytes | None,
) -> tuple[bytes, bytes | None]:
    """Value and key in JsonConverter's ``{"schema", "payload"}`` layout, the schemas named
    after the table's own topic as Debezium names them (:mod:`cdc.values.schemas`)."""
    for column in _array_columns(change.types) if change.types else ():
        for image in images:
            held = None if image is None else image.get(column)
            if type(held) is str and held != UNAVAILABLE:
                raise CdcError(
                    f"{change.schema}.{change.table}: column {column} holds an array of several"
                    f" dimensions or other bounds ({held[:40]!r}), which Kafka Connect's array"
                    " schema cannot carry (JsonConverter would read it as []): leave the column"
                    " out ([[connectors.columns]]) or set schemas = false"
                )
    found = schemas(
        topic,
        change.types,
        tuple(key) if key else (),
        source.values,
        whole_row_key=change.whole_row_key,
    )
    wrapped_key = None if encoded_key is None or found.key is None else wrap(found.key, encoded_key)
    return wrap(found.value, value), wrapped_key


@functools.lru_cache(maxsize=1024)
def _array_columns(types: tuple[tuple[str, str], ...]) -> tuple[str, ...]:
    return tuple(c for c, t in types if t.endswith("[]"))


def _debezium_envelope(
    c: Change,
    source: SourceInfo,
    before: Row | None,
    after: Row | None,
    now_ms: int | None,
) -> dict[str, Any]:
    """The envelope as Debezium's PostgreSQL connector writes it, field for field: ``source.name``
    is the topic prefix, microsecond and nanosecond times beside the milliseconds, ``transaction``
    only with the transaction topic (Debezium's ``provide.transaction.metadata``)."""
    now_ns = time.time_ns() if now_ms is None else now_ms * 1_000_000
    return {
        "before": before,
        "after": after,
        "source": debezium_source_block(
            source, c.commit_ts_ms, c.snapshot, c.last_commit_lsn, c.lsn, c.schema, c.table, c.xid
        ),
        "transaction": (
            {
                "id": f"{c.xid}:{c.commit_lsn}",
                "total_order": c.total_order or c.index + 1,
                "data_collection_order": c.data_collection_order or c.index + 1,
            }
            if source.transaction_blocks
            else None
        ),
        "op": c.op,
        "ts_ms": now_ns // 1_000_000,
        "ts_us": now_ns // 1000,
        "ts_ns": now_ns,
    }


@functools.lru_cache(maxsize=4096)
def _value_template(name: str, db: str, schema: str, table: str, op: str, snapshot: str) -> bytes:
    """:func:`envelope`'s JSON with the rows as ``%b`` and the numbers as ``%d``. Filling it in
    is faster than building the dict and encoding it."""

    def text(value: str) -> bytes:
        return orjson.dumps(value).replace(b"%", b"%%")

    return b"".join(
        (
            b'{"before":%b,"after":%b,"source":{"version":',
            text(VERSION),
            b',"connector":"postgresql","name":',
            text(name),
            b',"ts_ms":%d,"snapshot":',
            text(snapshot),
            b',"db":',
            text(db),
            b',"sequence":"[\\"%d\\",\\"%d\\"]","schema":',
            text(schema),
            b',"table":',
            text(table),
            b',"txId":%d,"lsn":%d,"xmin":null},"op":',
            text(op),
            b',"ts_ms":%d,"transaction":{"id":"%d:%d","total_order":%d,"data_collection_order":%d}}',
        )
    )


_PAIRS_JSON: dict[int, tuple[tuple[tuple[str, str], ...], bytes]] = {}
"""The JSON object of each ``types`` (``cdc-types``) or ``missing`` (``cdc-missing``) tuple, by
the tuple's identity: a decoder hands every change of a table the same tuple, and hashing its
pairs for every event (an lru_cache key) cost more than the rest of the headers. The entry holds
the tuple, so its id is not reused while the entry lives."""


def _pairs_json(pairs: tuple[tuple[str, str], ...]) -> bytes:
    if len(_PAIRS_JSON) >= 4096:
        _PAIRS_JSON.clear()
    encoded = orjson.dumps(dict(pairs))
    _PAIRS_JSON[id(pairs)] = (pairs, encoded)
    return encoded


def tombstone(record: Record) -> Record:
    """The null-valued record that follows a delete, so compaction can forget the key."""
    return Record(record.topic, record.key, None, record.headers[:1])
