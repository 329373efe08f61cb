"""The SQLite sink, the embedded default: the PostgreSQL sink's semantics in a single file.

One batch is one ``BEGIN IMMEDIATE`` transaction holding the rows and the offsets
(``_cdc_offsets``). Rows carry their source version (``_cdc_lsn``, ``_cdc_index``) and only move
forward; deletes and truncates leave markers (``_cdc_deletes``, ``_cdc_truncates``) so that older
events arriving later change nothing. The file runs in WAL journal mode; ``synchronous=NORMAL``
is enough because offsets and rows commit together: a commit lost to a power cut is read again.

Column affinities: integers and booleans INTEGER, ``bytea`` BLOB, floats none (see
:func:`affinity`), everything else TEXT, including numeric, which stays exact as its decimal text.
"""

from __future__ import annotations

__all__ = ["SqliteSink", "SqliteTarget"]

import contextlib
import dataclasses
import hashlib
import logging
import math
import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from cdc.columns import Ledger, follow, strip
from cdc.config import KafkaConfig, SqliteSinkConfig
from cdc.findings import Finding
from cdc.records import SinkEvent, Version, by_shape, by_table, collapse, incomplete, row_hash
from cdc.sink import Partition, SinkRuntime, TargetUnavailable, consumer_lag

log = logging.getLogger(__name__)

BOOKKEEPING = """
CREATE TABLE IF NOT EXISTS _cdc_offsets (
    group_id TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL,
    next_offset INTEGER NOT NULL, PRIMARY KEY (group_id, topic, partition));
CREATE TABLE IF NOT EXISTS _cdc_deletes (
    target TEXT NOT NULL, key TEXT NOT NULL, lsn INTEGER NOT NULL, idx INTEGER NOT NULL,
    PRIMARY KEY (target, key));
CREATE TABLE IF NOT EXISTS _cdc_truncates (
    target TEXT PRIMARY KEY, lsn INTEGER NOT NULL, idx INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS _cdc_applied (
    target TEXT NOT NULL, lsn INTEGER NOT NULL, idx INTEGER NOT NULL,
    PRIMARY KEY (target, lsn, idx));
CREATE TABLE IF NOT EXISTS _cdc_debts (
    target TEXT NOT NULL, row_hash TEXT NOT NULL, debt INTEGER NOT NULL,
    PRIMARY KEY (target, row_hash));
CREATE TABLE IF NOT EXISTS _cdc_columns (
    target TEXT NOT NULL, name TEXT NOT NULL, lsn INTEGER NOT NULL, idx INTEGER NOT NULL,
    dropped INTEGER NOT NULL, PRIMARY KEY (target, name));
"""

_INTEGER = ("smallint", "integer", "bigint", "oid", "boolean")
_REAL = ("real", "double precision")


def affinity(source_type: str) -> str:
    """The SQLite column type for a PostgreSQL type name. Floats get no declared type (so BLOB
    affinity: values are kept as given): a REAL column stores a float with an integral value as
    an integer, and -0.0 comes back as 0.0. Without one, a double is stored as its 8 bytes."""
    if source_type in _INTEGER:
        return "INTEGER"
    if source_type in _REAL:
        return ""
    if source_type == "bytea":
        return "BLOB"
    return "TEXT"


def quote(identifier: str) -> str:
    """SQLite's identifier quoting (the equivalent of psycopg.sql.Identifier)."""
    return '"' + identifier.replace('"', '""') + '"'


