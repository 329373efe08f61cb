"""``cdc check`` for a PostgreSQL source: can this database feed a connector?

Each probe reads the server's state and turns it into one finding that says what to do when it is
wrong. The only thing it creates is a temporary logical slot (dropped before returning, and by the
server if we die) to prove the output plugin loads and decodes.
"""

from __future__ import annotations

__all__ = ["check_source", "own_tables"]

import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from psycopg import pq, sql
from psycopg.conninfo import make_conninfo

from cdc.config import ConnectorConfig
from cdc.errors import describe
from cdc.findings import Finding
from cdc.globs import TableSelector
from cdc.pgerrors import unreachable
from cdc.transforms import Transforms
from connectors.postgres.catalog import PostgresCatalog, partition_leaves, selected_tables
from connectors.postgres.decoders import decoder_plugin
from connectors.postgres.publication import MANAGED, Publication
from connectors.postgres.versions import failover_problem, too_old

CONNECT_TIMEOUT_S = 5
PROBE_TIMEOUT = "10s"
T = TypeVar("T")


@dataclass
class _Role:
    name: str
    superuser: bool
    replication: bool

    @property
    def may_replicate(self) -> bool:
        return self.superuser or self.replication


def check_source(config: ConnectorConfig, *, full_identity: bool = False) -> list[Finding]:
    """Every finding about the connector's database, in the order a reader would fix them.

    ``full_identity``: also warn about captured tables whose replica identity is not FULL.
    """
    subject = f"connector {config.name}"
    try:
        conn = psycopg.connect(
            config.dsn.conninfo,
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT_S,
            application_name="cdc-check",
        )
    except psycopg.Error as e:
        return [Finding.fail(subject, unreachable(e, subject, config.dsn))]

    findings: list[Finding] = []
    password = config.dsn.password

    def probe(what: str, run: Callable[[], T], fallback: T) -> T:
        """One probe; a probe that raises is a FAIL line for it, and the others still run."""
        try:
            return run()
        except Exception as e:  # `cdc check` reports any error, never crashes
            findings.append(
                Finding.fail(
                    subject,
                    f"{what}: the probe failed ({type(e).__name__}: {describe(e, password)})",
                )
            )
            return fallback

    def add(what: str, run: Callable[[], Finding | list[Finding]]) -> None:
        empty: Finding | list[Finding] = []
        found = probe(what, run, empty)
        findings.extend(found if isinstance(found, list) else [found])

    with conn:
        server = probe("server_version", lambda: _show(conn, "server_version"), "?")
        findings.insert(
            0,
            Finding.ok(
                subject,
                f"connected to {config.dsn} (PostgreSQL {server}, database {conn.info.dbname})",
            ),
        )
        version = conn.info.server_version
        old = too_old(version)
        if old is not None:
            # Nothing else is worth probing on a server the connector refuses to start on.
            return [*findings, Finding.fail(subject, old)]
        if config.failover_slot:
            add("failover slot", lambda: _failover(conn, subject, config.slot, version))
        wal_level = probe("wal_level", lambda: _show(conn, "wal_level"), "?")
        logical = wal_level == "logical"
        if logical:
            findings.append(Finding.ok(subject, "wal_level = logical"))
        elif wal_level != "?":
            findings.append(
                Finding.fail(
                    subject,
                    f"wal_level = {wal_level}, but logical decoding needs wal_level = logical"
                    " (ALTER SYSTEM SET wal_level = logical, then restart PostgreSQL)",
                )
            )
        role = probe("role", lambda: _role(conn), _Role(str(conn.info.user), False, False))
        add("role", lambda: _role_finding(subject, role))
        free_slots, slot_findings = probe(
            "replication slots", lambda: _slots(conn, subject, config), (0, list[Finding]())
        )
        findings += slot_findings
        add("WAL senders", lambda: _wal_senders(conn, subject))
        if logical and role.may_replicate and free_slots > 0:
            add(f"plugin {config.plugin}", lambda: _probe_plugin(conn, subject, config.plugin))
        else:
            findings.append(
                Finding.warn(
                    subject,
                    f"plugin {config.plugin} not probed: the findings above must be fixed first",
                )
            )
        if decoder_plugin(config.plugin).publication:
            add(f"publication {config.publication}", lambda: _publication(conn, subject, config))
        add("tables", lambda: _tables(conn, subject, config))
        if full_identity:
            add("replica identity", lambda: _full_identity(conn, subject, config))
        if Transforms(config).active:
            add("transforms", lambda: _transforms(conn, subject, config))
        add("snapshot tables", lambda: own_tables(conn, subject, config, role.name))
    if role.may_replicate:
        add("replication connection", lambda: _replication_connection(subject, config))
    return findings


