"""pgoutput's publication: which tables it holds, made and kept in step with the captured tables.

A publication ``FOR ALL TABLES`` makes PostgreSQL refuse ``UPDATE`` and ``DELETE`` on every table
of the database that has no replica identity, captured or not. So by default
(``publication_autocreate = "filtered"``) the connector's publication holds only what it captures:
whole schemas (``FOR TABLES IN SCHEMA``, PostgreSQL 15+) where an include glob is ``SCHEMA.*``
and no exclude glob can match in that schema, else the captured tables one by one, and always
``cdc.signal``. A table list does not follow new tables by itself: the connector adds the
captured tables that appear (:meth:`Publication.sync`, at start and every few seconds), and
asks for an incremental snapshot of each one added later, since pgoutput decodes a table's
changes only from the moment it joined the publication.

Partitioned tables are listed themselves, without ``publish_via_partition_root``: their
partitions then come with their own names (and their truncates, which a publication via the
root leaves out), and the decoder publishes them under the partitioned table's name.

The connector changes only a publication it made (it says so in the publication's comment).
"""

from __future__ import annotations

__all__ = ["MANAGED", "Plan", "Publication", "plan_publication"]

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import psycopg
from psycopg import sql

from cdc.config import ConnectorConfig
from cdc.errors import CdcError, describe
from cdc.globs import is_plain
from connectors.postgres.catalog import selected_tables
from connectors.postgres.owntables import OWN_SCHEMA, SIGNAL_TABLE

log = logging.getLogger(__name__)

MANAGED = "cdc: kept in step with connector {}'s tables"
"""The comment on a publication the connector made; it changes no other."""
SCHEMA_FORM_VERSION = 150000
"""``FOR TABLES IN SCHEMA`` arrived in PostgreSQL 15."""
LOCK_TIMEOUT = "1s"
"""Adding a table waits for a lock its writers hold: the stream loop does not wait long, it
tries again at the next look."""


@dataclass(frozen=True)
class Plan:
    """What a filtered publication holds."""

    schemas: tuple[str, ...]
    """Published whole (``FOR TABLES IN SCHEMA``)."""
    tables: tuple[tuple[str, str], ...]
    """Published one by one (``FOR TABLE``), ``cdc.signal`` among them."""

    def statement(self, name: str) -> sql.Composed:
        """``CREATE PUBLICATION`` for this plan."""
        objects: list[sql.Composable] = []
        if self.tables:
            objects.append(
                sql.SQL("TABLE {}").format(
                    sql.SQL(", ").join(sql.Identifier(s, t) for s, t in self.tables)
                )
            )
        if self.schemas:
            objects.append(
                sql.SQL("TABLES IN SCHEMA {}").format(
                    sql.SQL(", ").join(sql.Identifier(s) for s in self.schemas)
                )
            )
        return sql.SQL("CREATE PUBLICATION {} FOR {}").format(
            sql.Identifier(name), sql.SQL(", ").join(objects)
        )


def schema_form(includes: Sequence[str], excludes: Sequence[str], server_version: int) -> set[str]:
    """The schemas that may be published whole: an include glob ``SCHEMA.*`` with a plain
    schema name, on PostgreSQL 15+, and no exclude glob that could match a table in it (an
    exclude glob counts as harmless only when its schema part is a plain other name)."""
    if server_version < SCHEMA_FORM_VERSION:
        return set()
    schemas = set()
    for glob in includes:
        schema, dot, table = glob.partition(".")
        if dot and table == "*" and schema and is_plain(schema) and schema != OWN_SCHEMA:
            schemas.add(schema)
    for glob in excludes:
        schema, dot, _ = glob.partition(".")
        if not dot or not is_plain(schema):
            return set()  # it may match in any schema
        schemas.discard(schema)
    return schemas


def plan_publication(
    includes: Sequence[str],
    excludes: Sequence[str],
    tables: Sequence[tuple[str, str]],
    server_version: int,
) -> Plan:
    """``tables``: the captured tables now (partitioned tables, not their partitions)."""
    schemas = schema_form(includes, excludes, server_version)
    listed = [t for t in tables if t[0] not in schemas and t[0] != OWN_SCHEMA]
    return Plan(tuple(sorted(schemas)), (*sorted(set(listed)), SIGNAL_TABLE))


@dataclass
class _State:
    all_tables: bool
    via_root: bool
    comment: str | None
    schemas: set[str]
    tables: set[tuple[str, str]]


