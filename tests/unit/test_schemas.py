"""Kafka Connect schemas (cdc/values/schemas.py) against what Debezium 3.6.1 published for a table
of every type (tests/fixtures/debezium/debezium-defaults-schemas.jsonl, its defaults and
JsonConverter with schemas), and the exact mode's schemas against JsonConverter's layout."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest

from cdc.events import Change, SourceInfo, encode
from cdc.values import EXACT
from cdc.values import ValueMode as Mode
from cdc.values import schemas as s

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "debezium"


DEBEZIUM = Mode("debezium")


def _records(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (FIXTURES / name).read_text().splitlines()]


CAPTURED = _records("debezium-defaults-schemas.jsonl")
# cdc-types of the same table (the capture's cdc side), in the table's column order (as the
# Debezium schema lists them: the fixture's headers are sorted by name).
_TYPES = _records("cdc-pgoutput.jsonl")[0]["headers"]["cdc-types"]
ORDER = [f["field"] for f in CAPTURED[0]["value"]["schema"]["fields"][0]["fields"]]
TYPES = tuple((c, _TYPES[c]) for c in ORDER)
PREFIX = CAPTURED[0]["topic"]
DOMAINS = (("posint", "integer"),)
ENUMS = (("mood", "sad,happy"),)


def _debezium(mode: Mode = DEBEZIUM) -> s.Schemas:
    return s.schemas(PREFIX, TYPES, ("id",), mode, None, DOMAINS, ENUMS)


def test_debezium_defaults_equal_the_captured_schemas_field_for_field() -> None:
    got = _debezium()
    assert got.key is not None
    for record in CAPTURED:
        assert orjson.loads(got.key) == record["key"]["schema"]
        assert orjson.loads(got.value) == record["value"]["schema"]


def test_every_column_schema_equals_debeziums() -> None:
    """The same comparison column by column, so a failure names the column."""
    captured = {f["field"]: f for f in CAPTURED[0]["value"]["schema"]["fields"][0]["fields"]}
    got = orjson.loads(_debezium().value)["fields"][0]["fields"]
    assert [f["field"] for f in got] == ORDER
    for field in got:
        assert field == captured[field["field"]], field["field"]


def test_keys_are_in_jsonconverters_order() -> None:
    """JsonConverter writes type, fields/items, optional, name, version, doc, parameters,
    default, field (Kafka's JsonConverter.asJsonSchema); the fixture's keys were sorted."""
    value = orjson.loads(_debezium().value)
    fields = {f["field"]: f for f in value["fields"][0]["fields"]}
    assert list(value) == ["type", "fields", "optional", "name", "version"]
    assert list(fields["n102"]) == ["type", "optional", "name", "version", "parameters", "field"]
    assert list(fields["n102"]["parameters"]) == ["scale", "connect.decimal.precision"]
    assert list(fields["n"]) == ["type", "fields", "optional", "name", "version", "doc", "field"]
    assert list(fields["ai"]) == ["type", "items", "optional", "field"]
    snapshot = value["fields"][2]["fields"][4]
    assert list(snapshot) == [
        *("type", "optional", "name", "version", "parameters", "default", "field"),
    ]


def test_wrap_is_jsonconverters_envelope_around_the_payload_bytes() -> None:
    payload = b'{"id":1,"f":"NaN"}'
    wrapped = s.wrap(b'{"type":"int32","optional":false}', payload)
    assert wrapped == b'{"schema":{"type":"int32","optional":false},"payload":{"id":1,"f":"NaN"}}'
    record = CAPTURED[0]["value"]
    again = s.wrap(_debezium().value, orjson.dumps(record["payload"]))
    assert orjson.loads(again) == record


def _exact_field(type_name: str, mode: Mode = EXACT) -> dict[str, Any]:
    return s.column_schema(type_name, mode, True, DOMAINS, ENUMS)


@pytest.mark.parametrize(
    ("type_name", "expected"),
    [
        ("integer", {"type": "int32", "optional": True}),
        ("smallint", {"type": "int16", "optional": True}),
        ("bigint", {"type": "int64", "optional": True}),
        ("oid", {"type": "int64", "optional": True}),
        ("real", {"type": "float", "optional": True}),
        ("double precision", {"type": "double", "optional": True}),
        ("numeric", {"type": "string", "optional": True}),
        ("numeric(10,2)", {"type": "string", "optional": True}),
        ("money", {"type": "string", "optional": True}),
        ("boolean", {"type": "boolean", "optional": True}),
        ("bytea", {"type": "bytes", "optional": True}),
        (
            "timestamp with time zone",
            {
                "type": "string",
                "optional": True,
                "name": "io.debezium.time.ZonedTimestamp",
                "version": 1,
            },
        ),
        (
            "time with time zone",
            {
                "type": "string",
                "optional": True,
                "name": "io.debezium.time.ZonedTime",
                "version": 1,
            },
        ),
        (
            "timestamp(3) without time zone",
            {
                "type": "string",
                "optional": True,
                "name": "io.debezium.time.IsoTimestamp",
                "version": 1,
            },
        ),
        (
            "date",
            {"type": "string", "optional": True, "name": "io.debezium.time.IsoDate", "version": 1},
        ),
        (
            "time without time zone",
            {"type": "string", "optional": True, "name": "io.debezium.time.IsoTime", "version": 1},
        ),
        (
            "interval",
            {"type": "string", "optional": True, "name": "io.debezium.time.Interval", "version": 1},
        ),
        (
            "integer[]",
            {"type": "array", "items": {"type": "int32", "optional": True}, "optional": True},
        ),
        (
            "numeric(10,2)[]",
            {"type": "array", "items": {"type": "string", "optional": True}, "optional": True},
        ),
        (
            "timestamp with time zone[]",
            {
                "type": "array",
                "items": {
                    "type": "string",
                    "optional": True,
                    "name": "io.debezium.time.ZonedTimestamp",
                    "version": 1,
                },
                "optional": True,
            },
        ),
        ("box[]", {"type": "string", "optional": True}),  # kept as its literal
        (
            "point[]",
            {"type": "array", "items": {"type": "string", "optional": True}, "optional": True},
        ),
        (
            "mood[]",
            {"type": "array", "items": {"type": "string", "optional": True}, "optional": True},
        ),
        (
            "bytea[]",
            {"type": "array", "items": {"type": "bytes", "optional": True}, "optional": True},
        ),
        ("bit(8)", {"type": "string", "optional": True}),
        ("hstore", {"type": "string", "optional": True}),
        ("point", {"type": "string", "optional": True}),
        ("posint", {"type": "string", "optional": True}),  # a domain: its text
        ("mood", {"type": "string", "optional": True}),
        ("some_type", {"type": "string", "optional": True}),
        (
            "jsonb",
            {"type": "string", "optional": True, "name": "io.debezium.data.Json", "version": 1},
        ),
        (
            "uuid",
            {"type": "string", "optional": True, "name": "io.debezium.data.Uuid", "version": 1},
        ),
    ],
)
def test_exact_mode_schema_describes_the_exact_values(
    type_name: str, expected: dict[str, Any]
) -> None:
    got = _exact_field(type_name)
    assert got == expected
    assert list(got) == list(expected)  # JsonConverter's key order


def test_exact_mode_envelope_is_debeziums_but_for_the_columns() -> None:
    exact = orjson.loads(s.schemas(PREFIX, TYPES, ("id",), EXACT).value)
    debezium = orjson.loads(_debezium().value)
    assert exact["fields"][2:] == debezium["fields"][2:]  # source, transaction, op, times
    assert {k: v for k, v in exact.items() if k != "fields"} == {
        k: v for k, v in debezium.items() if k != "fields"
    }
    after = {f["field"]: f for f in exact["fields"][1]["fields"]}
    assert after["id"] == {"type": "int32", "optional": False, "field": "id"}
    assert after["ba"] == {"type": "bytes", "optional": True, "field": "ba"}


@pytest.mark.parametrize(
    ("options", "column", "expected"),
    [
        ({"decimal": "string"}, "numeric(10,2)", {"type": "string", "optional": True}),
        ({"decimal": "string"}, "money", {"type": "string", "optional": True}),
        ({"decimal": "double"}, "numeric", {"type": "double", "optional": True}),
        ({"decimal": "double"}, "money", {"type": "double", "optional": True}),
        (
            {},
            "numeric(5)",
            {
                "type": "bytes",
                "optional": True,
                "name": "org.apache.kafka.connect.data.Decimal",
                "version": 1,
                "parameters": {"scale": "0", "connect.decimal.precision": "5"},
            },
        ),
        ({"binary": "base64"}, "bytea", {"type": "string", "optional": True}),
        ({"binary": "hex"}, "bytea", {"type": "string", "optional": True}),
        ({"binary": "base64-url-safe"}, "bytea", {"type": "string", "optional": True}),
        (
            {"interval": "string"},
            "interval",
            {"type": "string", "optional": True, "name": "io.debezium.time.Interval", "version": 1},
        ),
        (
            {"time": "isostring"},
            "date",
            {"type": "string", "optional": True, "name": "io.debezium.time.IsoDate", "version": 1},
        ),
        (
            {"time": "isostring"},
            "timestamp without time zone",
            {
                "type": "string",
                "optional": True,
                "name": "io.debezium.time.IsoTimestamp",
                "version": 1,
            },
        ),
        (
            {"time": "connect"},
            "date",
            {
                "type": "int32",
                "optional": True,
                "name": "org.apache.kafka.connect.data.Date",
                "version": 1,
            },
        ),
        (
            {"time": "connect"},
            "time without time zone",
            {
                "type": "int32",
                "optional": True,
                "name": "org.apache.kafka.connect.data.Time",
                "version": 1,
            },
        ),
        (
            {"time": "connect"},
            "timestamp without time zone",
            {
                "type": "int64",
                "optional": True,
                "name": "org.apache.kafka.connect.data.Timestamp",
                "version": 1,
            },
        ),
        (
            {},
            "time(3) without time zone",
            {"type": "int32", "optional": True, "name": "io.debezium.time.Time", "version": 1},
        ),
        (
            {"time": "adaptive_time_microseconds"},
            "time(3) without time zone",
            {"type": "int64", "optional": True, "name": "io.debezium.time.MicroTime", "version": 1},
        ),
        (
            {},
            "timestamp(3) without time zone",
            {"type": "int64", "optional": True, "name": "io.debezium.time.Timestamp", "version": 1},
        ),
        # cdc's encoders write bit strings and hstore as their text: strings, not Debezium's
        # boolean / Bits / Json
        ({}, "bit(1)", {"type": "string", "optional": True}),
        ({}, "bit varying(8)", {"type": "string", "optional": True}),
        ({}, "hstore", {"type": "string", "optional": True}),
        (
            {},
            "numeric(10,2)[]",
            {
                "type": "array",
                "items": {
                    "type": "bytes",
                    "optional": True,
                    "name": "org.apache.kafka.connect.data.Decimal",
                    "version": 1,
                    "parameters": {"scale": "2", "connect.decimal.precision": "10"},
                },
                "optional": True,
            },
        ),
    ],
)
def test_debezium_options_change_the_column_schemas_as_debeziums_do(
    options: dict[str, str], column: str, expected: dict[str, Any]
) -> None:
    assert _exact_field(column, Mode("debezium", **options)) == expected


def test_nullable_decides_optional_and_no_key_gives_no_key_schema() -> None:
    types = (("a", "integer"), ("b", "text"))
    got = s.schemas("p.public.t", types, (), EXACT, frozenset({"b"}))
    assert got.key is None
    fields = orjson.loads(got.value)["fields"][1]["fields"]
    assert [f["optional"] for f in fields] == [False, True]
    whole_row = s.schemas("p.public.t", types, ("a", "b"), EXACT, frozenset({"b"}))
    assert whole_row.key is not None
    key = orjson.loads(whole_row.key)
    assert key["name"] == "p.public.t.Key"
    assert [(f["field"], f["optional"]) for f in key["fields"]] == [("a", False), ("b", True)]


def test_a_second_call_with_the_same_types_tuple_is_the_cached_result() -> None:
    types = (("id", "integer"), ("n", "numeric(10,2)"))
    first = s.schemas("p.public.c", types, ("id",), EXACT)
    assert s.schemas("p.public.c", types, ("id",), EXACT) is first
    # the same tuple for another table, mode or key is another schema
    other = s.schemas("p.public.d", types, ("id",), EXACT)
    assert b"p.public.d.Envelope" in other.value
    assert s.schemas("p.public.c", types, ("id",), DEBEZIUM).value != first.value
    assert s.schemas("p.public.c", types, ("id",), EXACT) is first
    # an equal tuple built anew gives equal bytes
    assert s.schemas("p.public.c", tuple(list(types)), ("id",), EXACT) == first


_NOT_NUMBERS = ("NaN", "Infinity", "-Infinity")
_INTS = ("int8", "int16", "int32", "int64")


def _misfits(value: Any, schema: dict[str, Any], where: str) -> list[str]:
    """Where ``value`` is not what JsonConverter reads under ``schema`` (empty: it fits)."""
    kind = schema["type"]
    if value is None:
        return [] if schema["optional"] else [f"{where}: null in a required {kind}"]
    if kind in _INTS:
        fits = isinstance(value, int) and not isinstance(value, bool)
    elif kind in ("float", "double"):
        # JsonConverter itself writes NaN and the infinities as these strings
        fits = isinstance(value, (int, float)) and not isinstance(value, bool)
        fits = fits or value in _NOT_NUMBERS
    elif kind == "boolean":
        fits = isinstance(value, bool)
    elif kind == "string":
        fits = isinstance(value, str)
    elif kind == "bytes":
        fits = isinstance(value, str) and _is_base64(value)
    elif kind == "array":
        if not isinstance(value, list):
            return [f"{where}: {value!r} is not an array"]
        return [
            m for i, e in enumerate(value) for m in _misfits(e, schema["items"], f"{where}[{i}]")
        ]
    elif kind == "struct":
        if not isinstance(value, dict):
            return [f"{where}: {value!r} is not a struct"]
        return [
            m
            for f in schema["fields"]
            for m in _misfits(value.get(f["field"]), f, f"{where}.{f['field']}")
        ]
    else:
        return [f"{where}: unknown schema type {kind}"]
    return [] if fits else [f"{where}: {value!r} is not a {kind}"]


def _is_base64(text: str) -> bool:
    try:
        base64.b64decode(text, validate=True)
    except ValueError:
        return False
    return True


MODES = [
    EXACT,
    DEBEZIUM,
    Mode("debezium", "string", "isostring", "base64", "string"),
    Mode("debezium", "double", "connect", "hex", "numeric"),
    Mode("debezium", "precise", "adaptive_time_microseconds", "base64-url-safe", "numeric"),
]


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.header.decode())
def test_the_encoders_payloads_fit_their_schemas(mode: Mode) -> None:
    """cdc's encoders (cdc.values) on the capture's rows write values JsonConverter reads
    under these schemas: no string under an int32 (read as 0), no text under bytes."""
    from cdc.values import encoder  # noqa: PLC0415

    codec = encoder(TYPES, mode)
    value_schema = orjson.loads(s.schemas(PREFIX, TYPES, ("id",), mode).value)
    row_schema = value_schema["fields"][0]
    misfits = []
    for record in _records("cdc-pgoutput.jsonl"):
        for half in ("before", "after"):
            row = (record["value"] or {}).get(half)
            if row is not None:
                encoded = orjson.loads(orjson.dumps(codec(row) if codec else row))
                misfits += _misfits(encoded, row_schema, f"{record['key']}.{half}")
    assert misfits == []


def test_debeziums_own_payloads_fit_the_schemas() -> None:
    """The check above, on Debezium's records and schemas (proves the check)."""
    row_schema = orjson.loads(_debezium().value)["fields"][0]
    for record in CAPTURED:
        for half in ("before", "after"):
            assert _misfits(record["value"]["payload"][half], row_schema, half) == []
    assert _misfits({"id": "1"}, row_schema, "r") == ["r.id: '1' is not a int32"]


def test_a_whole_row_key_has_optional_fields_and_a_route_field_is_a_required_string() -> None:
    types = (("a", "integer"), ("b", "text"))
    whole = s.schemas("p.public.w", types, ("a", "b"), EXACT, whole_row_key=True)
    assert whole.key is not None
    assert [f["optional"] for f in orjson.loads(whole.key)["fields"]] == [True, True]
    assert [f["optional"] for f in orjson.loads(whole.value)["fields"][1]["fields"]] == [
        True,
        True,
    ]
    routed = s.schemas("p.public.r", types, ("a", "__table"), EXACT)
    assert routed.key is not None
    assert orjson.loads(routed.key)["fields"][1] == {
        "type": "string",
        "optional": False,
        "field": "__table",
    }


def _other_schemas() -> dict[str, bytes]:
    """What Debezium 3.6.1's own schema factories give, as JsonConverter writes them
    (debezium-other-schemas.jsonl, made by tests/consumers/connect/DebeziumSchemas.java)."""
    out = {}
    for line in (FIXTURES / "debezium-other-schemas.jsonl").read_bytes().splitlines():
        what = json.loads(line)["what"]
        out[what] = line[line.index(b'"schema":') + len(b'"schema":') : -1]
    return out


def test_transaction_topic_schemas_are_debeziums_byte_for_byte() -> None:
    debezium = _other_schemas()
    assert s.transaction_schemas() == (debezium["transaction.key"], debezium["transaction.value"])


@pytest.mark.parametrize("binary", ["bytes", "base64", "base64-url-safe", "hex"])
def test_message_schemas_are_debeziums_byte_for_byte(binary: str) -> None:
    debezium = _other_schemas()
    got = s.message_schemas(Mode("debezium", binary=binary))
    assert got == (debezium["message.key"], debezium[f"message.value.{binary}"])
    # exact writes the content in base64, which is what JsonConverter's bytes are
    assert s.message_schemas(EXACT) == s.message_schemas(Mode("debezium"))


def test_the_source_block_is_debeziums_byte_for_byte() -> None:
    source = json.loads(_other_schemas()["message.value.bytes"])["fields"][2]
    envelope = orjson.loads(_debezium().value)
    assert orjson.dumps(envelope["fields"][2]) == orjson.dumps(source)


PRECISION_TYPES = (
    ("id", "integer"),
    ("t0", "time(0) without time zone"),
    ("t3", "time(3) without time zone"),
    ("t6", "time(6) without time zone"),
    ("ts0", "timestamp(0) without time zone"),
    ("ts3", "timestamp(3) without time zone"),
    ("tsz3", "timestamp(3) with time zone"),
    ("ttz3", "time(3) with time zone"),
    ("n5", "numeric(5,0)"),
    ("n52", "numeric(5,2)"),
    ("ia", "integer[]"),
    ("ba", "bytea[]"),
    ("na", "numeric(10,2)[]"),
    ("tsa", "timestamp without time zone[]"),
    ("da", "date[]"),
    ("ta", "text[]"),
    ("ua", "uuid[]"),
    ("ea", "mood[]"),
    ("f8a", "double precision[]"),
)
"""The capture's table of precisions (bench/debezium_capture_schemas.py) as cdc-types has it,
but its ``iva interval[]``: Debezium leaves that column out of its events (it has no schema for
interval arrays); cdc's encoders write it as an array of intervals."""

_OPTION_KEYS = {
    "decimal.handling.mode": "decimal",
    "time.precision.mode": "time",
    "binary.handling.mode": "binary",
    "interval.handling.mode": "interval",
}


def _option_schemas() -> list[tuple[Mode, str, str, bytes, bytes]]:
    """(mode, prefix, table, key schema bytes, value schema bytes) that Debezium 3.6.1 wrote
    under each option set (debezium-option-schemas.jsonl)."""
    out = []
    for line in (FIXTURES / "debezium-option-schemas.jsonl").read_bytes().splitlines():
        parsed = json.loads(line)
        mode = Mode("debezium", **{_OPTION_KEYS[k]: v for k, v in parsed["options"].items()})
        key = line[line.index(b',"key":') + 7 : line.index(b',"value":')]
        value = line[line.index(b',"value":') + 9 : -1]
        out.append((mode, parsed["prefix"], parsed["table"], key, value))
    return out


@pytest.mark.parametrize(
    ("mode", "prefix", "table", "key", "value"),
    _option_schemas(),
    ids=lambda v: v.header.decode() if isinstance(v, Mode) else "",
)
def test_every_option_set_gives_debeziums_schemas_byte_for_byte(
    mode: Mode, prefix: str, table: str, key: bytes, value: bytes
) -> None:
    """Precisions (time(0), time(3), timestamp(3), numeric(5)...) and arrays included."""
    types = TYPES if table == "every_type" else PRECISION_TYPES
    domains = DOMAINS if table == "every_type" else ()
    got = s.schemas(prefix, types, ("id",), mode, None, domains, ENUMS)
    assert got.key == key
    if got.value != value:  # name the columns that differ
        ours = orjson.loads(got.value)["fields"][0]["fields"]
        theirs = orjson.loads(value)["fields"][0]["fields"]
        assert [a for a, b in zip(ours, theirs, strict=True) if a != b] == []
    assert got.value == value


def _changes() -> list[Change]:
    """The capture's row changes (cdc-pgoutput.jsonl) as the decoders hand them to encode."""
    out = []
    for i, record in enumerate(_records("cdc-pgoutput.jsonl")):
        value = record["value"]
        if value is None or value["op"] == "t":
            continue
        out.append(
            Change(
                value["op"], "public", "every_type", record["key"], value["before"],
                value["after"], 100 + i, 0, 90 + i, 7, 1_700_000_000_000, types=TYPES,
            )
        )  # fmt: skip
    return out


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.header.decode())
@pytest.mark.parametrize("shape", ["key", "routed", "whole-row"])
def test_records_that_events_encode_writes_fit_their_schemas(mode: Mode, shape: str) -> None:
    """Whole records (cdc.events.encode: envelope, source block, key) against the schemas, as
    JsonConverter reads them; a routed key carries its table field, a whole-row key every
    column (nulls included)."""
    source = SourceInfo("c", "db", "p", mode)
    key_field = ("__dbz__physicalTableIdentifier", "p.public.every_type")
    misfits = []
    for decoded in _changes():
        change = decoded
        if shape == "whole-row":
            row = change.after if change.after is not None else change.before
            change = replace(change, key=row, whole_row_key=True)
        key = (*(change.key or {}), key_field[0]) if shape == "routed" else tuple(change.key or {})
        record = encode(change, source, 1, key_field if shape == "routed" else None)
        found = s.schemas(PREFIX, TYPES, key, mode, whole_row_key=shape == "whole-row")
        assert found.key is not None and record.key is not None and record.value is not None
        misfits += _misfits(orjson.loads(record.value), orjson.loads(found.value), "value")
        misfits += _misfits(orjson.loads(record.key), orjson.loads(found.key), "key")
    assert misfits == []
