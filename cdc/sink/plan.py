"""The plan of a batch: what a sink does with its events, decided once for every target.

A target only turns a :class:`TablePlan` into its statements. The plan holds every decision the
sink makes about a table's events: the truncate floor (events at or below it are gone), the
newest event per key (:func:`cdc.records.collapse`) split into upserts grouped by the columns
they carry and deletes (each leaving a marker), the inserts of a table without a key, the
multiset changes of a table whose key is the whole row (REPLICA IDENTITY FULL), and the events
refused with the reason their dead-letter record carries. Columns the source dropped are
followed by :func:`follow_columns`.

Pure: no I/O. The runtime has a target plan a batch on its consuming thread while the batch
before is applied (:meth:`cdc.sink.Target.plan`); the plan assumes the truncate floors last seen,
and the target, which reads the stored floor inside its transaction, plans a table again when it
moved (:meth:`TablePlan.again`).
"""

from __future__ import annotations

__all__ = [
    "FLOAT_TYPES",
    "NO_FLOOR",
    "BatchPlan",
    "ColumnChanges",
    "TablePlan",
    "Upserts",
    "WholeRow",
    "columns_settled",
    "follow_columns",
    "one_by_one",
    "plan_batch",
    "plan_table",
    "refusal_reason",
    "rows_json",
]

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from cdc.columns import Ledger, follow, strip
from cdc.records import SinkEvent, Version, by_shape, by_table, collapse, incomplete, row_hash

NO_FLOOR: Version = (0, 0)
"""The floor of a table never truncated."""
FLOAT_TYPES = frozenset({"real", "double precision"})
"""Source types whose values are floats (a ``-0.0`` among them: :func:`rows_json`)."""


@dataclass(frozen=True, slots=True)
class Upserts:
    """Newest events of their keys that carry the same columns: one set-based statement."""

    columns: tuple[str, ...]
    """The columns the events' ``after`` carries."""
    unavailable: frozenset[str]
    """Columns whose value the events lack (unchanged TOAST): the stored value stays."""
    events: Sequence[SinkEvent]
    json: str | None
    """The events as :func:`rows_json` (key and image) when the plan was asked for it."""


@dataclass(frozen=True, slots=True)
class WholeRow:
    """One change of a table whose key is the whole row, a multiset: each event counts once
    (by its version), a delete removes one equal row, and a delete that arrives before its
    insert leaves a debt that the insert pays instead of inserting."""

    event: SinkEvent
    insert: bool
    """An insert (``c``, ``r``), else a delete of one equal row."""
    image: dict[str, Any]
    """The row inserted or deleted."""
    digest: str
    """:func:`cdc.records.row_hash` of :attr:`image`: how the row is found again."""


@dataclass(frozen=True, slots=True)
class TablePlan:
    """One source table's events of a batch, sorted out for a truncate floor: what to apply,
    in this order (truncate, deletes, upserts, keyless inserts, whole-row changes)."""

    schema: str
    table: str
    events: Sequence[SinkEvent]
    """The table's events in the batch, as planned (after :meth:`again`, as given to it)."""
    stored_floor: Version
    """The floor stored by the target that this plan assumed: the target checks it."""
    floor: Version
    """Events at or below it are gone (the stored floor, or the batch's newest truncate)."""
    truncate: Version | None
    """The batch's newest truncate: delete the rows older than it and store it as the floor."""
    columns: Mapping[str, str]
    """Every column the events carry -> its source type (``cdc-types``; ``""`` when unknown)."""
    defaults: Mapping[str, str]
    """Column -> the value rows that predate it hold (``cdc-missing``, as PostgreSQL's text):
    a column's default when the target adds it."""
    key: tuple[str, ...]
    """The primary key's columns (empty for a table without one, or whose key is the row)."""
    deletes: Sequence[SinkEvent]
    """Newest event per key, a delete: remove older rows of the key and leave a marker, so that
    an older event arriving later does not bring the row back."""
    upserts: tuple[Upserts, ...]
    """Newest event per key, an insert or update: written unless the stored row or a delete
    marker of its key is as new."""
    keyless: Sequence[SinkEvent]
    """Inserts of a table with neither key nor replica identity: each once (by version)."""
    whole: tuple[WholeRow, ...]
    """Changes of a table whose key is the whole row, in version order."""
    rejected: tuple[tuple[SinkEvent, str], ...]
    """Events no target can apply, with the reason their dead-letter record gives."""
    json: bool = False
    """Whether :attr:`Upserts.json` is filled (see :func:`plan_table`)."""

    def again(
        self, events: Sequence[SinkEvent] | None = None, stored_floor: Version | None = None
    ) -> TablePlan:
        """The plan made again, of other events (columns cut or renamed) or for the floor the
        target found stored."""
        return plan_table(
            self.schema,
            self.table,
            self.events if events is None else events,
            self.stored_floor if stored_floor is None else stored_floor,
            json=self.json,
        )


