"""The exact encodings round-trip every text PostgreSQL prints: the server itself prints odd
values (BC and far years, 1 to 6 fraction digits, mixed-sign and huge intervals, offsets with
seconds, arrays of every element type with quotes, backslashes, ``NULL`` texts, blanks and
unicode, float exponents), read with the connector's pinned session settings, and
``decode(encode(text)) == text`` for each.

Integration test (real PostgreSQL 15): no cdc process, only the server's output functions.
"""

from __future__ import annotations

import json

import psycopg
import pytest

from cdc.values import exact
from connectors.postgres.session import pinned

SCALARS = {
    "date": [
        "2024-01-02",
        "0001-01-01",
        "9999-12-31",
        "10000-01-01",
        "0001-01-01 BC",
        "4713-01-01 BC",
        "infinity",
        "-infinity",
        "5874897-12-31",
        "0010-01-01 BC",
    ],
    "timestamp": [
        "2024-01-02 03:04:05.1",
        "2024-01-02 03:04:05.12",
        "2024-01-02 03:04:05.123",
        "2024-01-02 03:04:05.1234",
        "2024-01-02 03:04:05.12345",
        "2024-01-02 03:04:05.123456",
        "0001-01-01 00:00:00 BC",
        "4713-01-01 BC",
        "10000-01-01 00:00:00.5",
        "294276-12-31 23:59:59.999999",
        "infinity",
        "-infinity",
        "0500-06-01 12:00 BC",
    ],
    "timestamptz": [
        "2024-01-02 03:04:05.1+00",
        "0001-01-01 00:00:00+00 BC",
        "4713-01-01 00:00:00+00 BC",
        "10000-01-01 00:00:00.5+00",
        "294276-12-31 23:59:59.999999+00",
        "infinity",
        "0100-01-01 00:00:00.25+00 BC",
        "2024-06-01 12:00:00+05:30",
    ],
    "timetz": [
        "03:04:05+02",
        "03:04:05.5-03:30",
        "00:00:00-15:59",
        "24:00:00+15:59",
        "12:00:00+05:30:15",
        "12:00:00-00:00:30",
        "12:00:00+00",
        "12:00:00.000001+14",
    ],
    "interval": [
        "-1 year +2 mons -3 days +04:05:06",
        "0",
        "-0.000001 sec",
        "178000000 years",
        "-178000000 years",
        "2147483647 days 2562047788 hours",
        "1 mon -1 sec",
        "-1 mon 1 sec",
        "-1 day -00:00:00.5",
        "2562047788:00:54.775807",
        "-11 mons",
    ],
    "interval year to month": ["1 year 2 mons", "-5 mons"],
    "interval second(3)": ["1.5 sec", "-100000.125 sec"],
}
ARRAYS = [
    """array['a"b','c\\d','NULL','null','',' x ','{}','é€😀',E'a\\tb',E'v\\x0bw','a,b',NULL]""",
    "'{1e5,1e6,1e7,123456789,1e-5,3.4028235e38,-0,NaN,Infinity,-Infinity,1.1}'::real[]",
    "'{1e14,1e15,1e16,1.5e-05,0.0001,-0,NaN,1e308,5e-324,123456789012345678,0.1}'::float8[]",
    "'{NaN,Infinity,-Infinity,1.10,-0.0}'::numeric[]",
    "'{2024-01-02,0001-01-01 BC,infinity,-infinity,10000-01-01}'::date[]",
    "array['2024-01-02 03:04:05.5','4713-01-01 BC','infinity','10000-01-01']::timestamp[]",
    "array['2024-01-02 03:04:05.5+00','4713-01-01 00:00+00 BC','-infinity']::timestamptz[]",
    "'{24:00:00,00:00:00.000001}'::time[]",
    "'{03:04:05+02,12:00:00+05:30:15,00:00:00+00}'::timetz[]",
    "array['-1 year +2 mons -3 days +04:05:06','0','1 day']::interval[]",
    "array['1 year 2 mons']::interval year to month[]",
    "array['\\x'::bytea,'\\xdeadbeef',NULL]",
    "'{t,f,NULL}'::bool[]",
    "'{-9223372036854775808,9223372036854775807}'::int8[]",
    "'{4000000000}'::oid[]",
    """array['{"a": "b,c"}','[]','null']::jsonb[]""",
    "array['[1,10)'::int4range,'empty']",
    "array['[2024-01-01,2024-02-01)'::tstzrange]",
    "array[point(1,2),point(3.5,-4)]",
    "'{1.5,-2}'::money[]",
    "array['ab '::char(3), 'x']::char(3)[]",
    "array['a'::\"char\", ' ']",
    "array['a fat cat'::tsvector]",
    "'{{1,2},{3,4}}'::int[]",
    "'[0:1]={1,2}'::int[]",
    "'{}'::text[]",
    "array[box(point(1,1),point(0,0)),box(point(2,2),point(0,0))]",
    "array['a b','NULL','x']::i22_mood[]",
    "array[1,2]::i22_posint[]",
    "array[row(1,'x y')::i22_pair, row(NULL,'')::i22_pair]",
]


def _round_trip(type_name: str, text: str) -> None:
    encode, decode = exact.encoder(type_name), exact.decoder(type_name)
    if encode is None:
        assert decode is None, type_name
        return
    assert decode is not None, type_name
    wire = json.loads(json.dumps(encode(text)))
    assert decode(wire) == text, (type_name, text, wire)


def test_every_scalar_text_round_trips(database: str) -> None:
    names = {
        "timestamp": "timestamp without time zone",
        "timestamptz": "timestamp with time zone",
        "timetz": "time with time zone",
    }
    with psycopg.connect(pinned(database), autocommit=True) as conn:
        for type_name, values in SCALARS.items():
            for value in values:
                row = conn.execute(f"SELECT %s::{type_name}::text", (value,)).fetchone()
                assert row is not None
                full = names.get(type_name, type_name)
                assert exact.encoder(full) is not None, full
                _round_trip(full, row[0])


@pytest.mark.parametrize("expression", ARRAYS)
def test_every_array_text_round_trips(database: str, expression: str) -> None:
    with psycopg.connect(pinned(database), autocommit=True) as conn:
        conn.execute("CREATE TYPE i22_mood AS ENUM ('a b', 'NULL', 'x')")
        conn.execute("CREATE DOMAIN i22_posint AS int CHECK (VALUE > 0)")
        conn.execute("CREATE TYPE i22_pair AS (a int, b text)")
        row = conn.execute(
            f"SELECT ({expression})::text, format_type(pg_typeof({expression}), NULL)"
        ).fetchone()
        assert row is not None
        text, type_name = row
        _round_trip(type_name, text)
