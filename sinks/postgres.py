"""The PostgreSQL sink: applies events to tables of another PostgreSQL database, idempotently.

Each batch is one transaction (:meth:`PostgresTarget.apply`): per target table, the batch's events
are collapsed to the newest per key, sent as one JSON parameter per statement (:data:`ROWS`), and
applied with set-based SQL guarded by the row's source version (``_cdc_lsn``, ``_cdc_index``): a
row only ever moves forward. Deletes leave a marker in ``cdc.deletes`` so that an older event
arriving later cannot bring the row back; truncates leave one in ``cdc.truncates``. The consumed
offsets are stored in ``cdc.offsets`` in the same transaction.

Target tables are created from the events: column types from the ``cdc-types`` header (a type
the target does not know, such as the source's enums and domains, becomes ``text``), the primary
key from the event key. Columns that appear later are added.
"""

from __future__ import annotations

__all__ = ["PostgresSink", "PostgresTarget"]

import logging
import math
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import orjson
import psycopg
from psycopg import sql

from cdc.columns import Ledger, follow, strip
from cdc.config import KafkaConfig, PostgresSinkConfig
from cdc.errors import describe
from cdc.findings import Finding
from cdc.pgerrors import refused, unreachable
from cdc.records import SinkEvent, Version, by_shape, by_table, collapse, incomplete, row_hash
from cdc.sink import Partition, SinkRuntime, TargetUnavailable, consumer_lag
from cdc.sqltext import TypeName, with_params

log = logging.getLogger(__name__)

VERSION_COLUMNS = ("_cdc_lsn", "_cdc_index")
_FLOAT_TYPES = frozenset({"real", "double precision"})
ROWS = sql.SQL(
    "(SELECT e->0 AS _key, (e->>1)::bigint AS _lsn, (e->>2)::int AS _idx, e->3 AS _after"
    " FROM jsonb_array_elements(%s::jsonb) AS e)"
)
"""A batch's rows ``s(_key, _lsn, _idx, _after)``, from :meth:`PostgresTarget._rows`'s JSON.
The planner takes it for 100 rows whatever its size, which keeps the joins with the target
per-row index probes."""

BOOKKEEPING = """
CREATE SCHEMA IF NOT EXISTS cdc;
CREATE TABLE IF NOT EXISTS cdc.offsets (
    group_id text NOT NULL, topic text NOT NULL, partition int NOT NULL,
    next_offset bigint NOT NULL, PRIMARY KEY (group_id, topic, partition));
CREATE TABLE IF NOT EXISTS cdc.deletes (
    target text NOT NULL, key jsonb NOT NULL, lsn bigint NOT NULL, idx int NOT NULL,
    PRIMARY KEY (target, key));
CREATE TABLE IF NOT EXISTS cdc.truncates (
    target text PRIMARY KEY, lsn bigint NOT NULL, idx int NOT NULL);
CREATE TABLE IF NOT EXISTS cdc.applied (
    target text NOT NULL, lsn bigint NOT NULL, idx int NOT NULL, PRIMARY KEY (target, lsn, idx));
CREATE TABLE IF NOT EXISTS cdc.debts (
    target text NOT NULL, row_hash text NOT NULL, debt int NOT NULL,
    PRIMARY KEY (target, row_hash));
CREATE TABLE IF NOT EXISTS cdc.columns (
    target text NOT NULL, name text NOT NULL, lsn bigint NOT NULL, idx int NOT NULL,
    dropped boolean NOT NULL, PRIMARY KEY (target, name));
"""


class PostgresSink:
    """Applies events to PostgreSQL idempotently (see :class:`cdc.plugins.Sink`)."""

    def __init__(self, config: PostgresSinkConfig, kafka: KafkaConfig) -> None:
        self.config = config
        self.kafka = kafka

    def check(self) -> list[Finding]:
        subject = f"sink {self.config.name}"
        try:
            with psycopg.connect(self.config.dsn.conninfo, connect_timeout=5) as conn:
                version = conn.execute("SHOW server_version").fetchone()
        except psycopg.Error as e:
            return [Finding.fail(subject, unreachable(e, subject, self.config.dsn))]
        shown = version[0] if version else "?"
        return [Finding.ok(subject, f"connected to {self.config.dsn} (PostgreSQL {shown})")]

    def run(self, stop: threading.Event, started: threading.Event | None = None) -> None:
        c = self.config
        runtime = SinkRuntime(c.name, c.group_id, c.topics, self.kafka, lambda: PostgresTarget(c))
        runtime.run(stop, started)

    def status(self) -> list[Finding]:
        c = self.config
        return consumer_lag(c.name, c.group_id, c.topics, self.kafka, lambda: PostgresTarget(c))


