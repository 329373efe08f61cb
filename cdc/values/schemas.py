"""Kafka Connect schemas (``schemas = true``): the ``schema`` half of JsonConverter's
``{"schema": ..., "payload": ...}`` layout, for a table's key and for its change events.

:func:`schemas` gives, per column set (the ``cdc-types`` pairs of a table) and values mode, the
key's schema and the whole envelope's, as the JSON bytes JsonConverter writes: in ``debezium``
mode exactly what Debezium's PostgreSQL connector (3.6) publishes, names, versions, parameters
and docs included; in ``exact`` mode the same layout describing the exact values (numbers where
they are numbers, strings named with Debezium's ISO logical types where they are text).
:func:`wrap` puts a schema and an encoded payload together without parsing either.

JsonConverter writes a schema's keys in the order ``type``, ``fields``/``items``, ``optional``,
``name``, ``version``, ``doc``, ``parameters``, ``default``, then ``field`` for a struct's
field; parameters in the order they were set. The dicts below are built in that order (orjson
keeps it), so the bytes match Debezium's, not only the JSON.

Nothing here does I/O. Types only ``format_type`` names: a domain or an enum is a string unless
the caller says what it is (``domains``, ``enums``), since a name alone does not tell.
"""

from __future__ import annotations

__all__ = [
    "Schemas",
    "column_schema",
    "message_schemas",
    "schemas",
    "transaction_schemas",
    "wrap",
]

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import orjson

from cdc.values import ValueMode as Mode
from cdc.values.types import base_type

Types = tuple[tuple[str, str], ...]
Json = dict[str, Any]


class Schemas(NamedTuple):
    """The JSON of a table's schemas, ready for :func:`wrap`."""

    key: bytes | None
    """``{prefix}.Key``: a struct of the key columns; None when the table has no key (its
    records have a null key, as Debezium's)."""
    value: bytes
    """``{prefix}.Envelope``: before, after (``{prefix}.Value``), source, transaction, op and
    the times."""


def wrap(schema_json: bytes, payload_json: bytes) -> bytes:
    """JsonConverter's envelope of an encoded payload: ``{"schema":...,"payload":...}``."""
    return b"".join((b'{"schema":', schema_json, b',"payload":', payload_json, b"}"))


def _schema(
    type_: str,
    optional: bool,
    name: str | None = None,
    version: int | None = None,
    doc: str | None = None,
    parameters: dict[str, str] | None = None,
    default: Any = None,
    fields: list[Json] | None = None,
    items: Json | None = None,
) -> Json:
    out: Json = {"type": type_}
    if fields is not None:
        out["fields"] = fields
    if items is not None:
        out["items"] = items
    out["optional"] = optional
    if name is not None:
        out["name"] = name
    if version is not None:
        out["version"] = version
    if doc is not None:
        out["doc"] = doc
    if parameters is not None:
        out["parameters"] = parameters
    if default is not None:
        out["default"] = default
    return out


def _field(name: str, schema: Json) -> Json:
    return {**schema, "field": name}


# Each builder: (modifiers, mode, optional) -> schema. Debezium's names for the types it maps
# to a logical type; text-like types are plain strings in every mode.
Builder = Callable[[tuple[int, ...], Mode, bool], Json]


def _plain(type_: str) -> Builder:
    return lambda _m, _mode, optional: _schema(type_, optional)


def _named(type_: str, name: str) -> Builder:
    return lambda _m, _mode, optional: _schema(type_, optional, name, 1)


def _numeric(modifiers: tuple[int, ...], mode: Mode, optional: bool) -> Json:
    if mode.values == "exact" or mode.decimal == "string":
        return _schema("string", optional)
    if mode.decimal == "double":
        return _schema("double", optional)
    if not modifiers:
        return _schema(
            "struct",
            optional,
            "io.debezium.data.VariableScaleDecimal",
            1,
            "Variable scaled decimal",
            fields=[
                _field("scale", _schema("int32", False)),
                _field("value", _schema("bytes", False)),
            ],
        )
    precision, scale = modifiers[0], modifiers[1] if len(modifiers) > 1 else 0
    return _schema(
        "bytes",
        optional,
        "org.apache.kafka.connect.data.Decimal",
        1,
        parameters={"scale": str(scale), "connect.decimal.precision": str(precision)},
    )


def _money(_m: tuple[int, ...], mode: Mode, optional: bool) -> Json:
    if mode.values == "exact" or mode.decimal == "string":
        return _schema("string", optional)
    if mode.decimal == "double":
        return _schema("double", optional)
    # Debezium's money.fraction.digits (2 by default) is the scale.
    return _schema(
        "bytes", optional, "org.apache.kafka.connect.data.Decimal", 1, parameters={"scale": "2"}
    )


