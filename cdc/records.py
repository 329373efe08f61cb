"""The consuming side of the event format: a Kafka record in, a checked :class:`SinkEvent` out.

Sinks never trust a record: :func:`parse_record` checks that it is JSON, that it is Debezium's
envelope, that it carries a ``cdc-event-id``, and raises :class:`BadRecord` naming what is wrong
otherwise, so the runtime can send it to the dead-letter topic with that reason.
"""

from __future__ import annotations

__all__ = [
    "BadRecord",
    "SinkEvent",
    "Version",
    "by_shape",
    "by_table",
    "collapse",
    "incomplete",
    "key_id",
    "parse_record",
    "row_hash",
]

import binascii
import dataclasses
import functools
import hashlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import msgspec
import orjson

from cdc.errors import BadRecord
from cdc.events import (
    EVENT_ID_HEADER,
    IDENTITY_HEADER,
    KEY_FIELD_HEADER,
    MISSING_HEADER,
    TYPES_HEADER,
    UNAVAILABLE,
    UNAVAILABLE_HEADER,
)
from cdc.values import VALUES_HEADER, RowCodec, decoder, mode_from_header
from cdc.values.from_debezium import Decoder, decode_into, schema_decoder

log = logging.getLogger(__name__)

_NO_MISSING: Mapping[str, str] = MappingProxyType({})

Version = tuple[int, int]
"""``(commit_lsn, index)``: the order of changes at the source, from ``cdc-event-id``."""

_OPS = frozenset("cudrt")


@dataclass(slots=True)
class SinkEvent:
    """One change as a sink sees it: where it sits on Kafka and what it says.

    Never changed once made (``dataclasses.replace`` makes a new one); not ``frozen`` because
    that makes building one, for every record consumed, slower."""

    topic: str
    partition: int
    offset: int
    schema: str
    table: str
    op: str
    key: dict[str, Any] | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    version: Version
    unavailable: frozenset[str]
    """Columns of ``after`` whose unchanged value the source did not send: keep the stored one,
    never store ``after``'s placeholder (:func:`incomplete`)."""
    types: Mapping[str, str]
    """Source column types (``cdc-types`` header); may be empty for events of other producers.
    Shared between the events of a batch that carry the same header: read only."""
    whole_row_key: bool = False
    """The key is the whole row (``cdc-identity: full``): the table is a multiset of rows."""
    key_id: bytes | None = None
    """The key as JSON with sorted names (:func:`key_id`): equal for equal keys, whatever order
    a producer wrote their columns in. Made when the record is parsed, on the consuming thread,
    to keep the work off the applying thread."""
    missing: Mapping[str, str] = dataclasses.field(default_factory=lambda: _NO_MISSING)
    """Column -> the value (as text) that rows written before the column was added hold
    (``cdc-missing`` header): the default of a column a sink adds."""
    commit_ts_ms: int = 0
    """``source.ts_ms``: the source's commit time (0 when the record has none), for the sink's
    lag in seconds."""
    undecoded: frozenset[str] = frozenset()
    """Columns (of the key and images) still in Debezium's encoding: those of a record written
    by Debezium without schema, or whose schema left their type open (a plain ``string``). The
    target decodes them by its table's column types (:mod:`cdc.sink.foreign`)."""