@dataclass
class _Table:
    """What the target knows of one of its tables."""

    schema: str
    name: str
    columns: dict[str, str] = field(default_factory=dict)
    """Column name -> type, as created (``format_type``)."""
    key: tuple[str, ...] = ()
    statements: dict[tuple[Any, ...], bytes] = field(default_factory=dict)
    """Its DML as rendered, by kind and columns: a batch does not compose its SQL again."""
    checked: set[tuple[str, str]] = field(default_factory=set)
    """``(column, source type)`` pairs the table already holds or was widened for."""

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)

    @property
    def label(self) -> str:
        return f"{self.schema}.{self.name}"


class PostgresTarget:
    """:class:`cdc.sink.Target` over a PostgreSQL database."""

    def __init__(self, config: PostgresSinkConfig) -> None:
        self.config = config
        try:
            self.conn = psycopg.connect(
                config.dsn.conninfo, application_name=f"cdc-sink-{config.name}"
            )
        except psycopg.OperationalError as e:
            raise refused(e, f"sink {config.name}", config.dsn) or TargetUnavailable(
                f"cannot connect to {config.dsn}: {describe(e, config.dsn.password)}"
            ) from e
        with self._translated(), self.conn.transaction():
            self.conn.execute("SELECT pg_advisory_xact_lock(hashtext('cdc-sink-ddl'))")
            self.conn.execute(BOOKKEEPING)
            # A batch's commit need not wait for its WAL to reach disk: the consumed offsets
            # commit in the same transaction, so a crash that loses the last batches loses their
            # offsets with them, and they are read from Kafka and applied again. This takes a WAL
            # flush off every batch.
            self.conn.execute("SET synchronous_commit = off")
            # Every join the sink makes is a batch's rows probing the target by its key, so a
            # nested loop over the key's index is always the plan wanted. The planner cannot
            # know it: it takes a batch for 100 rows, and the generic plan of a prepared
            # statement, made while the table was small, hashed the whole target for every
            # batch, a cost growing with the table.
            self.conn.execute("SET enable_hashjoin = off")
            self.conn.execute("SET enable_mergejoin = off")
        self.tables: dict[str, _Table] = {}
        self.types: dict[str, str] = {}
        """Source type -> the target's type for it (:meth:`_type_for`)."""
        self.floors: dict[str, Version] = {}
        """Each target table's truncate floor (``cdc.truncates``) as last read or written: what
        :meth:`plan` assumes."""
        self.ledgers: dict[str, Ledger] = {}
        """Each target table's :class:`~cdc.columns.Ledger` (``cdc.columns``) as last read or
        written."""

    def close(self) -> None:
        self.conn.close()

    # -- offsets --------------------------------------------------------------------------------

    def stored_offsets(self, group: str, partitions: Sequence[Partition]) -> dict[Partition, int]:
        with self._translated(), self.conn.transaction():
            rows = self.conn.execute(
                "SELECT topic, partition, next_offset FROM cdc.offsets WHERE group_id = %s",
                (group,),
            ).fetchall()
        wanted = set(partitions)
        return {(t, p): o for t, p, o in rows if (t, p) in wanted}

    # -- applying -------------------------------------------------------------------------------

    def plan(self, events: Sequence[SinkEvent]) -> _BatchPlan:
        """Sort a batch out per table, as :meth:`apply` would, for the truncate floors last seen
        (:meth:`apply` checks them, and sorts a table out again when one moved meanwhile). Pure
        Python, no I/O: the runtime calls it on its consuming thread, so the applying thread is
        left with the SQL (its Python was the target's idle time)."""
        plans: _BatchPlan = {}
        for (schema, table), table_events in by_table(events).items():
            floor = self.floors.get(self._target_name(schema, table))
            plans[(schema, table)] = (
                table_events,
                None if floor is None else _plan(table_events, floor),
            )
        return plans

    def apply(
        self,
        group: str,
        events: Sequence[SinkEvent],
        offsets: dict[Partition, int],
        before_commit: Callable[[list[tuple[SinkEvent, str]]], None],
        plan: _BatchPlan | None = None,
    ) -> None:
        rejected: list[tuple[SinkEvent, str]] = []
        tables = plan if plan is not None else {k: (v, None) for k, v in by_table(events).items()}
        with self._translated():
            try:
                with self.conn.transaction():
                    for (schema, table), (table_events, table_plan) in tables.items():
                        rejected += self._apply_table(schema, table, table_events, table_plan)
                    self._store_offsets(group, offsets)
                    before_commit(rejected)
            except (psycopg.errors.DataError, psycopg.errors.IntegrityError):
                # A value the target refuses: find which, one event at a time, and let the rest in.
                self.tables.clear()
                self.ledgers.clear()
                self._apply_one_by_one(group, events, offsets, before_commit)

    def _apply_one_by_one(
        self,
        group: str,
        events: Sequence[SinkEvent],
        offsets: dict[Partition, int],
        before_commit: Callable[[list[tuple[SinkEvent, str]]], None],
    ) -> None:
        rejected: list[tuple[SinkEvent, str]] = []
        with self.conn.transaction():
            for e in sorted(events, key=lambda e: e.version):
                try:
                    with self.conn.transaction():  # a savepoint per event
                        rejected += self._apply_table(e.schema, e.table, [e])
                except (psycopg.errors.DataError, psycopg.errors.IntegrityError) as err:
                    self.tables.clear()
                    self.ledgers.clear()
                    rejected.append((e, f"the target refused it: {describe(err)}"))
            self._store_offsets(group, offsets)
            before_commit(rejected)

    def _store_offsets(self, group: str, offsets: dict[Partition, int]) -> None:
        if not offsets:
            return
        # One statement, not executemany, whose pipeline cost more than the statement itself.
        self.conn.execute(
            "INSERT INTO cdc.offsets AS o (group_id, topic, partition, next_offset)"
            " SELECT %s, t, p, n FROM unnest(%s::text[], %s::int[], %s::bigint[]) AS x(t, p, n)"
            " ON CONFLICT (group_id, topic, partition) DO UPDATE"
            " SET next_offset = greatest(o.next_offset, EXCLUDED.next_offset)",
            (
                group,
                [t for t, _ in offsets],
                [p for _, p in offsets],
                list(offsets.values()),
            ),
        )

    def _apply_table(
        self, schema: str, table: str, events: list[SinkEvent], plan: _Plan | None = None
    ) -> list[tuple[SinkEvent, str]]:
        label = self._target_name(schema, table)
        if plan is None:
            plan = _plan(events, self.floors.get(label, (0, 0)))
        events, plan = self._follow_columns(self._target_names(schema, table), events, plan)
        target = self._table(schema, table, plan.columns, plan.key, plan.defaults)
        # A truncate has no key, so it may come on any partition: another process of the group
        # may be applying one to this table right now. The floor is read only once this
        # transaction holds a lock that waits for such a one to commit (and that makes a
        # truncating one wait for ours): read before, a stale floor let older rows outlive it.
        mode = "EXCLUSIVE" if plan.truncate is not None else "ROW EXCLUSIVE"
        self.conn.execute(
            self._statement(
                target,
                ("lock", mode),
                lambda: sql.SQL("LOCK TABLE {} IN {} MODE").format(target.ident, sql.SQL(mode)),
                params=False,
            )
        )
        stored = self._truncated_at(label)
        if plan.stored_floor != stored:
            plan = _plan(events, stored)  # a truncate moved the floor since it was planned
        self.floors[label] = stored
        if plan.truncate is not None:
            self._truncate(target, plan.truncate)
            self.floors[label] = plan.floor
        if plan.deletes:
            self._delete(target, plan.deletes)
        for shape, unavailable, rows in plan.upserts:
            self._upsert(target, shape, unavailable, rows)
        if plan.keyless:
            self._insert_keyless(target, plan.keyless)
        if plan.whole:
            self._apply_whole_rows(target, plan.whole)
        return plan.rejected

    # -- DDL ------------------------------------------------------------------------------------

    def _follow_columns(
        self, names: tuple[str, str], events: list[SinkEvent], plan: _Plan
    ) -> tuple[list[SinkEvent], _Plan]:
        """Follow the columns the source dropped (:mod:`cdc.columns`): drop them if so
        configured; a dropped one added again is a new column, made again. Return the events
        without values of columns dropped after them, and their plan."""
        label = ".".join(names)
        ledger = self.ledgers.get(label)
        if ledger is not None:
            changes = follow(ledger, events, plan.key)
            if not changes and not changes.cut:
                return events, plan
        # Something to record, drop or leave out: look again under the DDL lock, which another
        # process of the group may have held to do it first.
        self.conn.execute("SELECT pg_advisory_xact_lock(hashtext('cdc-sink-ddl'))")
        ledger = self.ledgers[label] = Ledger()
        for name, lsn, idx, dropped in self.conn.execute(
            "SELECT name, lsn, idx, dropped FROM cdc.columns WHERE target = %s", (label,)
        ):
            (ledger.dropped if dropped else ledger.seen)[name] = (lsn, idx)
        changes = follow(ledger, events, plan.key)
        ledger.apply(changes)
        remove = list(changes.again)  # the column kept since its drop holds the old one's values
        if self.config.dropped_columns == "drop":
            remove += [c for c in changes.dropped if c not in changes.again]
        found = self._describe(*names) if remove else None
        for column in remove:
            if found is not None and column in found.columns and column not in found.key:
                self.conn.execute(
                    sql.SQL("ALTER TABLE {} DROP COLUMN IF EXISTS {}").format(
                        found.ident, sql.Identifier(column)
                    )
                )
                log.info("dropped column %s of %s: the source dropped it", column, label)
                self.tables.pop(label, None)  # described again, without it
        changed = [(c, *v, True) for c, v in changes.dropped.items() if c not in changes.seen]
        changed += [(c, *v, False) for c, v in changes.seen.items()]
        if changed:
            self.conn.execute(
                "INSERT INTO cdc.columns AS c (target, name, lsn, idx, dropped) SELECT %s, n,"
                " l, i, d FROM unnest(%s::text[], %s::bigint[], %s::int[], %s::bool[])"
                " AS x(n, l, i, d) ON CONFLICT (target, name) DO UPDATE"
                " SET lsn = EXCLUDED.lsn, idx = EXCLUDED.idx, dropped = EXCLUDED.dropped",
                (label, *map(list, zip(*changed, strict=True))),
            )
        if changes.cut:
            events = strip(events, changes.cut)
            plan = _plan(events, plan.stored_floor)
        return events, plan

    def _target_name(self, schema: str, table: str) -> str:
        """The target table of a source table: ``schema.name`` (:attr:`_Table.label`)."""
        return ".".join(self._target_names(schema, table))

    def _target_names(self, schema: str, table: str) -> tuple[str, str]:
        """The target table's schema and name. The template's dot parts them, not one in the
        names it is given (a schema ``a.b``, a table ``v1.2``)."""
        left, dot, right = self.config.table.partition(".")
        if not dot:
            return "public", left.format(schema=schema, table=table)
        return left.format(schema=schema, table=table), right.format(schema=schema, table=table)

    def _table(
        self,
        schema: str,
        table: str,
        wanted: dict[str, str],
        key: tuple[str, ...],
        defaults: dict[str, str],
    ) -> _Table:
        """The target table of ``schema.table``, made or widened to hold the ``wanted``
        columns (name -> source type); a column it adds takes its default from ``defaults``
        (the value rows that predate it hold at the source)."""
        target_schema, target_name = self._target_names(schema, table)
        name = f"{target_schema}.{target_name}"
        known = self.tables.get(name)
        if known is not None and all((c, t) in known.checked for c, t in wanted.items()):
            return known
        self.conn.execute("SELECT pg_advisory_xact_lock(hashtext('cdc-sink-ddl'))")
        found = self._describe(target_schema, target_name)
        if found is None:
            found = self._create(target_schema, target_name, wanted, key, defaults)
        for column, source_type in wanted.items():
            pg_type = self._type_for(source_type)
            current = found.columns.get(column)
            if current is None:
                # Rows that predate the column hold its default at the source, though no event
                # says so (PostgreSQL does not rewrite them): so do they here, and so do rows
                # that older events still to come insert.
                self.conn.execute(
                    sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {}").format(
                        found.ident, _column(column, pg_type, defaults.get(column))
                    )
                )
                found.columns[column] = pg_type
                found.statements.clear()  # rendered without it (dropped_columns = "drop")
                log.info("added column %s %s to %s", column, pg_type, found.label)
            elif wider := widened(current, pg_type):
                # The source's column was altered to a type that holds more: follow it, or
                # its new values would not fit. Never the other way: an older event still
                # carrying the old type must not narrow the column back.
                self.conn.execute(
                    sql.SQL("ALTER TABLE {} ALTER COLUMN {c} TYPE {t} USING {c}::{t}").format(
                        found.ident, c=sql.Identifier(column), t=sql.SQL(wider)
                    )
                )
                found.columns[column] = wider
                found.statements.clear()  # they cast values to the old type
                log.info(
                    "changed column %s of %s from %s to %s", column, found.label, current, wider
                )
            found.checked.add((column, source_type))
        self.tables[name] = found
        return found

    def _describe(self, schema: str, name: str) -> _Table | None:
        rows = self.conn.execute(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod),"
            " coalesce(a.attnum = ANY(i.indkey), false)"
            " FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary"
            " WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped"
            " ORDER BY a.attnum",
            (schema, name),
        ).fetchall()
        if not rows:
            return None
        return _Table(
            schema,
            name,
            {str(n): str(t) for n, t, _ in rows},
            tuple(str(n) for n, _, is_key in rows if is_key),
        )

    def _create(
        self,
        schema: str,
        name: str,
        columns: dict[str, str],
        key: tuple[str, ...],
        defaults: dict[str, str],
    ) -> _Table:
        types = {c: self._type_for(t) for c, t in columns.items()}
        parts: list[sql.Composable] = [_column(c, t, defaults.get(c)) for c, t in types.items()]
        parts += [sql.SQL("_cdc_lsn bigint NOT NULL"), sql.SQL("_cdc_index int NOT NULL")]
        if key:
            parts.append(
                sql.SQL("PRIMARY KEY ({})").format(sql.SQL(", ").join(map(sql.Identifier, key)))
            )
        else:
            # No key: rows are told apart by the event that inserted them, and found by a hash
            # of their content (tables whose REPLICA IDENTITY FULL makes the whole row the key).
            parts.append(sql.SQL("_cdc_row text"))
            parts.append(sql.SQL("UNIQUE (_cdc_lsn, _cdc_index)"))
        self.conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        self.conn.execute(
            sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(
                sql.Identifier(schema, name), sql.SQL(", ").join(parts)
            )
        )
        if not key:
            # Named by PostgreSQL: a name of its own made of a long table's would be cut to 63
            # bytes, as the table's was, and IF NOT EXISTS then skipped it as that table.
            self.conn.execute(
                sql.SQL("CREATE INDEX ON {} (_cdc_row)").format(sql.Identifier(schema, name))
            )
        log.info("created table %s.%s", schema, name)
        described = self._describe(schema, name)
        assert described is not None
        return described

    def _type_for(self, source_type: str) -> str:
        """The source's type if the target knows it, else text (enums, domains, extensions)."""
        if not source_type:
            return "text"
        known = self.types.get(source_type)
        if known is None:
            row = self.conn.execute("SELECT to_regtype(%s)", (source_type,)).fetchone()
            known = self.types[source_type] = (
                "text" if row is None or row[0] is None else source_type
            )
        return known

    # -- DML ------------------------------------------------------------------------------------

    def _truncated_at(self, label: str) -> Version:
        row = self.conn.execute(
            "SELECT lsn, idx FROM cdc.truncates WHERE target = %s", (label,)
        ).fetchone()
        return (int(row[0]), int(row[1])) if row else (0, 0)

    def _truncate(self, target: _Table, version: Version) -> None:
        self.conn.execute(
            self._statement(
                target,
                ("truncate",),
                lambda: sql.SQL("DELETE FROM {} WHERE (_cdc_lsn, _cdc_index) < (%s, %s)").format(
                    target.ident
                ),
            ),
            version,
        )
        self.conn.execute(
            "INSERT INTO cdc.truncates AS t (target, lsn, idx) VALUES (%s, %s, %s)"
            " ON CONFLICT (target) DO UPDATE SET lsn = EXCLUDED.lsn, idx = EXCLUDED.idx"
            " WHERE (t.lsn, t.idx) < (EXCLUDED.lsn, EXCLUDED.idx)",
            (target.label, *version),
        )
        self.conn.execute(
            "DELETE FROM cdc.deletes WHERE target = %s AND (lsn, idx) < (%s, %s)",
            (target.label, *version),
        )

    def _statement(
        self,
        target: _Table,
        kind: tuple[Any, ...],
        make: Callable[[], sql.Composable],
        params: bool = True,
    ) -> bytes:
        """``make()``'s SQL, rendered once per table and ``kind`` for an execute with
        parameters (:func:`~cdc.sqltext.with_params`) or, if not ``params``, without."""
        query = target.statements.get(kind)
        if query is None:
            made = make()
            query = with_params(made, self.conn) if params else made.as_bytes(self.conn)
            target.statements[kind] = query
        return query

    def _delete(self, target: _Table, deletes: list[SinkEvent]) -> None:
        key = target.key or tuple(deletes[0].key or ())
        rows = _rows(deletes, key=True, image=False)

        def delete() -> sql.Composable:
            match = sql.SQL(" AND ").join(
                sql.SQL("t.{} = {}").format(
                    sql.Identifier(k), _from_image(k, target.columns[k], image="_key")
                )
                for k in key
            )
            return sql.SQL(
                "DELETE FROM {tgt} t USING {rows} s WHERE {match}"
                " AND (t._cdc_lsn, t._cdc_index) < (s._lsn, s._idx)"
            ).format(tgt=target.ident, rows=ROWS, match=match)

        self.conn.execute(self._statement(target, ("delete", key), delete), (rows,))
        self.conn.execute(
            self._statement(
                target,
                ("mark",),
                lambda: sql.SQL(
                    "INSERT INTO cdc.deletes AS d (target, key, lsn, idx)"
                    " SELECT %s, s._key, s._lsn, s._idx FROM {rows} s"
                    " ON CONFLICT (target, key) DO UPDATE"
                    " SET lsn = EXCLUDED.lsn, idx = EXCLUDED.idx"
                    " WHERE (d.lsn, d.idx) < (EXCLUDED.lsn, EXCLUDED.idx)"
                ).format(rows=ROWS),
            ),
            (target.label, rows),
        )

    def _upsert(
        self,
        target: _Table,
        columns: tuple[str, ...],
        unavailable: frozenset[str],
        rows: str,
    ) -> None:
        """Upsert ``rows`` (:func:`_rows` of events that carry ``columns``)."""

        def upsert() -> sql.Composable:
            # Columns the target does not hold were dropped since (dropped_columns = "drop").
            written = [c for c in columns if c not in unavailable and c in target.columns]
            cols, values = _columns_and_values(target, written)
            updates = sql.SQL(", ").join(
                sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c))
                for c in [*written, *VERSION_COLUMNS]
            )
            # OFFSET 0 keeps the delete-marker check a per-row index probe: joined, the planner
            # hashed all of cdc.deletes for every batch, a cost growing with every delete.
            return sql.SQL(
                "INSERT INTO {tgt} AS t ({cols}) SELECT {values} FROM {rows} s"
                " WHERE NOT EXISTS (SELECT 1 FROM cdc.deletes d WHERE d.target = %s"
                " AND d.key = s._key AND (d.lsn, d.idx) >= (s._lsn, s._idx) OFFSET 0)"
                " ON CONFLICT ({key}) DO UPDATE SET {updates}"
                " WHERE (t._cdc_lsn, t._cdc_index) < (EXCLUDED._cdc_lsn, EXCLUDED._cdc_index)"
            ).format(
                tgt=target.ident,
                cols=cols,
                values=values,
                rows=ROWS,
                key=sql.SQL(", ").join(map(sql.Identifier, target.key)),
                updates=updates,
            )

        query = self._statement(target, ("upsert", columns, unavailable), upsert)
        self.conn.execute(query, (rows, target.label))

    def _apply_whole_rows(self, target: _Table, events: list[SinkEvent]) -> None:
        """A table whose key is the whole row is a multiset: each event counts once (the
        ``cdc.applied`` ledger), a delete removes one equal row, and a delete that arrives before
        its insert leaves a debt that the insert pays instead of inserting."""
        for e in sorted(events, key=lambda e: e.version):
            if e.op not in ("c", "r", "d"):
                continue  # an update that keeps the whole row the same changes nothing
            first = self.conn.execute(
                "INSERT INTO cdc.applied (target, lsn, idx) VALUES (%s, %s, %s)"
                " ON CONFLICT DO NOTHING",
                (target.label, *e.version),
            ).rowcount
            if not first:
                continue
            image = (e.after if e.op != "d" else e.before) or {}
            digest = row_hash(image)
            if e.op == "d":
                deleted = self.conn.execute(
                    self._statement(
                        target,
                        ("delete row",),
                        lambda: sql.SQL(
                            "DELETE FROM {t} WHERE ctid = (SELECT ctid FROM {t} WHERE _cdc_row = %s"
                            " LIMIT 1)"
                        ).format(t=target.ident),
                    ),
                    (digest,),
                ).rowcount
                if not deleted:
                    deleted = self._delete_equal(target, image)
                if not deleted:
                    self.conn.execute(
                        "INSERT INTO cdc.debts AS d (target, row_hash, debt) VALUES (%s, %s, 1)"
                        " ON CONFLICT (target, row_hash) DO UPDATE SET debt = d.debt + 1",
                        (target.label, digest),
                    )
                continue
            paid = self.conn.execute(
                "UPDATE cdc.debts SET debt = debt - 1"
                " WHERE target = %s AND row_hash = %s AND debt > 0",
                (target.label, digest),
            ).rowcount
            if paid:
                continue
            columns = [c for c in image if c in target.columns]
            self.conn.execute(
                with_params(
                    sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
                        target.ident,
                        sql.SQL(", ").join(
                            map(sql.Identifier, [*columns, *VERSION_COLUMNS, "_cdc_row"])
                        ),
                        sql.SQL(", ").join(
                            [sql.SQL("%s::{}").format(TypeName(target.columns[c])) for c in columns]
                            + [sql.SQL("%s")] * 3
                        ),
                    ),
                    self.conn,
                ),
                [*(_text(image[c], target.columns[c]) for c in columns), *e.version, digest],
            )

    def _delete_equal(self, target: _Table, image: dict[str, Any]) -> int:
        """Delete one row equal to ``image`` on the columns both hold, compared as the target's
        types print them. For a row stored before a column was added or dropped: its content
        hash (``_cdc_row``) was made of the columns it had then, so the hash cannot find it."""
        columns = [c for c in image if c in target.columns]
        if not columns:
            return 0
        match = sql.SQL(" AND ").join(
            sql.SQL("{c}::text IS NOT DISTINCT FROM %s::{t}::text").format(
                c=sql.Identifier(c), t=TypeName(target.columns[c])
            )
            for c in columns
        )
        query = sql.SQL(
            "DELETE FROM {t} WHERE ctid = (SELECT ctid FROM {t} WHERE {match} LIMIT 1)"
        ).format(t=target.ident, match=match)
        values = [_text(image[c], target.columns[c]) for c in columns]
        return self.conn.execute(with_params(query, self.conn), values).rowcount

    def _insert_keyless(self, target: _Table, events: list[SinkEvent]) -> None:
        for carried_columns, _, group in by_shape(events):
            columns = tuple(c for c in carried_columns if c in target.columns)
            floats = any(target.columns[c] in _FLOAT_TYPES for c in columns)
            rows = _rows(group, key=False, image=True, floats=floats)

            def insert(columns: tuple[str, ...] = columns) -> sql.Composable:
                cols, values = _columns_and_values(target, columns)
                return sql.SQL(
                    "INSERT INTO {tgt} ({cols}) SELECT {values} FROM {rows} s"
                    " ON CONFLICT (_cdc_lsn, _cdc_index) DO NOTHING"
                ).format(tgt=target.ident, cols=cols, values=values, rows=ROWS)

            self.conn.execute(self._statement(target, ("insert", columns), insert), (rows,))

    # -- errors ---------------------------------------------------------------------------------

    def _translated(self) -> _Translate:
        return _Translate(self.config)


