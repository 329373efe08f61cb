"""The PostgreSQL sink: applies events to tables of another PostgreSQL database, idempotently.

Each batch is one transaction (:meth:`PostgresTarget.apply`): per target table, the batch's
:class:`~cdc.sink.plan.TablePlan` is turned into set-based SQL (:mod:`sinks.postgres_dml`)
after its table is made or widened to hold the events' columns (:mod:`sinks.postgres_ddl`).
The consumed offsets are stored in ``cdc.offsets`` in the same transaction.
"""

from __future__ import annotations

__all__ = ["PostgresSink", "PostgresTarget"]

import contextlib
import logging
from collections.abc import Callable, Sequence

import psycopg
from psycopg import sql

from cdc.columns import Ledger
from cdc.config import PostgresSinkConfig
from cdc.errors import describe
from cdc.findings import Finding
from cdc.pgerrors import mapped, refused, unreachable
from cdc.records import SinkEvent, Version
from cdc.sink import Partition, TargetUnavailable
from cdc.sink.base import TargetSink
from cdc.sink.foreign import Foreign, options_of, pending
from cdc.sink.plan import (
    BatchPlan,
    TablePlan,
    columns_settled,
    follow_columns,
    one_by_one,
    plan_batch,
    refusal_reason,
)
from sinks import postgres_dml as dml
from sinks.postgres_ddl import BOOKKEEPING, Schema

log = logging.getLogger(__name__)


_UNPLANNED = BatchPlan(())
"""A plan of no event: :meth:`PostgresTarget.apply` plans the batch itself."""


def _with_refused(
    before_commit: Callable[[list[tuple[SinkEvent, str]]], None],
    refused: list[tuple[SinkEvent, str]],
) -> Callable[[list[tuple[SinkEvent, str]]], None]:
    """``before_commit`` told of ``refused`` too (events refused before the batch's plan)."""
    return lambda rejected: before_commit(refused + rejected)


