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

Pushdown (PostgreSQL 15+): a table listed one by one gets the column list of its
``[[connectors.columns]]`` include rules (less their excludes; not an exclude rule alone, which
publishes a column added later) when it has a primary key and REPLICA IDENTITY
DEFAULT (a column list must cover the replica identity, and masks need the values), and the row
filter of its ``[[connectors.filters]]`` when every column the filter names is in its replica
identity (else PostgreSQL refuses the application's UPDATE and DELETE on the table) and it orders
no text (PostgreSQL's collation may order it otherwise). The connector still applies both itself.
:meth:`Publication.sync` keeps them in step with the rules and the tables' identities.
"""

from __future__ import annotations

__all__ = ["MANAGED", "Plan", "Publication", "Pushdown", "plan_publication"]

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import psycopg
from psycopg import sql

from cdc.config import ConnectorConfig
from cdc.errors import CdcError, describe
from cdc.globs import is_plain
from cdc.transforms import Transforms
from cdc.transforms.filters import RowFilter
from connectors.postgres.catalog import selected_tables
from connectors.postgres.owntables import OWN_SCHEMA, SIGNAL_TABLE

log = logging.getLogger(__name__)

MANAGED = "cdc: kept in step with connector {}'s tables"
"""The comment on a publication the connector made; it changes no other."""
SCHEMA_FORM_VERSION = 150000
"""``FOR TABLES IN SCHEMA`` arrived in PostgreSQL 15."""
PUSHDOWN_VERSION = 150000
"""Column lists and row filters arrived in PostgreSQL 15."""
LISTS_WITH_SCHEMAS_VERSION = 160000
"""PostgreSQL 15 refuses a column list in a publication that also publishes whole schemas."""
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


@dataclass(frozen=True)
class Pushdown:
    """A table's column list and row filter in the publication (None: none)."""

    columns: tuple[str, ...] | None = None
    where: sql.Composable | None = None


def _where(rows: RowFilter) -> sql.Composed:
    """``rows``'s filters as SQL, written from their words: identifiers and text through
    psycopg, numbers as they parsed, keywords and operators from a fixed set."""
    parts: list[sql.Composable] = []
    for f in rows.filters:
        words: list[sql.Composable] = []
        for token in f.tokens:
            if token.kind == "column":
                words.append(sql.Identifier(token.value))
            elif token.kind == "text":
                words.append(sql.Literal(token.value))
            elif token.kind == "number":
                words.append(sql.SQL(str(token.value)))
            elif token.kind in _WORDS:
                words.append(sql.SQL(_WORDS[token.kind]))
            else:
                words.append(sql.SQL(_OPERATORS[token.text]))
        parts.append(sql.SQL("({})").format(sql.SQL(" ").join(words)))
    return sql.SQL(" AND ").join(parts)


_WORDS = {
    "and": "AND",
    "or": "OR",
    "not": "NOT",
    "in": "IN",
    "is": "IS",
    "null": "NULL",
    "true": "true",
    "false": "false",
    "minus": "-",
    "(": "(",
    ")": ")",
    ",": ",",
}
_OPERATORS = {o: o for o in ("=", "<>", "!=", "<", "<=", ">", ">=")}


def _facts(
    conn: psycopg.Connection[Any], tables: Sequence[tuple[str, str]]
) -> list[tuple[str, str, str, str, bool, list[str], list[str]]]:
    """Per table: schema, name, relkind, relreplident, whether it has a primary key, its
    columns (not generated) and its replica identity's columns (the primary key with DEFAULT,
    the index's with USING INDEX)."""
    if not tables:
        return []
    rows = conn.execute(
        "SELECT n.nspname::text, c.relname::text, c.relkind::text, c.relreplident::text,"
        " EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary),"
        " ARRAY(SELECT a.attname::text FROM pg_attribute a WHERE a.attrelid = c.oid"
        "  AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '' ORDER BY a.attnum),"
        " ARRAY(SELECT a.attname::text FROM pg_index i JOIN pg_attribute a"
        "  ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) WHERE i.indrelid = c.oid"
        "  AND ((c.relreplident = 'd' AND i.indisprimary)"
        "   OR (c.relreplident = 'i' AND i.indisreplident)))"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE (n.nspname, c.relname) IN (SELECT * FROM unnest(%s::text[], %s::text[]))",
        ([s for s, _ in tables], [t for _, t in tables]),
    ).fetchall()
    return [
        (str(s), str(t), str(k), str(i), bool(pk), list(cols), list(ident))
        for s, t, k, i, pk, cols, ident in rows
    ]


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
        self.transforms = Transforms(config)
        self._pushed: dict[tuple[str, str], Pushdown] = {}
        """What this process made (or found) each table's column list and row filter."""
        self._checked: set[tuple[str, str]] = set()
        """Tables whose column list and row filter this process set or found as wanted."""
        self._clean = False
        """The last look found nothing left to do."""

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
        self._push(plan)
        return added

    def pushdown(self, plan: Plan) -> dict[tuple[str, str], Pushdown]:
        """Each listed table's column list and row filter, as the rules and the table's key
        and identity make them now (none where nothing is exact)."""
        version = self.conn.info.server_version
        if version < PUSHDOWN_VERSION or not (self.config.columns or self.config.filters):
            return {}
        lists_ok = not plan.schemas or version >= LISTS_WITH_SCHEMAS_VERSION
        shapes = {t: self.transforms.shape(*t) for t in plan.tables if t != SIGNAL_TABLE}
        shaped = [t for t, shape in shapes.items() if shape is not None]
        wanted: dict[tuple[str, str], Pushdown] = {}
        for schema, table, kind, identity, has_pk, columns, ident_columns in _facts(
            self.conn, shaped
        ):
            shape = shapes[(schema, table)]
            assert shape is not None
            if kind != "r":
                continue  # a partitioned table: its partitions' own lists would apply
            column_list = None
            shaper = shape.columns
            # Only an include list: PostgreSQL's column list leaves out a column added later,
            # which an exclude rule publishes (until the next look: its values never sent).
            if (
                lists_ok
                and shaper is not None
                and shaper.include is not None
                and has_pk
                and identity == "d"
            ):
                # The connector filters before it drops columns: it needs the filter's too.
                needed = shape.filter.columns if shape.filter is not None else frozenset()
                kept = tuple(c for c in columns if shaper.kept(c) or c in needed)
                if kept != tuple(columns) and set(ident_columns) <= set(kept):
                    column_list = kept
            where = None
            rows = shape.filter
            if rows is not None and not rows.orders_text:
                covered = set(columns) if identity == "f" else set(ident_columns)
                if rows.columns <= covered:
                    where = _where(rows)
            wanted[(schema, table)] = Pushdown(column_list, where)
        return wanted

    def _push(self, plan: Plan) -> None:
        """Make each listed table's column list and row filter what :meth:`pushdown` says."""
        if self.conn.info.server_version < PUSHDOWN_VERSION:
            return
        none = Pushdown()
        wanted = {t: p for t, p in self.pushdown(plan).items() if p != none}
        if self._clean and self._pushed == wanted:
            return  # as this process last made or found it (sync runs every few seconds)
        current = self._current()
        clean = True
        for table in sorted(set(current) | set(wanted)):
            if table not in plan.tables:
                continue
            want = wanted.get(table, none)
            if table in self._checked and self._pushed.get(table, none) == want:
                continue
            columns, filtered = current.get(table, (None, False))
            # A row filter reads back as PostgreSQL prints it: one is set again once per
            # process, in case the rules changed between runs.
            made: Pushdown | None = want
            if not (columns == want.columns and not filtered and want.where is None):
                made = self._set(table, want)
            if made is None:
                clean = False
                continue
            self._checked.add(table)
            if made == none:
                self._pushed.pop(table, None)
            else:
                self._pushed[table] = made
        self._clean = clean

    def _current(self) -> dict[tuple[str, str], tuple[tuple[str, ...] | None, bool]]:
        """Each listed table's column list, and whether it has a row filter, as the
        publication holds them."""
        rows = self.conn.execute(
            "SELECT n.nspname::text, c.relname::text,"
            " CASE WHEN r.prattrs IS NULL THEN NULL ELSE ARRAY(SELECT a.attname::text"
            "  FROM pg_attribute a WHERE a.attrelid = r.prrelid AND a.attnum = ANY(r.prattrs)"
            "  ORDER BY a.attnum) END,"
            " r.prqual IS NOT NULL"
            " FROM pg_publication_rel r JOIN pg_publication p ON p.oid = r.prpubid"
            " JOIN pg_class c ON c.oid = r.prrelid"
            " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE p.pubname = %s",
            (self.name,),
        ).fetchall()
        return {
            (str(s), str(t)): (None if cols is None else tuple(cols), bool(filtered))
            for s, t, cols, filtered in rows
        }

    def _set(self, table: tuple[str, str], want: Pushdown) -> Pushdown | None:
        """Put ``table`` back in the publication with ``want``'s column list and row filter,
        in one transaction (it is never out of the publication meanwhile). Returns what is
        set: none when PostgreSQL refused ``want``; None when the table was busy."""
        name = sql.Identifier(*table)
        target: sql.Composable = name
        if want.columns is not None:
            target = sql.SQL("{} ({})").format(
                name, sql.SQL(", ").join(sql.Identifier(c) for c in want.columns)
            )
        if want.where is not None:
            target = sql.SQL("{} WHERE ({})").format(target, want.where)
        drop = sql.SQL("ALTER PUBLICATION {} DROP TABLE {}").format(sql.Identifier(self.name), name)
        add = sql.SQL("ALTER PUBLICATION {} ADD TABLE {}").format(sql.Identifier(self.name), target)
        try:
            with self.conn.transaction():
                self.conn.execute(
                    sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(LOCK_TIMEOUT))
                )
                self.conn.execute(drop)
                self.conn.execute(add)
        except (psycopg.errors.LockNotAvailable, psycopg.errors.UndefinedTable):
            return None  # busy, or gone meanwhile: the next look sees
        except psycopg.Error as e:
            # PostgreSQL refused the filter (a literal of the wrong type for its column):
            # the connector filters by itself.
            log.warning(
                "%s: publication %s: %s.%s: cannot push the rules into the publication"
                " (%s); the connector applies them itself",
                self.subject,
                self.name,
                *table,
                describe(e, self.config.dsn.password),
            )
            if want == Pushdown():
                return None
            return self._set(table, Pushdown())
        log.info(
            "%s: publication %s: %s.%s published with %s",
            self.subject,
            self.name,
            *table,
            ", ".join(
                [
                    f"columns ({', '.join(want.columns)})" if want.columns is not None else "",
                    f"row filter {want.where.as_string(self.conn)}"
                    if want.where is not None
                    else "",
                ]
            ).strip(", ")
            or "every column and row",
        )
        return want

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