def parse_record(  # noqa: PLR0912  (one piece: a call more would cost every record)
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes | None]],
) -> SinkEvent | None:
    """The event in a record; None for a tombstone; :class:`BadRecord` when it is not one.
    A record without ``cdc-event-id`` is read as Debezium's (:func:`_debezium_record`)."""
    if value is None:
        return None
    found = dict(headers)
    if EVENT_ID_HEADER not in found:
        return _debezium_record(topic, partition, offset, key, value)
    if value.startswith(b'{"schema":'):  # schemas = true: JsonConverter's layout
        value, key = _payload(value), None if key is None else _payload(key)
    try:
        envelope = _decode_envelope(value)
    except msgspec.ValidationError as e:
        if str(e).startswith("Expected `object`, got"):  # the value itself
            raise BadRecord("value is not a JSON object") from None
        raise BadRecord(f"not a change event: {e}") from None
    except msgspec.DecodeError as e:
        raise BadRecord(f"value is not JSON: {e}") from None
    op = envelope.op
    if op not in _OPS:
        raise BadRecord(f"not a change event: op is {op!r}, expected one of c, u, d, r, t")
    source = envelope.source
    if source is None or type(source.table) is not str:
        raise BadRecord("not a change event: source.table is missing")
    before, after = envelope.before, envelope.after
    if before is not None and type(before) is not dict:
        raise BadRecord("before is not a JSON object")
    if after is not None and type(after) is not dict:
        raise BadRecord("after is not a JSON object")
    if not after and op in ("c", "u", "r"):
        raise BadRecord(f"op {op!r} without an after image")
    schema = source.schema or "public"
    parsed_key = None
    if key is not None:
        try:
            parsed_key = orjson.loads(key)
        except orjson.JSONDecodeError as e:
            raise BadRecord(f"key is not JSON: {e}") from None
        if parsed_key is not None and type(parsed_key) is not dict:
            raise BadRecord("key is not a JSON object")
        if parsed_key and (field := found.get(KEY_FIELD_HEADER)) is not None:
            # A routed topic's key names the source table (cdc.transforms.routes): the
            # envelope names it too, and the field is no column of the table's key.
            parsed_key.pop(field.decode(errors="replace"), None)
    raw_types = found.get(TYPES_HEADER)
    raw_unavailable = found.get(UNAVAILABLE_HEADER)
    unavailable = (
        _unavailable(raw_unavailable)
        if raw_unavailable is not None or raw_types is not None or not after
        else _placeholders(after)
    )
    if (raw_values := found.get(VALUES_HEADER)) is not None and raw_types is not None:
        codec = _row_decoder(raw_types, raw_values)
        if codec is not None:
            try:
                # placeholders take their column type's shape (cdc.values.placeholder); an
                # oversized record's old row holds them too, in the same columns
                before, after = codec(before, unavailable), codec(after, unavailable)
                parsed_key = codec(parsed_key)
            except (ValueError, TypeError, binascii.Error) as e:
                raise BadRecord(
                    f"a value is not in its {raw_values.decode()!r} encoding: {e}"
                ) from None
    # Positional: faster than a dozen keyword arguments, for every record.
    return SinkEvent(
        topic,
        partition,
        offset,
        schema if type(schema) is str else str(schema),
        source.table,
        op,
        parsed_key,
        before,
        after,
        _version(found.get(EVENT_ID_HEADER)),
        unavailable,
        _types(raw_types),
        found.get(IDENTITY_HEADER) == b"full",
        None if parsed_key is None else orjson.dumps(parsed_key, option=orjson.OPT_SORT_KEYS),
        _NO_MISSING if (raw := found.get(MISSING_HEADER)) is None else _missing(raw),
        ts if type(ts := source.ts_ms) is int else 0,
    )


class _Source(msgspec.Struct):
    table: Any = None
    schema: Any = None
    ts_ms: Any = None


class _Envelope(msgspec.Struct):
    """What a sink reads of Debezium's envelope. Decoded by msgspec, which skips the rest
    (``source``'s other fields, ``transaction``, ``ts_ms``) without making objects of it, so
    an event decodes and frees faster than with ``orjson.loads`` of the whole envelope. Types
    are checked by :func:`parse_record`, which names what is wrong."""

    op: Any = None
    source: _Source | None = None
    before: Any = None
    after: Any = None


_decode_envelope = msgspec.json.Decoder(_Envelope).decode


class _Wrapped(msgspec.Struct):
    payload: msgspec.Raw = msgspec.Raw()


_decode_wrapped = msgspec.json.Decoder(_Wrapped).decode


def _payload(data: bytes) -> bytes:
    """The ``payload`` of JsonConverter's ``{"schema", "payload"}``; the data itself when it is
    not so wrapped (a key of a table without one, say)."""
    if not data.startswith(b'{"schema":'):
        return data
    try:
        raw = _decode_wrapped(data).payload
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise BadRecord(f"not JSON with a schema: {e}") from None
    return bytes(raw) if raw else b"null"


# Records of Debezium's PostgreSQL connector (no cdc-event-id header).


class _Transaction(msgspec.Struct):
    total_order: Any = None


class _DebeziumSource(msgspec.Struct):
    table: Any = None
    schema: Any = None
    ts_ms: Any = None
    lsn: Any = None


_NO_RAW = msgspec.Raw()
_NULL = b"null"


class _DebeziumEnvelope(msgspec.Struct):
    """Debezium's envelope, or JsonConverter's ``{"schema", "payload"}`` around it."""

    op: Any = None
    source: _DebeziumSource | None = None
    before: Any = None
    after: Any = None
    transaction: _Transaction | None = None
    schema: msgspec.Raw = _NO_RAW
    payload: msgspec.Raw = _NO_RAW


