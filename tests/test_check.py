"""`cdc check` against real servers: one clear line per finding, and the right exit code.

Integration tests: PostgreSQL and Kafka from the devstack (see conftest).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner, Result
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from cdc.cli import cli
from tests.scratch_pg import free_port, scratch_postgres


def run_check(tmp_path: Path, dsn: str, kafka: str, plugin: str = "wal2json") -> Result:
    # Slot names are global to the server: each test has its own (tmp_path is unique).
    path = tmp_path / "cdc.toml"
    path.write_text(
        f'[kafka]\nbootstrap_servers = "{kafka}"\n'
        f'[[connectors]]\nname = "shop"\nplugin = "{plugin}"\ndsn = "{dsn}"\n'
        f'slot = "{slot_of(tmp_path)}"\n'
    )
    return CliRunner().invoke(cli, ["check", "-c", str(path)])


def slot_of(tmp_path: Path) -> str:
    return "cdct_" + "".join(ch for ch in tmp_path.name.lower() if ch.isalnum())[-40:]


def as_url(dsn: str) -> str:
    """The same connection as a postgresql:// URL (how users usually write it)."""
    p = {k: str(v) for k, v in conninfo_to_dict(dsn).items()}
    auth = p["user"] + (f":{p['password']}" if p.get("password") else "")
    return f"postgresql://{auth}@{p['host']}:{p['port']}/{p['dbname']}"


@pytest.fixture
def role(database: str, unique: str) -> Iterator[tuple[str, str]]:
    """A login role without REPLICATION, with a password: (name, password)."""
    name, password = f"cdct_role_{unique}", f"right-{unique}"
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(name), sql.Literal(password)
            )
        )
    yield name, password
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


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
        f" cdc.snapshots (GRANT CREATE ON DATABASE {dbname} to it, or create them: README,"
        " Snapshots); snapshot = 'initial' needs them"
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
    assert line.startswith(f"WARN  connector shop: slot {slot} not streaming, confirmed flush LSN ")
    lag = int(line.split(", lag ")[1].split()[0])
    assert lag > 1000 * 20  # a thousand rows of WAL it has not confirmed
    assert "FAIL  connector gone: cannot connect to" in result.output