class _Translate:
    """Refusals only a person can fix become :class:`Refused`, lost connections retriable
    :class:`TargetUnavailable`; the rest stays as it is."""

    def __init__(self, config: PostgresSinkConfig) -> None:
        self.config = config

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, error: Any, tb: Any) -> None:
        if not isinstance(error, psycopg.Error):
            return
        # A privilege or a database gone: say what to grant (the supervisor retries the sink).
        permanent = refused(error, f"sink {self.config.name}", self.config.dsn)
        if permanent is not None:
            raise permanent from error
        if isinstance(error, psycopg.OperationalError):
            raise TargetUnavailable(
                f"{self.config.dsn}: {describe(error, self.config.dsn.password)}"
            ) from error


@dataclass(slots=True)
class _Plan:
    """A table's events of a batch, sorted out for a truncate floor: what to apply."""

    stored_floor: Version
    """The floor stored in ``cdc.truncates`` that this plan assumed."""
    floor: Version
    """Events at or below it are gone (the stored floor, or the batch's newest truncate)."""
    truncate: Version | None
    """The batch's newest truncate, if it has one."""
    columns: dict[str, str]
    """Every column the events carry -> its source type, for :meth:`PostgresTarget._table`."""
    key: tuple[str, ...]
    rejected: list[tuple[SinkEvent, str]]
    deletes: list[SinkEvent]
    upserts: list[tuple[tuple[str, ...], frozenset[str], str]]
    """Per shape (columns carried, columns unavailable): the rows' JSON (:func:`_rows`)."""
    keyless: list[SinkEvent]
    whole: list[SinkEvent]
    defaults: dict[str, str] = field(default_factory=dict)
    """Column -> the value rows that predate it hold (``cdc-missing``): a column's default when
    the target adds it."""


