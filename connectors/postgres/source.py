"""The PostgreSQL source: slot -> wal2json or pgoutput -> events -> Kafka, confirming only what
Kafka acked.

Reading top to bottom: :meth:`PostgresSource.run` keeps a session alive (reconnecting with backoff
after a retriable failure); :meth:`_session` opens the connections, makes sure the slot exists
(:mod:`.slot`), takes an owed initial snapshot (:mod:`.initial`), then hands over to
:func:`.stream.stream`, the loop: read a message, decode it, publish its records without waiting,
and, separately, confirm to PostgreSQL the newest position that Kafka has fully acked. Driver
errors are translated once, around the session (:func:`cdc.pgerrors.mapped`).

Resume rule: streaming starts at the slot's confirmed flush position, which is only ever moved
to the end of a transaction whose every record Kafka acked (or, when nothing at all is in
flight, to the server's reported end of WAL). A crash anywhere therefore re-publishes at most the
unconfirmed suffix, with the same event ids.
"""

from __future__ import annotations

__all__ = ["PostgresSource"]

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import psycopg

from cdc.acks import DeliveryWatch
from cdc.config import ConnectorConfig, KafkaConfig
from cdc.errors import CdcError, Refused, SourceUnavailable, describe
from cdc.events import SourceInfo
from cdc.globs import TableSelector
from cdc.kafka import AnyPublisher, open_publisher
from cdc.oversized import Oversized
from cdc.pgerrors import mapped
from cdc.retry import Backoff, Stopped, retried
from cdc.transforms import Transforms
from cdc.transforms.messages import Messages
from connectors.postgres.catalog import PostgresCatalog, partition_leaves, selected_tables
from connectors.postgres.check import own_tables
from connectors.postgres.decoders import Decoder, decoder_plugin
from connectors.postgres.decoding import TableInfo
from connectors.postgres.incremental import IncrementalSnapshots
from connectors.postgres.initial import InitialSnapshot
from connectors.postgres.owntables import (
    OWN_SCHEMA,
    SIGNAL_TABLE,
    ensure_source_tables,
    initial_state,
    mark_initial,
    request_snapshot,
)
from connectors.postgres.partitions import PartitionWatch
from connectors.postgres.publication import Publication
from connectors.postgres.replication import (
    ReplicationConnection,
)
from connectors.postgres.session import pinned
from connectors.postgres.slot import CreatedSlot, Slot
from connectors.postgres.stats import SourceStats
from connectors.postgres.stream import Confirmation, StreamSettings, stream
from connectors.postgres.versions import failover_problem, too_old

log = logging.getLogger(__name__)

BACKOFF_MAX_S = 30.0