def _bytea(_m: tuple[int, ...], mode: Mode, optional: bool) -> Json:
    # JsonConverter writes bytes as standard base64: exact's encoding is already that.
    if mode.values == "exact" or mode.binary == "bytes":
        return _schema("bytes", optional)
    return _schema("string", optional)


def _precision(modifiers: tuple[int, ...]) -> int:
    return modifiers[0] if modifiers else 6


def _date(_m: tuple[int, ...], mode: Mode, optional: bool) -> Json:
    if mode.values == "exact" or mode.time == "isostring":
        return _schema("string", optional, "io.debezium.time.IsoDate", 1)
    if mode.time == "connect":
        return _schema("int32", optional, "org.apache.kafka.connect.data.Date", 1)
    return _schema("int32", optional, "io.debezium.time.Date", 1)


def _time(modifiers: tuple[int, ...], mode: Mode, optional: bool) -> Json:
    if mode.values == "exact" or mode.time == "isostring":
        return _schema("string", optional, "io.debezium.time.IsoTime", 1)
    if mode.time == "connect":
        return _schema("int32", optional, "org.apache.kafka.connect.data.Time", 1)
    if mode.time == "adaptive" and _precision(modifiers) <= 3:
        return _schema("int32", optional, "io.debezium.time.Time", 1)
    return _schema("int64", optional, "io.debezium.time.MicroTime", 1)


def _timestamp(modifiers: tuple[int, ...], mode: Mode, optional: bool) -> Json:
    if mode.values == "exact" or mode.time == "isostring":
        return _schema("string", optional, "io.debezium.time.IsoTimestamp", 1)
    if mode.time == "connect":
        return _schema("int64", optional, "org.apache.kafka.connect.data.Timestamp", 1)
    if _precision(modifiers) <= 3:  # adaptive and adaptive_time_microseconds alike
        return _schema("int64", optional, "io.debezium.time.Timestamp", 1)
    return _schema("int64", optional, "io.debezium.time.MicroTimestamp", 1)


def _interval(_m: tuple[int, ...], mode: Mode, optional: bool) -> Json:
    if mode.values == "exact" or mode.interval == "string":
        return _schema("string", optional, "io.debezium.time.Interval", 1)
    return _schema("int64", optional, "io.debezium.time.MicroDuration", 1)


def _point(_m: tuple[int, ...], mode: Mode, optional: bool) -> Json:
    if mode.values == "exact":
        return _schema("string", optional)  # its text output, "(1.5,2.5)"
    return _schema(
        "struct",
        optional,
        "io.debezium.data.geometry.Point",
        1,
        "Geometry (POINT)",
        fields=[
            _field("x", _schema("double", False)),
            _field("y", _schema("double", False)),
            _field("wkb", _schema("bytes", True)),
            _field("srid", _schema("int32", True)),
        ],
    )


_STRING = _plain("string")

_TYPES: dict[str, Builder] = {
    "smallint": _plain("int16"),
    "integer": _plain("int32"),
    "bigint": _plain("int64"),
    "oid": _plain("int64"),
    # Floats: JsonConverter itself writes NaN and the infinities as the strings "NaN",
    # "Infinity", "-Infinity" (Jackson's default), which is what cdc's payload holds.
    "real": _plain("float"),
    "double precision": _plain("double"),
    "numeric": _numeric,
    "money": _money,
    "boolean": _plain("boolean"),
    "bytea": _bytea,
    "json": _named("string", "io.debezium.data.Json"),
    "jsonb": _named("string", "io.debezium.data.Json"),
    "xml": _named("string", "io.debezium.data.Xml"),
    "uuid": _named("string", "io.debezium.data.Uuid"),
    "tsvector": _named("string", "io.debezium.data.Tsvector"),
    "ltree": _named("string", "io.debezium.data.Ltree"),
    "date": _date,
    "time without time zone": _time,
    "timestamp without time zone": _timestamp,
    "time with time zone": _named("string", "io.debezium.time.ZonedTime"),
    "timestamp with time zone": _named("string", "io.debezium.time.ZonedTimestamp"),
    "interval": _interval,
    "point": _point,
}
_STRING_TYPES = frozenset(
    (
        "text",
        "character varying",
        "character",
        "bpchar",
        '"char"',
        "name",
        "citext",
        "inet",
        "cidr",
        "macaddr",
        "macaddr8",
        "int4range",
        "int8range",
        "numrange",
        "tsrange",
        "tstzrange",
        "daterange",
    )
)
_LITERAL_ARRAYS = frozenset({"box"})
"""Element types whose arrays the encoders keep as their literal (a string): box's literal
separates elements with ``;``. The arrays of every other type are JSON arrays of the elements
as the element type's column would carry them."""


