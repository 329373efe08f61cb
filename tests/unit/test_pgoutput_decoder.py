"""The pgoutput decoder on captured output (tests/fixtures/pgoutput.jsonl): no server needed.

The fixture is the same WAL as wal2json.jsonl (one workload, two slots), so the strongest check
is that both decoders make the same events of it, save the differences pgoutput is documented
to have.
"""

from __future__ import annotations

import dataclasses
import random
import struct
from typing import Any

import pytest

from cdc.errors import CdcError
from cdc.events import UNAVAILABLE, Change
from connectors.postgres import _tuples, pgoutput
from connectors.postgres.decoding import Begin, Commit, TableInfo
from connectors.postgres.pgoutput import PgOutputDecoder
from connectors.postgres.wal2json import Wal2JsonDecoder
from tests.support.decoding import (
    BODY,
    FIXTURE,
    FLOAT_JSON,
    FLOAT_TEXTS,
    FakeCatalog,
    after_json,
    assert_whole,
    full_identity_update,
    messages,
)

Item = Begin | Change | Commit


def flatten(items: Any) -> list[Item]:
    out: list[Item] = []
    for item in items:
        if item is not None:
            out += item if isinstance(item, tuple) else [item]
    return out


def pgoutput_items(catalog: FakeCatalog | None = None, select: str | None = None) -> list[Item]:
    decoder = PgOutputDecoder(catalog or FakeCatalog(), lambda s, t: select in (None, t))
    return flatten(decoder.decode(payload, lsn) for payload, lsn in messages())


def wal2json_items() -> list[Item]:
    decoder = Wal2JsonDecoder(FakeCatalog(), lambda s, t: True)
    return flatten(decoder.decode(line) for line in FIXTURE.read_bytes().splitlines())


def as_wal2json_would(item: Item) -> Item:
    """What wal2json 2.5 makes of the same change: see pgoutput's module docstring."""
    if isinstance(item, Begin):
        return dataclasses.replace(item, end_lsn=0)
    if not isinstance(item, Change):
        return item

    def nulled(row: dict[str, Any] | None) -> dict[str, Any] | None:
        if row is None:
            return None
        return {k: None if v in ("NaN", "Infinity", "-Infinity") else v for k, v in row.items()}

    # wal2json leaves an unchanged TOASTed column out of an update's columns, so its type too.
    types = tuple(t for t in item.types if t[0] not in item.unavailable)
    return dataclasses.replace(
        item, after=nulled(item.after), before=nulled(item.before), types=types
    )


def test_same_events_as_wal2json_from_the_same_wal() -> None:
    ours = pgoutput_items()
    theirs = wal2json_items()
    assert len(ours) == len(theirs) == 32
    for mine, other in zip(ours, theirs, strict=True):
        expected = dataclasses.replace(other, end_lsn=0) if isinstance(other, Begin) else other
        assert as_wal2json_would(mine) == expected


def test_nan_and_infinity_are_text_not_null() -> None:
    first = next(i for i in pgoutput_items() if isinstance(i, Change))
    assert first.after is not None
    assert (first.after["f8"], first.after["f4"]) == ("NaN", "Infinity")
    assert first.after["n"] == "12345678901234567890.123456789012345678"  # exact, as text
    assert first.after["id"] == 9223372036854775807
    assert first.after["by"] == "deadbeef"


def test_unchanged_toast_is_said_by_the_plugin_not_guessed() -> None:
    catalog = FakeCatalog()
    update = next(i for i in pgoutput_items(catalog) if isinstance(i, Change) and i.op == "u")
    assert update.unavailable == ("big",)
    assert update.after is not None and update.after["big"] == UNAVAILABLE
    assert ("big", "text") in update.types


def test_commit_carries_the_end_begin_the_commit_lsn() -> None:
    items = pgoutput_items()
    theirs = wal2json_items()
    commits = [i for i in items if isinstance(i, Commit)]
    assert commits == [i for i in theirs if isinstance(i, Commit)]
    for begin in (i for i in items if isinstance(i, Begin)):
        # Not known before the commit: a position that confirms the same transaction.
        assert begin.end_lsn == begin.commit_lsn + 1