class SqliteSink:
    """Applies events to SQLite idempotently (see :class:`cdc.plugins.Sink`)."""

    def __init__(self, config: SqliteSinkConfig, kafka: KafkaConfig) -> None:
        self.config = config
        self.kafka = kafka

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

    def run(self, stop: threading.Event, started: threading.Event | None = None) -> None:
        c = self.config
        runtime = SinkRuntime(c.name, c.group_id, c.topics, self.kafka, lambda: SqliteTarget(c))
        runtime.run(stop, started)

    def status(self) -> list[Finding]:
        c = self.config
        return consumer_lag(c.name, c.group_id, c.topics, self.kafka, lambda: SqliteTarget(c))


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
        self.names: dict[str, str] = {}
        """The table template's name -> the target table's (:meth:`_target_name`)."""
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

    def apply(
        self,
        group: str,
        events: Sequence[SinkEvent],
        offsets: dict[Partition, int],
        before_commit: Callable[[list[tuple[SinkEvent, str]]], None],
        plan: Any = None,
    ) -> None:
        del plan  # no plan(): everything is done here
        try:
            self._transaction(group, events, offsets, before_commit, one_by_one=False)
        except sqlite3.IntegrityError:
            # A row the file refuses: find which, one event at a time, and let the rest in.
            self._transaction(group, events, offsets, before_commit, one_by_one=True)

    def _transaction(
        self,
        group: str,
        events: Sequence[SinkEvent],
        offsets: dict[Partition, int],
        before_commit: Callable[[list[tuple[SinkEvent, str]]], None],
        one_by_one: bool,
    ) -> None:
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as error:
            raise TargetUnavailable(f"{self.config.path}: {error}") from error
        try:
            rejected: list[tuple[SinkEvent, str]] = []
            if one_by_one:
                for event in sorted(events, key=lambda e: e.version):
                    self.db.execute("SAVEPOINT event")
                    try:
                        rejected += self._apply_table(event.schema, event.table, [event])
                        self.db.execute("RELEASE event")
                    except sqlite3.IntegrityError as error:
                        self.db.execute("ROLLBACK TO event")
                        self.db.execute("RELEASE event")
                        self.columns.clear()
                        self.ledgers.clear()
                        rejected.append((event, f"the target refused it: {error}"))
            else:
                for (schema, table), table_events in by_table(events).items():
                    rejected += self._apply_table(schema, table, table_events)
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

    def _apply_table(
        self, schema: str, table: str, events: list[SinkEvent]
    ) -> list[tuple[SinkEvent, str]]:
        name = self._target_name(self.config.table.format(schema=schema, table=table))
        rejected = [
            (
                e,
                f"table {schema}.{table} has no primary key or replica identity: its {e.op!r}"
                " events cannot be matched to a row",
            )
            for e in events
            if not e.key and e.op not in ("c", "r", "t")
        ]
        events = self._columns_apart(name, events)
        events = self._follow_columns(name, events)
        self._ensure_table(name, events)
        held = self.columns[name]
        floor = self._truncated_at(name)
        truncates = [e.version for e in events if e.op == "t"]
        if truncates:
            newest = max(truncates)
            self.db.execute(
                f"DELETE FROM {quote(name)} WHERE (_cdc_lsn, _cdc_index) < (?, ?)", newest
            )
            self.db.execute(
                "INSERT INTO _cdc_truncates (target, lsn, idx) VALUES (?, ?, ?)"
                " ON CONFLICT (target) DO UPDATE SET lsn = excluded.lsn, idx = excluded.idx"
                " WHERE (lsn, idx) < (excluded.lsn, excluded.idx)",
                (name, *newest),
            )
            floor = max(floor, newest)
        live = [
            e for e in events if e.key and not e.whole_row_key and e.op != "t" and e.version > floor
        ]
        upserts, deletes = collapse(live)
        key = self.keys[name]
        for e in deletes:
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
        for columns, unavailable, group in by_shape(upserts):
            # Columns the target does not hold were dropped since (dropped_columns = "drop").
            written = [c for c in columns if c not in unavailable and c in held]
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
                    for e in group
                ],
            )
        for e in events:
            if not e.key and e.op in ("c", "r") and e.version > floor:
                if e.unavailable and (reason := incomplete(e)):
                    rejected.append((e, reason))
                    continue
                names = [c for c in e.after or () if c in held]
                cols = ", ".join(quote(c) for c in [*names, "_cdc_lsn", "_cdc_index"])
                marks = ", ".join("?" for _ in range(len(names) + 2))
                self.db.execute(
                    f"INSERT INTO {quote(name)} ({cols}) VALUES ({marks})"
                    " ON CONFLICT (_cdc_lsn, _cdc_index) DO NOTHING",
                    [*(self._value((e.after or {}).get(c), name, c) for c in names), *e.version],
                )
        whole = sorted(
            (e for e in events if e.whole_row_key and e.version > floor), key=lambda e: e.version
        )
        for e in whole:
            if e.unavailable and (reason := incomplete(e)):
                rejected.append((e, reason))
                continue
            self._apply_whole_row(name, e)
        return rejected

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

    def _columns_apart(self, name: str, events: list[SinkEvent]) -> list[SinkEvent]:
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
        folded = {_fold(c) for c in held}
        renamed: dict[str, str] = {}
        for column in columns:
            if column in held:
                apart.add(column)
                continue
            if _fold(column) in folded:
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
                folded.add(_fold(column))
        if not renamed:
            return events
        apart.difference_update(renamed)  # looked at again each batch: such tables are rare
        return [_renamed(e, renamed) for e in events]

    def _apply_whole_row(self, name: str, e: SinkEvent) -> None:
        """A table whose key is the whole row is a multiset (see the PostgreSQL sink)."""
        if e.op not in ("c", "r", "d"):
            return
        first = self.db.execute(
            "INSERT INTO _cdc_applied (target, lsn, idx) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
            (name, *e.version),
        ).rowcount
        if not first:
            return
        image = (e.after if e.op != "d" else e.before) or {}
        digest = row_hash(image)
        if e.op == "d":
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

    def _follow_columns(self, name: str, events: list[SinkEvent]) -> list[SinkEvent]:
        """Follow the columns the source dropped (:mod:`cdc.columns`): drop them if so
        configured; a dropped one added again is a new column, made again. Return the events
        without values of columns dropped after them."""
        ledger = self._ledger(name)
        changes = follow(ledger, events, self.keys.get(name, ()))
        if changes.cut:
            events = strip(events, changes.cut)
        ledger.apply(changes)
        if changes:
            self.db.executemany(
                "INSERT INTO _cdc_columns (target, name, lsn, idx, dropped) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (target, name) DO UPDATE SET lsn = excluded.lsn, idx = excluded.idx,"
                " dropped = excluded.dropped",
                [(name, c, *v, True) for c, v in changes.dropped.items() if c not in changes.seen]
                + [(name, c, *v, False) for c, v in changes.seen.items()],
            )
        remove = list(changes.again)  # the column kept since its drop holds the old one's values
        if self.config.dropped_columns == "drop":
            remove += [c for c in changes.dropped if c not in changes.again]
        if remove and self._exists(name):
            held = self.columns[name]
            for column in remove:
                if column in held and column not in self.keys[name]:
                    self.db.execute(f"ALTER TABLE {quote(name)} DROP COLUMN {quote(column)}")
                    del held[column]
                    log.info("dropped column %s of %s: the source dropped it", column, name)
        return events

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

    def _ensure_table(self, name: str, events: list[SinkEvent]) -> None:
        wanted, defaults, key = _wanted(events)
        if not self._exists(name):
            defs = [_column(c, t, defaults.get(c)) for c, t in wanted.items()]
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
                definition = _column(column, kind, defaults.get(column))
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
            if type(value) is int and not _INT64_MIN <= value <= _INT64_MAX:
                return str(value)  # beyond SQLite's INTEGER: kept exact, as text
            return value  # bool is an int: True -> 1
        kind = self.columns[table].get(column)
        if kind == "BLOB":
            return bytes.fromhex(str(value))
        if isinstance(value, (dict, list)):
            return orjson.dumps(value).decode()
        return value


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _fold(name: str) -> str:
    """``name`` as SQLite compares identifiers: ASCII letters without case."""
    return name.translate(_ASCII_LOWER)


