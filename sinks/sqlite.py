"""The SQLite sink, the embedded default: the PostgreSQL sink's semantics in a single file.

One batch is one ``BEGIN IMMEDIATE`` transaction holding the rows and the offsets
(``_cdc_offsets``). Rows carry their source version (``_cdc_lsn``, ``_cdc_index``) and only move
forward; deletes and truncates leave markers (``_cdc_deletes``, ``_cdc_truncates``) so that older
events arriving later change nothing. The file runs in WAL journal mode; ``synchronous=NORMAL``
is enough because offsets and rows commit together: a commit lost to a power cut is read again.

The plan of a batch (:mod:`cdc.sink.plan`) is turned into statements here; types, names and
literals are :mod:`sinks.sqlite_ddl`'s.
"""

from __future__ import annotations

__all__ = ["SqliteSink", "SqliteTarget"]

import hashlib
import logging
import os
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from cdc.columns import Ledger
from cdc.config import SqliteSinkConfig
from cdc.findings import Finding
from cdc.records import SinkEvent, Version
from cdc.sink import Partition, TargetUnavailable
from cdc.sink.base import TargetSink
from cdc.sink.foreign import Foreign, options_of, pending
from cdc.sink.plan import (
    BatchPlan,
    TablePlan,
    WholeRow,
    follow_columns,
    one_by_one,
    plan_batch,
    refusal_reason,
)
from sinks.sqlite_ddl import (
    BOOKKEEPING,
    INT64_MAX,
    INT64_MIN,
    affinity,
    column_def,
    fold,
    literal,
    quote,
    with_renamed,
)

log = logging.getLogger(__name__)


_UNPLANNED = BatchPlan(())
"""A plan of no event: :meth:`SqliteTarget.apply` plans the batch itself."""


class SqliteSink(TargetSink[SqliteSinkConfig]):
    """Applies events to SQLite idempotently (see :class:`cdc.plugins.Sink`)."""

    def target(self) -> SqliteTarget:
        return SqliteTarget(self.config)

    def check(self) -> list[Finding]:
        subject = f"sink {self.config.name}"
        path = Path(self.config.path)
        if path.exists():
            if os.access(path, os.R_OK | os.W_OK):
                return [Finding.ok(subject, f"{path} exists and is writable")]
            return [Finding.fail(subject, f"{path} exists but is not readable and writable")]
        parent = path.parent if str(path.parent) else Path(".")
        if parent.is_dir() and os.access(parent, os.W_OK):
            return [Finding.ok(subject, f"{path} will be created on first run")]
        return [
            Finding.fail(subject, f"cannot create {path}: {parent} is not a writable directory")
        ]