_decode_debezium = msgspec.json.Decoder(_DebeziumEnvelope).decode


@dataclass(frozen=True, slots=True)
class _Columns:
    """What a JsonConverter schema says of a struct's columns (:func:`_schema_columns`)."""

    decoders: tuple[tuple[str, Decoder], ...]
    types: Mapping[str, str]
    undecoded: frozenset[str]
    """Columns whose schema leaves their PostgreSQL type open (a plain ``string``)."""


def _debezium_record(  # noqa: PLR0912  (one piece, as parse_record)
    topic: str, partition: int, offset: int, key: bytes | None, value: bytes
) -> SinkEvent | None:
    """A record without ``cdc-event-id``: Debezium's envelope, with or without JsonConverter's
    schema, its values decoded to cdc's form where the schema says how (else by the target's
    column types: :attr:`SinkEvent.undecoded`).

    Its version is ``(source.lsn, transaction.total_order)``: the LSN of the change itself
    (Debezium does not say its transaction's commit LSN). That orders each key's changes as
    committed: a transaction changing a row holds the row's lock until it commits, so a later
    transaction's change to it is written to the WAL after that commit, at a higher LSN.
    Without transaction metadata (Debezium's default) the index is the record's Kafka position,
    which tells apart the records that share an LSN (a snapshot's reads, the delete and create
    of a key change: never two changes of one key). What it cannot order: a snapshot's reads
    all carry the snapshot's LSN, so a change made before that LSN by a transaction that
    commits after the snapshot began ranks below the read of its row, and is not applied."""
    envelope, columns = _debezium_envelope(value)
    op = envelope.op
    if op not in _OPS:
        raise BadRecord(f"not a change event: op is {op!r}, expected one of c, u, d, r, t")
    source = envelope.source
    if source is None or type(source.table) is not str:
        raise BadRecord("not a change event: source.table is missing")
    lsn = source.lsn
    if type(lsn) is not int:
        raise BadRecord(
            f"no {EVENT_ID_HEADER} header, and no source.lsn: neither cdc's event nor one of"
            " Debezium's PostgreSQL connector"
        )
    before, after = envelope.before, envelope.after
    if before is not None and type(before) is not dict:
        raise BadRecord("before is not a JSON object")
    if after is not None and type(after) is not dict:
        raise BadRecord("after is not a JSON object")
    if not after and op in ("c", "u", "r"):
        raise BadRecord(f"op {op!r} without an after image")
    parsed_key, key_columns = _debezium_key(key)
    if columns is not None:
        if after:
            decode_into(after, columns.decoders)
        if before:
            decode_into(before, columns.decoders)
        types, undecoded = columns.types, columns.undecoded
    else:
        types = _NO_TYPES
        undecoded = frozenset(after or before or ())
    if parsed_key:
        if key_columns is not None:
            decode_into(parsed_key, key_columns.decoders)
            undecoded |= key_columns.undecoded
        else:
            undecoded |= parsed_key.keys()
    order = None if envelope.transaction is None else envelope.transaction.total_order
    # The Kafka position, folded into the target's int column: distinct for the records that
    # share an LSN, which are consecutive in their partitions.
    index = order if type(order) is int else (offset + partition * 0x9E3779B1) & 0x7FFFFFFF
    schema = source.schema or "public"
    return SinkEvent(
        topic,
        partition,
        offset,
        schema if type(schema) is str else str(schema),
        source.table,
        op,
        parsed_key,
        before,
        after,
        (lsn, index),
        _placeholders(after) if after else _NONE,
        types,
        False,
        None if parsed_key is None else orjson.dumps(parsed_key, option=orjson.OPT_SORT_KEYS),
        _NO_MISSING,
        ts if type(ts := source.ts_ms) is int else 0,
        undecoded,
    )


def _debezium_envelope(value: bytes) -> tuple[_DebeziumEnvelope, _Columns | None]:
    """The envelope, out of JsonConverter's wrapper, and its schema's columns."""
    try:
        envelope = _decode_debezium(value)
        if not envelope.payload:
            return envelope, None
        raw_schema = bytes(envelope.schema)
        envelope = _decode_debezium(envelope.payload)
    except msgspec.ValidationError as e:
        if str(e).startswith("Expected `object`, got"):
            raise BadRecord("value is not a JSON object") from None
        raise BadRecord(f"not a change event: {e}") from None
    except msgspec.DecodeError as e:
        raise BadRecord(f"value is not JSON: {e}") from None
    return envelope, None if raw_schema in (b"", _NULL) else _schema_columns(raw_schema)