class PostgresSource:
    """Streams one database into Kafka; see the module docstring for the guarantees."""

    def __init__(
        self, config: ConnectorConfig, kafka: KafkaConfig, stats: SourceStats | None = None
    ) -> None:
        self.config = config
        self.kafka = kafka
        self.subject = f"connector {config.name}"
        self.stats = stats or SourceStats(config.name)
        """What it counts for ``/metrics`` (kept by the connector across restarts)."""
        self.oversized = Oversized(config.oversized, self.subject)
        """Records over Kafka's limits left out or truncated (``oversized``), across sessions."""
        self.confirmation = Confirmation(config.heartbeat_interval_s)
        """The positions confirmed to PostgreSQL (across sessions) and when they are sent."""
        self._delivery = DeliveryWatch(self.subject)
        self._slot = Slot(config, self.subject)
        self.transforms = Transforms(config)
        """The connector's columns, filters, routes and outbox rules, compiled once."""
        self._settings = StreamSettings(
            self.subject,
            config.tombstones,
            kafka.producer.max_unacked_records,
            self.transforms.lookup(),
            Messages(config.messages, config.topic_prefix) if config.messages else None,
            config.transaction_topic,
            config.skipped,
        )
        self.finished = False
        """Set once an ``initial_only`` connector has delivered its snapshot."""
        self._always_done = False
        self._partitions_table = False
        self._started: threading.Event | None = None
        self._pushed_schemas: frozenset[str] | None = None
        """With partitions = "root", the schemas wal2json was told to decode (``add-tables``):
        a partition created elsewhere is skipped by wal2json until the session starts again."""
        """``cdc.partitions`` exists (else the partition trees are remembered in memory)."""

    @property
    def confirmed(self) -> int:
        """Everything before this position is on Kafka and confirmed to PostgreSQL."""
        return self.confirmation.confirmed

    def run(self, stop: threading.Event, started: threading.Event | None = None) -> None:
        """Keep a session up until ``stop``, reconnecting after retriable failures; set
        ``started`` once snapshotting or streaming (see :class:`cdc.plugins.Connector`)."""
        self._started = started
        with contextlib.suppress(Stopped):
            retried(
                lambda: self._counted_session(stop),
                stop=stop,
                retry_on=CdcError,
                when=lambda e: isinstance(e, CdcError) and e.retriable,
                log=log,
                what=self.subject,
                backoff=Backoff(max_s=BACKOFF_MAX_S),
            )

    def _counted_session(self, stop: threading.Event) -> None:
        stats = self.stats
        stats.session_started()
        try:
            self._session(stop)
        except Exception as e:
            stats.failed(e, describe(e))
            for progress in stats.snapshots.values():
                if progress.state == "running":
                    progress.state = "stopped"
            raise

    def _session(self, stop: threading.Event) -> None:
        c = self.config
        # Every driver error of the session is translated here, once (cdc.pgerrors.mapped).
        with mapped(self.subject, c.dsn, other=CdcError), contextlib.ExitStack() as opened:
            sql = opened.enter_context(
                psycopg.connect(
                    pinned(c.dsn.conninfo), autocommit=True, application_name=f"cdc-{c.name}"
                )
            )
            self._check_server(sql.info.server_version)
            own_tables = self._own_tables(sql)
            selector = TableSelector(c.tables, c.exclude_tables)
            publication: Publication | None = None
            added: list[tuple[str, str]] = []
            if decoder_plugin(c.plugin).publication:
                publication = Publication(c, self.subject, sql, selector)
                publication.ensure()
                added = publication.sync()
            # Read before the slot is looked at, which may mark a new initial snapshot owed.
            before = self._initial_state(sql) if own_tables else None
            created = self._slot.ensure(sql, export=c.snapshot != "never")
            opened.callback(created.close)
            catalog = PostgresCatalog(sql, c.name if own_tables else None)
            self._warn_about_tables(sql, selector, catalog)
            watch = PartitionWatch(
                c, self.subject, sql, selector, own_tables, self._partitions_table
            )
            if created.created:
                # The trees as the slot's snapshot sees them, give or take the moment since:
                # a partition attached or detached during the initial snapshot is repaired.
                watch.forget()
                watch.look()
            decoder, options = self._decoder(catalog, selector, watch)
            source = SourceInfo(
                c.name,
                sql.info.dbname,
                c.topic_prefix,
                c.value_mode,
                c.values == "exact" or c.transaction_topic,
                c.schemas,
            )
            publisher = open_publisher(self.kafka, self.oversized)
            opened.callback(publisher.close, 1.0)
            if self._initial_snapshot_owed(sql):
                self._mark_started()  # a snapshot may take hours: it runs
                self.stats.state = "snapshotting"
                created = self._snapshot_first(
                    stop, sql, created, selector, source, publisher, watch, before, opened
                )
                if stop.is_set():
                    return
            created.close()  # the exported snapshot is no longer needed
            if c.snapshot == "initial_only":
                log.info("%s: snapshot = 'initial_only': done, not streaming", self.subject)
                self.finished = True
                self.stats.state = "done"
                return
            watch.look()
            added = [t for t in added if t not in watch.snapshotted]
            if added and not created.created:
                self._snapshot_added(sql, catalog, added, own_tables)
            repl = ReplicationConnection(c.dsn.conninfo, c.dsn.password)
            opened.callback(repl.close)
            repl.start(c.slot, 0, options)
            self._mark_started()
            log.info("%s: streaming slot %s", self.subject, c.slot)
            snapshots = IncrementalSnapshots(c, self.subject, sql, catalog, own_tables, self.stats)
            tables = _Tables(self, sql, catalog, publication, watch, decoder, own_tables)
            tables.wal_end()
            self.stats.streaming()
            self.confirmation.heartbeat = (
                partial(sql.execute, c.heartbeat_query) if c.heartbeat_query else None
            )
            stream(
                stop,
                repl,
                decoder,
                source,
                publisher,
                snapshots,
                self.confirmation,
                self.stats,
                self._delivery,
                self._settings,
                tables,
            )

    def _mark_started(self) -> None:
        if self._started is not None:
            self._started.set()

    def _decoder(
        self, catalog: PostgresCatalog, selector: TableSelector, watch: PartitionWatch
    ) -> tuple[Decoder, dict[str, str]]:
        """The plugin's decoder and its ``START_REPLICATION`` options."""
        c = self.config
        plugin = decoder_plugin(c.plugin)
        # A partition's changes are published under its partitioned table's name.
        root = catalog.partition_root if c.partitions == "root" else None
        options = plugin.options(c, watch.partition_schemas())
        self._pushed_schemas = None
        if "add-tables" in options and root is not None:
            self._pushed_schemas = frozenset(
                i[:-2] for i in options["add-tables"].split(",") if i.endswith(".*")
            )
        return plugin.decoder(catalog, self._capture(selector), root, self.subject), options

    def _check_server(self, version: int) -> None:
        """Refuse, once and for all (not retriable), a server this connector cannot run on."""
        problem = too_old(version)
        if problem is None and self.config.failover_slot:
            problem = failover_problem(version)
        if problem is not None:
            raise CdcError(f"{self.subject}: {problem}")

    def _own_tables(self, sql: psycopg.Connection[Any]) -> bool:
        """Create ``cdc.signal`` and ``cdc.snapshots`` when missing. Without the privilege,
        a connector that never snapshots runs on without incremental snapshots."""
        try:
            self._partitions_table = ensure_source_tables(sql)
        except psycopg.errors.InsufficientPrivilege as e:
            # What cdc check says of it names the grant: on the database, or on schema cdc.
            role = str(sql.execute("SELECT current_user").fetchone()[0])  # type: ignore[index]
            found = own_tables(sql, self.subject, self.config, role)
            cause = (
                f"{self.subject}: cannot create the connector's tables cdc.signal and"
                f" cdc.snapshots ({describe(e, self.config.dsn.password)})"
            )
            problem = f"{cause}: {found.message}"
            if self.config.snapshot != "never":
                raise Refused(cause, found.message) from e
            log.warning("%s; incremental snapshots are unavailable", problem)
            return False
        return True

    def _snapshot_added(
        self,
        sql: psycopg.Connection[Any],
        catalog: PostgresCatalog,
        added: list[tuple[str, str]],
        snapshots: bool,
    ) -> None:
        """pgoutput decodes a table's changes only from the moment it joined the publication:
        rows written before are read by an incremental snapshot (keyed tables only)."""
        keyed = []
        for schema, table in added:
            if (schema, table) == SIGNAL_TABLE:
                continue
            info = catalog.table(schema, table, refresh=True)
            if snapshots and info is not None and info.has_primary_key:
                keyed.append(f"{schema}.{table}")
            else:
                log.warning(
                    "%s: %s.%s joined the publication only now; rows written to it before are"
                    " not captured (%s)",
                    self.subject,
                    schema,
                    table,
                    "no primary key for an incremental snapshot"
                    if snapshots
                    else "incremental snapshots are unavailable",
                )
        if keyed:
            request_snapshot(sql, self.config.name, keyed)
            log.info(
                "%s: incremental snapshot of %s requested: it joined the publication only now",
                self.subject,
                ", ".join(keyed),
            )

    def _snapshot_first(
        self,
        stop: threading.Event,
        sql: psycopg.Connection[Any],
        created: CreatedSlot,
        selector: TableSelector,
        source: SourceInfo,
        publisher: AnyPublisher,
        watch: PartitionWatch,
        before: str | None,
        opened: contextlib.ExitStack,
    ) -> CreatedSlot:
        """The initial snapshot, in the exported snapshot of a slot made for it (made again
        when the slot has none); ``before``: its state in ``cdc.snapshots`` before this start."""
        if created.snapshot is None:
            created = self._slot.made_again(sql)
            opened.callback(created.close)
            watch.forget()  # as for a new slot: the trees its snapshot sees
            watch.look()
        supersede = before in ("running", "done")
        self._initial_snapshot(stop, sql, created, selector, source, publisher, supersede)
        return created

    def _initial_state(self, sql: psycopg.Connection[Any]) -> str | None:
        return initial_state(sql, self.config.name)

    def _mark_initial(self, sql: psycopg.Connection[Any], state: str) -> None:
        mark_initial(sql, self.config.name, state)

    def _initial_snapshot_owed(self, sql: psycopg.Connection[Any]) -> bool:
        mode = self.config.snapshot
        if mode == "never":
            return False
        if mode == "always":
            return not self._always_done
        state = self._initial_state(sql)
        return state is not None and state != "done"

    def _initial_snapshot(
        self,
        stop: threading.Event,
        sql: psycopg.Connection[Any],
        slot: CreatedSlot,
        selector: TableSelector,
        source: SourceInfo,
        publisher: AnyPublisher,
        supersede: bool,
    ) -> None:
        """``supersede``: an earlier snapshot (interrupted, or ``always``'s last) may have
        published rows that this one does not show: each table's reads are preceded by a
        truncate marker below them, so consumers drop what came before."""
        c = self.config
        self._mark_initial(sql, "running")
        if supersede:
            log.info(
                "%s: taking a new snapshot; each table's rows are preceded by a truncate"
                " marker that retracts what earlier snapshots and streams published",
                self.subject,
            )
        reader = InitialSnapshot(
            c,
            self.kafka.producer.max_unacked_records,
            lambda s, t: s != OWN_SCHEMA and selector(s, t),
            self.subject,
            self.stats,
            self.transforms.lookup(),
        )
        rows = reader.run(stop, slot.snapshot, slot.lsn, source, publisher, sql, supersede)
        if stop.is_set():
            return
        self._mark_initial(sql, "done")
        self._always_done = True
        self.stats.published += rows

    @staticmethod
    def _capture(selector: TableSelector) -> Callable[[str, str], bool]:
        """What the decoder decodes: the selected tables, never the ``cdc`` schema, and the
        signal table, whose rows are watermarks and requests, not published."""

        def capture(schema: str, table: str) -> bool:
            if schema == OWN_SCHEMA:
                return (schema, table) == SIGNAL_TABLE
            return selector(schema, table)

        return capture

    def _check_transforms(
        self,
        tables: dict[tuple[str, str], TableInfo],
        partitions: dict[tuple[str, str], frozenset[str]] | None,
    ) -> None:
        """Refuse to start when a transform names a column that does not exist or would drop
        or mask a key; warn about rules that match no table."""
        errors, warnings = self.transforms.problems(tables, partitions)
        for warning in warnings:
            log.warning("%s: %s", self.subject, warning)
        if errors:
            raise CdcError(f"{self.subject}: " + "; ".join(errors))

    def _warn_about_tables(
        self, sql: psycopg.Connection[Any], selector: TableSelector, catalog: PostgresCatalog
    ) -> None:
        infos: dict[tuple[str, str], TableInfo] = {}
        # The tables as they are published (partitions with "leaf"), as `cdc check` sees them.
        for schema, table in selected_tables(sql, selector, self.config.partitions):
            info = catalog.table(schema, table)
            if info is not None:
                infos[schema, table] = info
            if info is not None and not info.key:
                # In a publication, PostgreSQL refuses such a table's updates and deletes.
                refused = (
                    "; PostgreSQL refuses them while the table is in a publication"
                    if decoder_plugin(self.config.plugin).publication
                    else ""
                )
                log.warning(
                    "%s: table %s.%s has no primary key and REPLICA IDENTITY %s: its updates"
                    " and deletes cannot be identified%s (ALTER TABLE %s.%s REPLICA IDENTITY"
                    " FULL)",
                    self.subject,
                    schema,
                    table,
                    info.identity.upper(),
                    refused,
                    schema,
                    table,
                )
        if self.transforms.active:
            root = self.config.partitions == "root"
            self._check_transforms(infos, partition_leaves(sql) if root else None)


