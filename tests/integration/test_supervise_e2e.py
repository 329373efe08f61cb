"""``cdc run`` contains each worker's failure: a sink whose target fails leaves the connector
streaming, and a permanent failure at first start exits 1 with the fix."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from tests.support.harness import (
    CDC,
    CdcProcess,
    as_url,
    current_wal_lsn,
    slot_confirmed_lsn,
    wait_for,
)
from tests.support.services import fresh_database

BOOM = """
CREATE FUNCTION public.cdct_boom() RETURNS trigger LANGUAGE plpgsql
AS $$ BEGIN RAISE EXCEPTION 'the target says no'; END $$;
CREATE TRIGGER cdct_boom BEFORE INSERT OR UPDATE OR DELETE ON public.t
FOR EACH ROW EXECUTE FUNCTION public.cdct_boom();
"""


@pytest.fixture
def target(pg_dsn: str, unique: str) -> Iterator[str]:
    with fresh_database(pg_dsn, f"cdct_target_{unique}") as dsn:
        yield dsn


def config(path: Path, kafka: str, prefix: str, source: str, target: str) -> Path:
    path.write_text(
        f'[kafka]\nbootstrap_servers = "{kafka}"\n'
        f'[[connectors]]\nname = "{prefix}"\ndsn = "{as_url(source)}"\nsnapshot = "never"\n'
        f'[[sinks]]\nname = "pg"\ntype = "postgres"\ntopics = ["{prefix}.public.*"]\n'
        f'dsn = "{as_url(target)}"\ngroup_id = "g-{prefix}"\n'
    )
    return path


def rows(dsn: str) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn) as conn:
        if conn.execute("SELECT to_regclass('public.t')").fetchone() == (None,):
            return []
        return conn.execute("SELECT id, v FROM public.t ORDER BY id").fetchall()


def test_a_failing_sink_leaves_the_connector_streaming_and_recovers(
    tmp_path: Path, database: str, target: str, kafka_bootstrap: str, unique: str
) -> None:
    prefix, log = f"sv{unique}", tmp_path / "cdc.log"
    slot = f"cdc_{prefix}"
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
    cdc = CdcProcess(config(tmp_path / "cdc.toml", kafka_bootstrap, prefix, database, target), log)
    try:
        wait_for(lambda: f"streaming slot {slot}" in cdc.output(), 60, "the connector")
        with psycopg.connect(database, autocommit=True) as conn:
            conn.execute("INSERT INTO t SELECT i, 'a' FROM generate_series(1, 10) i")
        wait_for(lambda: len(rows(target)) == 10, 90, "the sink's first rows")
        with psycopg.connect(target, autocommit=True) as conn:
            conn.execute(BOOM)

        # While every batch fails in the target, the connector goes on: its slot moves.
        for n in range(3):
            with psycopg.connect(database, autocommit=True) as conn:
                conn.execute("UPDATE t SET v = %s WHERE id <= 5", (f"b{n}",))
                conn.execute("INSERT INTO t VALUES (%s, 'c')", (100 + n,))
            end = current_wal_lsn(database)
            wait_for(lambda e=end: slot_confirmed_lsn(database, slot) >= e, 60, "the slot to move")
        wait_for(lambda: cdc.output().count("sink pg failed: unexpected") >= 2, 60, "restarts")
        assert cdc.alive(), cdc.output()[-3000:]
        assert len(rows(target)) == 10  # nothing of the failing batches was applied
        text = cdc.output()
        assert "ERROR   cdc.supervise: sink pg failed: unexpected RaiseException:" in text
        assert "the target says no; restarting it in 1 s (failure 1)" in text
        assert "restarting it in 2 s (failure 2)" in text
        assert f"connector {prefix} failed" not in text
        # cdc status, a process of its own, sees the restarts (the state file of cdc run).
        shown = subprocess.run(
            [CDC, "status", "-c", str(tmp_path / "cdc.toml")],
            capture_output=True,
            text=True,
            check=False,
        )
        (line,) = [ln for ln in shown.stdout.splitlines() if ln[6:].startswith("sink pg: failed")]
        assert line.startswith(("WARN  sink pg: failed ", "FAIL  sink pg: failed ")), line
        assert f"in cdc run (pid {cdc.pid}); the last " in line and "the target says no" in line

        with psycopg.connect(target, autocommit=True) as conn:
            conn.execute("DROP TRIGGER cdct_boom ON public.t")
        source = rows(database)
        wait_for(lambda: rows(target) == source, 120, "the sink to catch up")
        assert cdc.alive()
    finally:
        code = cdc.stop() if cdc.alive() else cdc.proc.returncode
    assert code == 0, cdc.output()[-3000:]
    # Stopped cleanly: its state file is gone, and status has nothing to say of it.
    shown = subprocess.run(
        [CDC, "status", "-c", str(tmp_path / "cdc.toml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert "cdc run" not in shown.stdout and "failed " not in shown.stdout, shown.stdout


@pytest.mark.parametrize(
    ("worker", "broken", "fix"),
    [
        ("connector", "password", "set role {role}'s right password in the dsn of connector"),
        ("sink", "password", "set role {role}'s right password in the dsn of sink pg"),
        ("connector", "replication", "ALTER ROLE {role} REPLICATION"),
        ("sink", "database", "create that database, or name an existing one in the dsn of"),
    ],
)
def test_a_permanent_failure_at_first_start_exits_1_naming_the_fix(
    tmp_path: Path,
    database: str,
    kafka_bootstrap: str,
    unique: str,
    role: tuple[str, str],
    worker: str,
    broken: str,
    fix: str,
) -> None:
    name, password = role
    prefix = f"sv{unique}"
    wrong = "wrong-hunter2"
    dsn = make_conninfo(
        database,
        user=name,
        password=wrong if broken == "password" else password,
        dbname=f"cdct_none_{unique}" if broken == "database" else None,
    )
    fine = make_conninfo(database)  # the other worker's: only one is started anyway
    source, target = (dsn, fine) if worker == "connector" else (fine, dsn)
    path = config(tmp_path / "cdc.toml", kafka_bootstrap, prefix, source, target)
    selected = ["--connector", prefix] if worker == "connector" else ["--sink", "pg"]
    began = time.monotonic()
    result = subprocess.run(
        [CDC, "run", "-c", str(path), *selected],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result.stderr[-3000:]
    assert time.monotonic() - began < 30
    subject = f"connector {prefix}" if worker == "connector" else "sink pg"
    (line,) = [ln for ln in result.stderr.splitlines() if ln.startswith("cdc: error:")]
    assert line.startswith(f"cdc: error: {subject} cannot start: "), line
    assert f"(fix: {fix.format(role=name)}" in line, line
    assert wrong not in result.stderr
    assert password not in result.stderr
    assert "retrying" not in result.stderr