def test_unselected_tables_produce_nothing_and_cost_no_catalog_read() -> None:
    catalog = FakeCatalog()
    only = [c for c in pgoutput_items(catalog, select="full_ident") if isinstance(c, Change)]
    assert {c.table for c in only} == {"full_ident"}
    assert ("public", "t") not in catalog.refreshed


def test_relation_message_reads_the_catalog_by_oid_not_by_name() -> None:
    catalog = FakeCatalog()
    pgoutput_items(catalog)
    # The name may be another table's by now; the OID is the relation's for its life.
    assert catalog.relations_read == [931720, 931727, 931720]
    assert catalog.refreshed == []


def begin() -> bytes:
    return b"B" + struct.pack(">Qqi", 0x100, 0, 7)


def relation(relid: int = 1) -> bytes:
    column = b"\x01id\x00" + struct.pack(">Ii", 20, -1)
    return b"R" + struct.pack(">I", relid) + b"public\x00t\x00d" + struct.pack(">H", 1) + column


@pytest.mark.parametrize(
    ("message", "problem"),
    [
        (b"I" + struct.pack(">I", 9) + b"N\x00\x01t\x00\x00\x00\x011", "before its R message"),
        (b"I" + struct.pack(">I", 1) + b"N\x00\x02nn", "sent 2 values for public.t"),
        (b"I" + struct.pack(">I", 1) + b"N\x00\x01b\x00\x00\x00\x01\x01", "of kind 'b'"),
        (b"S" + struct.pack(">I", 7), "unknown kind 'S'"),
        (b"T" + struct.pack(">IBI", 1, 0, 9), "truncate of relation 9 before"),
    ],
)
def test_bad_messages_are_named(message: bytes, problem: str) -> None:
    decoder = PgOutputDecoder(FakeCatalog(), lambda s, t: True)
    decoder.decode(begin(), 0x50)
    decoder.decode(relation(), 0x60)
    with pytest.raises(CdcError, match=problem):
        decoder.decode(message, 0x70)


def test_a_minimal_insert_decodes() -> None:
    decoder = PgOutputDecoder(FakeCatalog(), lambda s, t: True)
    decoder.decode(begin(), 0x50)
    decoder.decode(relation(), 0x60)
    change = decoder.decode(b"I" + struct.pack(">I", 1) + b"N\x00\x01t\x00\x00\x00\x0242", 0x70)
    assert isinstance(change, Change)
    assert (change.op, change.after, change.key, change.lsn) == ("c", {"id": 42}, {"id": 42}, 0x70)
    assert change.event_id == f"{0x100}:0"


FULL_TABLES = {"doc": ("id", "n", "body"), "bag_doc": ("n", "body")}
"""REPLICA IDENTITY FULL tables with a TOASTed ``body`` (FakeCatalog's ``doc`` and ``bag_doc``)."""


def full_relation(relid: int, table: str) -> bytes:
    """A ``R`` message of a REPLICA IDENTITY FULL table: every column flagged as identity."""
    oids = {"id": 23, "n": 23, "body": 25}
    names = FULL_TABLES[table]
    columns = b"".join(
        b"\x01" + c.encode() + b"\x00" + struct.pack(">Ii", oids[c], -1) for c in names
    )
    return (
        b"R" + struct.pack(">I", relid) + b"public\x00" + table.encode() + b"\x00f"
        + struct.pack(">H", len(names)) + columns
    )  # fmt: skip