def _builder(name: str) -> Builder | None:
    if name in _STRING_TYPES:
        return _STRING
    if name.startswith("interval"):  # interval year to month, interval second(3)
        return _interval
    return _TYPES.get(name)


def column_schema(
    type_name: str,
    mode: Mode,
    optional: bool,
    domains: tuple[tuple[str, str], ...] = (),
    enums: tuple[tuple[str, str], ...] = (),
) -> Json:
    """The schema of one column of ``format_type`` name ``type_name`` in ``mode``.

    Types this module does not know are strings (their text), as cdc's encoders write them.
    ``domains`` (a domain's name -> its base type's ``format_type`` name) and ``enums`` (an
    enum's name -> its labels joined by ``,``) give, in ``debezium`` mode, a domain the schema
    of its base type and an enum ``io.debezium.data.Enum`` with its labels, as Debezium's own
    records have them: pass them only for payloads that encode domains that way (cdc's
    encoders write a domain's text, which JsonConverter would read as 0 under int32)."""
    name, modifiers, array = base_type(type_name)
    if mode.values != "exact" and name in (base := dict(domains)):
        # exact writes a domain's value as its text; Debezium as its base type's
        return column_schema(base[name] + ("[]" if array else ""), mode, optional, (), enums)
    labels = dict(enums).get(name)
    if array:
        if name in _LITERAL_ARRAYS:
            return _schema("string", optional)
        # Debezium makes an enum array's elements required (and any other array's optional)
        required = labels is not None and mode.values != "exact"
        element = column_schema(name + _modifiers(modifiers), mode, not required, (), enums)
        return _schema("array", optional, items=element)
    if labels is not None:
        if mode.values == "exact":
            return _schema("string", optional)
        return _schema(
            "string", optional, "io.debezium.data.Enum", 1, parameters={"allowed": labels}
        )
    builder = _builder(name)
    if builder is None:
        return _schema("string", optional)
    return builder(modifiers, mode, optional)


def _modifiers(modifiers: tuple[int, ...]) -> str:
    return f"({','.join(map(str, modifiers))})" if modifiers else ""


def _source() -> Json:
    def required(name: str, type_: str) -> Json:
        return _field(name, _schema(type_, False))

    def optional(name: str, type_: str) -> Json:
        return _field(name, _schema(type_, True))

    snapshot = _schema(
        "string",
        True,
        "io.debezium.data.Enum",
        1,
        parameters={
            "allowed": "true,first,first_in_data_collection,last_in_data_collection,last,false,"
            "incremental"
        },
        default="false",
    )
    return _schema(
        "struct",
        False,
        "io.debezium.connector.postgresql.Source",
        1,
        fields=[
            required("version", "string"),
            required("connector", "string"),
            required("name", "string"),
            required("ts_ms", "int64"),
            _field("snapshot", snapshot),
            required("db", "string"),
            optional("sequence", "string"),
            optional("ts_us", "int64"),
            optional("ts_ns", "int64"),
            required("schema", "string"),
            required("table", "string"),
            optional("txId", "int64"),
            optional("lsn", "int64"),
            optional("xmin", "int64"),
            optional("origin", "string"),
            optional("origin_lsn", "int64"),
        ],
    )


_SOURCE = _source()
_TRANSACTION = _schema(
    "struct",
    True,
    "event.block",
    1,
    fields=[
        _field("id", _schema("string", False)),
        _field("total_order", _schema("int64", False)),
        _field("data_collection_order", _schema("int64", False)),
    ],
)


@functools.lru_cache(maxsize=1024)
def _build(
    prefix: str,
    types: Types,
    key: tuple[str, ...],
    mode: Mode,
    nullable: frozenset[str] | None,
    domains: tuple[tuple[str, str], ...],
    enums: tuple[tuple[str, str], ...],
    whole_row_key: bool,
) -> Schemas:
    required = frozenset(() if whole_row_key else key)

    def column(name: str, type_name: str) -> Json:
        optional = name not in required if nullable is None else name in nullable
        return _field(name, column_schema(type_name, mode, optional, domains, enums))

    columns = [column(c, t) for c, t in types]
    key_schema = None
    if key:
        by_name = {f["field"]: f for f in columns}
        key_fields = [by_name.get(k) or _field(k, _schema("string", False)) for k in key]
        key_schema = orjson.dumps(_schema("struct", False, prefix + ".Key", fields=key_fields))
    row = _schema("struct", True, prefix + ".Value", fields=columns)
    envelope = _schema(
        "struct",
        False,
        prefix + ".Envelope",
        2,
        fields=[
            _field("before", row),
            _field("after", row),
            _field("source", _SOURCE),
            _field("transaction", _TRANSACTION),
            _field("op", _schema("string", False)),
            _field("ts_ms", _schema("int64", True)),
            _field("ts_us", _schema("int64", True)),
            _field("ts_ns", _schema("int64", True)),
        ],
    )
    return Schemas(key_schema, orjson.dumps(envelope))