_BatchPlan = dict[tuple[str, str], tuple[list[SinkEvent], "_Plan | None"]]
"""What :meth:`PostgresTarget.plan` makes of a batch: per source table, its events and their
plan (None when the table's truncate floor is not known yet)."""


def _rows(events: Iterable[SinkEvent], key: bool, image: bool, floats: bool = False) -> str:
    """Each event's ``[key, lsn, index, after image]`` (key and image null when not wanted), as
    one JSON array: the parameter of :data:`ROWS`. A batch travels in the statement that applies
    it: no stage table to fill, analyze and empty for every batch (five statements that
    dominated small batches). PostgreSQL takes each value
    out as text (``->>``, the text its input function reads: what :func:`_text` makes in
    Python): one encoder call per batch instead of a Python call per value. msgspec's: faster
    than orjson's here, and it writes integers of any size,
    which events of other producers may carry (decoded exactly by :mod:`cdc.records`).

    ``floats``: the images may hold floats (a column's type is a float's, or unknown). A
    ``-0.0`` then travels as the string ``"-0.0"``: jsonb's numeric has no negative zero (the
    number became ``0``), and ``->>`` hands the string to the column's input function as it is.
    Only such batches are searched, and only those whose JSON holds ``-0.0,`` or ``-0.0}`` are
    encoded again. (Reading the batch as ``json`` keeps every number's text too, but ``->>``
    then parses a row once per column, which slows the apply.)"""
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


