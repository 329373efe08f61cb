"""The wal2json decoder on captured output (tests/fixtures/wal2json.jsonl): no server needed."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest

from cdc.events import (
    IDENTITY_HEADER,
    UNAVAILABLE,
    UNAVAILABLE_HEADER,
    Change,
    SourceInfo,
    encode,
    envelope,
)
from connectors.postgres.replication import parse_lsn
from connectors.postgres.wal2json import Begin, Commit, TableInfo, Wal2JsonDecoder

FIXTURE = Path(__file__).parent / "fixtures" / "wal2json.jsonl"
PGOUTPUT_FIXTURE = Path(__file__).parent / "fixtures" / "pgoutput.jsonl"
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
        }
        self.refreshed: list[tuple[str, str]] = []
        self.looked_up: list[tuple[str, dict[str, Any], tuple[str, ...]]] = []

    def table(
        self, schema: str, table: str, refresh: bool = False, xid: int = 0
    ) -> TableInfo | None:
        assert xid > 0, "the decoder must say which transaction the read has to see"
        if refresh:
            self.refreshed.append((schema, table))
        return self.tables.get((schema, table))

    def type_name(self, oid: int, typmod: int) -> str:
        return TYPE_NAMES[(oid, typmod)]

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


def decode_all(select: str = "*") -> list[object]:
    decoder = Wal2JsonDecoder(FakeCatalog(), lambda s, t: select in ("*", t))
    out: list[object] = []
    for line in FIXTURE.read_bytes().splitlines():
        item = decoder.decode(line)
        if isinstance(item, tuple):
            out.extend(item)
        elif item is not None:
            out.append(item)
    return out


def changes() -> list[Change]:
    return [c for c in decode_all() if isinstance(c, Change)]


def test_values_are_exact() -> None:
    first = changes()[0]
    assert first.op == "c"
    assert first.after is not None
    after = first.after
    assert after["id"] == 9223372036854775807
    assert type(after["id"]) is int
    assert after["n"] == "12345678901234567890.123456789012345678"
    assert after["f8"] is None  # wal2json 2.5 writes NaN as null (documented)
    assert after["f4"] is None  # ... and Infinity too
    assert after["b"] is True
    assert after["ts"] == "infinity"
    assert after["tstz"] == "2024-01-01 21:34:05.123456+00"
    assert after["d"] == "2024-01-02"
    assert orjson.loads(after["j"]) == {"a": [1, 2.50, 'x"y'], "value": 3}
    assert after["j"] == '{"a": [1, 2.50, "x\\"y"], "value": 3}'
    assert after["js"] == '{"k":  1e400}'  # json keeps its text exactly
    assert after["arr"] == "{1,NULL,3}"
    assert after["tarr"] == '{"a b","c,d"}'
    assert after["by"] == "deadbeef"
    assert after["u"] == "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
    assert after["m"] == "happy"
    assert after["p"] == "5"  # a domain comes as its text
    assert after["big"] == "x" * 3000
    assert after["i2"] == -32768
    assert after["r"] == "[1,5)"
    assert after["iv"] == "1 day 02:00:00"
    assert after["tm"] == "12:34:56"
    assert after["c"] == "ab "
    assert after["vc"] == "héllo"
    assert after["mo"] == "$12.50"
    assert first.key == {"id": 9223372036854775807}

    second = changes()[1]
    assert second.after is not None
    assert second.after["id"] == -9223372036854775808
    assert second.after["n"] == "-0.000000000000000000001"
    assert second.after["f8"] == 1.0000000000000002
    assert second.after["f4"] == -3.4e38


def test_unchanged_toast_is_marked_never_null() -> None:
    update = changes()[2]
    assert update.op == "u"
    assert update.after is not None
    assert update.after["big"] == UNAVAILABLE
    assert update.unavailable == ("big",)
    assert update.after["i2"] == 1
    assert update.before is None  # default replica identity: no before image for updates
    record = encode(update, SourceInfo("shop", "db", "shop"))
    assert (UNAVAILABLE_HEADER, b'["big"]') in record.headers


def test_primary_key_change_becomes_delete_then_create() -> None:
    delete, create = changes()[3:5]
    assert (delete.op, create.op) == ("d", "c")
    assert delete.key == {"id": -9223372036854775808}
    assert delete.before == {"id": -9223372036854775808}
    assert create.key == {"id": 7}
    assert create.after is not None
    assert create.after["id"] == 7
    assert (delete.commit_lsn, delete.index) == (create.commit_lsn, 0)
    assert create.index == 1


def test_copy_rows_share_an_lsn_but_not_an_event_id() -> None:
    copied = [c for c in changes() if c.table == "t" and c.after and 100 <= c.after["id"] < 200]
    assert len(copied) == 5
    assert len({c.lsn for c in copied}) == 1
    assert [c.event_id for c in copied] == [f"{copied[0].commit_lsn}:{i}" for i in range(5)]


def test_replica_identity_full() -> None:
    ins, moved_from, moved_to, dele = [c for c in changes() if c.table == "full_ident"]
    assert (ins.op, ins.key, ins.after) == ("c", {"a": 1, "b": "x"}, {"a": 1, "b": "x"})
    # With FULL identity the key is the whole row, so an update that changes it moves the row:
    # a delete of the old key (with the whole before image) and a create of the new one.
    assert (moved_from.op, moved_from.key) == ("d", {"a": 1, "b": "x"})
    assert moved_from.before == {"a": 1, "b": "x"}
    assert (moved_to.op, moved_to.key, moved_to.after) == (
        "c",
        {"a": 1, "b": "y"},
        {"a": 1, "b": "y"},
    )
    assert (dele.op, dele.key, dele.before) == ("d", {"a": 1, "b": "y"}, {"a": 1, "b": "y"})
    assert [c.index for c in (ins, moved_from, moved_to, dele)] == [0, 1, 2, 3]
    # No primary key, whole row as key: sinks keep such a table as a multiset of rows.
    assert all(c.whole_row_key for c in (ins, moved_from, moved_to, dele))
    assert (IDENTITY_HEADER, b"full") in encode(ins, SourceInfo("s", "d", "s")).headers
    assert not any(c.whole_row_key for c in changes() if c.table == "t")


def test_transactions_begin_and_commit_with_positions() -> None:
    items = decode_all()
    begins = [i for i in items if isinstance(i, Begin)]
    commits = [i for i in items if isinstance(i, Commit)]
    assert len(begins) == len(commits) == 8
    for b, c in zip(begins, commits, strict=True):
        assert (b.xid, b.commit_lsn, b.end_lsn) == (c.xid, c.commit_lsn, c.end_lsn)
        assert b.end_lsn > b.commit_lsn
    lines = [orjson.loads(x) for x in FIXTURE.read_bytes().splitlines()]
    assert begins[0].commit_lsn == parse_lsn(lines[0]["lsn"])


def test_truncate() -> None:
    truncate = changes()[-1]
    assert (truncate.op, truncate.key, truncate.before, truncate.after) == ("t", None, None, None)


def test_unselected_tables_produce_nothing() -> None:
    only = [c for c in decode_all(select="full_ident") if isinstance(c, Change)]
    assert {c.table for c in only} == {"full_ident"}


@pytest.mark.parametrize("index", range(6))
def test_envelope_is_debeziums(index: int) -> None:
    change = changes()[index]
    record = encode(change, SourceInfo("shop", "shopdb", "shop"), now_ms=1)
    assert record.topic == f"shop.public.{change.table}"
    value = orjson.loads(record.value or b"")
    assert set(value) == {"before", "after", "source", "op", "ts_ms", "transaction"}
    assert value["op"] == change.op
    source = value["source"]
    assert source["connector"] == "postgresql"
    assert source["name"] == "shop"
    assert source["db"] == "shopdb"
    assert source["snapshot"] == "false"
    assert source["lsn"] == change.lsn
    assert source["txId"] == change.xid
    assert orjson.loads(source["sequence"])[1] == str(change.lsn)
    assert dict(record.headers)["cdc-event-id"] == change.event_id.encode()
    assert orjson.loads(record.key or b"null") == change.key
    # Exact numbers survive the encoding: bigint as a JSON integer, numeric as its text.
    if change.after and "n" in change.after:
        assert value["after"]["n"] == change.after["n"]
        assert value["after"]["id"] == change.after["id"]


def test_numeric_with_a_modifier_keeps_its_exact_text() -> None:
    # Captured from wal2json 2.5: the modifier shows even with include-typmod = false.
    decoder = Wal2JsonDecoder(FakeCatalog(), lambda s, t: True)
    decoder.decode(
        b'{"action":"B","xid":1,"lsn":"0/10","nextlsn":"0/20",'
        b'"timestamp":"2026-11-27 05:30:18.979158+00"}'
    )
    change = decoder.decode(
        b'{"action":"I","lsn":"0/8","schema":"public","table":"x","columns":['
        b'{"name":"id","type":"integer","value":1},'
        b'{"name":"n2","type":"numeric(12,2)","value":0.00},'
        b'{"name":"n3","type":"numeric(38,18)","value":-12345678901234567890.123456789012345678},'
        b'{"name":"na","type":"numeric(5,1)[]","value":"{1.0,2.5}"},'
        b'{"name":"f4","type":"real","value":0}],"pk":[{"name":"id","type":"integer"}]}'
    )
    assert isinstance(change, Change)
    assert change.after == {
        "id": 1,
        "n2": "0.00",
        "n3": "-12345678901234567890.123456789012345678",
        "na": "{1.0,2.5}",
        "f4": 0,
    }


def test_a_moved_row_carries_its_unchanged_toasted_values() -> None:
    # PostgreSQL does not log an unchanged TOASTed value when the key changes either; the create
    # at the new key must still carry the whole row, so the decoder reads it from the source.
    catalog = FakeCatalog()
    decoder = Wal2JsonDecoder(catalog, lambda s, t: True)
    decoder.decode(
        b'{"action":"B","xid":1,"lsn":"0/10","nextlsn":"0/20",'
        b'"timestamp":"2026-11-27 05:30:18.979158+00"}'
    )
    columns = ",".join(
        f'{{"name":"{c}","type":"text","value":"x"}}' for c in T_COLUMNS if c not in ("id", "big")
    )
    for new_id, found in ((7, True), (404, False)):
        moved = decoder.decode(
            b'{"action":"U","lsn":"0/8","schema":"public","table":"t","columns":['
            + f'{{"name":"id","type":"bigint","value":{new_id}}},{columns}'.encode()
            + b'],"identity":[{"name":"id","type":"bigint","value":5}],'
            b'"pk":[{"name":"id","type":"bigint"}]}'
        )
        assert isinstance(moved, tuple)
        delete, create = moved
        assert (delete.op, delete.key, create.op, create.key) == (
            "d",
            {"id": 5},
            "c",
            {"id": new_id},
        )
        assert create.after is not None
        if found:
            assert create.after["big"] == "current big"
            assert create.unavailable == ()
        else:  # gone already: a later delete at the source will remove it from the sinks too
            assert create.after["big"] == UNAVAILABLE
            assert create.unavailable == ("big",)
    assert catalog.looked_up == [("t", {"id": 7}, ("big",)), ("t", {"id": 404}, ("big",))]


NAMES = ["shop", 'sh"op', "100%", "%d%b", "ünï\\code", "tab\tle"]


@pytest.mark.parametrize("name", NAMES)
def test_the_envelope_is_written_as_its_dict_would_be(name: str) -> None:
    """:func:`encode` fills a per-table template instead of dumping :func:`envelope`'s dict:
    byte for byte the same JSON, whatever the names hold (quotes, ``%``, escapes)."""
    source = SourceInfo(name, f"{name}db", f"{name}prefix")
    for change in changes():
        for variant in (
            change,
            dataclasses.replace(change, schema=name, table=name, snapshot="incremental"),
            dataclasses.replace(change, snapshot="last", total_order=7, data_collection_order=3),
        ):
            record = encode(variant, source, now_ms=1_795_000_000_123)
            assert record.value == orjson.dumps(envelope(variant, source, 1_795_000_000_123))


def test_partitions_are_published_under_their_partitioned_table() -> None:
    """wal2json names the partition: the decoder publishes the change under its root's name
    and key, and a statement's truncate of a partitioned table (named with each partition)
    once, while a later truncate in the same transaction is published again."""
    catalog = FakeCatalog()
    catalog.tables[("public", "m")] = TableInfo(("id", "k", "v"), ("id", "k"), "default")
    roots = {("public", "m1"): ("public", "m"), ("public", "m2"): ("public", "m")}
    decoder = Wal2JsonDecoder(
        catalog, lambda s, t: t == "m", lambda s, t, xid: roots.get((s, t), (s, t))
    )

    def msg(**fields: Any) -> bytes:
        return orjson.dumps({"schema": "public", "lsn": "0/10", **fields})

    def cols(id_: int, k: int) -> list[dict[str, Any]]:
        return [
            {"name": "id", "type": "integer", "value": id_},
            {"name": "k", "type": "integer", "value": k},
            {"name": "v", "type": "text", "value": "x"},
        ]

    begin = {"action": "B", "xid": 7, "lsn": "0/10", "nextlsn": "0/20"}
    begin["timestamp"] = "2026-11-27 05:30:18.979158+00"
    decoder.decode(orjson.dumps(begin))
    insert = decoder.decode(msg(action="I", table="m1", columns=cols(1, 1), pk=[]))
    assert isinstance(insert, Change)
    assert (insert.schema, insert.table, insert.key) == ("public", "m", {"id": 1, "k": 1})
    truncates = [decoder.decode(msg(action="T", table=t, lsn="0/11")) for t in ("m", "m1", "m2")]
    assert [c.table if isinstance(c, Change) else c for c in truncates] == ["m", None, None]
    assert decoder.truncated == {("public", "m"): {("public", t) for t in ("m", "m1", "m2")}}
    again = decoder.decode(msg(action="T", table="m2", lsn="0/12"))
    assert isinstance(again, Change)
    assert (again.op, again.table) == ("t", "m")
    # Another table is not captured, whatever its name.
    assert decoder.decode(msg(action="I", table="other", columns=cols(1, 1))) is None