@pytest.mark.parametrize("native", [True, False])
@pytest.mark.parametrize(
    ("table", "new", "old"),
    [
        ("doc", {"id": 1, "n": 2}, {"id": 1, "n": 1, "body": BODY}),  # an update
        ("doc", {"id": 404, "n": 1}, {"id": 1, "n": 1, "body": BODY}),  # a key change
        ("bag_doc", {"n": 2}, {"n": 1, "body": BODY}),  # no primary key: the key is the row
    ],
)
def test_full_identity_unchanged_toast_comes_from_the_old_row(
    monkeypatch: pytest.MonkeyPatch,
    table: str,
    new: dict[str, Any],
    old: dict[str, Any],
    native: bool,
) -> None:
    # pgoutput marks the unchanged value "u" in the new row, and sends the old row ("O") whole:
    # the event carries the value, as wal2json's (the same WAL, hand-made here) does.
    if not native:
        monkeypatch.setattr(pgoutput, "_native_row", None)
    catalog = FakeCatalog()
    catalog.relids[3] = ("public", table)  # the key is read by the relation's OID
    decoder = PgOutputDecoder(catalog, lambda s, t: True)
    decoder.decode(begin(), 0x50)
    decoder.decode(full_relation(3, table), 0x60)

    def values(row: dict[str, Any]) -> list[tuple[str, bytes | None]]:
        return [
            ("u", None) if c not in row else ("t", str(row[c]).encode()) for c in FULL_TABLES[table]
        ]

    message = b"U" + struct.pack(">I", 3) + b"O" + tuple_data(values(old))
    message += b"N" + tuple_data(values(new))
    ours = [c for c in flatten([decoder.decode(message, 0x70)]) if isinstance(c, Change)]
    assert catalog.looked_up == []  # nothing read back: the WAL had it
    whole = {c: ({**old, **new})[c] for c in FULL_TABLES[table]}
    assert ours[-1].after == whole
    for change in ours:
        if change.op != "d":
            assert_whole(change, whole)
    w2j = Wal2JsonDecoder(FakeCatalog(), lambda s, t: True)
    w2j.decode(
        b'{"action":"B","xid":7,"lsn":"0/100","nextlsn":"0/101",'
        b'"timestamp":"2000-01-01 00:00:00+00"}'
    )
    decoded = flatten([w2j.decode(full_identity_update(table, new, old))])
    theirs = [c for c in decoded if isinstance(c, Change)]
    assert len(theirs) == len(decoded) == len(ours)
    assert [(c.op, c.key, c.before, c.after, c.unavailable) for c in ours] == [
        (c.op, c.key, c.before, c.after, c.unavailable) for c in theirs
    ]


# -- the C loop (connectors/postgres/_tuples.c) against the Python one --------------------------

GOOD_TEXT: dict[str, list[bytes]] = {
    "i": [b"0", b"-1", b"42", b"007", b"9223372036854775807", b"-9223372036854775808",
          b"123456789012345678", b"-999999999999999999", b"1234567890123456789",
          b"-99999999999999999999999999999999999999"],
    "f": [b"1.5", b"-0", b"0.1", b"1e+300", b"-3.4e+38", b"4.9e-324", b"1.0000000000000002",
          b"NaN", b"Infinity", b"-Infinity", b"123456789012345678901234567890"],
    "b": [b"t", b"f"],
    "x": [b"\\x", b"\\x00ff", b"\\xdeadbeef"],
    "s": [b"", b"text", "ünï € 🙂".encode(), b"{1,2}", b'{"a": 1}', b"1.50", b"NaN",
          b"2026-11-28 15:13:10.858075+00", b"x" * 70_000],
}  # fmt: skip
"""Each kind's values as PostgreSQL prints them: C decodes all of these itself."""
ODD_TEXT: dict[str, list[bytes]] = {
    "i": [b"", b"-", b" 1", b"1_000", b"+1", b"1.0", b"9" * 70],
    "f": [b"", b"1_0.5", b" 1.5", b"1.5x9", b"1e99999", b"9" * 70],
    "s": [b"\xff\xfe", b"\xc3"],
    "x": [b"\\x\xff"],
}
"""Text PostgreSQL does not print for the kind: C leaves these to Python, which raises or
converts them as it always did."""