def _plan(events: list[SinkEvent], stored_floor: Version) -> _Plan:
    columns: dict[str, str] = {}
    defaults: dict[str, str] = {}
    key: tuple[str, ...] = ()
    shapes: set[tuple[str, ...]] = set()
    for e in events:
        for image in (e.after, e.before):
            if image:
                shape = tuple(image)
                if shape not in shapes:  # a table has few: look at each once
                    shapes.add(shape)
                    for column in shape:
                        if column not in columns:
                            columns[column] = e.types.get(column, "")
                    if e.missing:
                        defaults.update((c, v) for c, v in e.missing.items() if c in image)
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
    floats = any(not t or t in _FLOAT_TYPES for t in columns.values())
    return _Plan(
        stored_floor,
        floor,
        truncate,
        columns,
        key,
        rejected,
        deletes,
        [
            (columns_, unavailable, _rows(group, key=True, image=True, floats=floats))
            for columns_, unavailable, group in by_shape(upserts)
        ],
        keyless,
        whole,
        defaults,
    )


_WIDER_BASES = {
    "smallint": ("integer", "bigint", "numeric"),
    "integer": ("bigint", "numeric"),
    "bigint": ("numeric",),
    "real": ("double precision",),
    "character": ("character varying", "text"),
    "character varying": ("text",),
    "bit": ("bit varying",),
}
"""Types whose values each type after them holds exactly: an ``ALTER COLUMN ... TYPE`` at the
source from one to the other is followed."""
_INTEGER_DIGITS = {"smallint": 5, "integer": 10, "bigint": 19}
_MODIFIER = re.compile(r"\((\d+)(?:,(\d+))?\)")


