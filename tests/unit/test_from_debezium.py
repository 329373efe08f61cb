"""Debezium's values back to cdc's internal form (cdc.values.from_debezium), on what Debezium
3.6.1 and cdc wrote for the same rows (tests/fixtures/debezium, bench/debezium_capture.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cdc.values.from_debezium import (
    Decoder,
    Options,
    decode_into,
    decoders_for,
    schema_decoder,
    type_decoder,
)

FIXTURES = Path(__file__).parent.parent / "fixtures" / "debezium"

EXACT = Options(decimal="string", time="isostring", binary="base64", interval="string")

# What Debezium loses, per fixture: (column, cdc's value) -> what comes out instead.
_ALWAYS = {
    # money: the currency symbol (the same money once stored in a money column)
    ("m", "$9.99"): "9.99",
    ("m", "-$1.00"): "-1.00",
    # timetz: moved to UTC by Debezium, the offset is gone
    ("ttz", "03:04:05.123456+02"): "01:04:05.123456+00",
    ("ttz", "00:00:00-14"): "14:00:00+00",
    ("ttz", "23:59:59.999999+14:59"): "09:00:59.999999+00",
    # a domain over integer: Debezium writes its base type's number (the same once stored)
    ("dom", "7"): 7,
}
LOST: dict[str, dict[tuple[str, Any], Any]] = {
    "debezium-defaults.jsonl": {
        **_ALWAYS,
        ("n", "NaN"): None,  # decimal.handling.mode=precise writes NaN as null
        ("n", "1.10"): "1.1",  # ... and an unconstrained numeric without trailing zeros
        # interval.handling.mode=numeric: a month is 30.4375 days, and -178000000 years
        # overflow to Long.MIN_VALUE microseconds
        ("iv", "1 year 2 mons 3 days 04:05:06.789"): "429 days 07:05:06.789",
        ("iv", "-178000000 years"): "-106751991 days -04:00:54.775808",
    },
    "debezium-exact-options.jsonl": {
        **_ALWAYS,
        ("t", "24:00:00"): "00:00:00",  # time.precision.mode=isostring: 00:00:00Z
    },
}
LOST["debezium-defaults-schemas.jsonl"] = LOST["debezium-defaults.jsonl"]


def _records(name: str) -> list[dict[str, Any]]:
    with (FIXTURES / name).open() as f:
        return [json.loads(line) for line in f]


def _changes(name: str) -> list[dict[str, Any]]:
    """The row changes (no tombstones, no truncate: Debezium skips those by default)."""
    out = []
    for r in _records(name):
        value = r["value"]
        if value is None:
            continue
        if "payload" in value:
            value = {**value["payload"], "_schema": value["schema"]}
        if value["op"] != "t":
            out.append(value)
    return out


CDC = _changes("cdc-pgoutput.jsonl")
TYPES = next(r["headers"]["cdc-types"] for r in _records("cdc-pgoutput.jsonl") if r["value"])


def _schema_decoders(schema: dict[str, Any]) -> tuple[tuple[str, Decoder], ...]:
    after = next(f for f in schema["fields"] if f["field"] == "after")
    pairs = [(f["field"], schema_decoder(f)[0]) for f in after["fields"]]
    return tuple((c, d) for c, d in pairs if d is not None)


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("debezium-defaults.jsonl", Options()),
        ("debezium-exact-options.jsonl", EXACT),
        ("debezium-defaults-schemas.jsonl", None),
    ],
)
def test_every_row_decodes_to_what_cdc_wrote(name: str, options: Options | None) -> None:
    changes = _changes(name)
    assert [(c["op"], c["source"]["lsn"]) for c in changes] == [
        (c["op"], c["source"]["lsn"]) for c in CDC
    ]
    if options is not None:
        decoders = decoders_for(TYPES, options)
    lost = LOST[name]
    seen_lost = set()
    for theirs, ours in zip(changes, CDC, strict=True):
        if options is None:
            decoders = _schema_decoders(theirs["_schema"])
        for image in ("before", "after"):
            row, expected = theirs[image], ours[image]
            if expected is None:
                assert row is None
                continue
            decode_into(row, decoders)
            wanted = dict(expected)
            for column, value in expected.items():
                if (column, value) in lost:
                    wanted[column] = lost[column, value]
                    seen_lost.add((column, value))
            assert {c: row.get(c) for c in wanted} == wanted, (image, expected["id"])
            assert set(row) == set(expected)
    assert seen_lost == set(lost)  # every loss listed was met


def test_what_debezium_gives_for_infinities_and_midnight_comes_back() -> None:
    """Debezium's overflowed stand-ins are no value PostgreSQL has: they mean infinity."""
    adaptive = Options()
    assert type_decoder("date", adaptive)(-2147472692) == "infinity"  # type: ignore[misc]
    assert type_decoder("date", adaptive)(-2147472691) == "-infinity"  # type: ignore[misc]
    assert type_decoder("date", EXACT)("-5877611-06-21Z") == "infinity"  # type: ignore[misc]
    ts = type_decoder("timestamp without time zone", adaptive)
    assert ts is not None
    assert ts(9223372036825200000) == "infinity"
    assert ts(-9223372036832400000) == "-infinity"
    iso = type_decoder("timestamp without time zone", EXACT)
    assert iso is not None
    assert iso("+294247-01-10T04:00:25.2Z") == "infinity"
    assert iso("-290308-12-21T19:59:27.6Z") == "-infinity"
    assert type_decoder("time", adaptive)(86400000000) == "24:00:00"  # type: ignore[misc]
    assert type_decoder("time(3)", adaptive)(86400000) == "24:00:00"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("pg_type", "options", "value", "expected"),
    [
        ("numeric(10,2)", Options(decimal="double"), 12.34, "12.34"),
        ("numeric", Options(decimal="double"), 1e20, "100000000000000000000"),
        ("numeric", Options(decimal="string"), "NAN", "NaN"),
        ("numeric(5,0)", Options(), "AQ==", "1"),
        ("money", Options(decimal="string"), "-1.00", "-1.00"),
        ("bytea", Options(binary="hex"), "DEADBEEF", "deadbeef"),
        ("bytea", Options(binary="base64-url-safe"), "3q2-7w==", "deadbeef"),
        ("bytea", Options(binary="base64"), "", ""),
        ("time without time zone", Options(time="connect"), 11045123, "03:04:05.123"),
        ("time(3) without time zone", Options(), 11045123, "03:04:05.123"),
        ("time(3)", Options(time="adaptive_time_microseconds"), 11045123456, "03:04:05.123456"),
        ("timestamp(3) without time zone", Options(), 1704164645123, "2024-01-02 03:04:05.123"),
        ("timestamp", Options(time="connect"), 1704164645123, "2024-01-02 03:04:05.123"),
        ("timestamp", Options(), -62135683200000000, "0001-12-31 00:00:00 BC"),
        ("timestamp", EXACT, "0000-12-31T00:00:00Z", "0001-12-31 00:00:00 BC"),
        ("timestamp", EXACT, "+10000-01-01T00:00:00Z", "10000-01-01 00:00:00"),
        ("date", Options(), 2932897, "10000-01-01"),
        ("timestamptz", EXACT, "2024-01-02T01:04:05Z", "2024-01-02 01:04:05+00"),
        ("interval", EXACT, "P0Y0M0DT0H0M0S", "00:00:00"),
        ("interval", EXACT, "P0Y0M-1DT2H0M0S", "-1 days +02:00:00"),
        ("interval", EXACT, "P0Y-1M0DT0H0M0S", "-1 mons"),
        ("interval", EXACT, "P1Y0M1DT0H0M0.5S", "1 year 1 day 00:00:00.5"),
        ("interval", Options(), 90000000000, "1 day 01:00:00"),
        ("date[]", Options(), [19724, None], "{2024-01-02,NULL}"),
        ("bytea[]", Options(), ["3q2+7w=="], "{deadbeef}"),
        ("text[]", Options(), ["NULL", "", 'a"b\\', "x"], '{"NULL","","a\\"b\\\\",x}'),
        ("boolean[]", Options(), [True, False], "{t,f}"),
        ("double precision[]", Options(), [1.0, 0.5, "NaN"], "{1,0.5,NaN}"),
        ("numeric(4,1)[]", Options(), ["AQ=="], "{0.1}"),
        ("integer[]", Options(), "{1,2}", "{1,2}"),
    ],
)
def test_type_decoders(pg_type: str, options: Options, value: Any, expected: Any) -> None:
    decode = type_decoder(pg_type, options)
    assert decode is not None
    assert decode(value) == expected


