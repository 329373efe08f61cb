"""What ``cdc status`` and ``cdc snapshot`` do on the source database: the slot's lag, snapshot
progress, and a requested incremental snapshot (its signal)."""

from __future__ import annotations

__all__ = ["request_incremental_snapshot", "slot_finding", "slot_status", "snapshot_status"]

from collections.abc import Sequence

import psycopg

from cdc.config import ConnectorConfig
from cdc.errors import describe
from cdc.findings import Finding
from cdc.globs import TableSelector
from cdc.pgerrors import unreachable
from connectors.postgres.catalog import PostgresCatalog, split_name
from connectors.postgres.check import CONNECT_TIMEOUT_S
from connectors.postgres.owntables import request_snapshot


def slot_status(config: ConnectorConfig) -> list[Finding]:
    """The slot, its confirmed flush LSN and how many bytes of WAL it is behind."""
    subject = f"connector {config.name}"
    try:
        with psycopg.connect(
            config.dsn.conninfo, connect_timeout=CONNECT_TIMEOUT_S, application_name="cdc-status"
        ) as conn:
            row = conn.execute(
                "SELECT active_pid, confirmed_flush_lsn::text,"
                " pg_current_wal_lsn() - confirmed_flush_lsn, wal_status"
                " FROM pg_replication_slots WHERE slot_name = %s",
                (config.slot,),
            ).fetchone()
    except psycopg.Error as e:
        return [Finding.fail(subject, unreachable(e, subject, config.dsn))]
    if row is None:
        return [Finding.warn(subject, f"slot {config.slot} does not exist (created on first run)")]
    pid, lsn, lag, wal_status = row
    return [slot_finding(config, pid, str(lsn), int(str(lag or 0)), str(wal_status))]


def slot_finding(
    config: ConnectorConfig, pid: object, lsn: str, lag_bytes: int, wal_status: str
) -> Finding:
    """OK only for a slot a process streams from and that is not far behind. Not streaming is
    WARN (WAL piles up until a connector reads it again), FAIL once it holds more than
    ``status_lag_fail_mb``; streaming but more than ``status_lag_warn_mb`` behind is WARN; a
    slot whose WAL is gone (``wal_status = lost``) is FAIL."""
    subject = f"connector {config.name}"
    mib = lag_bytes / 1048576
    text = (
        f"slot {config.slot} {f'streaming (pid {pid})' if pid else 'not streaming'}, confirmed"
        f" flush LSN {lsn}, lag {lag_bytes} bytes ({mib:.1f} MiB), WAL {wal_status}"
    )
    if wal_status == "lost":
        return Finding.fail(
            subject,
            f"{text}: the WAL it needs is gone (max_slot_wal_keep_size); the slot cannot be"
            " read again: drop it and start the connector with a new snapshot",
        )
    if not pid:
        reason = "no process reads it (is the connector running?); the server keeps its WAL"
        if mib > config.status_lag_fail_mb:
            return Finding.fail(
                subject,
                f"{text}: {reason}, over status_lag_fail_mb = {config.status_lag_fail_mb:g}",
            )
        return Finding.warn(subject, f"{text}: {reason}")
    if wal_status == "unreserved":
        return Finding.warn(subject, f"{text}: about to lose WAL it needs (max_slot_wal_keep_size)")
    if mib > config.status_lag_warn_mb:
        return Finding.warn(
            subject,
            f"{text}: behind by more than status_lag_warn_mb = {config.status_lag_warn_mb:g}",
        )
    return Finding.ok(subject, text)


def snapshot_status(config: ConnectorConfig) -> list[Finding]:
    """The connector's snapshots that are not finished, and the last finished ones."""
    subject = f"connector {config.name}"
    try:
        with psycopg.connect(
            config.dsn.conninfo, connect_timeout=CONNECT_TIMEOUT_S, application_name="cdc-status"
        ) as conn:
            if conn.execute("SELECT to_regclass('cdc.snapshots')").fetchone() in (None, (None,)):
                return []
            rows = conn.execute(
                "SELECT kind, table_name, state, rows_done, rows_total,"
                " extract(epoch FROM updated_at - started_at)"
                " FROM cdc.snapshots WHERE connector = %s AND table_name <> '*'"
                " ORDER BY kind, table_name",
                (config.name,),
            ).fetchall()
    except psycopg.Error as e:
        reason = describe(e, config.dsn.password)
        return [Finding.fail(subject, f"cannot read snapshot progress: {reason}")]
    findings = []
    for kind, table, state, done, total, seconds in rows:
        share = f"/~{total} ({100 * done / total:.0f}%)" if total and total > 0 else ""
        rate = f", {done / float(seconds):.0f} rows/s" if seconds and float(seconds) > 0 else ""
        findings.append(
            Finding.ok(subject, f"{kind} snapshot of {table}: {state}, {done}{share} rows{rate}")
        )
    return findings


def request_incremental_snapshot(config: ConnectorConfig, tables: Sequence[str]) -> list[Finding]:
    """Check the tables, then insert an ``execute-snapshot`` signal for the running connector."""
    subject = f"connector {config.name}"
    selector = TableSelector(config.tables, config.exclude_tables)
    findings: list[Finding] = []
    try:
        with psycopg.connect(
            config.dsn.conninfo,
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT_S,
            application_name="cdc-snapshot",
        ) as conn:
            catalog = PostgresCatalog(conn)
            for name in tables:
                schema, dot, table = name.partition(".")
                if dot:  # as the connector reads the request
                    schema, table = split_name(name, lambda s, t: catalog.table(s, t) is not None)
                if not dot or not schema or not table:
                    findings.append(Finding.fail(subject, f"{name!r}: write SCHEMA.TABLE"))
                    continue
                if not selector(schema, table) or schema == "cdc":
                    findings.append(
                        Finding.fail(
                            subject,
                            f"{name} is not captured by this connector (tables ="
                            f" {list(config.tables)}, exclude_tables ="
                            f" {list(config.exclude_tables)})",
                        )
                    )
                    continue
                info = catalog.table(schema, table)
                if info is None:
                    findings.append(Finding.fail(subject, f"{name}: no such table"))
                elif not info.has_primary_key:
                    findings.append(
                        Finding.fail(
                            subject,
                            f"{name} has no primary key: incremental snapshots read in key order",
                        )
                    )
            if findings:
                return findings
            signal = request_snapshot(conn, config.name, tables)
    except psycopg.Error as e:
        reason = describe(e, config.dsn.password)
        return [Finding.fail(subject, f"cannot write the signal to {config.dsn}: {reason}")]
    return [
        Finding.ok(
            subject,
            f"incremental snapshot of {', '.join(tables)} requested (signal {signal} in"
            " cdc.signal); the running connector starts it when the signal reaches it"
            " through the WAL",
        )
    ]
