"""Partitioned tables whose partitions change while the connector streams.

With ``partitions = "root"`` a partition's changes are published under its partitioned table's
name (the decoder maps them). Neither output plugin says when a partition is attached, detached
or dropped, and none of the three writes a row change: the partitioned table simply gains or
loses rows. So the connector looks at the partition trees of the captured partitioned tables
every few seconds (:meth:`PartitionWatch.look`), remembers them in ``cdc.partitions`` (so a
change made while it was stopped is seen too), and repairs the partitioned table's topic with an
incremental snapshot, requested through ``cdc.signal`` so that it takes its place in the stream:

- a partition attached with rows: a snapshot of the partitioned table (its rows are published
  again as ``r`` events, the attached ones among them);
- a partition detached or dropped, or some (not all) partitions truncated: a truncate event for
  the partitioned table where the signal is in the stream, then a snapshot of it. Its target is
  emptied and filled again: the rows that left with the partition are gone, no other is lost.

Both need a primary key (incremental snapshots read in key order); without one, the target of a
partitioned table keeps the rows of a detached partition, and the log says so.
"""

from __future__ import annotations

__all__ = ["PartitionWatch"]

import logging
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

from cdc.config import ConnectorConfig
from connectors.postgres.catalog import PostgresCatalog
from connectors.postgres.owntables import (
    OWN_SCHEMA,
    forget_partitions,
    request_snapshot,
    save_partitions,
)

log = logging.getLogger(__name__)

_TREES = """
WITH leaves AS (
    SELECT pg_partition_root(c.oid) AS root, c.oid, n.nspname::text AS schema,
           c.relname::text AS name
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relispartition AND c.relkind = 'r')
SELECT rn.nspname::text, r.relname::text, l.oid::bigint, l.schema, l.name
FROM pg_class r JOIN pg_namespace rn ON rn.oid = r.relnamespace
LEFT JOIN leaves l ON l.root = r.oid
WHERE r.relkind = 'p' AND NOT r.relispartition
"""

Tree = dict[int, tuple[str, str]]
"""A partitioned table's partitions that hold rows: oid -> (schema, name)."""