def _failover(
    conn: psycopg.Connection[tuple[object, ...]], subject: str, slot: str, version: int
) -> Finding:
    """failover_slot = true: the server must know failover slots (17 and later)."""
    problem = failover_problem(version)
    if problem is not None:
        return Finding.fail(subject, problem)
    row = conn.execute(
        "SELECT failover FROM pg_replication_slots WHERE slot_name = %s", (slot,)
    ).fetchone()
    if row is None:
        state = f"slot {slot} will be created as a failover slot"
    elif row[0]:
        state = f"slot {slot} is a failover slot"
    else:
        state = f"slot {slot} is not a failover slot yet: the connector makes it one at start"
    return Finding.ok(
        subject,
        f"failover_slot = true: {state} (a standby keeps it with sync_replication_slots = on;"
        " list that standby's slot in the primary's synchronized_standby_slots)",
    )


def own_tables(
    conn: psycopg.Connection[Any],
    subject: str,
    config: ConnectorConfig,
    role: str,
) -> Finding:
    """The connector's cdc.signal and cdc.snapshots exist, or the role may create them."""
    # has_schema_privilege first: to_regclass('cdc.x') raises when the role may not use cdc.
    row = conn.execute(
        "SELECT has_schema_privilege(oid, 'USAGE'), has_schema_privilege(oid, 'CREATE')"
        " FROM pg_namespace WHERE nspname = 'cdc'"
    ).fetchone()
    usage, create_in = (bool(row[0]), bool(row[1])) if row else (True, True)
    problem = ""
    if not usage:
        problem = (
            f"role {role} may not use schema cdc, where the connector keeps cdc.signal and"
            f" cdc.snapshots (GRANT USAGE, CREATE ON SCHEMA cdc TO {role})"
        )
    else:
        row = conn.execute(
            "SELECT to_regclass('cdc.signal') IS NOT NULL AND to_regclass('cdc.snapshots') IS NOT"
            " NULL, has_database_privilege(current_database(), 'CREATE')"
        ).fetchone()
        exists, may_create = (bool(row[0]), bool(row[1])) if row else (False, False)
        if exists:
            return Finding.ok(subject, "snapshot tables cdc.signal and cdc.snapshots exist")
        if may_create and create_in:
            return Finding.ok(
                subject, "snapshot tables cdc.signal and cdc.snapshots: created on first run"
            )
        if not may_create:
            problem = (
                "the role may not create the snapshot tables cdc.signal and cdc.snapshots"
                f" (GRANT CREATE ON DATABASE {conn.info.dbname} to it, or create them:"
                " docs/snapshots.md)"
            )
        else:
            problem = (
                f"role {role} may not create the snapshot tables cdc.signal and cdc.snapshots"
                f" in schema cdc (GRANT CREATE ON SCHEMA cdc TO {role}, or create them:"
                " docs/snapshots.md)"
            )
    if config.snapshot == "never":
        return Finding.warn(subject, problem + "; without them, no incremental snapshots")
    return Finding.fail(subject, f"{problem}; snapshot = {config.snapshot!r} needs them")


def _show(conn: psycopg.Connection[tuple[object, ...]], setting: str) -> str:
    row = conn.execute("SELECT current_setting(%s)", (setting,)).fetchone()
    return str(row[0]) if row else ""


