"""The plan of a batch (cdc.sink.plan): every sink decision, without a target or a service."""

from __future__ import annotations

from typing import Any

import orjson

from cdc.columns import Ledger
from cdc.records import SinkEvent, row_hash
from cdc.sink.plan import (
    BatchPlan,
    follow_columns,
    one_by_one,
    plan_batch,
    plan_table,
    refusal_reason,
    rows_json,
)

TYPES = {"id": "bigint", "v": "text"}


def ev(
    op: str,
    version: tuple[int, int],
    key: int | None,
    after: dict[str, Any] | None = None,
    table: str = "t",
    unavailable: frozenset[str] = frozenset(),
    whole: bool = False,
    missing: dict[str, str] | None = None,
) -> SinkEvent:
    before = None
    keyed = key is not None and op != "t"
    if op == "d":
        before = dict(after or {"id": key})
        after = None
    return SinkEvent(
        topic="src",
        partition=0,
        offset=version[0],
        schema="public",
        table=table,
        op=op,
        key=None if not keyed else dict(before or after or {}) if whole else {"id": key},
        before=before,
        after=None if op in ("d", "t") else dict(after or {"id": key}),
        version=version,
        unavailable=unavailable,
        types=TYPES,
        whole_row_key=whole,
        missing=missing or {},
    )  # fmt: skip


def test_the_newest_event_per_key_split_into_deletes_and_upserts_by_shape() -> None:
    plan = plan_table(
        "public",
        "t",
        [
            ev("c", (1, 0), 1, {"id": 1, "v": "a"}),
            ev("u", (3, 0), 1, {"id": 1, "v": "c"}),
            ev("u", (2, 0), 1, {"id": 1, "v": "b"}),  # older, arriving later
            ev("c", (4, 0), 2, {"id": 2}),
            ev("d", (5, 0), 3),
        ],
        (0, 0),
    )
    assert plan.key == ("id",)
    assert dict(plan.columns) == {"id": "bigint", "v": "text"}
    assert [(u.columns, [e.version for e in u.events]) for u in plan.upserts] == [
        (("id", "v"), [(3, 0)]),
        (("id",), [(4, 0)]),
    ]
    assert [e.version for e in plan.deletes] == [(5, 0)]
    assert plan.truncate is None and plan.floor == (0, 0) and not plan.rejected


def test_a_truncate_floor_leaves_older_events_out() -> None:
    events = [
        ev("c", (5, 0), 1, {"id": 1, "v": "a"}),
        ev("t", (10, 0), None),
        ev("c", (12, 0), 2, {"id": 2, "v": "b"}),
        ev("c", (8, 0), 3, {"id": 3, "v": "late"}),  # older than the truncate: gone
    ]
    plan = plan_table("public", "t", events, (0, 0))
    assert plan.truncate == (10, 0) and plan.floor == (10, 0)
    assert [e.key for u in plan.upserts for e in u.events] == [{"id": 2}]
    # A floor stored by an earlier truncate counts too, and the plan is made again for it.
    stored = plan_table("public", "t", events[2:], (0, 0)).again(stored_floor=(20, 0))
    assert stored.floor == (20, 0) and not stored.upserts and stored.truncate is None