def _debezium_key(key: bytes | None) -> tuple[dict[str, Any] | None, _Columns | None]:
    """A Debezium record's key, out of JsonConverter's wrapper, and its schema's columns."""
    if key is None:
        return None, None
    try:
        parsed = orjson.loads(key)
    except orjson.JSONDecodeError as e:
        raise BadRecord(f"key is not JSON: {e}") from None
    columns = None
    if type(parsed) is dict and parsed.keys() == {"schema", "payload"}:
        schema = parsed["schema"]
        parsed = parsed["payload"]
        if type(schema) is dict:
            columns = _struct_columns(schema)
    if parsed is not None and type(parsed) is not dict:
        raise BadRecord("key is not a JSON object")
    return parsed, columns


@functools.lru_cache(maxsize=256)
def _schema_columns(raw: bytes) -> _Columns | None:
    """The columns of an envelope's schema (its ``after`` struct's, which ``before`` shares)."""
    try:
        schema = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRecord("the value's schema is not JSON") from None
    if type(schema) is not dict:
        return None
    for field in schema.get("fields") or ():
        if type(field) is dict and field.get("field") in ("after", "before"):
            return _struct_columns(field)
    return None


def _struct_columns(schema: dict[str, Any]) -> _Columns:
    decoders: list[tuple[str, Decoder]] = []
    types: dict[str, str] = {}
    undecoded: set[str] = set()
    for field in schema.get("fields") or ():
        if type(field) is not dict or type(name := field.get("field")) is not str:
            raise BadRecord("bad schema: a field without a name")
        decoder, pg_type = schema_decoder(field)
        if decoder is not None:
            decoders.append((name, decoder))
        if pg_type:
            types[name] = pg_type
        else:
            undecoded.add(name)
    return _Columns(tuple(decoders), MappingProxyType(types), frozenset(undecoded))


def key_id(event: SinkEvent) -> bytes:
    """What tells ``event``'s key from others: its JSON with the names sorted."""
    if event.key_id is not None:
        return event.key_id
    return orjson.dumps(event.key, option=orjson.OPT_SORT_KEYS)


def _version(raw: bytes | None) -> Version:
    if raw is None:
        raise BadRecord(f"no {EVENT_ID_HEADER} header")
    commit, _, index = raw.partition(b":")
    try:
        return int(commit), int(index)  # int() reads ASCII digits from bytes
    except ValueError:
        raise BadRecord(f"bad {EVENT_ID_HEADER} header {raw[:40]!r}") from None


_NONE: frozenset[str] = frozenset()
_NO_TYPES: Mapping[str, str] = MappingProxyType({})


# Headers repeat from record to record (a table has few column sets), so each distinct one is
# parsed once; a bad one raises every time (exceptions are not cached).
@functools.lru_cache(maxsize=1024)
def _unavailable(raw: bytes | None) -> frozenset[str]:
    if raw is None:
        return _NONE
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRecord(f"bad {UNAVAILABLE_HEADER} header") from None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadRecord(f"bad {UNAVAILABLE_HEADER} header")
    return frozenset(value)


def _placeholders(after: dict[str, Any]) -> frozenset[str]:
    """The columns of ``after`` that hold the placeholder, for an event that is not cdc's (cdc's
    always say their types, and their unavailable columns by name, so that a real value is never
    taken for the placeholder): another producer, Debezium's own connector for one, marks them
    by the placeholder alone."""
    if UNAVAILABLE not in after.values():
        return _NONE
    return frozenset(c for c, v in after.items() if v == UNAVAILABLE)


@functools.lru_cache(maxsize=1024)
def _row_decoder(raw_types: bytes, raw_values: bytes) -> RowCodec | None:
    """What turns a record's values back into cdc's internal form (:mod:`cdc.values`)."""
    try:
        mode = mode_from_header(raw_values)
        return decoder(_types(raw_types), mode)
    except ValueError as e:
        raise BadRecord(f"bad {VALUES_HEADER} header {raw_values[:80]!r}: {e}") from None


@functools.lru_cache(maxsize=1024)
def _types(raw: bytes | None) -> Mapping[str, str]:
    if raw is None:
        return _NO_TYPES
    value = _object(raw, TYPES_HEADER)
    return MappingProxyType({str(k): str(v) for k, v in value.items()})