def _role(conn: psycopg.Connection[tuple[object, ...]]) -> _Role:
    row = conn.execute(
        "SELECT rolname, rolsuper, rolreplication FROM pg_roles WHERE rolname = current_user"
    ).fetchone()
    assert row is not None
    return _Role(str(row[0]), bool(row[1]), bool(row[2]))


def _role_finding(subject: str, role: _Role) -> Finding:
    if role.superuser:
        return Finding.ok(subject, f"role {role.name} is a superuser and may replicate")
    if role.replication:
        return Finding.ok(subject, f"role {role.name} has REPLICATION")
    return Finding.fail(
        subject,
        f"role {role.name} may not replicate: it has neither REPLICATION nor SUPERUSER"
        f" (ALTER ROLE {role.name} REPLICATION)",
    )


def _slots(
    conn: psycopg.Connection[tuple[object, ...]], subject: str, config: ConnectorConfig
) -> tuple[int, list[Finding]]:
    row = conn.execute(
        "SELECT current_setting('max_replication_slots')::int,"
        " (SELECT count(*) FROM pg_replication_slots)"
    ).fetchone()
    assert row is not None
    limit, used = int(str(row[0])), int(str(row[1]))
    free = limit - used
    ours = conn.execute(
        "SELECT plugin, slot_type, database, active, confirmed_flush_lsn::text"
        " FROM pg_replication_slots WHERE slot_name = %s",
        (config.slot,),
    ).fetchone()
    findings = []
    if ours is None:
        if free > 0:
            findings.append(
                Finding.ok(
                    subject,
                    f"{free} of {limit} replication slots free; slot {config.slot} will be"
                    " created on first run",
                )
            )
        else:
            findings.append(
                Finding.fail(
                    subject,
                    f"no free replication slot (max_replication_slots = {limit}, all used) for"
                    f" slot {config.slot}: drop an unused slot or raise max_replication_slots",
                )
            )
    else:
        plugin, slot_type, database, active, lsn = ours
        if slot_type != "logical" or plugin != config.plugin:
            findings.append(
                Finding.fail(
                    subject,
                    f"slot {config.slot} exists but is a {slot_type} slot with plugin {plugin};"
                    f" this connector needs a logical slot with plugin {config.plugin}",
                )
            )
        elif database != conn.info.dbname:
            findings.append(
                Finding.fail(
                    subject,
                    f"slot {config.slot} belongs to database {database}, not {conn.info.dbname}",
                )
            )
        else:
            state = "in use by another process" if active else "idle"
            level = Finding.warn if active else Finding.ok
            findings.append(
                level(subject, f"slot {config.slot} exists ({state}, confirmed flush LSN {lsn})")
            )
    return free, findings


def _wal_senders(conn: psycopg.Connection[tuple[object, ...]], subject: str) -> Finding:
    row = conn.execute(
        "SELECT current_setting('max_wal_senders')::int, (SELECT count(*) FROM pg_stat_replication)"
    ).fetchone()
    assert row is not None
    limit, used = int(str(row[0])), int(str(row[1]))
    if used < limit:
        return Finding.ok(subject, f"{limit - used} of {limit} WAL senders free")
    return Finding.fail(
        subject,
        f"no free WAL sender (max_wal_senders = {limit}, all used): raise max_wal_senders",
    )