class PartitionWatch:
    """The partition trees of the captured partitioned tables, on the connector's SQL
    connection; see the module docstring."""

    def __init__(
        self,
        config: ConnectorConfig,
        subject: str,
        conn: psycopg.Connection[Any],
        selected: Callable[[str, str], bool],
        enabled: bool,
        remembered: bool = True,
    ) -> None:
        self.config = config
        self.subject = subject
        self.conn = conn
        self.selected = selected
        self.active = config.partitions == "root"
        self.enabled = enabled
        """False without the connector's tables: no snapshots."""
        self.remembered = enabled and remembered
        """``cdc.partitions`` exists: the trees outlive the process."""
        self.catalog = PostgresCatalog(conn)
        self.last_trees: dict[tuple[str, str], Tree] = {}
        """The trees the last look saw."""
        self.snapshotted: set[tuple[str, str]] = set()
        """Detached partitions whose snapshot the last look requested."""
        self._memory: dict[str, frozenset[int]] = {}
        """The trees remembered, as in ``cdc.partitions`` once read."""
        self._loaded = False

    def trees(self) -> dict[tuple[str, str], Tree]:
        found: dict[tuple[str, str], Tree] = {}
        for schema, table, oid, leaf_schema, leaf in self.conn.execute(_TREES).fetchall():
            if schema == OWN_SCHEMA or not self.selected(schema, table):
                continue
            tree = found.setdefault((str(schema), str(table)), {})
            if oid is not None:
                tree[int(oid)] = (str(leaf_schema), str(leaf))
        return found

    def partition_schemas(self) -> frozenset[str]:
        """The schemas that hold partitions of captured partitioned tables."""
        if not self.active:
            return frozenset()
        return frozenset(s for tree in self.trees().values() for s, _ in tree.values())

    def forget(self) -> None:
        """A new slot: what was remembered of another one's stream does not count."""
        self._memory.clear()
        self._loaded = True
        if self.remembered:
            forget_partitions(self.conn, self.config.name)

    def look(self) -> bool:
        """Compare the trees with those remembered; repair what changed. True when a tree
        changed (a table's partitioned table may be another now)."""
        self.snapshotted.clear()
        if not self.active:
            return False
        trees = self.last_trees = self.trees()
        known = self._known()
        changed = False
        for (schema, table), tree in trees.items():
            label = f"{schema}.{table}"
            now = frozenset(tree)
            before = known.pop(label, None)
            if before == now:
                continue
            changed = True
            with self.conn.transaction():
                self._remember(label, now)
                if before is None:
                    continue  # a partitioned table seen for the first time
                gone, new = before - now, now - before
                if gone:
                    self.resync((schema, table), f"{len(gone)} partition(s) detached or dropped")
                    self._snapshot_detached(gone)
                elif any(self._has_rows(tree[oid]) for oid in new):
                    self._snapshot((schema, table), "a partition with rows was attached")
        for label in known:  # dropped, or no longer captured
            changed = True
            self._remember(label, None)
        return changed

    def is_whole(self, root: tuple[str, str], names: set[tuple[str, str]]) -> bool:
        """Whether ``names`` are all of ``root``'s partitions (a truncate of all of them)."""
        tree = self.trees().get(root)
        return tree is not None and set(tree.values()) <= names

    def resync(self, root: tuple[str, str], why: str) -> None:
        """Empty the partitioned table's target and read its rows again."""
        self._snapshot(root, why, truncate=True)

    def _snapshot(self, root: tuple[str, str], why: str, truncate: bool = False) -> None:
        label = ".".join(root)
        info = self.catalog.table(*root, refresh=True)
        if not self.enabled or info is None or not info.has_primary_key:
            log.error(
                "%s: %s: %s, and its target cannot be repaired (%s): it %s",
                self.subject,
                label,
                why,
                "incremental snapshots are unavailable"
                if not self.enabled
                else "no primary key for an incremental snapshot",
                "keeps rows the source no longer has" if truncate else "lacks rows",
            )
            return
        request_snapshot(self.conn, self.config.name, [label], truncate=truncate)
        log.warning(
            "%s: %s: %s; %s",
            self.subject,
            label,
            why,
            "its target is emptied and filled again by an incremental snapshot"
            if truncate
            else "an incremental snapshot of it is requested",
        )

    def _snapshot_detached(self, oids: frozenset[int]) -> None:
        """A detached partition is a table of its own: when captured, its rows are read onto
        its own topic, as those of any table that appears."""
        rows = self.conn.execute(
            "SELECT n.nspname::text, c.relname::text FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.oid = ANY(%s::bigint[]::oid[]) AND NOT c.relispartition",
            (sorted(oids),),
        ).fetchall()
        for schema, table in rows:
            if schema != OWN_SCHEMA and self.selected(schema, table):
                self._snapshot((schema, table), "it was detached from its partitioned table")
                self.snapshotted.add((str(schema), str(table)))

    def _has_rows(self, table: tuple[str, str]) -> bool:
        try:
            row = self.conn.execute(
                sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(sql.Identifier(*table))
            ).fetchone()
        except psycopg.errors.UndefinedTable:
            return False
        return bool(row and row[0])

    def _known(self) -> dict[str, frozenset[int]]:
        if self.remembered and not self._loaded:
            # Read once: the connector is the only writer of its rows (its slot is exclusive).
            rows = self.conn.execute(
                "SELECT table_name, partitions::bigint[] FROM cdc.partitions WHERE connector = %s",
                (self.config.name,),
            ).fetchall()
            self._memory = {str(label): frozenset(int(o) for o in oids) for label, oids in rows}
            self._loaded = True
        return dict(self._memory)

    def _remember(self, label: str, oids: frozenset[int] | None) -> None:
        if oids is None:
            self._memory.pop(label, None)
        else:
            self._memory[label] = oids
        if self.remembered:
            save_partitions(self.conn, self.config.name, label, oids)