@functools.lru_cache(maxsize=1024)
def _missing(raw: bytes) -> Mapping[str, str]:
    value = _object(raw, MISSING_HEADER)
    if not all(isinstance(v, str) for v in value.values()):
        raise BadRecord(f"bad {MISSING_HEADER} header: its values must be texts")
    return MappingProxyType(value)


def _object(raw: bytes, header: str) -> dict[str, Any]:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRecord(f"bad {header} header") from None
    if not isinstance(value, dict):
        raise BadRecord(f"bad {header} header")
    return value


# Batching helpers shared by the sinks.


def collapse(events: list[SinkEvent]) -> tuple[list[SinkEvent], list[SinkEvent]]:
    """The newest event per key (upserts and deletes), with unchanged-TOAST values filled from
    older events of the same batch where they have them; a new row's that no event has are null
    (see :func:`_fill_unavailable`)."""
    newest: dict[bytes, SinkEvent] = {}
    for event in sorted(events, key=lambda e: e.version):
        k = key_id(event)
        newest[k] = _fill_unavailable(event, newest.get(k))
    upserts = [e for e in newest.values() if e.op in ("c", "u", "r")]
    deletes = [e for e in newest.values() if e.op == "d"]
    return upserts, deletes


def _fill_unavailable(event: SinkEvent, previous: SinkEvent | None) -> SinkEvent:
    """``event`` with the values of its unavailable columns that ``previous`` (the batch's last
    event of the same key) has. An update keeps the stored value of the others. A create or read
    is a new row at its key (what a target holds there belonged to a row deleted before it): the
    others are null, never the placeholder nor a deleted row's value, and a warning says so. Only
    a key change whose row moved on before cdc could read it back makes such an event, and the
    stream then deletes the row or brings the value."""
    missing = event.unavailable
    if not missing:
        return event
    after = dict(event.after or {})
    if previous is not None and previous.after is not None:
        known = {c for c in missing if c in previous.after and c not in previous.unavailable}
        after.update((c, previous.after[c]) for c in known)
        missing = missing - known
    if missing and event.op != "u":
        log.warning(
            "%s.%s: the %r event %d:%d (key %s) lacks the unchanged TOASTed value of %s: stored"
            " as null",
            event.schema,
            event.table,
            event.op,
            *event.version,
            key_id(event).decode(),
            ", ".join(sorted(missing)),
        )
        after.update(dict.fromkeys(missing))
        missing = _NONE
    if missing == event.unavailable:
        return event
    return dataclasses.replace(event, after=after, unavailable=missing)


def incomplete(event: SinkEvent) -> str | None:
    """Why ``event`` cannot be stored in a table without a key, or None. Such a table's rows are
    told apart by their content: a row inserted without a value its producer did not send (an
    unchanged TOASTed value) would be a row the source never had, which its later delete would
    not find. Rejected instead, the row is missing (the reason says so), and so is it once the
    source deletes it. cdc itself never sends such an event: a keyless table it can follow has
    REPLICA IDENTITY FULL, whose old row holds the value."""
    if not event.unavailable or event.op not in ("c", "r"):
        return None
    return (
        f"table {event.schema}.{event.table} has no primary key, and this {event.op!r} event"
        f" lacks the value of {', '.join(sorted(event.unavailable))} (an unchanged TOASTed value"
        " its producer did not send): a row without it would be a row the source never had"
    )


def by_table(events: Iterable[SinkEvent]) -> dict[tuple[str, str], list[SinkEvent]]:
    """Events grouped by their source table, ``(schema, table)``, in the batch's order."""
    grouped: dict[tuple[str, str], list[SinkEvent]] = {}
    for e in events:
        grouped.setdefault((e.schema, e.table), []).append(e)
    return grouped


def by_shape(
    events: Iterable[SinkEvent],
) -> list[tuple[tuple[str, ...], frozenset[str], list[SinkEvent]]]:
    """Events grouped by the columns they carry, so each group is one set-based statement."""
    groups: dict[tuple[tuple[str, ...], frozenset[str]], list[SinkEvent]] = {}
    for e in events:
        groups.setdefault((tuple(e.after or ()), e.unavailable), []).append(e)
    return [(cols, unavailable, group) for (cols, unavailable), group in groups.items()]


def row_hash(row: dict[str, Any]) -> str:
    """A digest of a row's content, the same for equal rows whatever their column order."""
    return hashlib.md5(
        orjson.dumps(row, option=orjson.OPT_SORT_KEYS), usedforsecurity=False
    ).hexdigest()
