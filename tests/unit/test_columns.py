"""cdc.columns: which columns the source dropped, told by the events' whole rows (unit, no
services)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from cdc.columns import Ledger, follow, strip
from cdc.config import parse_config
from cdc.errors import ConfigError
from cdc.records import SinkEvent


def ev(op: str, version: tuple[int, int], row: dict[str, Any]) -> SinkEvent:
    return SinkEvent(
        topic="p.public.t",
        partition=0,
        offset=0,
        schema="public",
        table="t",
        op=op,
        key={"id": row["id"]},
        before={"id": row["id"]} if op == "d" else None,
        after=None if op == "d" else row,
        version=version,
        unavailable=frozenset(),
        types={},
    )


def run(ledger: Ledger, batches: list[list[SinkEvent]]) -> list[list[SinkEvent]]:
    out = []
    for batch in batches:
        changes = follow(ledger, batch, ("id",))
        out.append(strip(batch, changes.cut) if changes.cut else batch)
        ledger.apply(changes)
    return out


HISTORY = [
    ev("c", (10, 0), {"id": 1, "a": 1, "x": "x1"}),
    ev("c", (11, 0), {"id": 2, "a": 2, "x": "x2"}),
    ev("u", (20, 0), {"id": 1, "a": 3}),  # x dropped before 20
    ev("d", (21, 0), {"id": 2}),  # a delete's key-only image says nothing
    ev("c", (30, 0), {"id": 3, "a": 4, "x": "new"}),  # x added again before 30
]


@pytest.mark.parametrize("order", list(itertools.permutations(range(len(HISTORY)))))
def test_any_arrival_order_and_split_ends_the_same(order: tuple[int, ...]) -> None:
    """Whatever order the events arrive in (partitions interleave), in batches of one or all:
    x ends seen again at 30, no event at or before the drop keeps a value of it once the drop
    is known, and the key is never taken as dropped."""
    events = [HISTORY[i] for i in order]
    for batches in ([events], [[e] for e in events]):
        ledger = Ledger()
        out = run(ledger, batches)
        assert "id" in ledger.seen and "id" not in ledger.dropped
        # Seen first as carried, then gone from a newer whole row: every batch order tells it
        # unless every x-carrying event came before any newer whole row lacking it was seen.
        if len(batches) == 1:
            assert ledger.seen["x"] == (30, 0)
            stripped = {e.version: e.after for e in out[0] if e.after is not None}
            assert "x" not in stripped[(10, 0)] and "x" not in stripped[(11, 0)]
            assert stripped[(30, 0)] == {"id": 3, "a": 4, "x": "new"}


def test_a_drop_is_told_only_by_a_newer_whole_row_lacking_the_column() -> None:
    ledger = Ledger()
    run(ledger, [[HISTORY[0]]])
    assert ledger.seen == {"id": (10, 0), "a": (10, 0), "x": (10, 0)}
    # An older whole row lacking x: from before x was added, not a drop.
    run(ledger, [[ev("u", (5, 0), {"id": 9, "a": 0})]])
    assert "x" in ledger.seen and not ledger.dropped
    # A delete lacking it says nothing; a newer update does.
    run(ledger, [[ev("d", (40, 0), {"id": 1})]])
    assert not ledger.dropped
    run(ledger, [[ev("u", (41, 0), {"id": 1, "a": 9})]])
    assert ledger.dropped == {"x": (41, 0)}
    # Older events still carrying it lose its value; a newer one brings the column back.
    (late,) = run(ledger, [[ev("u", (15, 0), {"id": 2, "a": 2, "x": "old"})]])
    assert late[0].after == {"id": 2, "a": 2}
    run(ledger, [[ev("c", (50, 0), {"id": 5, "a": 5, "x": "again"})]])
    assert ledger.seen["x"] == (50, 0) and "x" not in ledger.dropped


def test_the_option_takes_keep_or_drop_only(tmp_path: Any) -> None:
    text = (
        '[kafka]\nbootstrap_servers = "k:9092"\n[[sinks]]\nname = "s"\ntype = "sqlite"\n'
        'topics = ["p.*"]\npath = "x.db"\ndropped_columns = "{}"\n'
    )
    assert parse_config(text.format("drop")).sinks[0].dropped_columns == "drop"
    assert parse_config(text.replace('dropped_columns = "{}"\n', "")).sinks[0].dropped_columns == (
        "keep"
    )
    with pytest.raises(ConfigError, match="dropped_columns"):
        parse_config(text.format("delete"))
