"""scripts/devstack itself: `up` is idempotent, and `down` then `up` brings a working stack back.

These restart the services, so conftest runs them after every other test.
"""

from __future__ import annotations

import os
import subprocess

import psycopg
import pytest
from kafka import KafkaAdminClient

from tests.conftest import ROOT

pytestmark = pytest.mark.devstack


def devstack(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ROOT / "scripts" / "devstack"), *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


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
    down = devstack("down")
    assert down.returncode == 0, down.stderr
    assert devstack("status").returncode == 3
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(pg_dsn, connect_timeout=2)
    up = devstack("up")
    assert up.returncode == 0, up.stderr
    services_answer(pg_dsn, kafka_bootstrap)


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