class SqliteTarget:
    """:class:`cdc.sink.Target` over a SQLite file."""

    def __init__(self, config: SqliteSinkConfig) -> None:
        self.config = config
        try:
            # The runtime applies batches on its applier thread and reads offsets on its own,
            # never both at once (cdc.sink): the connection may move between them.
            self.db = sqlite3.connect(
                config.path, isolation_level=None, timeout=30, check_same_thread=False
            )
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(BOOKKEEPING)
        except sqlite3.OperationalError as e:
            raise TargetUnavailable(f"{config.path}: {e}") from e
        self.columns: dict[str, dict[str, str]] = {}
        self.keys: dict[str, tuple[str, ...]] = {}
        self.ledgers: dict[str, Ledger] = {}
        """Each target table's :class:`~cdc.columns.Ledger` (``_cdc_columns``)."""
        self.foreign = Foreign(
            options_of(config), None, "a SQLite target keeps no PostgreSQL column types"
        )
        """Debezium's records: only those whose schema types every column can be stored."""
        self.names: dict[str, str] = {}
        """The table template's name -> the target table's (:meth:`_target_name`)."""
        self.floors: dict[tuple[str, str], Version] = {}
        """Each source table's truncate floor as last read or written: what :meth:`plan`
        assumes."""
        self.apart: dict[str, set[str]] = {}
        """Per target table, the columns known to be stored under their own name
        (:meth:`_columns_apart`)."""

    def close(self) -> None:
        self.db.close()

    def stored_offsets(self, group: str, partitions: Sequence[Partition]) -> dict[Partition, int]:
        rows = self.db.execute(
            "SELECT topic, partition, next_offset FROM _cdc_offsets WHERE group_id = ?", (group,)
        ).fetchall()
        wanted = set(partitions)
        return {(t, p): o for t, p, o in rows if (t, p) in wanted}

    def plan(self, events: Sequence[SinkEvent]) -> BatchPlan:
        if pending(events):
            return _UNPLANNED  # decoded first, by apply
        return plan_batch(events, self.floors)

    def apply(
        self,
        group: str,
        events: Sequence[SinkEvent],
        offsets: dict[Partition, int],
        before_commit: Callable[[list[tuple[SinkEvent, str]]], None],
        plan: BatchPlan | None = None,
    ) -> None:
        if plan is None or not plan.covers(events):
            if pending(events):
                events, refused = self.foreign.decode(events)
                if refused:
                    told = before_commit
                    before_commit = lambda rejected: told(refused + rejected)  # noqa: E731
            plan = self.plan(events)
        try:
            self._transaction(group, events, offsets, before_commit, plan)
        except sqlite3.IntegrityError:
            # A row the file refuses: find which, one event at a time, and let the rest in.
            self._transaction(group, events, offsets, before_commit, None)

    def _transaction(
        self,
        group: str,
        events: Sequence[SinkEvent],
        offsets: dict[Partition, int],
        before_commit: Callable[[list[tuple[SinkEvent, str]]], None],
        plan: BatchPlan | None,
    ) -> None:
        """One transaction: ``plan``, or without one each event in a savepoint of its own."""
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as error:
            raise TargetUnavailable(f"{self.config.path}: {error}") from error
        try:
            rejected: list[tuple[SinkEvent, str]] = []
            if plan is None:
                for event, single in one_by_one(events, self.floors):
                    self.db.execute("SAVEPOINT event")
                    try:
                        for table_plan in single.tables:
                            rejected += self._apply_table(table_plan)
                        self.db.execute("RELEASE event")
                    except sqlite3.IntegrityError as error:
                        self.db.execute("ROLLBACK TO event")
                        self.db.execute("RELEASE event")
                        self.columns.clear()
                        self.ledgers.clear()
                        rejected.append((event, refusal_reason(str(error))))
            else:
                for table_plan in plan.tables:
                    rejected += self._apply_table(table_plan)
            self.db.executemany(
                "INSERT INTO _cdc_offsets (group_id, topic, partition, next_offset)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (group_id, topic, partition) DO UPDATE"
                " SET next_offset = max(next_offset, excluded.next_offset)",
                [(group, t, p, o) for (t, p), o in offsets.items()],
            )
            before_commit(rejected)
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            self.columns.clear()
            self.ledgers.clear()
            self.names.clear()
            self.apart.clear()
            raise

    def _apply_table(self, plan: TablePlan) -> list[tuple[SinkEvent, str]]:
        name = self._target_name(self.config.table.format(schema=plan.schema, table=plan.table))
        events = self._columns_apart(name, plan.events)
        if events is not plan.events:
            plan = plan.again(events)
        plan = self._follow_columns(name, plan)
        self._ensure_table(name, plan)
        held = self.columns[name]
        # BEGIN IMMEDIATE holds the file's write lock: the floor read here stays true until
        # commit, whatever another process of the group does.
        stored = self._truncated_at(name)
        if plan.stored_floor != stored:
            plan = plan.again(stored_floor=stored)
        self.floors[(plan.schema, plan.table)] = stored
        if plan.truncate is not None:
            self.db.execute(
                f"DELETE FROM {quote(name)} WHERE (_cdc_lsn, _cdc_index) < (?, ?)", plan.truncate
            )
            self.db.execute(
                "INSERT INTO _cdc_truncates (target, lsn, idx) VALUES (?, ?, ?)"
                " ON CONFLICT (target) DO UPDATE SET lsn = excluded.lsn, idx = excluded.idx"
                " WHERE (lsn, idx) < (excluded.lsn, excluded.idx)",
                (name, *plan.truncate),
            )
            self.floors[(plan.schema, plan.table)] = plan.floor
        key = self.keys[name]
        for e in plan.deletes:
            match = " AND ".join(f"{quote(k)} IS ?" for k in key)
            self.db.execute(
                f"DELETE FROM {quote(name)} WHERE {match} AND (_cdc_lsn, _cdc_index) < (?, ?)",
                [*(self._value((e.key or {}).get(k), name, k) for k in key), *e.version],
            )
            self.db.execute(
                "INSERT INTO _cdc_deletes (target, key, lsn, idx) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (target, key) DO UPDATE SET lsn = excluded.lsn, idx = excluded.idx"
                " WHERE (lsn, idx) < (excluded.lsn, excluded.idx)",
                (name, _key_text(e), *e.version),
            )
        for upserts in plan.upserts:
            # Columns the target does not hold were dropped since (dropped_columns = "drop").
            written = [c for c in upserts.columns if c not in upserts.unavailable and c in held]
            cols = ", ".join(quote(c) for c in [*written, "_cdc_lsn", "_cdc_index"])
            marks = ", ".join("?" for _ in range(len(written) + 2))
            sets = ", ".join(
                f"{quote(c)} = excluded.{quote(c)}" for c in [*written, "_cdc_lsn", "_cdc_index"]
            )
            self.db.executemany(
                f"INSERT INTO {quote(name)} ({cols}) SELECT {marks}"
                " WHERE NOT EXISTS (SELECT 1 FROM _cdc_deletes WHERE target = ? AND key = ?"
                " AND (lsn, idx) >= (?, ?))"
                f" ON CONFLICT ({', '.join(quote(k) for k in key)}) DO UPDATE SET {sets}"
                " WHERE (_cdc_lsn, _cdc_index) < (excluded._cdc_lsn, excluded._cdc_index)",
                [
                    [
                        *(self._value((e.after or {}).get(c), name, c) for c in written),
                        *e.version,
                        name,
                        _key_text(e),
                        *e.version,
                    ]
                    for e in upserts.events
                ],
            )
        for e in plan.keyless:
            names = [c for c in e.after or () if c in held]
            cols = ", ".join(quote(c) for c in [*names, "_cdc_lsn", "_cdc_index"])
            marks = ", ".join("?" for _ in range(len(names) + 2))
            self.db.execute(
                f"INSERT INTO {quote(name)} ({cols}) VALUES ({marks})"
                " ON CONFLICT (_cdc_lsn, _cdc_index) DO NOTHING",
                [*(self._value((e.after or {}).get(c), name, c) for c in names), *e.version],
            )
        for change in plan.whole:
            self._apply_whole_row(name, change)
        return list(plan.rejected)

    def _target_name(self, name: str) -> str:
        """The table that holds the rows of the template's ``name``. SQLite's names ignore
        case, PostgreSQL's do not: when another table has ``name`` in another case (tables
        ``Users`` and ``users`` at the source), the later one takes ``name`` with a suffix made
        of it, so that their rows never mix. Only the file tells which came first: the choice
        holds across restarts."""
        known = self.names.get(name)
        if known is not None:
            return known
        taken = {
            str(r[0])
            for r in self.db.execute(
                "SELECT name FROM sqlite_schema WHERE type = 'table' AND name = ? COLLATE NOCASE",
                (name,),
            )
        }
        target = name
        if taken and name not in taken:
            target = f"{name}_{hashlib.sha256(name.encode()).hexdigest()[:8]}"
            log.warning(
                "table %s: SQLite's names ignore case and %s holds another table's rows:"
                " its rows go to %s",
                name,
                ", ".join(sorted(taken)),
                target,
            )
        self.names[name] = target
        return target

    def _columns_apart(self, name: str, events: Sequence[SinkEvent]) -> Sequence[SinkEvent]:
        """The events with their columns under the names the table stores them by. SQLite's
        column names ignore (ASCII) case: a column whose name the table, or a column before it,
        holds in another case (``Id`` and ``id``) is stored under its name with a suffix made of
        it, as :meth:`_target_name` does for tables. Events of a table without such columns are
        returned as they are."""
        shapes = dict.fromkeys(
            tuple(image) for e in events for image in (e.after, e.before) if image
        )
        apart = self.apart.setdefault(name, set())
        columns = [c for c in dict.fromkeys(c for shape in shapes for c in shape) if c not in apart]
        if not columns:
            return events
        held = list(self.columns[name]) if self._exists(name) else []
        folded = {fold(c) for c in held}
        renamed: dict[str, str] = {}
        for column in columns:
            if column in held:
                apart.add(column)
                continue
            if fold(column) in folded:
                renamed[column] = f"{column}_{hashlib.sha256(column.encode()).hexdigest()[:8]}"
                log.warning(
                    "column %s of %s: SQLite's names ignore case and another column has it in"
                    " another case: stored as %s",
                    column,
                    name,
                    renamed[column],
                )
            else:
                apart.add(column)
                folded.add(fold(column))
        if not renamed:
            return events
        apart.difference_update(renamed)  # looked at again each batch: such tables are rare
        return [with_renamed(e, renamed) for e in events]

    def _apply_whole_row(self, name: str, change: WholeRow) -> None:
        """A change of a multiset (:class:`~cdc.sink.plan.WholeRow`)."""
        e, image, digest = change.event, change.image, change.digest
        first = self.db.execute(
            "INSERT INTO _cdc_applied (target, lsn, idx) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
            (name, *e.version),
        ).rowcount
        if not first:
            return
        if not change.insert:
            deleted = self.db.execute(
                f"DELETE FROM {quote(name)} WHERE rowid ="
                f" (SELECT rowid FROM {quote(name)} WHERE _cdc_row = ? LIMIT 1)",
                (digest,),
            ).rowcount
            if not deleted:
                # Stored before a column was added or dropped, its hash was made of the columns
                # it had then: look for an equal row on the columns both hold.
                names = [c for c in image if c in self.columns[name]]
                if names:
                    match = " AND ".join(f"{quote(c)} IS ?" for c in names)
                    deleted = self.db.execute(
                        f"DELETE FROM {quote(name)} WHERE rowid ="
                        f" (SELECT rowid FROM {quote(name)} WHERE {match} LIMIT 1)",
                        [self._value(image[c], name, c) for c in names],
                    ).rowcount
            if not deleted:
                self.db.execute(
                    "INSERT INTO _cdc_debts (target, row_hash, debt) VALUES (?, ?, 1)"
                    " ON CONFLICT (target, row_hash) DO UPDATE SET debt = debt + 1",
                    (name, digest),
                )
            return
        paid = self.db.execute(
            "UPDATE _cdc_debts SET debt = debt - 1 WHERE target = ? AND row_hash = ? AND debt > 0",
            (name, digest),
        ).rowcount
        if paid:
            return
        names = [c for c in image if c in self.columns[name]]
        cols = ", ".join(quote(c) for c in [*names, "_cdc_lsn", "_cdc_index", "_cdc_row"])
        marks = ", ".join("?" for _ in range(len(names) + 3))
        self.db.execute(
            f"INSERT INTO {quote(name)} ({cols}) VALUES ({marks})",
            [*(self._value(image[c], name, c) for c in names), *e.version, digest],
        )

    def _follow_columns(self, name: str, plan: TablePlan) -> TablePlan:
        """Follow the columns the source dropped (:func:`cdc.sink.plan.follow_columns`): drop
        them if so configured; a dropped one added again is a new column, made again. Return the
        plan of the events without values of columns dropped after them."""
        changes = follow_columns(
            self._ledger(name),
            plan,
            self.keys.get(name, ()),
            self.config.dropped_columns == "drop",
        )
        if changes.record:
            self.db.executemany(
                "INSERT INTO _cdc_columns (target, name, lsn, idx, dropped) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (target, name) DO UPDATE SET lsn = excluded.lsn, idx = excluded.idx,"
                " dropped = excluded.dropped",
                [(name, c, *v, dropped) for c, v, dropped in changes.record],
            )
        if changes.remove and self._exists(name):
            held = self.columns[name]
            for column in changes.remove:
                if column in held and column not in self.keys[name]:
                    self.db.execute(f"ALTER TABLE {quote(name)} DROP COLUMN {quote(column)}")
                    del held[column]
                    log.info("dropped column %s of %s: the source dropped it", column, name)
        return changes.plan

    def _ledger(self, name: str) -> Ledger:
        ledger = self.ledgers.get(name)
        if ledger is None:
            ledger = self.ledgers[name] = Ledger()
            for column, lsn, idx, dropped in self.db.execute(
                "SELECT name, lsn, idx, dropped FROM _cdc_columns WHERE target = ?", (name,)
            ):
                (ledger.dropped if dropped else ledger.seen)[column] = (lsn, idx)
        return ledger

    def _exists(self, name: str) -> bool:
        """Whether the table exists; if so, its columns and key are in :attr:`columns` and
        :attr:`keys`."""
        if name in self.columns:
            return True
        rows = self.db.execute(f"PRAGMA table_info({quote(name)})").fetchall()
        if not rows:
            return False
        self.columns[name] = {str(r[1]): str(r[2]) for r in rows}
        self.keys[name] = tuple(str(r[1]) for r in sorted(rows, key=lambda r: r[5]) if r[5])
        return True

    def _ensure_table(self, name: str, plan: TablePlan) -> None:
        wanted = {c: affinity(t) for c, t in plan.columns.items()}
        defaults = {
            c: literal(text, wanted[c], plan.columns[c])
            for c, text in plan.defaults.items()
            if c in wanted
        }
        key = plan.key
        if not self._exists(name):
            defs = [column_def(c, t, defaults.get(c)) for c, t in wanted.items()]
            defs += ["_cdc_lsn INTEGER NOT NULL", "_cdc_index INTEGER NOT NULL"]
            if key:
                defs.append(f"PRIMARY KEY ({', '.join(quote(k) for k in key)})")
            else:  # rows told apart by the inserting event, found by a content hash
                defs += ["_cdc_row TEXT", "UNIQUE (_cdc_lsn, _cdc_index)"]
            self.db.execute(f"CREATE TABLE {quote(name)} ({', '.join(defs)})")
            if not key:
                self.db.execute(
                    f"CREATE INDEX {quote(name + '__cdc_row')} ON {quote(name)} (_cdc_row)"
                )
            log.info("created table %s", name)
            self._exists(name)
        known = self.columns[name]
        for column, kind in wanted.items():
            if column not in known:
                # Rows that predate the column hold its default at the source (cdc-missing).
                definition = column_def(column, kind, defaults.get(column))
                self.db.execute(f"ALTER TABLE {quote(name)} ADD COLUMN {definition}")
                known[column] = kind
                log.info("added column %s %s to %s", column, kind, name)

    def _truncated_at(self, name: str) -> Version:
        row = self.db.execute(
            "SELECT lsn, idx FROM _cdc_truncates WHERE target = ?", (name,)
        ).fetchone()
        return (int(row[0]), int(row[1])) if row else (0, 0)

    def _value(self, value: Any, table: str, column: str) -> Any:
        if value is None or isinstance(value, (int, float)):
            if type(value) is int and not INT64_MIN <= value <= INT64_MAX:
                return str(value)  # beyond SQLite's INTEGER: kept exact, as text
            return value  # bool is an int: True -> 1
        kind = self.columns[table].get(column)
        if kind == "BLOB":
            return bytes.fromhex(str(value))
        if isinstance(value, (dict, list)):
            return orjson.dumps(value).decode()
        return value


def _key_text(event: SinkEvent) -> str:
    return orjson.dumps(event.key).decode()
