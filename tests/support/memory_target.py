"""A sink target held in dicts, written only against :class:`cdc.sink.Target` and the plan.

It proves what docs/sinks.md says of a new target (Redis, HTTP...): one small file that turns a
:class:`cdc.sink.plan.TablePlan` into its store's operations, with every decision (newest event
per key, truncate floors, delete markers, keyless and whole-row tables, refusals) taken from the
plan. The contract suite (tests/test_sink_contract.py) runs it beside PostgreSQL and SQLite.
"""

from __future__ import annotations

__all__ = ["MemoryTarget"]

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from cdc.records import SinkEvent, Version
from cdc.sink import BatchPlan, Partition, TablePlan
from cdc.sink.plan import NO_FLOOR, plan_batch


@dataclass
class Table:
    """One table. A row carries its version as ``_cdc_lsn`` and ``_cdc_index``."""

    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Key (its JSON) -> row, for a table with a key."""
    deletes: dict[str, Version] = field(default_factory=dict)
    """Key -> the newest delete applied to it: older events of the key change nothing."""
    floor: Version = NO_FLOOR
    """The newest truncate applied: events at or below it change nothing."""
    loose: dict[Version, dict[str, Any]] = field(default_factory=dict)
    """Rows of a table without a key, by the version of their insert (each counts once), and of
    a table whose key is the whole row, by their insert or the version that paid their debt."""
    applied: set[Version] = field(default_factory=set)
    """Whole-row changes applied (each counts once)."""
    debts: dict[str, int] = field(default_factory=dict)
    """Row digest -> deletes that came before their insert."""


@dataclass
class Store:
    """What a database would hold: the tables by source table, and the offsets by group."""

    tables: dict[tuple[str, str], Table] = field(default_factory=dict)
    offsets: dict[tuple[str, Partition], int] = field(default_factory=dict)


class MemoryTarget:
    """:class:`cdc.sink.Target` over :class:`Store`; a transaction is a copy swapped in. Targets
    made over the same store see one another's commits, as over one database."""

    def __init__(self, store: Store | None = None) -> None:
        self.store = store if store is not None else Store()

    def stored_offsets(self, group: str, partitions: Sequence[Partition]) -> dict[Partition, int]:
        offsets = self.store.offsets
        return {p: offsets[(group, p)] for p in partitions if (group, p) in offsets}

    def plan(self, events: Sequence[SinkEvent]) -> BatchPlan:
        floors = {name: table.floor for name, table in self.store.tables.items()}
        return plan_batch(events, floors)

    def apply(
        self,
        group: str,
        events: Sequence[SinkEvent],
        offsets: dict[Partition, int],
        before_commit: Callable[[list[tuple[SinkEvent, str]]], None],
        plan: BatchPlan | None = None,
    ) -> None:
        if plan is None or not plan.covers(events):
            plan = self.plan(events)
        store = copy.deepcopy(self.store)
        rejected: list[tuple[SinkEvent, str]] = []
        for table_plan in plan.tables:
            key = (table_plan.schema, table_plan.table)
            rejected += _apply(store.tables.setdefault(key, Table()), table_plan)
        for partition, offset in offsets.items():
            at = store.offsets.get((group, partition), 0)
            store.offsets[(group, partition)] = max(at, offset)
        before_commit(rejected)
        self.store.tables, self.store.offsets = store.tables, store.offsets  # the commit

    def close(self) -> None:
        pass


def _apply(table: Table, plan: TablePlan) -> list[tuple[SinkEvent, str]]:
    """The plan's operations, in its order; a plan made for a stale floor is made again."""
    if plan.stored_floor != table.floor:
        plan = plan.again(stored_floor=table.floor)
    if plan.truncate is not None:
        table.rows = {k: r for k, r in table.rows.items() if _version(r) >= plan.truncate}
        table.loose = {v: r for v, r in table.loose.items() if _version(r) >= plan.truncate}
        table.floor = plan.floor
    for e in plan.deletes:
        k = _key(e)
        row = table.rows.get(k)
        if row is not None and _version(row) < e.version:
            del table.rows[k]
        table.deletes[k] = max(table.deletes.get(k, e.version), e.version)
    for upserts in plan.upserts:
        for e in upserts.events:
            k = _key(e)
            row = table.rows.get(k)
            if table.deletes.get(k, NO_FLOOR) >= e.version:
                continue
            if row is not None and _version(row) >= e.version:
                continue
            row = dict(row or dict.fromkeys(upserts.columns))  # a new row lacks the unavailable
            row.update((c, v) for c, v in (e.after or {}).items() if c not in e.unavailable)
            row["_cdc_lsn"], row["_cdc_index"] = e.version
            table.rows[k] = row
    for e in plan.keyless:
        table.loose.setdefault(e.version, _row(e.after or {}, e.version))
    for change in plan.whole:
        if change.event.version in table.applied:
            continue
        table.applied.add(change.event.version)
        if not change.insert:
            equal = next(
                (v for v, r in table.loose.items() if r["_cdc_row"] == change.digest), None
            )
            if equal is not None:
                del table.loose[equal]
            else:
                table.debts[change.digest] = table.debts.get(change.digest, 0) + 1
        elif table.debts.get(change.digest):
            table.debts[change.digest] -= 1
        else:
            table.loose[change.event.version] = dict(
                _row(change.image, change.event.version), _cdc_row=change.digest
            )
    return list(plan.rejected)


def _key(event: SinkEvent) -> str:
    return orjson.dumps(event.key, option=orjson.OPT_SORT_KEYS).decode()


def _row(image: dict[str, Any], version: Version) -> dict[str, Any]:
    return {**image, "_cdc_lsn": version[0], "_cdc_index": version[1]}


def _version(row: dict[str, Any]) -> Version:
    return (row["_cdc_lsn"], row["_cdc_index"])
