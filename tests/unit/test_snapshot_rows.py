"""Unit tests: COPY text rows become rows shaped as wal2json prints them. No services.

The lines are as PostgreSQL 15's ``COPY ... TO STDOUT`` wrote them (captured from the devstack).
"""

from __future__ import annotations

import orjson
import pytest

from connectors.postgres.rows import Column, RowReader
from tests.support.decoding import FLOAT_JSON, FLOAT_TEXTS

COLUMNS = [
    Column("id", 20, "bigint"),
    Column("i2", 21, "smallint"),
    Column("n", 1700, "numeric"),
    Column("n2", 1700, "numeric(12,2)"),
    Column("f4", 700, "real"),
    Column("f8", 701, "double precision"),
    Column("b", 16, "boolean"),
    Column("t", 25, "text"),
    Column("by", 17, "bytea"),
    Column("at", 1009, "text[]"),
    Column("o", 26, "oid"),
    Column("j", 3802, "jsonb"),
]

LINE = (
    b"2\t32767\t12345678901234567890.123456789012345678\t9999999999.99\t3.4e+38\t"
    b"1.0000000000000002\tt\tquote ' \" backslash \\\\ newline \\n tab \\t \xc3\xa9\t"
    b'\\\\xdeadbeef00ff\t{"a b","c,d",NULL,"\\\\\\\\"}\t4294967295\t{"f": 1.10}\n'
)


def test_every_kind_of_value() -> None:
    row = RowReader(COLUMNS).row(LINE)
    assert row == {
        "id": 2,
        "i2": 32767,
        "n": "12345678901234567890.123456789012345678",  # exact, as the decoder keeps numerics
        "n2": "9999999999.99",
        "f4": 3.4e38,
        "f8": 1.0000000000000002,
        "b": True,
        "t": "quote ' \" backslash \\ newline \n tab \t é",
        "by": "deadbeef00ff",  # hex digits only, as wal2json prints bytea
        "at": '{"a b","c,d",NULL,"\\\\"}',
        "o": 4294967295,
        "j": '{"f": 1.10}',
    }


def test_nulls_empty_values_and_numbers_json_cannot_hold() -> None:
    line = b"\\N\t0\tNaN\t\\N\tInfinity\t-Infinity\tf\t\t\\\\x\t{}\t0\t\\N\n"
    row = RowReader(COLUMNS).row(line)
    assert row["id"] is None
    assert row["n"] == "NaN"
    assert row["f4"] == "Infinity"
    assert row["f8"] == "-Infinity"
    assert row["b"] is False
    assert row["t"] == ""  # an empty string is not NULL
    assert row["by"] == ""
    assert row["j"] is None


def test_a_row_of_the_wrong_width_is_an_error_not_a_guess() -> None:
    with pytest.raises(ValueError, match="COPY row has 2 fields, expected 12"):
        RowReader(COLUMNS).row(b"1\t2\n")


def test_types_are_what_wal2json_prints() -> None:
    assert dict(RowReader(COLUMNS).types)["n2"] == "numeric(12,2)"


def test_floats_keep_their_sign_and_are_written_as_both_plugins_write_them() -> None:
    columns = [
        Column(f"f{i}", 700 if t == "real" else 701, t) for i, (t, _) in enumerate(FLOAT_TEXTS)
    ]
    line = "\t".join(text for _, text in FLOAT_TEXTS).encode() + b"\n"
    assert orjson.dumps(RowReader(columns).row(line)) == FLOAT_JSON