def _probe_plugin(
    conn: psycopg.Connection[tuple[object, ...]], subject: str, plugin: str
) -> Finding:
    found = decoder_plugin(plugin)
    # A temporary slot vanishes with the session, so a crash here leaves nothing behind.
    probe = f"cdc_check_{os.getpid()}_{secrets.token_hex(4)}"
    try:
        conn.execute(sql.SQL("SET statement_timeout = {}").format(PROBE_TIMEOUT))
        conn.execute("SELECT pg_create_logical_replication_slot(%s, %s, true)", (probe, plugin))
        peek = (
            "pg_logical_slot_peek_binary_changes"
            if found.binary
            else "pg_logical_slot_peek_changes"
        )
        query = sql.SQL("SELECT count(*) FROM {}(%s, NULL, 1, VARIADIC %s::text[])").format(
            sql.Identifier(peek)
        )
        conn.execute(query, (probe, [x for kv in found.probe_options.items() for x in kv]))
        conn.execute("SELECT pg_drop_replication_slot(%s)", (probe,))
    except psycopg.errors.QueryCanceled:
        return Finding.fail(
            subject,
            f"plugin {plugin}: a probe slot could not be created within {PROBE_TIMEOUT}; a"
            " long-running transaction holds logical decoding back",
        )
    except psycopg.Error as e:
        hint = f" ({found.install_hint})" if found.install_hint else ""
        return Finding.fail(subject, f"plugin {plugin} cannot decode: {describe(e)}{hint}")
    finally:
        conn.execute("RESET statement_timeout")
    return Finding.ok(subject, f"plugin {plugin} loads and decodes (probed with a temporary slot)")


def _publication(
    conn: psycopg.Connection[tuple[object, ...]], subject: str, config: ConnectorConfig
) -> list[Finding]:
    """The publication the connector will use, or create, and what is wrong with it."""
    selector = TableSelector(config.tables, config.exclude_tables)
    publication = Publication(config, subject, conn, selector)
    name = config.publication
    exists = conn.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (name,)).fetchone()
    if exists is None:
        if publication.mode == "disabled":
            return [
                Finding.fail(
                    subject,
                    f"publication {name} does not exist, and publication_autocreate ="
                    " 'disabled' uses an existing one: create it with the captured tables and"
                    " cdc.signal",
                )
            ]
        if publication.mode == "all_tables":
            return [
                Finding.warn(
                    subject,
                    f"publication {name} will be created FOR ALL TABLES on first run"
                    " (publication_autocreate = 'all_tables'): PostgreSQL then refuses UPDATE"
                    " and DELETE on every table of the database without a primary key or"
                    " replica identity, captured or not",
                )
            ]
        plan = publication.plan()
        schemas = f" and schema(s) {', '.join(plan.schemas)}" if plan.schemas else ""
        return [
            Finding.ok(
                subject,
                f"publication {name} will be created on first run for {len(plan.tables)}"
                f" table(s){schemas} (cdc.signal among them), kept in step with the captured"
                " tables",
            )
        ]
    problems = publication.problems()
    if problems:
        return [Finding.warn(subject, problem) for problem in problems]
    row = conn.execute(
        "SELECT obj_description(oid, 'pg_publication') FROM pg_publication WHERE pubname = %s",
        (name,),
    ).fetchone()
    if row is not None and row[0] == MANAGED.format(config.name):
        return [Finding.ok(subject, f"publication {name} exists, kept in step by the connector")]
    return [Finding.ok(subject, f"publication {name} exists, used as it is")]


def _tables(
    conn: psycopg.Connection[tuple[object, ...]], subject: str, config: ConnectorConfig
) -> Finding:
    chosen = selected_tables(
        conn, TableSelector(config.tables, config.exclude_tables), config.partitions
    )
    if not chosen:
        return Finding.warn(
            subject,
            f"no table matches tables = {list(config.tables)} less exclude_tables ="
            f" {list(config.exclude_tables)} (yet)",
        )
    return Finding.ok(subject, f"{len(chosen)} table(s) selected for capture")


IDENTITY_NAMES = {"d": "default", "i": "index", "n": "nothing", "f": "full"}
SHOWN_TABLES = 10
"""Tables named in the replica identity warning; the rest are counted."""


