"""The wal2json decoder on captured output (tests/fixtures/wal2json.jsonl): no server needed."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
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
from tests.support.decoding import (
    BODY,
    FIXTURE,
    FLOAT_JSON,
    FLOAT_TEXTS,
    T_COLUMNS,
    FakeCatalog,
    after_json,
    assert_whole,
    full_identity_update,
)


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


def full_identity_decoder() -> tuple[Wal2JsonDecoder, FakeCatalog]:
    catalog = FakeCatalog()
    decoder = Wal2JsonDecoder(catalog, lambda s, t: True)
    decoder.decode(
        b'{"action":"B","xid":1,"lsn":"0/10","nextlsn":"0/20",'
        b'"timestamp":"2026-11-27 05:30:18.979158+00"}'
    )
    return decoder, catalog


def test_full_identity_update_carries_the_unchanged_toasted_value() -> None:
    # Debezium fills after from the old row; a consumer reading after as the row (Flink's
    # debezium-json) took the placeholder for the value.
    decoder, catalog = full_identity_decoder()
    old = {"id": 1, "n": 1, "body": BODY}
    update = decoder.decode(full_identity_update("doc", {"id": 1, "n": 2}, old))
    assert isinstance(update, Change)
    assert (update.op, update.key, update.before) == ("u", {"id": 1}, old)
    assert_whole(update, {"id": 1, "n": 2, "body": BODY})
    assert catalog.looked_up == []


def test_full_identity_key_change_needs_no_read_back() -> None:
    # The row may have moved on before the connector could read it back at its new key: the old
    # row in the WAL has the value, so the create carries it without a read.
    decoder, catalog = full_identity_decoder()
    old = {"id": 1, "n": 1, "body": BODY}
    moved = decoder.decode(full_identity_update("doc", {"id": 404, "n": 1}, old))
    assert isinstance(moved, tuple)
    delete, create = moved
    assert (delete.op, delete.key, delete.before) == ("d", {"id": 1}, old)
    assert (create.op, create.key) == ("c", {"id": 404})
    assert_whole(create, {"id": 404, "n": 1, "body": BODY})
    assert catalog.looked_up == []


def test_full_identity_keyless_update_is_a_whole_delete_and_create() -> None:
    # A table without a primary key: the key is the whole row, so the create's key holds the
    # value too, and a later delete (whose old row is whole) finds the row the create made.
    decoder, _ = full_identity_decoder()
    old = {"n": 1, "body": BODY}
    moved = decoder.decode(full_identity_update("bag_doc", {"n": 2}, old))
    assert isinstance(moved, tuple)
    delete, create = moved
    assert (delete.op, delete.key, delete.before) == ("d", old, old)
    assert (create.op, create.key) == ("c", {"n": 2, "body": BODY})
    assert create.whole_row_key
    assert_whole(create, {"n": 2, "body": BODY})


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


def wal2json_row(action: str, table: str, row: dict[str, Any], types: dict[str, str]) -> bytes:
    columns = [{"name": n, "type": types[n], "value": v} for n, v in row.items()]
    return orjson.dumps(
        {"action": action, "schema": "public", "table": table, "lsn": "0/18", "columns": columns}
    )


def test_columns_added_with_a_default_say_so_in_a_header() -> None:
    """Rows that predate a column added with a default hold it at the source, though no event
    says so: every event of the table carries the values (``cdc-missing``) for sinks."""
    decoder, catalog = full_identity_decoder()
    types = {"id": "integer", "x": "integer"}
    catalog.tables[("public", "added")] = TableInfo(
        ("id", "x"), ("id",), "default", missing=(("x", "42"),)
    )
    insert = decoder.decode(wal2json_row("I", "added", {"id": 1, "x": 7}, types))
    assert isinstance(insert, Change)
    headers = dict(encode(insert, SourceInfo("shop", "db", "shop")).headers)
    assert orjson.loads(headers["cdc-missing"]) == {"x": "42"}
    assert ("public", "added") in catalog.refreshed  # the cached view may predate the column
    plain = decoder.decode(wal2json_row("I", "t", {"id": 1}, {"id": "integer"}))
    assert isinstance(plain, Change)
    assert "cdc-missing" not in dict(encode(plain, SourceInfo("shop", "db", "shop")).headers)


def test_a_dropped_column_is_not_taken_for_an_unchanged_toasted_value() -> None:
    """An update lacking a column that cannot be TOASTed (an integer) means the cached columns
    predate a DROP COLUMN: the catalog is read again, and the column is not published."""
    decoder, catalog = full_identity_decoder()
    old = TableInfo(("id", "z", "body"), ("id",), "default", toastable=frozenset({"body"}))
    catalog.tables[("public", "dropped")] = old
    decoder.decode(
        wal2json_row(
            "I",
            "dropped",
            {"id": 1, "z": 1, "body": "b"},
            {"id": "integer", "z": "integer", "body": "text"},
        )
    )
    catalog.altered[("public", "dropped")] = TableInfo(
        ("id", "body"), ("id",), "default", toastable=frozenset({"body"})
    )
    catalog.refreshed.clear()
    update = decoder.decode(wal2json_row("U", "dropped", {"id": 1}, {"id": "integer"}))
    assert isinstance(update, Change)
    assert ("public", "dropped") in catalog.refreshed
    assert update.after == {"id": 1, "body": UNAVAILABLE}  # the text may be TOASTed: kept
    assert update.unavailable == ("body",)


def test_schema_changes_that_rows_may_not_show_ask_for_a_reread() -> None:
    """The columns a table was last published with are compared with a change's: a type
    change, a rename or a column added with a default the catalog cannot tell mean its rows may
    hold values no change carries, so the connector is asked to read it again; a column added
    with a default the catalog keeps (``attmissingval``) or none does not."""
    decoder, catalog = full_identity_decoder()
    types = {"id": "integer", "a": "integer"}

    def insert(row: dict[str, Any], info: TableInfo) -> list[tuple[str, str, str]]:
        catalog.tables[("public", "s")] = info
        decoder.decode(wal2json_row("I", "s", row, types))
        asked = list(decoder.rereads)
        decoder.rereads.clear()
        return asked

    base = TableInfo(("id", "a"), ("id",), "default", relid=7)
    assert insert({"id": 1, "a": 1}, base) == []  # first seen: remembered, nothing asked
    assert catalog.shapes[7] == ("public.s", {"id": "integer", "a": "integer"})
    types["x"] = "integer"
    added = dataclasses.replace(base, columns=("id", "a", "x"), missing=(("x", "42"),))
    assert insert({"id": 2, "a": 1, "x": 7}, added) == []
    types["y"] = "integer"
    volatile = dataclasses.replace(added, columns=("id", "a", "x", "y"), unknown=frozenset("y"))
    assert insert({"id": 3, "a": 1, "x": 7, "y": 1}, volatile) == [
        ("public", "s", "column y added with a value the catalog no longer tells")
    ]
    types["a"] = "bigint"
    assert insert({"id": 4, "a": 1, "x": 7, "y": 1}, volatile) == [
        ("public", "s", "column a changed from integer to bigint")
    ]
    del types["y"]
    types["y2"] = "integer"
    renamed = dataclasses.replace(volatile, columns=("id", "a", "x", "y2"), unknown=frozenset())
    assert insert({"id": 5, "a": 1, "x": 7, "y2": 1}, renamed) == [
        ("public", "s", "column(s) y gone and y2 new (renamed?)")
    ]
    keyless = dataclasses.replace(renamed, key=(), has_primary_key=False)
    types["a"] = "numeric"
    assert insert({"id": 6, "a": 1, "x": 7, "y2": 1}, keyless) == []  # cannot: logged instead


def float_columns(texts: Sequence[tuple[str, str]], extra: bytes = b"") -> bytes:
    return (
        b",".join(
            b'{"name":"f%d","type":"%s","value":%s}' % (i, t.encode(), v.encode())
            for i, (t, v) in enumerate(texts)
        )
        + extra
    )


def begun() -> Wal2JsonDecoder:
    """A decoder in a transaction; tables ``fl`` (a column per FLOAT_TEXTS) and ``fl1`` (one):
    REPLICA IDENTITY FULL, no primary key."""
    catalog = FakeCatalog()
    names = tuple(f"f{i}" for i in range(len(FLOAT_TEXTS)))
    catalog.tables[("public", "fl")] = TableInfo(names, names, "full", False)
    catalog.tables[("public", "fl1")] = TableInfo(names[:1], names[:1], "full", False)
    decoder = Wal2JsonDecoder(catalog, lambda s, t: True)
    decoder.decode(
        b'{"action":"B","xid":1,"lsn":"0/10","nextlsn":"0/20",'
        b'"timestamp":"2026-11-27 05:30:18.979158+00"}'
    )
    return decoder


def test_floats_keep_their_sign_and_are_written_as_pgoutput_and_snapshots_write_them() -> None:
    decoder = begun()
    columns = float_columns(FLOAT_TEXTS)
    insert = decoder.decode(
        b'{"action":"I","lsn":"0/8","schema":"public","table":"fl","columns":[' + columns + b"]}"
    )
    assert after_json(insert) == FLOAT_JSON
    assert isinstance(insert, Change) and insert.after is not None
    for i, (_, text) in enumerate(FLOAT_TEXTS):
        value = insert.after[f"f{i}"]
        assert type(value) is float, text
        assert math.copysign(1, value) == math.copysign(1, float(text)), text
        assert value == float(text), text
    # Under REPLICA IDENTITY FULL the old row has them too, and a delete's identity.
    update = decoder.decode(
        b'{"action":"U","lsn":"0/9","schema":"public","table":"fl","columns":[' + columns
        + b'],"identity":[' + columns + b"]}"
    )  # fmt: skip
    assert isinstance(update, Change) and update.before is not None
    assert orjson.dumps(update.before) == orjson.dumps(update.after) == FLOAT_JSON
    delete = decoder.decode(
        b'{"action":"D","lsn":"0/a","schema":"public","table":"fl","identity":[' + columns + b"]}"
    )
    assert isinstance(delete, Change)
    assert orjson.dumps(delete.before) == FLOAT_JSON


def test_a_zero_is_only_negative_where_the_payload_says_so() -> None:
    """Zeros are made floats where they stand, unless the payload may hold a ``-0``: then it is
    parsed again, so a ``-0`` anywhere (even inside a text, which changes nothing) is safe."""
    decoder = begun()
    for texts, extra, want in [
        ([("real", "0"), ("double precision", "-0")], b"", b'{"f0":0.0,"f1":-0.0}'),
        ([("real", "-0"), ("double precision", "0")], b"", b'{"f0":-0.0,"f1":0.0}'),
        (
            [("double precision", "0")],
            b',{"name":"t","type":"text","value":"\\"value\\":-0,"}',
            b'{"f0":0.0,"t":"\\"value\\":-0,"}',
        ),
    ]:
        change = decoder.decode(
            b'{"action":"I","lsn":"0/8","schema":"public","table":"fl","columns":['
            + float_columns(texts, extra)
            + b"]}"
        )
        assert after_json(change) == want


def test_a_column_that_becomes_a_float_is_read_as_one() -> None:
    """``ALTER COLUMN ... TYPE double precision``: the next change's types say so."""
    decoder = begun()
    changes = [
        decoder.decode(
            b'{"action":"I","lsn":"0/8","schema":"public","table":"fl","columns":['
            + float_columns([(t, "0" if t == "integer" else "-0")])
            + b"]}"
        )
        for t in ("integer", "integer", "double precision", "double precision", "integer")
    ]
    assert [after_json(c) for c in changes] == [
        b'{"f0":0}',
        b'{"f0":0}',
        b'{"f0":-0.0}',
        b'{"f0":-0.0}',
        b'{"f0":0}',
    ]
    # One types tuple while the columns stay the same: the cdc-types header is made once.
    types = [c.types for c in changes if isinstance(c, Change)]
    assert types[0] is types[1] and types[2] is types[3]
    assert types[1] != types[2] and types[3] != types[4]