@dataclass(frozen=True, slots=True)
class BatchPlan:
    """A batch's plan: one :class:`TablePlan` per source table, in the batch's order."""

    tables: tuple[TablePlan, ...]

    @property
    def json(self) -> bool:
        """Whether every table's upserts carry their :func:`rows_json`."""
        return all(t.json for t in self.tables)

    def covers(self, events: Sequence[SinkEvent]) -> bool:
        """Whether this is a plan of ``events`` (the same number of events; a target may be
        given a plan and its batch only together)."""
        return sum(len(t.events) for t in self.tables) == len(events)


def plan_batch(
    events: Iterable[SinkEvent],
    floors: Mapping[tuple[str, str], Version],
    json: bool = False,
) -> BatchPlan:
    """Plan each source table's events for its floor in ``floors`` (by ``(schema, table)``;
    :data:`NO_FLOOR` when absent). ``json``: see :func:`plan_table`."""
    return BatchPlan(
        tuple(
            plan_table(schema, table, table_events, floors.get((schema, table), NO_FLOOR), json)
            for (schema, table), table_events in by_table(events).items()
        )
    )


def one_by_one(
    events: Sequence[SinkEvent], floors: Mapping[tuple[str, str], Version], json: bool = False
) -> Iterator[tuple[SinkEvent, BatchPlan]]:
    """Each event alone with its plan, in version order: how a target finds which events of a
    batch it refuses a value of (each applied in a savepoint of its own), lets the others in,
    and dead-letters those with :func:`refusal_reason`."""
    for event in sorted(events, key=_version):
        yield event, plan_batch((event,), floors, json)


def refusal_reason(error: str) -> str:
    """The dead-letter reason of an event whose value the target refused with ``error``."""
    return f"the target refused it: {error}"


def plan_table(
    schema: str,
    table: str,
    events: Sequence[SinkEvent],
    stored_floor: Version,
    json: bool = False,
) -> TablePlan:
    """Sort one table's events out for the truncate floor ``stored_floor``. ``json``: render
    each group of upserts as :func:`rows_json` here, for a target that sends it as one
    parameter: made while planning, it is off the applying thread."""
    columns: dict[str, str] = {}
    defaults: dict[str, str] = {}
    key: tuple[str, ...] = ()
    shapes: set[tuple[str, ...]] = set()
    for e in events:
        if e.missing:
            # Not every event says it (a delete has no cdc-missing): any that does.
            for column, value in e.missing.items():
                if column not in defaults and (
                    (e.after is not None and column in e.after)
                    or (e.before is not None and column in e.before)
                ):
                    defaults[column] = value
        for image in (e.after, e.before):
            if image:
                shape = tuple(image)
                if shape not in shapes:  # a table has few: look at each once
                    shapes.add(shape)
                    for column in shape:
                        if column not in columns:
                            columns[column] = e.types.get(column, "")
        if e.key and not key and not e.whole_row_key:
            key = tuple(e.key)
    truncates = [e.version for e in events if e.op == "t"]
    truncate = max(truncates) if truncates else None
    floor = stored_floor if truncate is None else max(stored_floor, truncate)
    live = [
        e for e in events if e.key and not e.whole_row_key and e.op != "t" and e.version > floor
    ]
    upserts, deletes = collapse(live)
    rejected = [
        (
            e,
            f"table {e.schema}.{e.table} has no primary key or replica identity: its"
            f" {e.op!r} events cannot be matched to a row",
        )
        for e in events
        if not e.key and e.op not in ("c", "r", "t")
    ]
    keyless = [e for e in events if not e.key and e.op in ("c", "r") and e.version > floor]
    whole = [e for e in events if e.whole_row_key and e.version > floor]
    if any(e.unavailable for e in keyless) or any(e.unavailable for e in whole):
        refused = {id(e): reason for e in (*keyless, *whole) if (reason := incomplete(e))}
        if refused:
            rejected += [(e, refused[id(e)]) for e in (*keyless, *whole) if id(e) in refused]
            keyless = [e for e in keyless if id(e) not in refused]
            whole = [e for e in whole if id(e) not in refused]
    floats = json and any(not t or t in FLOAT_TYPES for t in columns.values())
    return TablePlan(
        schema=schema,
        table=table,
        events=events,
        stored_floor=stored_floor,
        floor=floor,
        truncate=truncate,
        columns=columns,
        defaults=defaults,
        key=key,
        deletes=deletes,
        upserts=tuple(
            Upserts(
                shape,
                unavailable,
                group,
                rows_json(group, key=True, image=True, floats=floats) if json else None,
            )
            for shape, unavailable, group in by_shape(upserts)
        ),
        keyless=keyless,
        # An update that keeps the whole row the same changes nothing.
        whole=tuple(_whole_row(e) for e in sorted(whole, key=_version) if e.op in ("c", "r", "d")),
        rejected=tuple(rejected),
        json=json,
    )