class _Tables:
    """What the stream loop does when the database's tables change under it."""

    def __init__(
        self,
        source: PostgresSource,
        sql: psycopg.Connection[Any],
        catalog: PostgresCatalog,
        publication: Publication | None,
        watch: PartitionWatch,
        decoder: Decoder,
        snapshots: bool,
    ) -> None:
        self.source = source
        self.sql = sql
        self.catalog = catalog
        self.publication = publication
        self.watch = watch
        self.decoder = decoder
        self.snapshots = snapshots
        self.looked = time.monotonic()

    def look(self, now: float) -> None:
        self.looked = now
        self.wal_end()
        if self.watch.look():
            self.decoder.forget_routes()
            self._follow_partitions()
        if self.publication is not None:
            # Before the stream reads on: a snapshot the watch asked for reads its table only
            # once the stream brings the request, when the table is in the publication.
            added = self.publication.sync()
            added = [t for t in added if t not in self.watch.snapshotted]
            if added:
                self.source._snapshot_added(self.sql, self.catalog, added, self.snapshots)

    def wal_end(self) -> None:
        """The server's WAL position now, for the slot's lag in bytes (``/metrics``); a standby
        (decoding there, PostgreSQL 16 and later) says how far it replayed."""
        row = self.sql.execute(
            "SELECT (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()"
            " ELSE pg_current_wal_lsn() END) - '0/0'::pg_lsn"
        ).fetchone()
        if row is not None and row[0] is not None:
            self.source.stats.wal_end = int(row[0])

    def _follow_partitions(self) -> None:
        """wal2json skips a partition outside the schemas it was told to decode: its rows since
        it was made are read again by a snapshot, asked for before the session starts again
        with options that decode it."""
        pushed = self.source._pushed_schemas
        if pushed is None:
            return
        outside = {
            root: {f"{s}.{t}" for s, t in tree.values() if s not in pushed}
            for root, tree in self.watch.last_trees.items()
        }
        outside = {root: names for root, names in outside.items() if names}
        if not outside:
            return
        for root, names in outside.items():
            self.watch.resync(
                root,
                f"partition(s) {', '.join(sorted(names))} outside the schemas wal2json decodes"
                f" ({', '.join(sorted(pushed))})",
            )
        raise SourceUnavailable(
            "partitions outside the schemas wal2json decodes:"
            " starting the stream again to decode them"
        )

    def truncated(self, truncated: dict[tuple[str, str], set[tuple[str, str]]]) -> None:
        """A transaction truncated some partitions of a partitioned table, not all: its target
        was emptied (the truncate event), so the rows of the other partitions are read again."""
        for root, names in truncated.items():
            if root in names:
                continue  # the partitioned table itself: all of it
            if self.watch.is_whole(root, names):
                continue
            self.watch.resync(root, "some of its partitions were truncated")
        truncated.clear()
