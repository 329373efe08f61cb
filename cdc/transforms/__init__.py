"""Shaping events in the connector before they are published: columns kept, dropped or masked
(:mod:`.columns`), row filters (:mod:`.filters`), routing (:mod:`.routes`) and the outbox
(:mod:`.outbox`).

A connector compiles its rules once (:class:`Transforms`); each table's rules are looked up once
(:meth:`Transforms.shape`), and a table without any has no shape, so the event path costs nothing
when nothing is configured. A shape turns one change into the records to publish, in order, with
the event id the change had: a filter that drops a change never shifts its neighbours' ids.
"""

from __future__ import annotations

__all__ = ["TableShape", "Transforms"]

import dataclasses
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from cdc.config import ConnectorConfig
from cdc.events import Change, Record, SourceInfo, encode, tombstone, topic_for
from cdc.globs import compile_globs
from cdc.transforms.columns import ColumnShaper
from cdc.transforms.filters import RowFilter
from cdc.transforms.outbox import Outbox
from cdc.transforms.routes import Router


class TableInfo(Protocol):
    """What the start-time checks need to know of a captured table (the catalog's
    :class:`connectors.postgres.decoding.TableInfo`)."""

    @property
    def columns(self) -> tuple[str, ...]: ...

    @property
    def key(self) -> tuple[str, ...]:
        """Primary key, else replica-identity index columns, else (REPLICA IDENTITY FULL)
        every column, else nothing."""
        ...

    @property
    def identity(self) -> str:
        """``default``, ``full``, ``index`` or ``nothing`` (REPLICA IDENTITY)."""
        ...

    @property
    def has_primary_key(self) -> bool: ...


@dataclass(slots=True)
class TableShape:
    """One table's transforms, applied in this order: filter, columns, then the outbox or the
    route (or the plain encoding)."""

    filter: RowFilter | None = None
    columns: ColumnShaper | None = None
    outbox: Outbox | None = None
    publish_rows: bool = True
    """With an outbox: also publish the table's row events."""
    route: Router | None = None

    def records(
        self, change: Change, source: SourceInfo, now_ms: int | None, tombstones: bool
    ) -> list[Record]:
        """The records to publish for ``change`` (none when a filter drops it)."""
        op = change.op
        if self.filter is not None:
            kept = self.filter(change)
            if kept is None:
                return []
            change = kept
        if self.columns is not None:
            change = self.columns(change)
        out: list[Record] = []
        if self.outbox is not None:
            # An update the filter made a create (the row moved in) is no new outbox event.
            outboxed = change if op == change.op else dataclasses.replace(change, op=op)
            out.extend(self.outbox.records(outboxed, source))
            if not self.publish_rows:
                return out
        if self.route is not None:
            out.extend(self.route.records(change, source, now_ms, tombstones))
            return out
        record = encode(change, source, now_ms)
        out.append(record)
        if tombstones and change.op == "d":
            out.append(tombstone(record))
        return out