def tuple_data(values: list[tuple[str, bytes | None]]) -> bytes:
    """TupleData of ``(kind, text)`` pairs: ``t`` a text value, ``n`` null, ``u`` unchanged."""
    out = struct.pack(">H", len(values))
    for kind, text in values:
        if kind == "n":
            out += b"n"
        elif kind == "u":
            out += b"u"
        else:
            assert text is not None
            out += b"t" + struct.pack(">i", len(text)) + text
    return out


def relation_of(kinds: str) -> Any:
    names = tuple(f"c{i}" for i in range(len(kinds)))
    return pgoutput._Relation(
        schema="public",
        table="t",
        wanted=True,
        names=names,
        converts=tuple(pgoutput._CONVERT.get(k) for k in kinds),
        kinds=kinds.encode(),
        types=(),
        identity=(False,) * len(kinds),
        key=None,
        whole_row_key=False,
    )


def typed(decoded: tuple[dict[str, Any], tuple[str, ...], int]) -> Any:
    row, unavailable, end = decoded
    # A float by its repr: -0.0 == 0.0, but the sign must be the same too.
    return (
        [(k, type(v), repr(v) if type(v) is float else v) for k, v in row.items()],
        unavailable,
        end,
    )


def python_tuple(payload: bytes, rel: Any) -> Any:
    try:
        return typed(PgOutputDecoder._python_tuple(payload, 1, rel))
    except Exception as e:  # what Python raises, C must leave to it
        return type(e)


def test_the_c_loop_is_built() -> None:
    """``make install`` builds it (setup.py); where it could not, everything still works, at
    half the speed, so this is what says it is missing."""
    assert pgoutput.has_c_tuples()


def test_c_and_python_decode_generated_tuples_alike() -> None:
    rng = random.Random(7)
    decoded_by_c = 0
    for _ in range(3000):
        kinds = "".join(rng.choice("ifbxs") for _ in range(rng.randint(1, 12)))
        rel = relation_of(kinds)
        odd = rng.random() < 0.3
        values: list[tuple[str, bytes | None]] = []
        for kind in kinds:
            r = rng.random()
            if r < 0.1:
                values.append(("n", None))
            elif r < 0.15:
                values.append(("u", None))
            else:
                pool = ODD_TEXT.get(kind, []) if odd and rng.random() < 0.3 else []
                values.append(("t", rng.choice(pool or GOOD_TEXT[kind])))
        payload = b"N" + tuple_data(values)
        by_c = _tuples.row(payload, 1, rel.names, rel.kinds, UNAVAILABLE)
        if by_c is None:
            assert odd, f"C left a tuple of well-formed values to Python: {values}"
            continue
        decoded_by_c += 1
        assert typed(by_c) == python_tuple(payload, rel), values
        assert by_c[1] == tuple(n for n, (k, _) in zip(rel.names, values, strict=True) if k == "u")
    assert decoded_by_c > 2000


def test_c_leaves_every_broken_tuple_to_python() -> None:
    """A message cut short, a count that is not the relation's, a value kind it does not know:
    C never reads past the message and never makes a row of it."""
    kinds = "isfbx"
    rel = relation_of(kinds)
    whole = b"N" + tuple_data(
        [("t", b"12"), ("t", "ünï".encode()), ("n", None), ("t", b"t"), ("t", b"\\x00")]
    )
    assert _tuples.row(whole, 1, rel.names, rel.kinds, UNAVAILABLE) is not None
    for cut in range(len(whole)):
        assert _tuples.row(whole[:cut], 1, rel.names, rel.kinds, UNAVAILABLE) is None, cut
    assert _tuples.row(whole, 1, rel.names[:4], rel.kinds[:4], UNAVAILABLE) is None
    null = b"nt\x00\x00\x00\x01t"  # the null, and the bool after it
    binary = whole.replace(null, b"b" + null[1:])  # a binary value: never asked for
    assert binary != whole
    assert _tuples.row(binary, 1, rel.names, rel.kinds, UNAVAILABLE) is None
    huge = b"N" + struct.pack(">H", 1) + b"t" + struct.pack(">I", 0xFFFFFFFF) + b"12"
    assert _tuples.row(huge, 1, rel.names[:1], rel.kinds[:1], UNAVAILABLE) is None