class Publication:
    """The connector's publication, on its SQL connection."""

    def __init__(
        self,
        config: ConnectorConfig,
        subject: str,
        conn: psycopg.Connection[Any],
        selected: Callable[[str, str], bool],
    ) -> None:
        self.config = config
        self.subject = subject
        self.conn = conn
        self.selected = selected
        self.name = config.publication
        self.mode: Literal["filtered", "all_tables", "disabled"] = (
            config.publication_autocreate or "filtered"
        )
        self.managed = False
        """Made by the connector with a table list: :meth:`sync` keeps it in step."""

    def plan(self) -> Plan:
        c = self.config
        # With partitions = "root", partitions come through their partitioned table: PostgreSQL
        # publishes a partitioned table's partitions, present and future, with it.
        tables = selected_tables(self.conn, self.selected, c.partitions)
        return plan_publication(
            c.tables,
            c.exclude_tables,
            _persistent(self.conn, tables),
            self.conn.info.server_version,
        )

    def ensure(self) -> None:
        """Make the publication when missing, or say what is wrong with the one there is. It
        must exist before the slot: a slot cannot decode WAL written before its publication."""
        state = self._state()
        if state is None:
            self._create()
            return
        marker = MANAGED.format(self.config.name)
        if state.comment == marker and not state.all_tables:
            self.managed = self.mode == "filtered"
            if not self.managed:
                log.warning(
                    "%s: publication %s holds a table list that this connector kept (with"
                    " publication_autocreate = 'filtered'); it is used as it is",
                    self.subject,
                    self.name,
                )
            return
        for problem in self.problems(state):
            log.warning("%s: %s", self.subject, problem)

    def problems(self, state: _State | None = None) -> list[str]:
        """What is wrong with an existing publication the connector does not keep."""
        state = state or self._state()
        if state is None:
            return []
        found = []
        if state.all_tables and self.mode != "all_tables":
            found.append(
                f"publication {self.name} is FOR ALL TABLES (earlier versions of cdc made it so):"
                " PostgreSQL refuses UPDATE and DELETE on every table of the database that has"
                " no primary key or replica identity, captured or not. It is used as it is; to"
                " publish only the captured tables, stop the connector and run in one"
                f" transaction {self.switch_statement()}; then DROP PUBLICATION"
                f" {self.name}_all_tables and start the connector again"
            )
        elif (
            state.comment != MANAGED.format(self.config.name)
            and not state.all_tables
            and SIGNAL_TABLE not in state.tables
            and OWN_SCHEMA not in state.schemas
        ):
            found.append(
                f"publication {self.name} (not made by cdc, used as it is) does not hold"
                f" {'.'.join(SIGNAL_TABLE)}: incremental snapshots cannot work"
                f" (ALTER PUBLICATION {self.name} ADD TABLE {'.'.join(SIGNAL_TABLE)})"
            )
        if not state.all_tables and state.comment != MANAGED.format(self.config.name):
            missing = self._missing()
            if missing:
                shown = ", ".join(f"{s}.{t}" for s, t in missing[:10])
                more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
                found.append(
                    f"publication {self.name} (not made by cdc, used as it is) does not hold"
                    f" {len(missing)} captured table(s): {shown}{more}; their changes are not"
                    f" decoded (ALTER PUBLICATION {self.name} ADD TABLE ...)"
                )
        if state.via_root and self.config.partitions == "root":
            found.append(
                f"publication {self.name} has publish_via_partition_root = true: PostgreSQL"
                " then publishes no truncate of a single partition, and the partitioned table's"
                f" target keeps its rows (ALTER PUBLICATION {self.name} SET"
                " (publish_via_partition_root = false): cdc publishes partitions on their"
                " partitioned table's topic itself)"
            )
        return found

    def _missing(self) -> list[tuple[str, str]]:
        """Captured tables the publication does not publish (partitions count for their
        partitioned table when cdc publishes them so)."""
        published = {
            (str(s), str(t))
            for s, t in self.conn.execute(
                "SELECT n.nspname, c.relname FROM pg_publication_tables p"
                " JOIN pg_namespace pn ON pn.nspname = p.schemaname"
                " JOIN pg_class pc ON pc.relnamespace = pn.oid AND pc.relname = p.tablename"
                " JOIN pg_class c ON c.oid = CASE WHEN %s"
                " THEN coalesce(pg_partition_root(pc.oid), pc.oid) ELSE pc.oid END"
                " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE p.pubname = %s",
                (self.config.partitions == "root", self.name),
            ).fetchall()
        }
        captured = selected_tables(self.conn, self.selected, self.config.partitions)
        return [
            t for t in _persistent(self.conn, captured) if t not in published and t[0] != OWN_SCHEMA
        ]

    def switch_statement(self) -> str:
        """The SQL that puts a filtered publication in the place of a FOR ALL TABLES one. The
        old one is renamed, not dropped, in the same transaction: the slot looks the
        publication up by name as of each change it decodes, so the name must never be
        missing."""
        rename = sql.SQL("ALTER PUBLICATION {} RENAME TO {}").format(
            sql.Identifier(self.name), sql.Identifier(f"{self.name}_all_tables")
        )
        comment = sql.SQL("COMMENT ON PUBLICATION {} IS {}").format(
            sql.Identifier(self.name), sql.Literal(MANAGED.format(self.config.name))
        )
        return "; ".join(
            s.as_string(self.conn) for s in (rename, self.plan().statement(self.name), comment)
        )

    def sync(self) -> list[tuple[str, str]]:
        """Add the captured tables the publication lacks, drop those no longer captured;
        return the tables added. Only for a publication the connector keeps."""
        if not self.managed:
            return []
        state = self._state()
        if state is None:
            raise CdcError(f"{self.subject}: publication {self.name} was dropped")
        plan = self.plan()
        wanted = set(plan.tables)
        added = []
        for schema, table in sorted(wanted - state.tables):
            if self._alter("ADD", schema, table):
                added.append((schema, table))
        for schema, table in sorted(state.tables - wanted):
            self._alter("DROP", schema, table)
        return added

    def _alter(self, verb: str, schema: str, table: str) -> bool:
        statement = sql.SQL("ALTER PUBLICATION {} " + verb + " TABLE {}").format(
            sql.Identifier(self.name), sql.Identifier(schema, table)
        )
        try:
            with self.conn.transaction():
                self.conn.execute(
                    sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(LOCK_TIMEOUT))
                )
                self.conn.execute(statement)
        except (psycopg.errors.LockNotAvailable, psycopg.errors.UndefinedTable):
            return False  # busy, or gone meanwhile: the next look sees
        except psycopg.errors.DuplicateObject:
            return False
        log.info(
            "%s: publication %s: %s %s.%s",
            self.subject,
            self.name,
            "added" if verb == "ADD" else "dropped",
            schema,
            table,
        )
        return True

    def _create(self) -> None:
        if self.mode == "disabled":
            raise CdcError(
                f"{self.subject}: publication {self.name} does not exist, and"
                " publication_autocreate = 'disabled' uses an existing one: create it with the"
                f" captured tables and {'.'.join(SIGNAL_TABLE)}"
            )
        if self.mode == "all_tables":
            statement: sql.Composed = sql.SQL("CREATE PUBLICATION {} FOR ALL TABLES").format(
                sql.Identifier(self.name)
            )
            what = "FOR ALL TABLES"
        else:
            plan = self.plan()
            statement = plan.statement(self.name)
            what = (
                f"for {len(plan.tables)} table(s)"
                + (f" and schema(s) {', '.join(plan.schemas)}" if plan.schemas else "")
                + ", kept in step with the captured tables"
            )
        comment = sql.SQL("COMMENT ON PUBLICATION {} IS {}").format(
            sql.Identifier(self.name), sql.Literal(MANAGED.format(self.config.name))
        )
        try:
            with self.conn.transaction():
                self.conn.execute(statement)
                self.conn.execute(comment)
        except psycopg.errors.DuplicateObject:
            self.ensure()  # another connector made it at the same moment
            return
        except psycopg.errors.InsufficientPrivilege as e:
            raise CdcError(
                f"{self.subject}: publication {self.name} does not exist and this user cannot"
                f" create it {what} ({describe(e, self.config.dsn.password)}); create it as"
                " the tables' owner or a superuser, or CREATE PUBLICATION"
                f" {self.name} FOR TABLE with the captured tables and"
                f" {'.'.join(SIGNAL_TABLE)}"
            ) from e
        self.managed = self.mode == "filtered"
        log.info("%s: created publication %s %s", self.subject, self.name, what)

    def _state(self) -> _State | None:
        row = self.conn.execute(
            "SELECT oid, puballtables, pubviaroot, obj_description(oid, 'pg_publication')"
            " FROM pg_publication WHERE pubname = %s",
            (self.name,),
        ).fetchone()
        if row is None:
            return None
        oid, all_tables, via_root, comment = row
        tables = {
            (str(s), str(t))
            for s, t in self.conn.execute(
                "SELECT n.nspname, c.relname FROM pg_publication_rel r"
                " JOIN pg_class c ON c.oid = r.prrelid"
                " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE r.prpubid = %s",
                (oid,),
            ).fetchall()
        }
        schemas: set[str] = set()
        if self.conn.info.server_version >= SCHEMA_FORM_VERSION:
            schemas = {
                str(s)
                for (s,) in self.conn.execute(
                    "SELECT n.nspname FROM pg_publication_namespace p"
                    " JOIN pg_namespace n ON n.oid = p.pnnspid WHERE p.pnpubid = %s",
                    (oid,),
                ).fetchall()
            }
        return _State(bool(all_tables), bool(via_root), comment, schemas, tables)


def _persistent(
    conn: psycopg.Connection[Any], tables: Sequence[tuple[str, str]]
) -> list[tuple[str, str]]:
    """Only tables whose changes are logged can be in a publication (not unlogged or
    temporary ones)."""
    if not tables:
        return []
    rows = conn.execute(
        "SELECT n.nspname::text, c.relname::text FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relpersistence = 'p'"
        " AND (n.nspname, c.relname) IN (SELECT * FROM unnest(%s::text[], %s::text[]))",
        ([s for s, _ in tables], [t for _, t in tables]),
    ).fetchall()
    return [(str(s), str(t)) for s, t in rows]