def test_a_zero_that_changes_sign_moves_a_whole_row_key() -> None:
    """Without a primary key, REPLICA IDENTITY FULL, the row is its key: an update from 0 to -0
    is a delete of one row and a create of another (Python's -0.0 == 0.0 must not hide it), or
    sinks, which keep such a table as a multiset, would keep the old row."""
    decoder = begun()
    for old, new, ops in [("0", "-0", ("d", "c")), ("-0", "0", ("d", "c")), ("0", "0", ("u",))]:
        change = decoder.decode(
            b'{"action":"U","lsn":"0/9","schema":"public","table":"fl1","columns":['
            + float_columns([("real", new)])
            + b'],"identity":['
            + float_columns([("real", old)])
            + b"]}"
        )
        changes = change if isinstance(change, tuple) else (change,)
        assert tuple(c.op for c in changes if isinstance(c, Change)) == ops, (old, new)
        images = [c.before or c.after for c in changes if isinstance(c, Change)]
        texts = (old, new) if len(ops) == 2 else (old,)  # an update's image: its before
        assert [orjson.dumps(i) for i in images] == [b'{"f0":%s.0}' % t.encode() for t in texts]


# -- generated columns and key order --------------------------------------------------------------


PK_ID = '[{"name":"id","type":"integer"}]'
BEGIN = (
    b'{"action":"B","xid":9,"lsn":"0/5","nextlsn":"0/6",'
    b'"timestamp":"2026-11-27 05:30:18.979158+00"}'
)