def test_c_and_python_decode_the_fixture_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bool] = []

    def counted(*args: Any) -> Any:
        decoded = _tuples.row(*args)
        calls.append(decoded is not None)
        return decoded

    monkeypatch.setattr(pgoutput, "_native_row", counted)
    with_c = pgoutput_items()
    assert calls and all(calls), "C left tuples of the fixture to Python"
    monkeypatch.setattr(pgoutput, "_native_row", None)
    assert pgoutput_items() == with_c


@pytest.mark.parametrize("in_c", [True, False])
def test_floats_keep_their_sign_and_are_written_as_wal2json_and_snapshots_write_them(
    monkeypatch: pytest.MonkeyPatch, in_c: bool
) -> None:
    if not in_c:
        monkeypatch.setattr(pgoutput, "_native_row", None)
    decoder = PgOutputDecoder(FakeCatalog(), lambda s, t: True)
    decoder.decode(begin(), 0x50)
    columns = b"".join(
        b"\x00f%d\x00" % i + struct.pack(">Ii", 700 if t == "real" else 701, -1)
        for i, (t, _) in enumerate(FLOAT_TEXTS)
    )
    decoder.decode(
        b"R" + struct.pack(">I", 2) + b"public\x00fl\x00f"
        + struct.pack(">H", len(FLOAT_TEXTS)) + columns,
        0x60,
    )  # fmt: skip
    values = tuple_data([("t", text.encode()) for _, text in FLOAT_TEXTS])
    change = decoder.decode(b"I" + struct.pack(">I", 2) + b"N" + values, 0x70)
    assert after_json(change) == FLOAT_JSON


# -- keys from the relation message (tables renamed or dropped since) -----------------------------

INT4, TEXT = 23, 25


def relation_message(
    relid: int, table: str, replident: bytes, columns: list[tuple[str, bool, int]]
) -> bytes:
    """A hand-made ``R`` message: ``columns`` are (name, part of the replica identity, type)."""
    out = b"R" + struct.pack(">I", relid) + b"public\x00" + table.encode() + b"\x00" + replident
    out += struct.pack(">H", len(columns))
    for name, flagged, oid in columns:
        out += bytes([flagged]) + name.encode() + b"\x00" + struct.pack(">Ii", oid, -1)
    return out


def text_tuple(*values: str | None) -> bytes:
    return tuple_data([("n", None) if v is None else ("t", v.encode()) for v in values])


class GoneCatalog(FakeCatalog):
    """A catalog that knows only what ``tables`` and ``relids`` say, and counts name reads."""

    def __init__(self) -> None:
        super().__init__()
        self.tables = {}
        self.relids = {}
        self.by_name: list[tuple[str, str]] = []
        self.types = {(INT4, -1): "integer", (TEXT, -1): "text"}

    def table(
        self, schema: str, table: str, refresh: bool = False, xid: int = 0
    ) -> TableInfo | None:
        self.by_name.append((schema, table))
        return super().table(schema, table, refresh, xid)

    def type_name(self, oid: int, typmod: int) -> str:
        return self.types[(oid, typmod)]


def decoded(catalog: FakeCatalog, *messages: bytes) -> list[Change]:
    decoder = PgOutputDecoder(catalog, lambda s, t: True)
    decoder.decode(begin(), 0x50)
    return [c for c in flatten(decoder.decode(m, 0x70) for m in messages) if isinstance(c, Change)]


def insert(relid: int, *values: str | None) -> bytes:
    return b"I" + struct.pack(">I", relid) + b"N" + text_tuple(*values)


