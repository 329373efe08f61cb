"""The pgoutput decoder on captured output (tests/fixtures/pgoutput.jsonl): no server needed.

The fixture is the same WAL as wal2json.jsonl (one workload, two slots), so the strongest check
is that both decoders make the same events of it, save the differences pgoutput is documented
to have.
"""

from __future__ import annotations

import dataclasses
import struct
from typing import Any

import orjson
import pytest

from cdc.errors import CdcError
from cdc.events import UNAVAILABLE, Change
from connectors.postgres.decoding import Begin, Commit
from connectors.postgres.pgoutput import PgOutputDecoder
from connectors.postgres.replication import parse_lsn
from connectors.postgres.wal2json import Wal2JsonDecoder
from tests.test_wal2json_decoder import FIXTURE, PGOUTPUT_FIXTURE, FakeCatalog

Item = Begin | Change | Commit


def messages() -> list[tuple[bytes, int]]:
    lines = PGOUTPUT_FIXTURE.read_bytes().splitlines()[1:]
    return [(bytes.fromhex(m["data"]), parse_lsn(m["lsn"])) for m in map(orjson.loads, lines)]


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


def test_relation_message_refreshes_the_catalog() -> None:
    catalog = FakeCatalog()
    pgoutput_items(catalog)
    assert ("public", "t") in catalog.refreshed
    assert ("public", "full_ident") in catalog.refreshed


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