def widened(target: str, source: str) -> str | None:
    """The type a target column of type ``target`` must take to hold values of the source's
    ``source`` type, when that holds more (``integer`` to ``bigint``, ``varchar(5)`` to
    ``text``, ``numeric(6,2)`` to ``numeric(12,4)``); None when the target's holds them already,
    or the change would narrow or convert it (then the target keeps its type, and a value that
    does not fit goes to the dead-letter topic with the reason)."""
    if target in (source, "text"):
        return None
    if target.endswith("[]") and source.endswith("[]"):
        element = widened(target[:-2], source[:-2])
        return None if element is None else element + "[]"
    target_base, source_base = _MODIFIER.sub("", target), _MODIFIER.sub("", source)
    held = _modifier(target)
    if target_base == source_base:
        wanted = _modifier(source)
        if held is None or (wanted is not None and _holds(held, wanted)):
            return None
        if wanted is None or _holds(wanted, held):
            return source
        return target_base  # neither holds the other: no modifier holds both
    if source_base not in _WIDER_BASES.get(target_base, ()):
        return None
    wanted = _modifier(source)
    digits = _INTEGER_DIGITS.get(target_base)
    if digits is not None and wanted is not None and wanted[0] - wanted[1] < digits:
        return source_base  # a numeric too narrow for the integers it must hold
    return source