class PostgresSink(TargetSink[PostgresSinkConfig]):
    """Applies events to PostgreSQL idempotently (see :class:`cdc.plugins.Sink`)."""

    def target(self) -> PostgresTarget:
        return PostgresTarget(self.config)

    def check(self) -> list[Finding]:
        subject = f"sink {self.config.name}"
        try:
            with psycopg.connect(self.config.dsn.conninfo, connect_timeout=5) as conn:
                version = conn.execute("SHOW server_version").fetchone()
        except psycopg.Error as e:
            return [Finding.fail(subject, unreachable(e, subject, self.config.dsn))]
        shown = version[0] if version else "?"
        return [Finding.ok(subject, f"connected to {self.config.dsn} (PostgreSQL {shown})")]


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
            self.schema = Schema(self.conn)
            self.schema.lock()
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
        self.floors: dict[tuple[str, str], Version] = {}
        """Each source table's truncate floor (``cdc.truncates``) as last read or written: what
        :meth:`plan` assumes."""
        self.ledgers: dict[str, Ledger] = {}
        """Each target table's :class:`~cdc.columns.Ledger` (``cdc.columns``) as last read or
        written."""
        self.foreign = Foreign(options_of(config), self._column_types, "no target table")
        """Decodes the columns Debezium's records left untyped, by the target tables' types."""

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

    def plan(self, events: Sequence[SinkEvent]) -> BatchPlan:
        """The batch's plan, its upserts' rows already JSON (:data:`~sinks.postgres_dml.ROWS`):
        on the consuming thread, the applying thread is left with the SQL. A batch with columns
        to decode by the target's types (:mod:`cdc.sink.foreign`) is planned by :meth:`apply`,
        once they are."""
        if pending(events):
            return _UNPLANNED
        return plan_batch(events, self.floors, json=True)

    def apply(
        self,
        group: str,
        events: Sequence[SinkEvent],
        offsets: dict[Partition, int],
        before_commit: Callable[[list[tuple[SinkEvent, str]]], None],
        plan: BatchPlan | None = None,
    ) -> None:
        if plan is None or not plan.covers(events) or not plan.json:
            if pending(events):
                with self._translated(), self.conn.transaction():
                    events, refused = self.foreign.decode(events)
                if refused:
                    before_commit = _with_refused(before_commit, refused)
            plan = self.plan(events)
        rejected: list[tuple[SinkEvent, str]] = []
        with self._translated():
            try:
                with self.conn.transaction():
                    for table_plan in plan.tables:
                        rejected += self._apply_table(table_plan)
                    self._store_offsets(group, offsets)
                    before_commit(rejected)
            except (psycopg.errors.DataError, psycopg.errors.IntegrityError):
                # A value the target refuses: find which, one event at a time, and let the rest in.
                self.schema.tables.clear()
                self.ledgers.clear()
                self.foreign.forget()
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
            for e, plan in one_by_one(events, self.floors, json=True):
                try:
                    with self.conn.transaction():  # a savepoint per event
                        for table_plan in plan.tables:
                            rejected += self._apply_table(table_plan)
                except (psycopg.errors.DataError, psycopg.errors.IntegrityError) as err:
                    self.schema.tables.clear()
                    self.ledgers.clear()
                    rejected.append((e, refusal_reason(describe(err))))
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

    def _apply_table(self, plan: TablePlan) -> list[tuple[SinkEvent, str]]:
        names = self._target_names(plan.schema, plan.table)
        label = ".".join(names)
        plan = self._follow_columns(names, plan)
        target = self.schema.table(*names, plan.columns, plan.key, plan.defaults)
        # A truncate has no key, so it may come on any partition: another process of the group
        # may be applying one to this table right now. The floor is read only once this
        # transaction holds a lock that waits for such a one to commit (and that makes a
        # truncating one wait for ours): read before, a stale floor let older rows outlive it.
        mode = "EXCLUSIVE" if plan.truncate is not None else "ROW EXCLUSIVE"
        self.conn.execute(
            dml.statement(
                self.conn,
                target,
                ("lock", mode),
                lambda: sql.SQL("LOCK TABLE {} IN {} MODE").format(target.ident, sql.SQL(mode)),
                params=False,
            )
        )
        stored = dml.truncated_at(self.conn, label)
        if plan.stored_floor != stored:
            plan = plan.again(stored_floor=stored)  # a truncate moved the floor since
        source = (plan.schema, plan.table)
        self.floors[source] = stored
        if plan.truncate is not None:
            dml.truncate(self.conn, target, plan.truncate)
            self.floors[source] = plan.floor
        if plan.deletes:
            dml.delete(self.conn, target, plan.deletes)
        for upserts in plan.upserts:
            assert upserts.json is not None  # planned with json=True (apply)
            dml.upsert(self.conn, target, upserts.columns, upserts.unavailable, upserts.json)
        if plan.keyless:
            dml.insert_keyless(self.conn, target, plan.keyless)
        if plan.whole:
            dml.apply_whole_rows(self.conn, target, plan.whole)
        return list(plan.rejected)

    # -- DDL ------------------------------------------------------------------------------------

    def _follow_columns(self, names: tuple[str, str], plan: TablePlan) -> TablePlan:
        """Follow the columns the source dropped (:func:`cdc.sink.plan.follow_columns`): drop
        them if so configured; a dropped one added again is a new column, made again. Return the
        plan of the events without values of columns dropped after them."""
        label = ".".join(names)
        ledger = self.ledgers.get(label)
        if ledger is not None and columns_settled(ledger, plan, plan.key):
            return plan
        # Something to record, drop or leave out: look again under the DDL lock, which another
        # process of the group may have held to do it first.
        self.schema.lock()
        ledger = self.ledgers[label] = Ledger()
        for name, lsn, idx, dropped in self.conn.execute(
            "SELECT name, lsn, idx, dropped FROM cdc.columns WHERE target = %s", (label,)
        ):
            (ledger.dropped if dropped else ledger.seen)[name] = (lsn, idx)
        changes = follow_columns(ledger, plan, plan.key, self.config.dropped_columns == "drop")
        found = self.schema.describe(*names) if changes.remove else None
        for column in changes.remove:
            if found is not None and column in found.columns and column not in found.key:
                self.conn.execute(
                    sql.SQL("ALTER TABLE {} DROP COLUMN IF EXISTS {}").format(
                        found.ident, sql.Identifier(column)
                    )
                )
                log.info("dropped column %s of %s: the source dropped it", column, label)
                self.schema.tables.pop(label, None)  # described again, without it
        if changes.record:
            self.conn.execute(
                "INSERT INTO cdc.columns AS c (target, name, lsn, idx, dropped) SELECT %s, n,"
                " l, i, d FROM unnest(%s::text[], %s::bigint[], %s::int[], %s::bool[])"
                " AS x(n, l, i, d) ON CONFLICT (target, name) DO UPDATE"
                " SET lsn = EXCLUDED.lsn, idx = EXCLUDED.idx, dropped = EXCLUDED.dropped",
                (
                    label,
                    [c for c, _, _ in changes.record],
                    [v[0] for _, v, _ in changes.record],
                    [v[1] for _, v, _ in changes.record],
                    [d for _, _, d in changes.record],
                ),
            )
        return changes.plan

    def _column_types(self, schema: str, table: str) -> dict[str, str] | None:
        """The column types of the target table of source table ``schema.table``."""
        found = self.schema.describe(*self._target_names(schema, table))
        return None if found is None else found.columns

    def _target_names(self, schema: str, table: str) -> tuple[str, str]:
        """The target table's schema and name. The template's dot parts them, not one in the
        names it is given (a schema ``a.b``, a table ``v1.2``)."""
        left, dot, right = self.config.table.partition(".")
        if not dot:
            return "public", left.format(schema=schema, table=table)
        return left.format(schema=schema, table=table), right.format(schema=schema, table=table)

    # -- errors ---------------------------------------------------------------------------------

    def _translated(self) -> contextlib.AbstractContextManager[None]:
        """Refusals only a person can fix become :class:`Refused` (the supervisor retries the
        sink), lost connections retriable :class:`TargetUnavailable`; the rest stays as it is."""
        return mapped(f"sink {self.config.name}", self.config.dsn, unavailable=TargetUnavailable)
