"""A connector and sinks run as ``cdc`` processes on the devstack, with what tests read back: the
sinks' offsets, their DLQ topics, target tables in PostgreSQL and SQLite."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from kafka import KafkaConsumer
from psycopg import sql
from psycopg.conninfo import make_conninfo

from cdc.kafka import LeaderUnknown
from tests.support.harness import (
    CdcProcess,
    current_wal_lsn,
    read_topics,
    slot_confirmed_lsn,
    topic_ends,
    wait_for,
)
from tests.support.services import drop_database


class Replicas:
    """A connector and sinks into two PostgreSQL databases and a SQLite file."""

    def __init__(
        self,
        tmp_path: Path,
        pg_dsn: str,
        source: str,
        kafka: str,
        unique: str,
        plugin: str,
        databases: tuple[str, ...] = ("pg",),
    ) -> None:
        self.pg_dsn, self.source, self.kafka, self.plugin = pg_dsn, source, kafka, plugin
        self.prefix = f"gen{unique}"
        self.slot = f"cdc_{self.prefix}"
        self.names = {name: f"cdct_{name}_{unique}" for name in databases}
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            for db in self.names.values():
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
        self.replicas = {name: make_conninfo(pg_dsn, dbname=db) for name, db in self.names.items()}
        self.lite = tmp_path / "replica.db"
        self.config = tmp_path / "cdc.toml"
        text = (
            f'[kafka]\nbootstrap_servers = "{kafka}"\n'
            f'[[connectors]]\nname = "{self.prefix}"\ndsn = "{source}"\nplugin = "{plugin}"\n'
            'snapshot = "initial"\n'
            f'[[sinks]]\nname = "lite"\ntype = "sqlite"\ntopics = ["{self.prefix}.*"]\n'
            f'path = "{self.lite}"\ngroup_id = "g-{self.prefix}-lite"\n'
        )
        for name, dsn in self.replicas.items():
            text += (
                f'[[sinks]]\nname = "{name}"\ntype = "postgres"\n'
                f'topics = ["{self.prefix}.public.*"]\ndsn = "{dsn}"\n'
                f'group_id = "g-{self.prefix}-{name}"\n'
            )
        self.config.write_text(text)
        self.log = tmp_path / "cdc.log"
        self.processes: list[CdcProcess] = []

    def start(self, *args: str) -> CdcProcess:
        process = CdcProcess(self.config, self.log, *args)
        self.processes.append(process)
        return process

    def stop(self) -> None:
        for process in self.processes:
            if process.alive():
                assert process.stop() == 0, process.output()[-3000:]

    def close(self) -> None:
        for process in self.processes:
            if process.alive():
                process.kill()
        for db in self.names.values():
            drop_database(self.pg_dsn, db)

    def topics(self) -> list[str]:
        consumer = KafkaConsumer(bootstrap_servers=self.kafka)
        try:
            return sorted(t for t in consumer.topics() if t.startswith(self.prefix + "."))
        finally:
            consumer.close()

    def behind(self) -> list[str]:
        """What the sinks have not applied yet of the topics (empty when they hold it all)."""
        try:
            end = topic_ends(
                self.kafka, lambda t: t.startswith(self.prefix + ".") and not t.endswith(".dlq")
            )
        except LeaderUnknown as e:  # a topic created moments ago
            return [str(e)]
        stored: dict[str, dict[tuple[str, int], int]] = {}
        for name, dsn in self.replicas.items():
            with psycopg.connect(dsn) as conn:
                try:
                    rows = conn.execute("SELECT topic, partition, next_offset FROM cdc.offsets")
                    stored[name] = {(t, p): o for t, p, o in rows.fetchall()}
                except psycopg.errors.UndefinedTable:
                    stored[name] = {}
        db = sqlite3.connect(self.lite)
        try:
            found = db.execute("SELECT topic, partition, next_offset FROM _cdc_offsets")
            stored["lite"] = {(t, p): o for t, p, o in found.fetchall()}
        except sqlite3.OperationalError:
            stored["lite"] = {}
        finally:
            db.close()
        return [
            f"{sink} {topic}[{partition}] at {offsets.get((topic, partition))} of {o}"
            for (topic, partition), o in sorted(end.items())
            for sink, offsets in stored.items()
            if o and offsets.get((topic, partition), 0) < o
        ]

    def snapshotting(self) -> bool:
        """Whether the connector owes a snapshot: its slot is not made yet, or ``cdc.snapshots``
        has a row of it not done (the initial one is marked pending before its slot exists)."""
        if not slot_confirmed_lsn(self.source, self.slot):
            return True
        with psycopg.connect(self.source) as conn:
            try:
                row = conn.execute(
                    "SELECT count(*) FROM cdc.snapshots WHERE connector = %s AND state <> 'done'",
                    (self.prefix,),
                ).fetchone()
            except psycopg.errors.UndefinedTable:
                return False
        return bool(row and row[0])

    def settle(self) -> None:
        """Until the connector has published everything written and the sinks applied it."""
        # While a snapshot is read, the slot's confirmed position is its start, already past
        # everything written before it: only the snapshot's end says its rows are out.
        wait_for(lambda: not self.snapshotting(), 180, "the connector's snapshot")
        end = current_wal_lsn(self.source)
        wait_for(lambda: slot_confirmed_lsn(self.source, self.slot) >= end, 120, "the connector")
        try:
            wait_for(lambda: not self.behind(), 120, "the sinks")
        except TimeoutError as e:
            tail = self.log.read_text(errors="replace")[-4000:]
            raise AssertionError(f"{e}: {self.behind()}\ncdc's log ends:\n{tail}") from e

    def dead_letters(self) -> dict[str, list[str]]:
        """Each DLQ topic of this test's, with the reasons of its records."""
        dlq = [t for t in self.topics() if t.endswith(".dlq")]
        return {
            t: [e.headers.get("cdc-dlq-reason", b"").decode() for e in read_topics(self.kafka, [t])]
            for t in dlq
        }


