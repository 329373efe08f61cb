"""scripts/devstack itself: `up` is idempotent, and `down` then `up` brings a working stack back.

These restart the services, so conftest runs them after every other test.
"""

from __future__ import annotations

import os
import subprocess

import psycopg
import pytest
from kafka import KafkaAdminClient

from tests.support import ROOT

pytestmark = pytest.mark.devstack


def devstack(*args: str, version: int | str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("CDC_DEV_PG_VERSION", None)
    if version is not None:
        env["CDC_DEV_PG_VERSION"] = str(version)
    return subprocess.run(
        [str(ROOT / "scripts" / "devstack"), *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env=env,
    )


def env_dsn(version: int) -> str:
    env = devstack("env", version=version)
    assert env.returncode == 0, env.stderr
    prefix = "export CDC_TEST_PG_DSN="
    (line,) = [x for x in env.stdout.splitlines() if x.startswith(prefix)]
    return line[len(prefix) :].strip("'")


def major_at(dsn: str) -> int | None:
    try:
        with psycopg.connect(dsn, connect_timeout=3) as conn:
            return conn.info.server_version // 10000
    except psycopg.OperationalError:
        return None


def other_majors(pg_dsn: str) -> list[int]:
    """The majors of CDC_TEST_PG_VERSIONS that run on servers of their own (not the default)."""
    listed = {int(v) for v in os.environ.get("CDC_TEST_PG_VERSIONS", "").split()}
    return sorted(listed - {major_at(pg_dsn) or 0})


def services_answer(pg_dsn: str, kafka: str) -> None:
    with psycopg.connect(pg_dsn, connect_timeout=5) as conn:
        assert conn.execute("SHOW wal_level").fetchone() == ("logical",)
    admin = KafkaAdminClient(bootstrap_servers=kafka, bootstrap_timeout_ms=10_000)
    try:
        assert len(admin.describe_cluster()["brokers"]) == 1
    finally:
        admin.close()


def test_up_twice(pg_dsn: str, kafka_bootstrap: str) -> None:
    first, second = devstack("up"), devstack("up")
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    status = devstack("status")
    assert status.returncode == 0, status.stdout + status.stderr
    services_answer(pg_dsn, kafka_bootstrap)


def test_down_then_up(pg_dsn: str, kafka_bootstrap: str) -> None:
    """Plain `down` stops every server devstack started, the other majors' too."""
    others = [v for v in other_majors(pg_dsn) if major_at(env_dsn(v)) == v]
    down = devstack("down")
    assert down.returncode == 0, down.stderr
    assert devstack("status").returncode == 3
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(pg_dsn, connect_timeout=2)
    for v in others:
        assert major_at(env_dsn(v)) is None, f"PostgreSQL {v} still runs after down"
    up = devstack("up")
    assert up.returncode == 0, up.stderr
    services_answer(pg_dsn, kafka_bootstrap)
    for v in others:  # as make test left them
        assert devstack("up", version=v).returncode == 0
        assert major_at(env_dsn(v)) == v


def test_another_major_up_twice_then_down_alone(pg_dsn: str, kafka_bootstrap: str) -> None:
    """CDC_DEV_PG_VERSION=NN: a server of that major on its own port beside the default one,
    with logical decoding; its `down` stops it alone (the default server and Kafka stay)."""
    version = (other_majors(pg_dsn) or [14])[0]
    first, second = devstack("up", version=version), devstack("up", version=version)
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    assert f"PostgreSQL {version} ready on 127.0.0.1:" in second.stderr
    assert devstack("status", version=version).returncode == 0
    dsn = env_dsn(version)
    assert dsn != pg_dsn
    services_answer(dsn, kafka_bootstrap)
    assert major_at(dsn) == version
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_create_logical_replication_slot('devstack_t', 'pgoutput', true)")
    down = devstack("down", version=version)
    assert down.returncode == 0, down.stderr
    assert major_at(dsn) is None
    assert devstack("status", version=version).returncode == 3
    services_answer(pg_dsn, kafka_bootstrap)  # the rest of the stack runs on
    up = devstack("up", version=version)
    assert up.returncode == 0, up.stderr
    assert major_at(dsn) == version


def test_another_major_env_and_bad_versions() -> None:
    base = int(os.environ.get("CDC_DEV_PG_PORT", "15432"))
    kafka = os.environ.get("CDC_DEV_KAFKA_PORT", "19092")
    env = devstack("env", version=17)
    assert env.returncode == 0, env.stderr
    lines = env.stdout.splitlines()
    assert f"export CDC_TEST_PG_DSN='postgresql://postgres@127.0.0.1:{base + 17}/postgres'" in lines
    assert f"export CDC_TEST_KAFKA='127.0.0.1:{kafka}'" in lines
    for bad in ("12", "19", "abc", "015"):
        out = devstack("status", version=bad)
        assert out.returncode == 1, out.stderr
        assert (
            f"CDC_DEV_PG_VERSION='{bad}' is not a PostgreSQL major devstack can run"
            " (one of: 13 14 15 16 17 18)"
        ) in out.stderr


def test_env_prints_exports() -> None:
    env = devstack("env")
    assert env.returncode == 0
    lines = env.stdout.splitlines()
    pg, kafka = (
        os.environ.get("CDC_DEV_PG_PORT", "15432"),
        os.environ.get("CDC_DEV_KAFKA_PORT", "19092"),
    )
    assert f"export CDC_TEST_PG_DSN='postgresql://postgres@127.0.0.1:{pg}/postgres'" in lines
    assert f"export CDC_TEST_KAFKA='127.0.0.1:{kafka}'" in lines