def _modifier(type_name: str) -> tuple[int, int] | None:
    """``(precision, scale)`` of ``numeric(p,s)``, ``(n, 0)`` of ``varchar(n)``,
    ``timestamp(p)``...; None without a modifier."""
    found = _MODIFIER.search(type_name)
    return None if found is None else (int(found[1]), int(found[2] or 0))


def _holds(wide: tuple[int, int], narrow: tuple[int, int]) -> bool:
    """Whether values within modifier ``narrow`` fit within ``wide`` (integer digits, scale)."""
    return wide[0] - wide[1] >= narrow[0] - narrow[1] and wide[1] >= narrow[1]


def _column(name: str, pg_type: str, default: str | None) -> sql.Composable:
    """A column definition: ``default`` is the text of a value of ``pg_type``. A bytea's is
    its hex output (``\\x...``), as PostgreSQL prints it, not an event's bare hex digits."""
    column = sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(pg_type))
    if default is None:
        return column
    return sql.SQL("{} DEFAULT {}::{}").format(column, sql.Literal(default), sql.SQL(pg_type))


def _columns_and_values(
    target: _Table, columns: Sequence[str]
) -> tuple[sql.Composable, sql.Composable]:
    """The column list of an INSERT of ``columns`` and the version columns, and the values
    taken out of a batch row ``s`` (:data:`ROWS`) for them."""
    cols = sql.SQL(", ").join(map(sql.Identifier, [*columns, *VERSION_COLUMNS]))
    values = sql.SQL(", ").join(
        [_from_image(c, target.columns[c]) for c in columns] + [sql.SQL("s._lsn, s._idx")]
    )
    return cols, values


def _from_image(column: str, pg_type: str, image: str = "_after") -> sql.Composable:
    """SQL taking ``column`` out of a row's JSON image (``s._after`` or ``s._key``) as
    ``pg_type``: PostgreSQL's ``->>`` makes the text :func:`_text` would make in Python."""
    text = sql.SQL("(s.{} ->> {})").format(sql.Identifier(image), sql.Literal(column))
    if pg_type == "bytea":
        text = sql.SQL("('\\x' || {})").format(text)  # events carry bytea as bare hex digits
    return sql.SQL("{}::{}").format(text, TypeName(pg_type))


def _text(value: Any, pg_type: str) -> str | None:
    """An event's JSON value as the text PostgreSQL's input function for ``pg_type`` reads."""
    if value is None:
        return None
    if value is True:
        return "true"
    if value is False:
        return "false"
    if pg_type == "bytea":
        return "\\x" + str(value)  # events carry bytea as bare hex digits
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (dict, list)):
        return orjson.dumps(value).decode()
    return str(value)