def pg_table(dsn: str, table: str, columns: list[str] | None = None) -> list[tuple[Any, ...]]:
    """Rows (their types' text output), sorted; every column but ``_cdc_*`` when not named."""
    with psycopg.connect(dsn) as conn:
        if columns is None:
            columns = pg_columns(dsn, table)
        query = sql.SQL("SELECT {} FROM {}").format(
            sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(c)) for c in columns),
            sql.Identifier("public", table),
        )
        return sorted(conn.execute(query).fetchall(), key=repr)


def pg_columns(dsn: str, table: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT attname::text FROM pg_attribute WHERE attrelid = %s::regclass"
            " AND attnum > 0 AND NOT attisdropped AND attname NOT LIKE '\\_cdc\\_%%'"
            " ORDER BY attnum",
            (sql.Identifier("public", table).as_string(conn),),
        ).fetchall()
    return [r[0] for r in rows]


def pg_primary_key(dsn: str, table: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT a.attname::text FROM pg_index i"
            " JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) ON true"
            " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum"
            " WHERE i.indrelid = %s::regclass AND i.indisprimary ORDER BY k.ord",
            (sql.Identifier("public", table).as_string(conn),),
        ).fetchall()
    return [r[0] for r in rows]


def lite_table(path: Path, table: str) -> tuple[list[str], list[str], list[tuple[Any, ...]]]:
    """A SQLite target's columns (``_cdc_*`` aside), its primary key, and its rows as text."""
    db = sqlite3.connect(path)
    try:
        info = db.execute(f'PRAGMA table_info("public_{table}")').fetchall()
        columns = [r[1] for r in info if not r[1].startswith("_cdc_")]
        key = [r[1] for r in sorted(info, key=lambda r: r[5]) if r[5]]
        cols = ", ".join(f'"{c}"' for c in columns)
        rows = db.execute(f'SELECT {cols} FROM "public_{table}"').fetchall()
    finally:
        db.close()
    text: Callable[[Any], Any] = lambda v: None if v is None else str(v)  # noqa: E731
    return columns, key, sorted((tuple(text(v) for v in row) for row in rows), key=repr)


@pytest.fixture
def replicas(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    pg_dsn: str,
    database: str,
    kafka_bootstrap: str,
    unique: str,
) -> Iterator[Replicas]:
    """A pipeline of one connector and its sinks; parametrise it indirectly with the plugin and
    the names of the PostgreSQL sinks: ``("pgoutput", ("pg", "user"))``."""
    plugin, databases = request.param
    r = Replicas(tmp_path, pg_dsn, database, kafka_bootstrap, unique, plugin, databases)
    try:
        yield r
    finally:
        r.close()