def test_tables_without_a_key() -> None:
    loose = [
        ev("c", (1, 0), None, {"id": 1, "v": "a"}),
        ev("u", (2, 0), None, {"id": 1, "v": "b"}),
        ev("d", (3, 0), None),
        ev("c", (4, 0), None, {"id": 2, "v": "x"}, unavailable=frozenset({"v"})),
    ]
    plan = plan_table("public", "t", loose, (0, 0))
    assert [e.version for e in plan.keyless] == [(1, 0)]
    assert [(e.version, r.split(":")[0]) for e, r in plan.rejected] == [
        ((2, 0), "table public.t has no primary key or replica identity"),
        ((3, 0), "table public.t has no primary key or replica identity"),
        ((4, 0), "table public.t has no primary key, and this 'c' event lacks the value of v"
         " (an unchanged TOASTed value its producer did not send)"),
    ]  # fmt: skip
    # REPLICA IDENTITY FULL: a multiset, in version order; an update of it changes nothing.
    row = {"id": 1, "v": "a"}
    bag = [
        ev("d", (9, 0), 1, row, whole=True),
        ev("u", (8, 0), 1, row, whole=True),
        ev("c", (7, 0), 1, row, whole=True),
    ]
    whole = plan_table("public", "t", bag, (0, 0)).whole
    assert [(w.event.version, w.insert, w.image) for w in whole] == [
        ((7, 0), True, row),
        ((9, 0), False, row),
    ]
    assert {w.digest for w in whole} == {row_hash(row)}


def test_a_default_is_taken_from_any_event_that_says_it() -> None:
    # The first event of the shape (a delete's whole old row) carries no cdc-missing.
    events = [
        ev("d", (1, 0), 1, {"id": 1, "v": "a"}),
        ev("c", (2, 0), 2, {"id": 2, "v": "b"}, missing={"v": "dflt", "gone": "x"}),
    ]
    assert dict(plan_table("public", "t", events, (0, 0)).defaults) == {"v": "dflt"}


def test_a_batch_is_planned_per_table_for_each_floor() -> None:
    events = [ev("c", (5, 0), 1, table="a"), ev("c", (5, 0), 1, table="b")]
    plan = plan_batch(events, {("public", "a"): (6, 0)}, json=True)
    assert isinstance(plan, BatchPlan) and plan.covers(events)
    assert [(t.table, t.stored_floor, len(t.upserts)) for t in plan.tables] == [
        ("a", (6, 0), 0),
        ("b", (0, 0), 1),
    ]
    assert plan.tables[1].upserts[0].json == '[[{"id":1},5,0,{"id":1}]]'
    assert not plan.covers(events[:1])


def test_rows_json_keeps_a_negative_zero_as_text() -> None:
    events = [ev("c", (1, 0), 1, {"id": 1, "v": -0.0}), ev("c", (2, 0), 2, {"id": 2, "v": 0.0})]
    assert orjson.loads(rows_json(events, key=False, image=True, floats=True)) == [
        [None, 1, 0, {"id": 1, "v": "-0.0"}],
        [None, 2, 0, {"id": 2, "v": 0.0}],
    ]
    assert "-0.0" in rows_json(events, key=False, image=True, floats=False)


def test_following_columns_leaves_out_values_of_a_column_dropped_after_them() -> None:
    ledger = Ledger()
    plan = plan_table("public", "t", [ev("c", (10, 0), 1, {"id": 1, "v": "a"})], (0, 0))
    first = follow_columns(ledger, plan, ("id",), drop=True)
    assert sorted(first.record) == [("id", (10, 0), False), ("v", (10, 0), False)]
    later = plan_table(
        "public",
        "t",
        [ev("u", (20, 0), 1, {"id": 1}), ev("u", (15, 0), 2, {"id": 2, "v": "old"})],
        (0, 0),
    )
    changes = follow_columns(ledger, later, ("id",), drop=True)
    assert changes.record == (("v", (20, 0), True),) and changes.remove == ("v",)
    after = sorted((e.after for u in changes.plan.upserts for e in u.events), key=str)
    assert after == [{"id": 1}, {"id": 2}]


def test_one_by_one_plans_each_event_alone_in_version_order() -> None:
    events = [ev("c", (3, 0), 1, table="a"), ev("c", (1, 0), 2, table="b")]
    singly = list(one_by_one(events, {}))
    assert [(e.version, [t.table for t in p.tables]) for e, p in singly] == [
        ((1, 0), ["b"]),
        ((3, 0), ["a"]),
    ]
    assert refusal_reason("value too long") == "the target refused it: value too long"
