"""`cdc check` against real servers: one clear line per finding, and the right exit code.

Integration tests: PostgreSQL and Kafka from the devstack (see conftest).
"""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner, Result
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from cdc.cli import cli
from tests.support.harness import CdcProcess, as_url, wait_for, write_config
from tests.support.scratch_pg import free_port, scratch_postgres


def run_check(
    tmp_path: Path, dsn: str, kafka: str, plugin: str = "wal2json", *options: str
) -> Result:
    # Slot names are global to the server: each test has its own (tmp_path is unique).
    path = tmp_path / "cdc.toml"
    path.write_text(
        f'[kafka]\nbootstrap_servers = "{kafka}"\n'
        f'[[connectors]]\nname = "shop"\nplugin = "{plugin}"\ndsn = "{dsn}"\n'
        f'slot = "{slot_of(tmp_path)}"\n'
    )
    return CliRunner().invoke(cli, ["check", "-c", str(path), *options])


def slot_of(tmp_path: Path) -> str:
    return "cdct_" + "".join(ch for ch in tmp_path.name.lower() if ch.isalnum())[-40:]


@pytest.mark.parametrize("plugin", ["wal2json", "pgoutput"])
def test_good_database_and_kafka(
    tmp_path: Path, database: str, kafka_bootstrap: str, plugin: str
) -> None:
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("CREATE TABLE public.orders (id bigint PRIMARY KEY, total numeric)")
    result = run_check(tmp_path, as_url(database), kafka_bootstrap, plugin)
    assert result.exit_code == 0, result.output
    for line in [
        "OK    connector shop: wal_level = logical",
        "OK    connector shop: role postgres is a superuser and may replicate",
        f"slot {slot_of(tmp_path)} will be created on first run",
        "WAL senders free",
        f"OK    connector shop: plugin {plugin} loads and decodes (probed with a temporary slot)",
        "OK    connector shop: 1 table(s) selected for capture",
        "OK    connector shop: snapshot tables cdc.signal and cdc.snapshots: created on first run",
        "OK    connector shop: replication connection works (system ",
        f"OK    kafka: 1 broker(s) answer at {kafka_bootstrap} (cluster id ",
        "cdc check: ",
        " 0 failed",
    ]:
        assert line in result.output
    # The probe slot is gone again.
    with psycopg.connect(database) as conn:
        left = conn.execute("SELECT slot_name FROM pg_replication_slots").fetchall()
    assert not [s for (s,) in left if s.startswith("cdc_check_")]


def test_wal_level_replica(tmp_path: Path, kafka_bootstrap: str) -> None:
    with scratch_postgres(wal_level="replica") as dsn:
        result = run_check(tmp_path, dsn, kafka_bootstrap)
    assert result.exit_code == 1, result.output
    assert (
        "FAIL  connector shop: wal_level = replica, but logical decoding needs"
        " wal_level = logical (ALTER SYSTEM SET wal_level = logical, then restart PostgreSQL)"
    ) in result.output
    assert "WARN  connector shop: plugin wal2json not probed" in result.output
    assert "OK    kafka: " in result.output


def test_role_without_replication(
    tmp_path: Path, database: str, kafka_bootstrap: str, role: tuple[str, str]
) -> None:
    name, password = role
    result = run_check(
        tmp_path, as_url(make_conninfo(database, user=name, password=password)), kafka_bootstrap
    )
    assert result.exit_code == 1, result.output
    assert (
        f"FAIL  connector shop: role {name} may not replicate: it has neither REPLICATION nor"
        f" SUPERUSER (ALTER ROLE {name} REPLICATION)"
    ) in result.output
    assert password not in result.output
    assert f"postgresql://{name}:***@" in result.output
    # snapshot = "initial" (the default) needs the connector's own tables.
    dbname = conninfo_to_dict(database)["dbname"]
    assert (
        "FAIL  connector shop: the role may not create the snapshot tables cdc.signal and"
        f" cdc.snapshots (GRANT CREATE ON DATABASE {dbname} to it, or create them:"
        " docs/snapshots.md); snapshot = 'initial' needs them"
    ) in result.output


def test_unreachable_host(tmp_path: Path, kafka_bootstrap: str) -> None:
    port = free_port()  # nothing listens there
    result = run_check(tmp_path, f"postgresql://postgres@127.0.0.1:{port}/shop", kafka_bootstrap)
    assert result.exit_code == 1, result.output
    (line,) = [ln for ln in result.output.splitlines() if ln.startswith("FAIL  connector")]
    assert line.startswith(
        f"FAIL  connector shop: cannot connect to postgresql://postgres@127.0.0.1:{port}/shop: "
    )
    assert line.endswith(
        f'connection to server at "127.0.0.1", port {port} failed: Connection refused'
    )
    assert "OK    kafka: " in result.output