_BY_ID: dict[int, tuple[Any, ...]] = {}
"""Per ``types`` tuple (by identity: a decoder hands every change of a table the same one), the
other arguments and the schemas; the entry holds the tuple, so its id is not reused while the
entry lives. Compared argument by argument, identity first: building and hashing a key of
them cost more than the lookup."""


def schemas(
    prefix: str,
    types: Types,
    key: tuple[str, ...],
    mode: Mode,
    nullable: frozenset[str] | None = None,
    domains: tuple[tuple[str, str], ...] = (),
    enums: tuple[tuple[str, str], ...] = (),
    whole_row_key: bool = False,
) -> Schemas:
    """The key's and the envelope's schema of a table's change events.

    ``prefix`` names them, as Debezium does: ``{topic_prefix}.{schema}.{table}``, giving
    ``.Key``, ``.Value`` and ``.Envelope``. ``types`` are the table's ``(column, format_type
    name)`` pairs in column order, ``key`` the key's fields (empty: no key schema; a field
    that is no column, such as a route's table field, is a required string). A column is
    optional when it is in ``nullable``; when that is None, every column but the key's (a
    primary key's columns are NOT NULL), or every column when the key is the whole row
    (``whole_row_key``: a table without a primary key, REPLICA IDENTITY FULL), since
    JsonConverter refuses a null in a required field.
    A dict lookup when called again with the same ``types`` tuple (once per record)."""
    cached = _BY_ID.get(id(types))
    if (
        cached is not None
        and cached[0] is types
        and (cached[1] is prefix or cached[1] == prefix)
        and (cached[2] is key or cached[2] == key)
        and cached[3] is mode
        and cached[4] is nullable
        and cached[5] is domains
        and cached[6] is enums
        and cached[7] is whole_row_key
    ):
        found: Schemas = cached[8]
        return found
    if len(_BY_ID) >= 4096:
        _BY_ID.clear()
    found = _build(prefix, types, key, mode, nullable, domains, enums, whole_row_key)
    _BY_ID[id(types)] = (types, prefix, key, mode, nullable, domains, enums, whole_row_key, found)
    return found


@functools.cache
def message_schemas(mode: Mode) -> Schemas:
    """The key's and the value's schema of a logical decoding message's record, as Debezium's
    (``io.debezium.connector.postgresql.MessageKey`` / ``MessageValue``): the content is bytes
    (base64 on the wire), or a string under Debezium's other ``binary_handling_mode``."""
    binary = mode.values == "exact" or mode.binary == "bytes"
    content = _schema("bytes" if binary else "string", True)
    message = _schema(
        "struct",
        False,
        "io.debezium.connector.postgresql.Message",
        1,
        fields=[_field("prefix", _schema("string", True)), _field("content", content)],
    )
    key = _schema(
        "struct",
        False,
        "io.debezium.connector.postgresql.MessageKey",
        1,
        fields=[_field("prefix", _schema("string", True))],
    )
    value = _schema(
        "struct",
        False,
        "io.debezium.connector.postgresql.MessageValue",
        1,
        fields=[
            _field("op", _schema("string", False)),
            _field("ts_ms", _schema("int64", True)),
            _field("source", _SOURCE),
            _field("transaction", _TRANSACTION),
            _field("message", message),
        ],
    )
    return Schemas(orjson.dumps(key), orjson.dumps(value))


@functools.cache
def transaction_schemas() -> Schemas:
    """The key's and the value's schema of a transaction topic's BEGIN and END records, as
    Debezium's (``io.debezium.connector.common.TransactionMetadataKey`` / ``...Value``)."""
    collection = _schema(
        "struct",
        True,
        "event.collection",
        1,
        fields=[
            _field("data_collection", _schema("string", False)),
            _field("event_count", _schema("int64", False)),
        ],
    )
    key = _schema(
        "struct",
        False,
        "io.debezium.connector.common.TransactionMetadataKey",
        1,
        fields=[_field("id", _schema("string", False))],
    )
    value = _schema(
        "struct",
        False,
        "io.debezium.connector.common.TransactionMetadataValue",
        1,
        fields=[
            _field("status", _schema("string", False)),
            _field("id", _schema("string", False)),
            _field("event_count", _schema("int64", True)),
            _field("data_collections", _schema("array", True, items=collection)),
            _field("ts_ms", _schema("int64", False)),
        ],
    )
    return Schemas(orjson.dumps(key), orjson.dumps(value))