COMPOSITE = [("a", True, INT4), ("b", True, TEXT), ("v", False, TEXT)]


def test_default_identity_key_comes_from_the_flags_when_the_table_is_gone() -> None:
    # Dropped since (no table has OID 7 now): the flagged columns are the primary key.
    catalog = GoneCatalog()
    delete = b"D" + struct.pack(">I", 7) + b"K" + text_tuple("1", "x", None)
    create, gone = decoded(
        catalog, relation_message(7, "old", b"d", COMPOSITE), insert(7, "1", "x", "v"), delete
    )
    assert create.key == {"a": 1, "b": "x"} and gone.key == {"a": 1, "b": "x"}
    assert gone.before == {"a": 1, "b": "x"}
    assert not create.whole_row_key
    assert catalog.by_name == []  # never by name: "old" may be another table by now


def test_primary_key_order_is_read_by_oid_after_a_rename() -> None:
    # Renamed since: the name in the message finds nothing, the OID finds the table.
    catalog = GoneCatalog()
    catalog.tables[("public", "new_name")] = TableInfo(("a", "b", "v"), ("b", "a"), "default")
    catalog.relids[7] = ("public", "new_name")
    (create,) = decoded(
        catalog, relation_message(7, "old", b"d", COMPOSITE), insert(7, "1", "x", "v")
    )
    assert list(create.key or ()) == ["b", "a"]  # the primary key's order, as snapshot reads
    assert catalog.relations_read == [7]


def test_a_catalog_key_the_flags_contradict_is_not_used() -> None:
    # The table's key changed since this message: the message is the truth of its moment.
    catalog = GoneCatalog()
    catalog.tables[("public", "t")] = TableInfo(("a", "b", "v"), ("v",), "default")
    catalog.relids[7] = ("public", "t")
    (create,) = decoded(
        catalog, relation_message(7, "t", b"d", COMPOSITE), insert(7, "1", "x", "v")
    )
    assert create.key == {"a": 1, "b": "x"}


FULL_COLUMNS = [("id", True, INT4), ("v", True, TEXT)]


def test_full_identity_keeps_the_primary_key_the_oid_gives() -> None:
    catalog = GoneCatalog()
    catalog.tables[("public", "f2")] = TableInfo(("id", "v"), ("id",), "full")
    catalog.relids[9] = ("public", "f2")
    update = b"U" + struct.pack(">I", 9) + b"O" + text_tuple("1", "a") + b"N" + text_tuple("1", "b")
    (change,) = decoded(catalog, relation_message(9, "f", b"f", FULL_COLUMNS), update)
    assert (change.op, change.key, change.whole_row_key) == ("u", {"id": 1}, False)
    # The message says FULL: the old row is the before image, whatever the catalog says now.
    assert change.before == {"id": 1, "v": "a"}


def test_full_identity_of_a_dropped_table_uses_what_was_known_of_its_oid() -> None:
    catalog = GoneCatalog()
    catalog.tables[("public", "f")] = TableInfo(("id", "v"), ("id",), "full")
    catalog.relids[9] = ("public", "f")
    decoder = PgOutputDecoder(catalog, lambda s, t: True)
    decoder.decode(begin(), 0x50)
    decoder.decode(relation_message(9, "f", b"f", FULL_COLUMNS), 0x60)
    # Dropped since; the walsender describes it again (as after a change of its schema).
    catalog.relids.clear()
    decoder.decode(relation_message(9, "f", b"f", FULL_COLUMNS), 0x61)
    change = decoder.decode(insert(9, "1", "a"), 0x70)
    assert isinstance(change, Change)
    assert (change.key, change.whole_row_key) == ({"id": 1}, False)