def test_wrong_password_is_reported_and_never_printed(
    tmp_path: Path, database: str, kafka_bootstrap: str, role: tuple[str, str]
) -> None:
    name, _ = role
    wrong = "wrong-hunter2-password"
    result = run_check(
        tmp_path, as_url(make_conninfo(database, user=name, password=wrong)), kafka_bootstrap
    )
    assert result.exit_code == 1, result.output
    assert f'password authentication failed for user "{name}"' in result.output
    assert f"FAIL  connector shop: cannot connect to postgresql://{name}:***@" in result.output
    assert f"(fix: set role {name}'s right password in the dsn of connector shop)" in result.output
    assert "hunter2" not in result.output


def test_kafka_down(tmp_path: Path, database: str) -> None:
    port = free_port()
    result = run_check(tmp_path, as_url(database), f"127.0.0.1:{port}")
    assert result.exit_code == 1, result.output
    assert f"FAIL  kafka: no broker answers at 127.0.0.1:{port}: KafkaTimeoutError" in (
        result.output
    )
    assert "OK    connector shop: wal_level = logical" in result.output
    assert "cdc check: " in result.output
    assert " 1 failed" in result.output


def test_status_shows_slot_position_and_lag(
    tmp_path: Path, database: str, kafka_bootstrap: str
) -> None:
    path, slot = tmp_path / "cdc.toml", slot_of(tmp_path)
    path.write_text(
        f'[kafka]\nbootstrap_servers = "{kafka_bootstrap}"\n'
        f'[[connectors]]\nname = "shop"\ndsn = "{as_url(database)}"\nslot = "{slot}"\n'
        f'[[connectors]]\nname = "gone"\ndsn = "postgresql://postgres@127.0.0.1:{free_port()}/x"\n'
    )
    before = CliRunner().invoke(cli, ["status", "-c", str(path)])
    assert f"WARN  connector shop: slot {slot} does not exist (created on first run)" in (
        before.output
    )
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("SELECT pg_create_logical_replication_slot(%s, 'wal2json')", (slot,))
        conn.execute("CREATE TABLE t (id int PRIMARY KEY)")
        conn.execute("INSERT INTO t SELECT generate_series(1, 1000)")
    result = CliRunner().invoke(cli, ["status", "-c", str(path)])
    assert result.exit_code == 1, result.output  # the second connector's server is unreachable
    (line,) = [ln for ln in result.output.splitlines() if "connector shop" in ln]
    # No process reads the slot: WARN, never OK (issue 18, item 7).
    assert line.startswith(f"WARN  connector shop: slot {slot} not streaming, confirmed flush LSN ")
    assert line.endswith(
        "no process reads it (is the connector running?); the server keeps its WAL"
    )
    lag = int(line.split(", lag ")[1].split()[0])
    assert lag > 1000 * 20  # a thousand rows of WAL it has not confirmed
    assert "FAIL  connector gone: cannot connect to" in result.output


def test_status_of_a_stopped_connector_warns_then_fails_over_the_lag_threshold(
    tmp_path: Path, database: str, kafka_bootstrap: str
) -> None:
    """Issue 18, item 7: OK while the connector streams; once its process is stopped the slot is
    WARN (exit 0), and FAIL (exit 1) once it holds more WAL than status_lag_fail_mb. (The lag
    counts the whole server's WAL, which other tests write too: the FAIL threshold is lowered
    only for the last look.)"""
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY)")
    slot = slot_of(tmp_path)
    config = write_config(
        tmp_path / "cdc.toml",
        as_url(database),
        kafka_bootstrap,
        name="shop",
        slot=slot,
        topic_prefix=f"st{slot}",
    )

    def status(fail_mb: float = 1024) -> Result:
        path = tmp_path / "status.toml"
        path.write_text(config.read_text() + f"status_lag_fail_mb = {fail_mb}\n")
        return CliRunner().invoke(cli, ["status", "-c", str(path)])

    cdc = CdcProcess(config, tmp_path / "cdc.log")
    try:
        wait_for(
            lambda: f"OK    connector shop: slot {slot} streaming (pid " in status().output,
            30,
            "the connector's slot streaming",
        )
    finally:
        assert cdc.stop() == 0, cdc.output()[-3000:]
    stopped = status()
    assert stopped.exit_code == 0, stopped.output
    assert f"WARN  connector shop: slot {slot} not streaming, " in stopped.output
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("INSERT INTO t SELECT generate_series(1, 2000)")  # > 50 kB of WAL
    behind = status(fail_mb=0.05)
    assert behind.exit_code == 1, behind.output
    assert f"FAIL  connector shop: slot {slot} not streaming, " in behind.output
    assert "over status_lag_fail_mb = 0.05" in behind.output