@pytest.mark.parametrize("pg_type", ["integer", "text", "jsonb", "uuid", "inet", "mood", "real"])
def test_types_debezium_writes_as_cdc_need_no_decoder(pg_type: str) -> None:
    assert type_decoder(pg_type, Options()) is None


def test_unchanged_toast_placeholders_stay_placeholders() -> None:
    placeholder = "__debezium_unavailable_value"
    for mode, written in (
        ("bytes", "X19kZWJleml1bV91bmF2YWlsYWJsZV92YWx1ZQ=="),
        ("base64", "X19kZWJleml1bV91bmF2YWlsYWJsZV92YWx1ZQ=="),
        ("base64-url-safe", "X19kZWJleml1bV91bmF2YWlsYWJsZV92YWx1ZQ=="),
        ("hex", placeholder.encode().hex().upper()),
    ):
        decode = type_decoder("bytea", Options(binary=mode))
        assert decode is not None
        assert decode(written) == placeholder, mode
    array = type_decoder("integer[]", Options())
    assert array is not None
    assert array("__debezium_unavailable_value") == "__debezium_unavailable_value"


def test_schema_types() -> None:
    (schema,) = [json.loads(line)["value"]["schema"] for line in _lines(1)]
    after = next(f for f in schema["fields"] if f["field"] == "after")
    types = {f["field"]: schema_decoder(f)[1] for f in after["fields"]}
    assert types == {
        "id": "integer",
        "i2": "smallint",
        "i4": "integer",
        "i8": "bigint",
        "o": "bigint",
        "f4": "real",
        "f8": "double precision",
        "n": "numeric",
        "n102": "numeric(10,2)",
        "m": "numeric",
        "b": "boolean",
        "ba": "bytea",
        "j": "json",
        "jb": "json",
        "ai": "integer[]",
        "at": "text[]",
        "ts": "timestamp",
        "tsz": "timestamp with time zone",
        "d": "date",
        "t": "time",
        "ttz": "time with time zone",
        "iv": "interval",
        "u": "uuid",
        "ip": "",
        "mac": "",
        "r": "",
        "pt": "point",
        "tv": "tsvector",
        "e": "text",
        "c": "",
        "vc": "",
        "tx": "",
        "dom": "integer",
    }


def _lines(n: int) -> list[str]:
    with (FIXTURES / "debezium-defaults-schemas.jsonl").open() as f:
        return [next(f) for _ in range(n)]


def test_options_from_the_cdc_values_header() -> None:
    assert Options.from_header(
        "debezium;decimal=string;time=isostring;binary=hex;interval=string"
    ) == Options("string", "isostring", "hex", "string")
    assert Options.from_header("debezium") == Options()
    with pytest.raises(ValueError, match="time mode 'micro'"):
        Options.from_header("debezium;time=micro")
    with pytest.raises(ValueError, match="not Debezium"):
        Options.from_header("exact")