@dataclass
class Transforms:
    """A connector's compiled transforms."""

    config: ConnectorConfig
    _shapes: dict[tuple[str, str], TableShape | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        c = self.config
        salt = c.mask_salt.get_secret_value().encode() if c.mask_salt is not None else b""
        self._salt = salt
        self._column_globs = [(compile_globs(r.tables), r) for r in c.columns]
        self._filter_globs = [(compile_globs(r.tables), r) for r in c.filters]
        self._route_globs = [(compile_globs(r.tables), r) for r in c.routes]
        self._outboxes = {o.table: o for o in c.outbox}
        self.active = bool(c.columns or c.filters or c.routes or c.outbox)
        """Some table may have a shape: when False, :meth:`shape` is never needed."""

    def shape(self, schema: str, table: str) -> TableShape | None:
        """The table's shape, None when no rule names it (cached: once per table)."""
        key = (schema, table)
        try:
            return self._shapes[key]
        except KeyError:
            found = self._shapes[key] = self._compile(schema, table)
            return found

    def lookup(self) -> Callable[[str, str], TableShape | None] | None:
        """:meth:`shape`, or None when nothing is configured (the event path then skips it)."""
        return self.shape if self.active else None

    def _matching(self, rules: list, name: str) -> list:  # type: ignore[type-arg]
        return [rule for pattern, rule in rules if pattern.fullmatch(name)]

    def _compile(self, schema: str, table: str) -> TableShape | None:
        name = f"{schema}.{table}"
        columns = self._matching(self._column_globs, name)
        filters = self._matching(self._filter_globs, name)
        routes = self._matching(self._route_globs, name)
        outbox = self._outboxes.get(name)
        if not (columns or filters or routes or outbox):
            return None
        return TableShape(
            filter=RowFilter.of(filters) if filters else None,
            columns=ColumnShaper.of(columns, self._salt) if columns else None,
            outbox=Outbox(outbox) if outbox else None,
            publish_rows=outbox.publish_rows if outbox else True,
            route=Router(routes[0]) if routes else None,
        )

    def _elsewhere(self, name: str, info: TableInfo, present: list[Counter[str]]) -> frozenset[str]:
        """Columns table ``name`` lacks that every matching rule naming them finds in another
        of its tables: a rule over many tables (``public.*``) names columns some lack. One
        that none of a rule's tables has is a typo, still an error."""
        here = set(info.columns)
        found: dict[str, bool] = {}
        for (pattern, rule), counts in zip(self._column_globs, present, strict=True):
            if not pattern.fullmatch(name):
                continue
            for column in (*rule.include, *rule.exclude, *rule.mask, *rule.hash):
                if column not in here:
                    found[column] = found.get(column, True) and counts[column] > 0
        return frozenset(c for c, ok in found.items() if ok)

    def _partition_problems(
        self, names: Mapping[str, object], partitions: Mapping[tuple[str, str], frozenset[str]]
    ) -> list[str]:
        errors = []
        for kind, rules in (("columns", self._column_globs), ("filters", self._filter_globs)):
            for i, (pattern, _rule) in enumerate(rules):
                for (schema, table), leaves in sorted(partitions.items()):
                    root = f"{schema}.{table}"
                    if root not in names or pattern.fullmatch(root):
                        continue
                    for leaf in sorted(n for n in leaves if pattern.fullmatch(n)):
                        errors.append(
                            f"[[connectors.{kind}]] #{i + 1} names {leaf}, a partition of {root},"
                            f' whose rows are published as {root} (partitions = "root"): name'
                            f" {root} in its tables"
                        )
        return errors

    def problems(
        self,
        tables: Mapping[tuple[str, str], TableInfo],
        partitions: Mapping[tuple[str, str], frozenset[str]] | None = None,
    ) -> tuple[list[str], list[str]]:
        """``(errors, warnings)`` of the rules against the captured tables: a rule naming no
        table warns; a column none of a rule's tables has, or a key column dropped or masked,
        is an error. Each names the rule's table and column. ``partitions``: per captured
        partitioned table, its partitions (``partitions = "root"``, their rows published as
        its): a column rule or filter naming one of them, not the table, is an error (it would
        shape nothing, and the rows would go out as they are)."""
        errors: list[str] = []
        warnings: list[str] = []
        names = {f"{s}.{t}": info for (s, t), info in tables.items()}
        if partitions:
            errors += self._partition_problems(names, partitions)
        # Per column rule, how many of its tables have each column.
        present = [
            Counter(c for n, i in names.items() if pattern.fullmatch(n) for c in i.columns)
            for pattern, _rule in self._column_globs
        ]
        for kind, rules in (
            ("columns", self._column_globs),
            ("filters", self._filter_globs),
            ("routes", self._route_globs),
        ):
            for i, (pattern, _rule) in enumerate(rules):
                if not any(pattern.fullmatch(n) for n in names):
                    warnings.append(f"[[connectors.{kind}]] #{i + 1} matches no captured table")
        for name in self._outboxes:
            if name not in names:
                errors.append(f"outbox table {name} is not a captured table")
        for (schema, table), info in tables.items():
            name = f"{schema}.{table}"
            columns = self._matching(self._column_globs, name)
            if columns:
                elsewhere = self._elsewhere(name, info, present)
                errors += ColumnShaper.of(columns, self._salt).problems(name, info, elsewhere)
            filters = self._matching(self._filter_globs, name)
            if filters:
                errors += RowFilter.of(filters).problems(name, info)
            routes = self._matching(self._route_globs, name)
            if routes:
                errors += Router.problems(routes[0], name, info)
            if (outbox := self._outboxes.get(name)) is not None:
                errors += Outbox.problems(outbox, name, info)
        warnings += self._shared_topics(tables)
        return errors, warnings

    def _shared_topics(self, tables: Mapping[tuple[str, str], TableInfo]) -> list[str]:
        """A warning per topic that routes give several tables whose keys do not name their
        table (two single-table rules onto one topic, or a route onto another table's default
        topic): equal keys of different tables then collide on a compacted topic."""
        c = self.config
        source = SourceInfo(c.name, "db", c.topic_prefix, c.value_mode, schemas=c.schemas)
        on: dict[str, list[tuple[str, bool]]] = {}
        for schema, table in tables:
            name = f"{schema}.{table}"
            outbox = self._outboxes.get(name)
            if outbox is not None and not outbox.publish_rows:
                continue
            routes = self._matching(self._route_globs, name)
            if not routes:
                topic, named = topic_for(c.topic_prefix, schema, table), False
            elif routes[0].by_column is not None:
                continue  # a topic per value
            else:
                router = Router(routes[0])
                topic, named = router.topic_of(schema, table, source), router.names_table
            on.setdefault(topic, []).append((name, named))
        warnings = []
        for topic, found in on.items():
            unnamed = [name for name, named in found if not named]
            if len(found) > 1 and unnamed:
                warnings.append(
                    f"tables {', '.join(n for n, _ in found)} share topic {topic}, and the keys"
                    f" of {', '.join(unnamed)} do not name their table: rows of different tables"
                    " with equal keys collide on a compacted topic (set key_table_field on"
                    " their routes)"
                )
        return warnings