def test_schema_cdc_the_role_cannot_use(
    tmp_path: Path, database: str, kafka_bootstrap: str, role: tuple[str, str]
) -> None:
    """Issue 18, item 5: a schema cdc (a superuser's) the role has no USAGE on is a FAIL line
    naming the GRANT, never a traceback."""
    name, password = role
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA cdc")
        conn.execute(sql.SQL("ALTER ROLE {} REPLICATION").format(sql.Identifier(name)))
    result = run_check(
        tmp_path, as_url(make_conninfo(database, user=name, password=password)), kafka_bootstrap
    )
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert (
        f"FAIL  connector shop: role {name} may not use schema cdc, where the connector keeps"
        f" cdc.signal and cdc.snapshots (GRANT USAGE, CREATE ON SCHEMA cdc TO {name})"
    ) in result.output
    assert "cdc check: " in result.output
    # The probes after it still ran.
    assert f"OK    kafka: 1 broker(s) answer at {kafka_bootstrap}" in result.output


def test_cdc_run_names_the_schema_grant_too(
    tmp_path: Path, database: str, kafka_bootstrap: str, role: tuple[str, str]
) -> None:
    """Where ``cdc check`` names ``GRANT USAGE, CREATE ON SCHEMA cdc``, ``cdc run`` stops at
    first start with the same fix, not a grant on the database."""
    name, password = role
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA cdc")
        conn.execute(sql.SQL("ALTER ROLE {} REPLICATION").format(sql.Identifier(name)))
    dsn = as_url(make_conninfo(database, user=name, password=password))
    path = tmp_path / "cdc.toml"
    path.write_text(
        f'[kafka]\nbootstrap_servers = "{kafka_bootstrap}"\n'
        f'[[connectors]]\nname = "shop"\ndsn = "{dsn}"\nslot = "{slot_of(tmp_path)}"\n'
    )
    cdc = CdcProcess(path, tmp_path / "cdc.log")
    assert cdc.proc.wait(60) == 1, cdc.output()[-3000:]
    assert f"(GRANT USAGE, CREATE ON SCHEMA cdc TO {name})" in cdc.output()
    assert "CREATE ON DATABASE" not in cdc.output()


def test_full_identity_warns_about_captured_tables_without_whole_before_images(
    tmp_path: Path, database: str, kafka_bootstrap: str
) -> None:
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(
            """
            CREATE TABLE full_one (id int PRIMARY KEY, v text);
            ALTER TABLE full_one REPLICA IDENTITY FULL;
            CREATE TABLE keyed (id int PRIMARY KEY, v text);
            CREATE TABLE "Odd name" (id int NOT NULL, v text);
            CREATE UNIQUE INDEX odd_id ON "Odd name" (id);
            ALTER TABLE "Odd name" REPLICA IDENTITY USING INDEX odd_id;
            CREATE TABLE nothing_logged (v text);
            ALTER TABLE nothing_logged REPLICA IDENTITY NOTHING;
            CREATE TABLE parts (id int, at date, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
            CREATE TABLE parts_2024 PARTITION OF parts FOR VALUES
              FROM ('2024-01-01') TO ('2025-01-01');
            ALTER TABLE parts_2024 REPLICA IDENTITY FULL;
            CREATE TABLE halves (id int, at date) PARTITION BY RANGE (at);
            CREATE TABLE halves_a PARTITION OF halves FOR VALUES
              FROM ('2024-01-01') TO ('2025-01-01');
            CREATE TABLE halves_b PARTITION OF halves FOR VALUES
              FROM ('2025-01-01') TO ('2026-01-01');
            ALTER TABLE halves_a REPLICA IDENTITY FULL;
            """
        )
    warning = (
        "WARN  connector shop: 4 captured table(s) without REPLICA IDENTITY FULL:"
        " public.Odd name (index), public.halves (default), public.keyed (default),"
        " public.nothing_logged (nothing). Their updates carry no before image and their"
        " deletes only the key: consumers that retract old rows, such as Flink's"
        " debezium-json, need full before images (ALTER TABLE ... REPLICA IDENTITY FULL;"
        " docs/consumers.md)"
    )
    result = run_check(tmp_path, as_url(database), kafka_bootstrap, "pgoutput", "--full-identity")
    assert result.exit_code == 0, result.output  # a warning, not a failure
    assert warning in result.output
    # Partitioned tables are FULL when every partition is: parts is not named.
    assert "parts" not in result.output.replace("partition", "")

    # Not asked: not said.
    result = run_check(tmp_path, as_url(database), kafka_bootstrap, "pgoutput")
    assert result.exit_code == 0, result.output
    assert "REPLICA IDENTITY" not in result.output

    with psycopg.connect(database, autocommit=True) as conn:
        for table in ("keyed", '"Odd name"', "nothing_logged", "halves_b"):
            conn.execute(f"ALTER TABLE {table} REPLICA IDENTITY FULL")
    result = run_check(tmp_path, as_url(database), kafka_bootstrap, "pgoutput", "--full-identity")
    assert result.exit_code == 0, result.output
    assert "OK    connector shop: replica identity FULL on all 6 captured table(s)" in (
        result.output
    )
