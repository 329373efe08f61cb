"""The captured decoder fixtures and what decoder tests share: expected values, a fake catalog."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from cdc.events import (
    UNAVAILABLE_HEADER,
    Change,
    SourceInfo,
    encode,
)
from connectors.postgres.decoding import TableInfo
from connectors.postgres.replication import parse_lsn
from tests.support import FIXTURES

FIXTURE = FIXTURES / "wal2json.jsonl"


PGOUTPUT_FIXTURE = FIXTURES / "pgoutput.jsonl"


TYPE_NAMES: dict[tuple[int, int], str] = {
    (oid, typmod): name
    for oid, typmod, name in orjson.loads(PGOUTPUT_FIXTURE.read_bytes().split(b"\n", 1)[0])["types"]
}
"""format_type of the fixture's column types, as the capture read them from the server."""


T_COLUMNS = [
    "id",
    "n",
    "f8",
    "f4",
    "b",
    "ts",
    "tstz",
    "d",
    "j",
    "js",
    "arr",
    "tarr",
    "by",
    "u",
    "m",
    "p",
    "big",
    "i2",
    "r",
    "iv",
    "tm",
    "c",
    "vc",
    "mo",
]


class FakeCatalog:
    def __init__(self) -> None:
        self.tables = {
            ("public", "t"): TableInfo(tuple(T_COLUMNS), ("id",), "default"),
            ("public", "full_ident"): TableInfo(("a", "b"), ("a", "b"), "full", False),
            # REPLICA IDENTITY FULL with a TOASTed column, with and without a primary key.
            ("public", "doc"): TableInfo(("id", "n", "body"), ("id",), "full", True),
            ("public", "bag_doc"): TableInfo(("n", "body"), ("n", "body"), "full", False),
        }
        self.relids: dict[int, tuple[str, str]] = {
            931720: ("public", "t"),
            931727: ("public", "full_ident"),
        }
        """The OIDs of the fixture's tables (tests/fixtures/pgoutput.jsonl's R messages)."""
        self.refreshed: list[tuple[str, str]] = []
        self.relations_read: list[int] = []
        self.looked_up: list[tuple[str, dict[str, Any], tuple[str, ...]]] = []
        self.shapes: dict[int, tuple[str, dict[str, str]]] = {}
        self.altered: dict[tuple[str, str], TableInfo] = {}
        """What the database now says of a table, which a cached view shows once refreshed."""

    def table(
        self, schema: str, table: str, refresh: bool = False, xid: int = 0
    ) -> TableInfo | None:
        assert xid > 0, "the decoder must say which transaction the read has to see"
        if refresh:
            self.refreshed.append((schema, table))
            if (schema, table) in self.altered:
                self.tables[(schema, table)] = self.altered.pop((schema, table))
        return self.tables.get((schema, table))

    def relation(self, relid: int, xid: int = 0) -> TableInfo | None:
        assert xid > 0, "the decoder must say which transaction the read has to see"
        self.relations_read.append(relid)
        name = self.relids.get(relid)
        return None if name is None else self.tables.get(name)

    def relations(self, xid: int = 0) -> dict[int, TableInfo]:
        assert xid > 0, "the decoder must say which transaction the read has to see"
        return {
            relid: info
            for relid, name in self.relids.items()
            if (info := self.tables.get(name)) is not None
        }

    def type_name(self, oid: int, typmod: int) -> str:
        return TYPE_NAMES[(oid, typmod)]

    def known_shape(self, relid: int) -> tuple[str, dict[str, str]] | None:
        return self.shapes.get(relid)

    def remember_shape(self, relid: int, name: str, columns: dict[str, str]) -> None:
        self.shapes[relid] = (name, columns)

    def current_values(
        self,
        schema: str,
        table: str,
        key: dict[str, Any],
        columns: Sequence[str],
        xid: int = 0,
    ) -> dict[str, Any] | None:
        self.looked_up.append((table, key, tuple(columns)))
        assert xid > 0, "the decoder must say which transaction the read has to see"
        return {c: f"current {c}" for c in columns} if key != {"id": 404} else None


BODY = "ab12" * 2048
"""A TOASTed value: what the old row of a REPLICA IDENTITY FULL update holds whole."""


def full_identity_update(table: str, new: dict[str, Any], old: dict[str, Any]) -> bytes:
    """wal2json's update of a REPLICA IDENTITY FULL table that left ``body`` unchanged: left out
    of ``columns``, whole in ``identity`` (as PostgreSQL 15 and wal2json 2.5 write it)."""

    def columns(row: dict[str, Any]) -> list[dict[str, Any]]:
        types = {"id": "integer", "n": "integer", "body": "text"}
        return [{"name": c, "type": types[c], "value": v} for c, v in row.items()]

    pk = [{"name": "id", "type": "integer"}] if "id" in old else []
    return orjson.dumps(
        {
            "action": "U",
            "lsn": "0/8",
            "schema": "public",
            "table": table,
            "columns": columns(new),
            "identity": columns(old),
            "pk": pk,
        }
    )


def assert_whole(change: Change, row: dict[str, Any]) -> None:
    """``change`` carries ``row``, its TOASTed value too, and no column is said unavailable."""
    assert change.after == row
    assert change.unavailable == ()
    assert ("body", "text") in change.types
    headers = dict(encode(change, SourceInfo("shop", "db", "shop")).headers)
    assert UNAVAILABLE_HEADER not in headers
    assert orjson.loads(headers["cdc-types"])["body"] == "text"


FLOAT_TEXTS = [
    ("real", "-0"),
    ("real", "0"),
    ("real", "1"),
    ("real", "-42"),
    ("real", "3.4028235e+38"),
    ("real", "-3.4028235e+38"),
    ("real", "1e-45"),
    ("real", "1.2345679e+08"),
    ("double precision", "-0"),
    ("double precision", "0"),
    ("double precision", "100"),
    ("double precision", "123456789012345"),
    ("double precision", "1e+15"),
    ("double precision", "1.7976931348623157e+308"),
    ("double precision", "5e-324"),
    ("double precision", "2.2250738585072014e-308"),
    ("double precision", "-1e-10"),
    ("double precision", "0.5"),
]
"""``real`` and ``double precision`` values as PostgreSQL prints them (checked against 15): signed
zeros and integral values, which a JSON parser reads as integers (``-0`` as 0), and the
extremes (the largest, the smallest subnormal, the smallest normal)."""


FLOAT_JSON = b"{" + b",".join(b'"f%d":%s' % (i, orjson.dumps(float(t))) for i, (_, t) in
                              enumerate(FLOAT_TEXTS)) + b"}"  # fmt: skip
"""The event's ``after`` every producer must write for them: ``-0.0``, ``1.0``, ``5e-324``."""


def after_json(change: Any) -> bytes:
    """The event's ``after`` as the envelope writes it."""
    assert isinstance(change, Change)
    value = encode(change, SourceInfo("s", "d", "s"), now_ms=1).value or b""
    return value[value.index(b'"after":') + 8 : value.index(b',"source"')]


def messages() -> list[tuple[bytes, int]]:
    lines = PGOUTPUT_FIXTURE.read_bytes().splitlines()[1:]
    return [(bytes.fromhex(m["data"]), parse_lsn(m["lsn"])) for m in map(orjson.loads, lines)]