def w2j(action: str, table: str, fields: str, pk: str = PK_ID) -> bytes:
    """A wal2json message; ``fields``: its ``columns`` / ``identity`` members."""
    return (
        f'{{"action":"{action}","lsn":"0/8","schema":"public","table":"{table}",{fields},'
        f'"pk":{pk}}}'
    ).encode()


def col(name: str, value: object, kind: str = "integer") -> str:
    return f'{{"name":"{name}","type":"{kind}","value":{orjson.dumps(value).decode()}}}'


def decode_with(catalog: FakeCatalog, *messages: bytes) -> list[Change]:
    decoder = Wal2JsonDecoder(catalog, lambda s, t: True)
    decoder.decode(BEGIN)
    out: list[Change] = []
    for message in messages:
        item = decoder.decode(message)
        out += item if isinstance(item, tuple) else [item] if isinstance(item, Change) else []
    return out


def test_generated_columns_wal2json_prints_are_left_out() -> None:
    catalog = FakeCatalog()
    catalog.tables[("public", "g")] = TableInfo(("id", "a"), ("id",), "full", True, ("b",))
    row = f"{col('id', 1)},{col('a', 2)},{col('b', 4)}"
    new = f"{col('id', 1)},{col('a', 5)},{col('b', 10)}"
    create, update, delete = decode_with(
        catalog,
        w2j("I", "g", f'"columns":[{row}]'),
        w2j("U", "g", f'"columns":[{new}],"identity":[{row}]'),
        w2j("D", "g", f'"identity":[{new}]'),
    )
    assert create.after == {"id": 1, "a": 2}
    assert [n for n, _ in create.types] == ["id", "a"]
    # Under REPLICA IDENTITY FULL the old row is the before image: without them too, and no
    # column is taken for an unchanged TOASTed value left out.
    assert (update.before, update.after, update.unavailable) == (
        {"id": 1, "a": 2},
        {"id": 1, "a": 5},
        (),
    )
    assert delete.before == {"id": 1, "a": 5}