def _full_identity(
    conn: psycopg.Connection[tuple[object, ...]], subject: str, config: ConnectorConfig
) -> Finding:
    """Whether every captured table logs whole old rows (REPLICA IDENTITY FULL).

    Without it an update's ``before`` is null and a delete's holds the key only: enough for
    cdc's sinks, not for consumers that retract the old row, such as Flink's debezium-json.
    A partitioned table is FULL when every partition is (PostgreSQL logs theirs).
    """
    chosen = selected_tables(
        conn, TableSelector(config.tables, config.exclude_tables), config.partitions
    )
    if not chosen:
        return Finding.ok(subject, "replica identity: no table selected for capture (yet)")
    rows = conn.execute(
        "SELECT t.nspname, t.relname, c.relreplident::text, c.relkind = 'p' AND ("
        "   SELECT count(*) > 0 AND bool_and(l.relreplident = 'f')"
        "   FROM pg_partition_tree(c.oid) p JOIN pg_class l ON l.oid = p.relid"
        "   WHERE p.isleaf)"
        " FROM unnest(%s::text[], %s::text[]) AS t(nspname, relname)"
        " JOIN pg_namespace n ON n.nspname = t.nspname"
        " JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = t.relname"
        " ORDER BY 1, 2",
        ([s for s, _ in chosen], [t for _, t in chosen]),
    ).fetchall()
    lacking = [
        f"{schema}.{table} ({IDENTITY_NAMES.get(str(ident), ident)})"
        for schema, table, ident, leaves_full in rows
        if ident != "f" and not leaves_full
    ]
    if not lacking:
        return Finding.ok(subject, f"replica identity FULL on all {len(rows)} captured table(s)")
    shown = ", ".join(lacking[:SHOWN_TABLES])
    more = f" and {len(lacking) - SHOWN_TABLES} more" if len(lacking) > SHOWN_TABLES else ""
    return Finding.warn(
        subject,
        f"{len(lacking)} captured table(s) without REPLICA IDENTITY FULL: {shown}{more}."
        " Their updates carry no before image and their deletes only the key: consumers that"
        " retract old rows, such as Flink's debezium-json, need full before images"
        " (ALTER TABLE ... REPLICA IDENTITY FULL; docs/consumers.md)",
    )


def _transforms(
    conn: psycopg.Connection[tuple[object, ...]], subject: str, config: ConnectorConfig
) -> list[Finding]:
    """The columns, filters, routes and outbox rules against the captured tables, as ``cdc
    run`` checks them at start."""
    selector = TableSelector(config.tables, config.exclude_tables)
    catalog = PostgresCatalog(conn)
    tables = {}
    for schema, table in selected_tables(conn, selector, config.partitions):
        info = catalog.table(schema, table)
        if info is not None:
            tables[schema, table] = info
    leaves = partition_leaves(conn) if config.partitions == "root" else None
    errors, warnings = Transforms(config).problems(tables, leaves)
    found = [Finding.fail(subject, e) for e in errors] + [
        Finding.warn(subject, w) for w in warnings
    ]
    return found or [Finding.ok(subject, "transforms fit the captured tables")]


def _replication_connection(subject: str, config: ConnectorConfig) -> Finding:
    # Logical walsender connections go through pg_hba's database lines, which may differ from the
    # lines that admitted the ordinary connection above, so try one for real.
    conninfo = make_conninfo(
        config.dsn.conninfo, replication="database", connect_timeout=str(CONNECT_TIMEOUT_S)
    )
    pgconn = pq.PGconn.connect(conninfo.encode())

    def failed(what: str) -> Finding:
        error = Exception(pgconn.error_message.decode(errors="replace"))
        return Finding.fail(subject, f"{what}: {describe(error, config.dsn.password)}")

    try:
        if pgconn.status != pq.ConnStatus.OK:
            return failed("replication connection refused")
        res = pgconn.exec_(b"IDENTIFY_SYSTEM")
        if res.status != pq.ExecStatus.TUPLES_OK:
            return failed("replication connection cannot IDENTIFY_SYSTEM")
        system_id = (res.get_value(0, 0) or b"").decode()
        timeline = (res.get_value(0, 1) or b"").decode()
        return Finding.ok(
            subject, f"replication connection works (system {system_id}, timeline {timeline})"
        )
    finally:
        pgconn.finish()