def _version(event: SinkEvent) -> Version:
    return event.version


def _whole_row(event: SinkEvent) -> WholeRow:
    insert = event.op != "d"
    image = (event.after if insert else event.before) or {}
    return WholeRow(event, insert, image, row_hash(image))


def rows_json(events: Iterable[SinkEvent], key: bool, image: bool, floats: bool = False) -> str:
    """Each event's ``[key, lsn, index, after image]`` (key and image null when not wanted), as
    one JSON array: a batch as one parameter, one encoder call per batch instead of a call per
    value. msgspec's: it writes integers of any size, which events of other producers may carry
    (decoded exactly by :mod:`cdc.records`).

    ``floats``: the images may hold floats. A ``-0.0`` then travels as the string ``"-0.0"``:
    readers that keep JSON numbers as decimals (PostgreSQL's ``jsonb``) drop a zero's sign,
    while a value's text reaches a column's input function as it is. Only such batches are
    searched, and only those whose JSON holds ``-0.0,`` or ``-0.0}`` are encoded again."""
    rows = [
        (e.key if key else None, e.version[0], e.version[1], e.after if image else None)
        for e in events
    ]
    text = _encode(rows).decode()
    if floats and image and ("-0.0," in text or "-0.0}" in text):
        text = _encode(
            [(k, lsn, idx, _signed_zeros(after)) for k, lsn, idx, after in rows]
        ).decode()
    return text


def _signed_zeros(image: dict[str, Any] | None) -> dict[str, Any] | None:
    if image is None:
        return None
    return {
        c: "-0.0" if type(v) is float and not v and math.copysign(1.0, v) < 0 else v
        for c, v in image.items()
    }


_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True, slots=True)
class ColumnChanges:
    """What a target does about the columns the source dropped (:mod:`cdc.columns`)."""

    record: tuple[tuple[str, Version, bool], ...]
    """``(column, version, dropped)`` to store in the target's column ledger."""
    remove: tuple[str, ...]
    """Columns to drop from the target table, if it holds them (never a key column)."""
    plan: TablePlan
    """The plan, made again without the values events carry of a column dropped after them."""


def columns_settled(ledger: Ledger, plan: TablePlan, key: Iterable[str]) -> bool:
    """Whether ``plan``'s events tell ``ledger`` nothing: nothing to record, drop or leave out.
    ``ledger`` is left as it is."""
    changes = follow(ledger, plan.events, key)
    return not changes and not changes.cut


def follow_columns(
    ledger: Ledger, plan: TablePlan, key: Iterable[str], drop: bool
) -> ColumnChanges:
    """What ``plan``'s events tell ``ledger`` (updated here): a dropped column is dropped from
    the target too if ``drop`` (``dropped_columns = "drop"``); a dropped column added again is a
    new column, made again (the one kept since its drop holds the old one's values)."""
    changes = follow(ledger, plan.events, key)
    ledger.apply(changes)
    remove = list(changes.again)
    if drop:
        remove += [c for c in changes.dropped if c not in changes.again]
    record = [(c, v, True) for c, v in changes.dropped.items() if c not in changes.seen]
    record += [(c, v, False) for c, v in changes.seen.items()]
    if changes.cut:
        plan = plan.again(strip(plan.events, changes.cut))
    return ColumnChanges(tuple(record), tuple(remove), plan)