def _renamed(event: SinkEvent, names: dict[str, str]) -> SinkEvent:
    """``event`` with its columns ``names`` (old -> new) renamed."""

    def image(values: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if values is None else {names.get(c, c): v for c, v in values.items()}

    return dataclasses.replace(
        event,
        key=image(event.key),
        before=image(event.before),
        after=image(event.after),
        unavailable=frozenset(names.get(c, c) for c in event.unavailable),
        types={names.get(c, c): t for c, t in event.types.items()},
        missing={names.get(c, c): v for c, v in event.missing.items()},
    )


def _wanted(
    events: list[SinkEvent],
) -> tuple[dict[str, str], dict[str, str], tuple[str, ...]]:
    """The columns the events carry (name -> affinity), the defaults of those that have one
    (``cdc-missing``, as SQL literals), and the key's columns."""
    wanted: dict[str, str] = {}
    defaults: dict[str, str] = {}
    key: tuple[str, ...] = ()
    for e in events:
        for image in (e.after, e.before):
            for column in image or ():
                if column not in wanted:
                    wanted[column] = affinity(e.types.get(column, ""))
                # Not every event says it (a delete has no cdc-missing): any that does.
                if column in e.missing and column not in defaults:
                    source_type = e.types.get(column, "")
                    defaults[column] = _literal(e.missing[column], wanted[column], source_type)
        if e.key and not key and not e.whole_row_key:
            key = tuple(e.key)
    return wanted, defaults, key


def _column(name: str, kind: str, default: str | None) -> str:
    """A column definition; ``default`` an SQL literal (:func:`_literal`)."""
    column = f"{quote(name)} {kind}"
    return column if default is None else f"{column} DEFAULT {default}"


def _literal(text: str, kind: str, source_type: str) -> str:
    """The SQL literal of a value given as its PostgreSQL text, stored as :meth:`_value`
    stores the events' values (DDL takes no parameters)."""
    if source_type == "boolean":
        return "1" if text == "t" else "0"
    if kind == "BLOB" and text.startswith("\\x"):
        return "X'" + bytes.fromhex(text[2:]).hex() + "'"
    if kind == "INTEGER":
        with contextlib.suppress(ValueError):
            value = int(text)
            if _INT64_MIN <= value <= _INT64_MAX:
                return str(value)
    if kind == "REAL":
        with contextlib.suppress(ValueError):
            number = float(text)
            if math.isfinite(number):
                return repr(number)
    return "'" + text.replace("'", "''") + "'"


def _key_text(event: SinkEvent) -> str:
    return orjson.dumps(event.key).decode()
