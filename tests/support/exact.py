"""The exact-values table: every type with its edge values, and what cannot be expressed."""

from __future__ import annotations

SCHEMA = """
CREATE TYPE mood AS ENUM ('sad', 'happy', 'ünïcode');
CREATE DOMAIN posint AS int CHECK (VALUE > 0);
CREATE TABLE everything (
    id bigint PRIMARY KEY, i2 smallint, i4 int, i8 bigint, n numeric, n2 numeric(12, 2),
    f4 real, f8 double precision, b bool, t text, vc varchar(20), ch char(4), by bytea, u uuid,
    d date, ts timestamp, tstz timestamptz, tm time, tmtz timetz, iv interval, j json,
    jb jsonb, ai int[], at text[], e mood, dom posint, ip inet, mac macaddr, rng int4range,
    mo money, bits varbit, pt point, tsv tsvector, o oid, big text
);
ALTER TABLE everything ALTER COLUMN big SET STORAGE EXTERNAL;
"""


COLUMNS = [
    "id i2 i4 i8 n n2 f4 f8 b t vc ch by u d ts tstz tm tmtz iv j jb ai at e dom ip mac rng mo"
    " bits pt tsv o big"
][0].split()


ROWS = [
    # extremes and exact numbers
    "(1, -32768, -2147483648, -9223372036854775808, -12345678901234567890.123456789012345678,"
    " -9999999999.99, -3.4e38, -1.7976931348623157e308, false, '', '', '', '\\x', "
    "'00000000-0000-0000-0000-000000000000', '4713-01-01 BC', '-infinity', '-infinity',"
    " '00:00', '00:00+14', '-178000000 years', '[]', '{}', '{}', '{}', 'sad', 1,"
    " '0.0.0.0', '00:00:00:00:00:00', 'empty', -92233720368547758.08, B'', '(0,0)', '', 0, '')",
    "(2, 32767, 2147483647, 9223372036854775807, 12345678901234567890.123456789012345678,"
    " 9999999999.99, 3.4e38, 1.0000000000000002, true, 'quote '' \" backslash \\ newline"
    " \n tab \t \"value\":1 é 漢字 🎉', 'héllo', 'ab', '\\xdeadbeef00ff',"
    " 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '2024-02-29', '2024-01-02 03:04:05.123456',"
    " '2024-01-02 03:04:05.123456+05:30', '23:59:59.999999', '12:00-03:30',"
    ' \'1 year 2 mons 3 days 04:05:06.789\', \'{"a": [1, 2.50, {"value": 3}], "b": null}\','
    " '{\"big\": 123456789012345678901234567890, \"f\": 1.10}', '{1,NULL,-3}',"
    " '{\"a b\",\"c,d\",NULL,\"\\\\\"}', 'ünïcode', 2147483647, '2001:db8::1/64',"
    " '08:00:2b:01:02:03', '[1,5)', 92233720368547758.07, B'10101', '(1.5,-2.25)',"
    " 'a fat cat', 4294967295, repeat('toast', 2000))",
    # nulls everywhere but the key
    "(3" + ", NULL" * (len(COLUMNS) - 1) + ")",
    # values wal2json 2.5 cannot express (documented: they arrive as null)
    "(4, 0, 0, 0, 'NaN', 0, 'NaN', 'Infinity', true, 'x', 'x', 'x', '\\x00', NULL, 'infinity',"
    " 'infinity', 'infinity', '24:00', NULL, NULL, 'null', 'null', NULL, NULL, NULL, NULL,"
    " NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
]


NOT_EXPRESSIBLE = {4: {"n", "f4", "f8"}}  # NaN / Infinity -> null with wal2json 2.5