def test_a_generated_column_added_while_streaming_is_noticed() -> None:
    catalog = FakeCatalog()
    catalog.tables[("public", "g")] = TableInfo(("id", "a"), ("id",), "default")
    decoder = Wal2JsonDecoder(catalog, lambda s, t: True)
    decoder.decode(BEGIN)
    first = decoder.decode(w2j("I", "g", f'"columns":[{col("id", 1)},{col("a", 2)}]'))
    assert isinstance(first, Change) and first.after == {"id": 1, "a": 2}
    # ALTER TABLE g ADD COLUMN b int GENERATED ALWAYS AS (a * 2) STORED: a third column.
    catalog.tables[("public", "g")] = TableInfo(("id", "a"), ("id",), "default", True, ("b",))
    change = decoder.decode(
        w2j("I", "g", f'"columns":[{col("id", 2)},{col("a", 3)},{col("b", 6)}]')
    )
    assert isinstance(change, Change) and change.after == {"id": 2, "a": 3}
    # Once for this change (the generated columns, then the shape), not once a row.
    assert catalog.refreshed == [("public", "g")] * 2


def test_the_key_follows_the_primary_keys_order_not_the_columns() -> None:
    # PRIMARY KEY (b, a): wal2json names the columns a, b (their order in the table); snapshot
    # reads and pgoutput key them b, a. The key's JSON picks the partition: one order for all.
    catalog = FakeCatalog()
    catalog.tables[("public", "o")] = TableInfo(("a", "b", "v"), ("b", "a"), "default")
    pk = '[{"name":"a","type":"integer"},{"name":"b","type":"text"}]'
    row = f"{col('a', 1)},{col('b', 'x', 'text')},{col('v', 'v', 'text')}"
    (create,) = decode_with(catalog, w2j("I", "o", f'"columns":[{row}]', pk))
    assert list(create.key or ()) == ["b", "a"]


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
