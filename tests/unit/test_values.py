"""cdc.values: the exact encodings round-trip, and the debezium mode writes what Debezium 3.6.1
wrote for the same rows (tests/fixtures/debezium, captured by bench/debezium_capture.py)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from cdc.events import UNAVAILABLE, Change, SourceInfo, encode
from cdc.values import EXACT, ValueMode, decoder, encoder, mode_from_header
from cdc.values import exact as x
from cdc.values.table import rewrite

FIXTURES = Path(__file__).parent.parent / "fixtures" / "debezium"


def _records(name: str) -> list[dict[str, Any]]:
    lines = (FIXTURES / f"{name}.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["value"] is not None and r["value"]["op"] != "t"]


CDC = _records("cdc-pgoutput")
TYPES = tuple(CDC[0]["headers"]["cdc-types"].items())

# What Debezium itself loses or writes otherwise than the text it was given (its own choices,
# not reproduced): a domain over an integer as a number (cdc: the domain's text).
NOT_REPRODUCED = {"dom"}


def _encode(mode: ValueMode, row: dict[str, Any] | None) -> dict[str, Any] | None:
    codec = encoder(TYPES, mode)
    assert codec is not None
    out: dict[str, Any] | None = json.loads(json.dumps(codec(row)))
    return out


@pytest.mark.parametrize(
    ("fixture", "mode"),
    [
        ("debezium-defaults", ValueMode("debezium")),
        (
            "debezium-exact-options",
            ValueMode("debezium", "string", "isostring", "base64", "string"),
        ),
    ],
)
def test_debezium_mode_writes_what_debezium_wrote(fixture: str, mode: ValueMode) -> None:
    theirs = _records(fixture)
    assert len(theirs) == len(CDC)
    compared = 0
    for ours, dbz in zip(CDC, theirs, strict=True):
        for image in ("before", "after"):
            mine = _encode(mode, ours["value"][image])
            want = dbz["value"][image]
            if want is None:
                assert mine is None
                continue
            assert mine is not None
            for column, value in want.items():
                if column in NOT_REPRODUCED:
                    continue
                assert mine[column] == value, (fixture, image, column, ours["value"][image][column])
                compared += 1
    assert compared > 200


def test_exact_mode_round_trips_every_captured_value() -> None:
    codec, back = encoder(TYPES, EXACT), decoder(dict(TYPES), EXACT)
    assert codec is not None and back is not None
    for record in CDC:
        for image in ("before", "after"):
            row = record["value"][image]
            wire = json.loads(json.dumps(codec(row)))
            assert back(wire) == row


def test_exact_mode_is_debeziums_options_where_those_are_exact() -> None:
    """Every value the exact mode writes is what Debezium writes with string/isostring/base64/
    string, but for the documented differences."""
    theirs = _records("debezium-exact-options")
    differs: set[tuple[str, str]] = set()
    for ours, dbz in zip(CDC, theirs, strict=True):
        mine = _encode(EXACT, ours["value"]["after"])
        want = dbz["value"]["after"]
        if want is None:
            continue
        assert mine is not None
        for column, value in want.items():
            if mine[column] != value:
                differs.add((column, f"{mine[column]} | {value}"))
    columns = {c for c, _ in differs}
    # zoneless date/time/timestamp without Debezium's Z; timetz keeps its offset; infinities,
    # 24:00 and NaN stay; money keeps its symbol; a domain and a point are their text; a BC
    # timestamptz has no six zeros of fraction.
    assert columns == {"d", "t", "ts", "ttz", "n", "m", "dom", "pt", "tsz"}, sorted(differs)
    assert {p for c, p in differs if c == "tsz"} == {
        "-4712-01-01T00:00:00Z | -4712-01-01T00:00:00.000000Z"
    }
    for column, pair in differs:
        ours_text, _, theirs_text = pair.partition(" | ")
        if column in ("d", "t", "ts") and not ours_text.startswith(("infinity", "24:")):
            assert theirs_text == ours_text + "Z"


@pytest.mark.parametrize(
    ("type_name", "texts"),
    [
        (
            "date",
            [
                "2024-01-02",
                "infinity",
                "-infinity",
                "0001-01-01 BC",
                "4713-01-01 BC",
                "10000-01-01",
                "5874897-12-31",
            ],
        ),
        (
            "timestamp without time zone",
            [
                "2024-01-02 03:04:05.123456",
                "infinity",
                "4713-01-01 00:00:00 BC",
                "0001-01-01 23:59:59.5 BC",
                "294276-12-31 23:59:59.999999",
            ],
        ),
        (
            "timestamp(3) with time zone",
            ["2024-01-02 01:04:05.123+00", "-infinity", "4713-01-01 00:00:00+00 BC"],
        ),
        (
            "time with time zone",
            [
                "03:04:05.123456+02",
                "00:00:00-14",
                "23:59:59.999999+14:59",
                "12:00:00+00",
                "01:00:00+05:30",
            ],
        ),
        (
            "interval",
            [
                "1 year 2 mons 3 days 04:05:06.789",
                "-178000000 years",
                "-1 days -00:00:00.000001",
                "00:00:00",
                "-1 days +00:00:01",
                "-2 years -3 mons",
                "100000:00:00",
            ],
        ),
        ("bytea", ["deadbeef", "", "00ff"]),
        ("integer[]", ["{1,NULL,3}", "{}", "{{1,2},{3,4}}", "[0:1]={1,2}"]),
        ("text[]", ['{"a b","c,d",NULL}', '{"\\\\","\\"",NULL,"NULL",x,"","a\tb"}']),
        ("double precision[]", ["{1.5,NaN,-Infinity,1e+15,1e-05,0.0001,123456789012345,-0}"]),
        # float4out writes exponents from 1e6 on, float8out from 1e15 on
        (
            "real[]",
            [
                "{100000,999999,1e+06,-1e+06,1.234567e+06,1.6777216e+07,3.4028235e+38}",
                "{1.1,0.0001,1e-05,1.1754944e-38,-0,NaN,Infinity,-Infinity,NULL}",
            ],
        ),
        ("bytea[]", ['{"\\\\xdeadbeef",NULL}']),
        ("timestamp with time zone[]", ['{"2024-01-02 01:04:05.123456+00",infinity}']),
        ("boolean[]", ["{t,f,NULL}"]),
        ("box[]", ["{(1,1),(0,0);(2,2),(1,1)}"]),
    ],
)
def test_exact_encoding_round_trips(type_name: str, texts: list[str]) -> None:
    enc, dec = x.encoder(type_name), x.decoder(type_name)
    for text in texts:
        if enc is None:
            assert dec is None
            continue
        assert dec is not None
        assert dec(json.loads(json.dumps(enc(text)))) == text


def test_exact_encodings_are_iso() -> None:
    assert x.iso_timestamptz("2024-01-02 01:04:05.123456+00") == "2024-01-02T01:04:05.123456Z"
    assert x.iso_timestamptz("2024-01-02 03:04:05.5+02") == "2024-01-02T01:04:05.5Z"
    assert x.iso_timestamp("0001-01-01 00:00:00 BC") == "0000-01-01T00:00:00"
    assert x.iso_timetz("03:04:05+02") == "03:04:05+02:00"
    assert x.hex_to_b64("deadbeef") == "3q2+7w=="


def test_values_header_names_the_mode() -> None:
    mode = ValueMode("debezium", "string", "connect", "hex", "string")
    assert mode_from_header(mode.header) == mode
    assert mode_from_header(b"exact") is EXACT
    with pytest.raises(ValueError, match="unknown values mode"):
        mode_from_header(b"avro")
    with pytest.raises(ValueError, match="decimal handling mode"):
        mode_from_header(b"debezium;decimal=float")


def test_the_docs_table_is_what_the_encoders_write(tmp_path: Path) -> None:
    """docs/encodings.md's table: every cell made by the encoders (``python -m
    cdc.values.table`` rewrites it)."""
    doc = Path(__file__).parent.parent.parent / "docs" / "encodings.md"
    copy = tmp_path / "encodings.md"
    copy.write_text(doc.read_text())
    assert not rewrite(copy), "docs/encodings.md is stale: run python -m cdc.values.table"


@pytest.mark.parametrize(
    "type_name",
    ["interval year to month", "interval second(3)", "interval day to second", "interval(2)"],
)
def test_an_interval_with_fields_or_precision_is_an_interval(type_name: str) -> None:
    """``interval year to month`` and the like (format_type's names of an interval with a
    typmod) travel as intervals in every mode, as their schema says (Debezium's too)."""
    text = "1 year 2 mons" if "month" in type_name else "3 days 04:05:06.5"
    exact_enc, exact_dec = x.encoder(type_name), x.decoder(type_name)
    assert exact_enc is not None and exact_dec is not None
    iso = exact_enc(text)
    assert iso == ("P1Y2M0DT0H0M0S" if "month" in type_name else "P0Y0M3DT4H5M6.5S")
    assert exact_dec(iso) == text
    codec = encoder(((("iv", type_name),)), ValueMode("debezium"))
    assert codec is not None
    row = codec({"iv": text})
    assert row is not None and isinstance(row["iv"], int)
    array = x.encoder(type_name + "[]")
    assert array is not None and array("{" + f'"{text}"' + "}") == [iso]


@pytest.mark.parametrize(
    ("type_name", "mode"),
    [
        ("timestamp(3) without time zone", ValueMode("debezium")),
        (
            "timestamp(0) without time zone",
            ValueMode("debezium", time="adaptive_time_microseconds"),
        ),
        ("timestamp without time zone", ValueMode("debezium", time="connect")),
    ],
)
def test_debezium_millisecond_timestamps_write_infinity_in_milliseconds(
    type_name: str, mode: ValueMode
) -> None:
    """Debezium turns PostgreSQL's infinite timestamps into pgjdbc's far-off instants, then
    into the field's unit: io.debezium.time.Timestamp.toEpochMillis of them (checked against
    Debezium 3.6.1's classes) in the millisecond modes, not the microsecond sentinels."""
    codec = encoder((("ts", type_name),), mode)
    assert codec is not None
    assert codec({"ts": "infinity"}) == {"ts": 9223372036825200}
    assert codec({"ts": "-infinity"}) == {"ts": -9223372036832400}
    assert codec({"ts": "1969-12-31 23:59:59.999"}) == {"ts": -1}


def test_debezium_string_decimals_name_the_special_values_as_debezium() -> None:
    """decimal.handling.mode=string writes SpecialValueDecimal's names for NaN and the
    infinities of numeric (PostgreSQL 14+), as Debezium 3.6.1's classes do; double writes the
    double's JSON (JsonConverter: a string); precise has no value for them (null)."""
    types = (("n", "numeric"), ("n2", "numeric(10,2)"))
    for mode, want in (
        ("string", ("NAN", "POSITIVE_INFINITY", "NEGATIVE_INFINITY")),
        ("double", ("NaN", "Infinity", "-Infinity")),
        ("precise", (None, None, None)),
    ):
        codec = encoder(types, ValueMode("debezium", decimal=mode))
        assert codec is not None
        for text, value in zip(("NaN", "Infinity", "-Infinity"), want, strict=True):
            assert codec({"n": text, "n2": text}) == {"n": value, "n2": value}, (mode, text)


@pytest.mark.parametrize(
    ("text", "micros"),
    [
        # What Debezium 3.6.1 wrote (MicroDuration.durationMicros of pgjdbc 42.7.11's
        # PGInterval, run with the bench's jars): its doubles lose a microsecond here and there.
        ("00:00:00.000249", 248),
        ("19216:48:19.471922", 69180499471921),
        ("-37508:25:43.05448", -135030343054479),
        ("17 years 9 mons 00:00:00.825167", 560147400825166),
        ("34 years 10 mons -233 days -00:00:00.162759", 1079125199837240),
        ("20274260 days 00:00:00.016961", 1751696064000016896),
        ("-24895616 days -32891:12:43.634486", -2151099630763634432),
        ("1 year 2 mons 3 days 04:05:06.789", 37091106789000),
        ("-1 days -00:00:00.000001", -86400000001),
        ("-178000000 years", -(2**63)),
    ],
)
def test_debezium_numeric_intervals_are_debeziums_doubles(text: str, micros: int) -> None:
    codec = encoder((("iv", "interval"),), ValueMode("debezium"))
    assert codec is not None
    assert codec({"iv": text}) == {"iv": micros}


PLACEHOLDER_TYPES = (
    ("id", "integer"),
    ("ba", "bytea"),
    ("ai", "integer[]"),
    ("ab", "bigint[]"),
    ("ad", "date[]"),
    ("at", "character varying(20)[]"),
    ("aj", "jsonb[]"),
    ("aba", "bytea[]"),
    ("au", "uuid[]"),
    ("atz", "timestamp with time zone[]"),
    ("tx", "text"),
)
PLACEHOLDER_BYTES = list(b"__debezium_unavailable_value")
B64_PLACEHOLDER = "X19kZWJleml1bV91bmF2YWlsYWJsZV92YWx1ZQ=="


@pytest.mark.parametrize(
    ("mode", "bytea"),
    [
        (EXACT, B64_PLACEHOLDER),
        (ValueMode("debezium"), B64_PLACEHOLDER),
        (ValueMode("debezium", binary="hex"), "__debezium_unavailable_value"),
        (ValueMode("debezium", binary="base64"), "__debezium_unavailable_value"),
    ],
)
def test_unchanged_toast_placeholders_are_debeziums_for_the_column_type(
    mode: ValueMode, bytea: str
) -> None:
    """An unchanged TOASTed value's placeholder takes the shape Debezium 3.6.1 gives it
    (UnchangedToastedPlaceholder): the placeholder's bytes in a bytes field (JsonConverter
    refuses the text there), a list of the bytes in an integer or date array, the text in a
    one-element list in a text-like array, a name-based UUID in a uuid array, the text
    elsewhere (an array field holding it would read as [] through JsonConverter). The exact
    mode writes bytea as bytes (its schema says so). Decoded with the record's
    ``cdc-unavailable`` columns, each is the internal placeholder again."""
    row = {c: UNAVAILABLE for c, _ in PLACEHOLDER_TYPES} | {"id": 1}
    codec = encoder(PLACEHOLDER_TYPES, mode)
    assert codec is not None
    wire = json.loads(json.dumps(codec(row)))
    assert wire == {
        "id": 1,
        "ba": bytea,
        "ai": PLACEHOLDER_BYTES,
        "ab": PLACEHOLDER_BYTES,
        "ad": PLACEHOLDER_BYTES,
        "at": ["__debezium_unavailable_value"],
        "aj": ["__debezium_unavailable_value"],
        "aba": [B64_PLACEHOLDER],
        "au": ["b68a35a7-17ad-35b3-af2a-ae46edb4545a"],  # Java's UUID.nameUUIDFromBytes
        "atz": UNAVAILABLE,
        "tx": UNAVAILABLE,
    }
    if mode is EXACT:
        back = decoder(dict(PLACEHOLDER_TYPES), EXACT)
        assert back is not None
        assert back(wire, frozenset(row) - {"id"}) == row


@pytest.mark.parametrize(
    ("type_name", "text", "iso"),
    [
        ("timestamp with time zone", "2024-01-02 01:04:05.5+00", "2024-01-02T01:04:05.500000Z"),
        ("timestamp with time zone", "2024-01-02 00:00:00+00", "2024-01-02T00:00:00.000000Z"),
        ("timestamp with time zone", "10000-01-01 00:00:00+00", "+10000-01-01T00:00:00.000000Z"),
        ("timestamp with time zone", "0001-01-01 00:00:00+00 BC", "0000-01-01T00:00:00.000000Z"),
        ("timestamp with time zone", "infinity", "infinity"),
        ("timestamp(3) with time zone", "2024-01-02 01:04:05.12+00", "2024-01-02T01:04:05.120Z"),
        ("timestamp(0) with time zone", "2024-01-02 01:04:05+00", "2024-01-02T01:04:05Z"),
        (
            "timestamp(3) with time zone[]",
            '{"2024-01-02 01:04:05+00"}',
            ["2024-01-02T01:04:05.000Z"],
        ),
    ],
)
def test_debezium_zoned_timestamps_have_the_columns_fraction_digits(
    type_name: str, text: str, iso: Any
) -> None:
    """io.debezium.time.ZonedTimestamp is formatted with exactly the column's scale of fraction
    digits (pgjdbc gives 6 for a timestamptz without one; 0 means as many as needed): the
    capture's BC value shows it, -4712-01-01T00:00:00.000000Z."""
    codec = encoder((("tsz", type_name),), ValueMode("debezium"))
    assert codec is not None
    assert codec({"tsz": text}) == {"tsz": iso}


@pytest.mark.parametrize(
    ("text", "iso"),
    [
        # What Debezium 3.6.1 wrote (Interval.toIsoString of pgjdbc 42.7.11's PGInterval, the
        # seconds as BigDecimal.valueOf their double, cut to 9 decimals; the bench's jars)
        ("163961225 years 11 mons -00:01:05.816182", "P163961225Y11M0DT0H-1M-5.816181999S"),
        ("-74 years -8 mons +618:21:17.440982", "P-74Y-8M0DT618H21M17.440981999S"),
        ("1 day -00:00:01.003691", "P0Y0M1DT0H0M-1.003690999S"),
        ("00:00:59.999999", "P0Y0M0DT0H0M59.999999S"),
        ("1 year 2 mons 3 days 04:05:06.789", "P1Y2M3DT4H5M6.789S"),
        ("-1 days -00:00:00.000001", "P0Y0M-1DT0H0M-0.000001S"),
        ("-178000000 years", "P-178000000Y0M0DT0H0M0S"),
    ],
)
def test_debezium_string_intervals_are_debeziums_doubles(text: str, iso: str) -> None:
    codec = encoder((("iv", "interval"),), ValueMode("debezium", interval="string"))
    assert codec is not None
    assert codec({"iv": text}) == {"iv": iso}
    assert x.interval_from_iso(x.interval_to_iso(text)) == text  # the exact mode stays exact


def test_debezium_sequence_has_null_before_the_first_commit() -> None:
    """Debezium writes source.sequence as a JSON list of its last commit LSN and the event's,
    the former null while it knows none (the first transaction it streams, snapshot reads:
    tests/fixtures/debezium/debezium-defaults.jsonl's first record)."""
    change = Change("c", "public", "t", {"id": 1}, None, {"id": 1}, 100, 0, 90, 7, 0)
    debezium = SourceInfo("c", "db", "c", ValueMode("debezium"))
    value = orjson.loads(encode(change, debezium, 0).value or b"")
    assert value["source"]["sequence"] == '[null,"90"]'
    later = dataclasses.replace(change, last_commit_lsn=80)
    value = orjson.loads(encode(later, debezium, 0).value or b"")
    assert value["source"]["sequence"] == '["80","90"]'


def test_a_sink_reads_an_interval_with_fields_back_in_the_debezium_mode() -> None:
    """``interval year to month`` travels as an interval in the debezium mode (Debezium's
    encodings), and cdc's sinks read it back as one."""
    types = (("iv", "interval year to month"), ("s", "interval second(3)[]"))
    mode = ValueMode("debezium", interval="string")
    codec, back = encoder(types, mode), decoder(dict(types), mode)
    assert codec is not None and back is not None
    row = {"iv": "1 year 2 mons", "s": "{00:00:01.5}"}
    wire = codec(row)
    assert wire == {"iv": "P1Y2M0DT0H0M0S", "s": ["P0Y0M0DT0H0M1.5S"]}
    assert back(wire) == row