def test_a_table_dropped_while_the_session_lags_is_known_from_its_start() -> None:
    # The session's first relation message reads every table; "f" is dropped later, before
    # the session reaches its changes: its primary key is still known.
    catalog = GoneCatalog()
    catalog.tables[("public", "f")] = TableInfo(("id", "v"), ("id",), "full")
    catalog.tables[("public", "other")] = TableInfo(("id", "v"), ("id",), "default")
    catalog.relids.update({9: ("public", "f"), 4: ("public", "other")})
    decoder = PgOutputDecoder(catalog, lambda s, t: True)
    decoder.decode(begin(), 0x50)
    decoder.decode(relation_message(4, "other", b"d", FULL_COLUMNS), 0x60)
    del catalog.relids[9]
    decoder.decode(relation_message(9, "f", b"f", FULL_COLUMNS), 0x61)
    change = decoder.decode(insert(9, "1", "a"), 0x70)
    assert isinstance(change, Change)
    assert (change.key, change.whole_row_key) == ({"id": 1}, False)


def test_full_identity_without_any_primary_key_is_the_whole_row() -> None:
    catalog = GoneCatalog()
    delete = b"D" + struct.pack(">I", 9) + b"O" + text_tuple("1", "a")
    (gone,) = decoded(catalog, relation_message(9, "bag", b"f", FULL_COLUMNS), delete)
    assert (gone.key, gone.whole_row_key, gone.before) == (
        {"id": 1, "v": "a"},
        True,
        {"id": 1, "v": "a"},
    )


def test_index_identity_key_is_the_flagged_columns_or_the_primary_key() -> None:
    columns = [("id", False, INT4), ("code", True, TEXT)]
    catalog = GoneCatalog()
    (create,) = decoded(catalog, relation_message(5, "t", b"i", columns), insert(5, "1", "c"))
    assert create.key == {"code": "c"}  # gone: the unique index the message names
    catalog.tables[("public", "t")] = TableInfo(("id", "code"), ("id",), "index")
    catalog.relids[5] = ("public", "t")
    (create,) = decoded(catalog, relation_message(5, "t", b"i", columns), insert(5, "1", "c"))
    assert create.key == {"id": 1}  # a primary key there is the key, as in snapshot reads


def test_nothing_identity_has_no_key_and_reads_no_catalog_by_name() -> None:
    catalog = GoneCatalog()
    (create,) = decoded(catalog, relation_message(5, "t", b"n", FULL_COLUMNS), insert(5, "1", "c"))
    assert create.key is None
    assert catalog.by_name == []


def test_generated_columns_a_publication_sends_are_left_out() -> None:
    # PostgreSQL 18 publishes them when the publication says so; events never carry them.
    columns = [("id", True, INT4), ("a", False, INT4), ("b", False, INT4), ("t", False, TEXT)]
    catalog = GoneCatalog()
    catalog.tables[("public", "g")] = TableInfo(("id", "a", "t"), ("id",), "default", True, ("b",))
    catalog.relids[3] = ("public", "g")
    update = (
        b"U"
        + struct.pack(">I", 3)
        + b"N"
        + tuple_data([("t", b"1"), ("t", b"5"), ("t", b"10"), ("u", None)])
    )
    create, change = decoded(
        catalog, relation_message(3, "g", b"d", columns), insert(3, "1", "2", "4", "x"), update
    )
    assert create.after == {"id": 1, "a": 2, "t": "x"}
    assert change.after == {"id": 1, "a": 5, "t": UNAVAILABLE}
    assert change.unavailable == ("t",)
    assert [n for n, _ in change.types] == ["id", "a", "t"]


@pytest.mark.parametrize("items", [pgoutput_items, wal2json_items])
def test_the_last_commit_lsn_is_where_the_last_commit_ended(items: Any) -> None:
    """source.sequence's first LSN is the last commit's end (pgoutput's end_lsn, wal2json's
    nextlsn: the position Debezium reads the COMMIT at, and writes there), not the commit
    record's start."""
    last_end = 0
    seen = 0
    for item in items():
        if isinstance(item, Commit):
            last_end = item.end_lsn
        elif isinstance(item, Change):
            assert item.last_commit_lsn == last_end
            seen += last_end != 0
    assert seen
