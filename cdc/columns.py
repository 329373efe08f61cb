"""Columns the source dropped, told by the events themselves (a sink's ``dropped_columns``).

An insert's, update's or read's ``after`` is the whole row: it carries every column the table
had at that change (an unchanged TOASTed value is there as the placeholder). A column exists
from its ``ADD COLUMN`` to its ``DROP COLUMN``, and every such image in between carries it. So a
column carried by an event at version S that an image of a version newer than S lacks was
dropped before that image: nothing else makes an image lack it. Kafka keeps order only within a
partition, so an older event may still arrive carrying the dropped column: its value is from
before the drop, and is left out. Carried by an event newer than the drop, the column was added
again: a new column, whose rows that predate it hold its default (``cdc-missing``), not the old
column's values. Pure logic: each sink keeps a :class:`Ledger` per target table beside its rows.
"""

from __future__ import annotations

__all__ = ["Changes", "Ledger", "follow", "strip"]

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from cdc.records import SinkEvent, Version


@dataclass(slots=True)
class Ledger:
    """A target table's columns as the events told them: the version of an event that carried
    each column (``seen``), or of one that showed it dropped (``dropped``)."""

    seen: dict[str, Version] = field(default_factory=dict)
    dropped: dict[str, Version] = field(default_factory=dict)

    def apply(self, changes: Changes) -> None:
        for column, version in changes.dropped.items():
            self.seen.pop(column, None)
            self.dropped[column] = version
        for column, version in changes.seen.items():
            self.dropped.pop(column, None)
            self.seen[column] = version


@dataclass(slots=True)
class Changes:
    """What a batch of events tells a :class:`Ledger`."""

    seen: dict[str, Version]
    """Columns to record as seen: new ones, and dropped ones added again."""
    dropped: dict[str, Version]
    """Columns the batch shows dropped, each with the version of an image that lacks it."""
    again: set[str]
    """Dropped columns (before or in this batch) that a newer event carries: added again."""
    cut: dict[str, Version]
    """Column -> its drop: events at or before it carry the old column's value (:func:`strip`)."""

    def __bool__(self) -> bool:
        return bool(self.seen or self.dropped)


def follow(ledger: Ledger, events: Iterable[SinkEvent], key: Iterable[str]) -> Changes:
    """What ``events`` (one table's) tell ``ledger``; a key column is never taken as dropped."""
    whole, first, last = _spans(events)
    seen = dict(ledger.seen)
    new = {c: v for c, v in first.items() if c not in seen and c not in ledger.dropped}
    seen.update(new)
    keep = set(key)
    dropped: dict[str, Version] = {}
    for shape, version in whole.items():
        present = set(shape)
        for column, since in seen.items():
            if column not in present and column not in keep and since < version:
                dropped[column] = max(version, dropped.get(column, version))
    cut = {**ledger.dropped, **dropped}
    again = {c for c, v in last.items() if c in cut and v > cut[c]}
    for column in dropped:
        new.pop(column, None)
    new.update((c, last[c]) for c in again)
    carried_old = {c: d for c, d in cut.items() if c in first and first[c] <= d}
    return Changes(new, dropped, again, carried_old)


def _spans(
    events: Iterable[SinkEvent],
) -> tuple[dict[tuple[str, ...], Version], dict[str, Version], dict[str, Version]]:
    """Per set of columns whole rows (``after``) carried, the newest version that carried it;
    per column any image carried, the oldest and the newest version that carried it. One
    ``tuple`` per image: a batch has few shapes, each looked into once."""
    whole: dict[tuple[str, ...], Version] = {}
    images: dict[tuple[str, ...], tuple[Version, Version]] = {}
    for e in events:
        for image in (e.after, e.before):
            if image is None:
                continue
            shape = tuple(image)
            known = images.get(shape)
            if known is None:
                images[shape] = (e.version, e.version)
            elif not known[0] <= e.version <= known[1]:
                images[shape] = (min(known[0], e.version), max(known[1], e.version))
            if image is e.after and e.version > whole.get(shape, _NONE):
                whole[shape] = e.version
    first: dict[str, Version] = {}
    last: dict[str, Version] = {}
    for shape, (low, high) in images.items():
        for column in shape:
            if low < first.get(column, _MAX):
                first[column] = low
            if high > last.get(column, _NONE):
                last[column] = high
    return whole, first, last


def strip(events: Sequence[SinkEvent], cut: dict[str, Version]) -> list[SinkEvent]:
    """``events`` without the values they carry of a column dropped after them (``cut``)."""
    out = []
    for e in events:
        gone = [c for c, d in cut.items() if e.version <= d]
        if gone and any(c in image for image in (e.after, e.before) if image for c in gone):
            out.append(
                dataclasses.replace(
                    e,
                    after=None if e.after is None else _without(e.after, gone),
                    before=None if e.before is None else _without(e.before, gone),
                    unavailable=e.unavailable.difference(gone),
                )
            )
        else:
            out.append(e)
    return out


def _without(image: dict[str, object], gone: list[str]) -> dict[str, object]:
    return {c: v for c, v in image.items() if c not in gone}


_NONE: Version = (-1, -1)
_MAX: Version = (2**63, 2**31)
