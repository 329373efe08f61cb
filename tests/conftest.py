"""Services for the tests: PostgreSQL (with wal2json) and Kafka.

They come from ``CDC_TEST_PG_DSN`` / ``CDC_TEST_KAFKA`` when set (``eval "$(scripts/devstack
env)"``), else from testcontainers when a Docker engine answers, else the test fails with a message
naming ``scripts/devstack up``. Under ``CI=true`` a test that would skip fails instead. Every test
gets its own database and its own topic names, so tests never see each other's data. The
databases are dropped after each test; the topics whose names hold a test's :func:`unique` token
are deleted when the session ends (on the devstack's broker they added up to tens of gigabytes).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Generator, Iterator
from pathlib import Path

import psycopg
import pytest
from kafka import KafkaAdminClient
from psycopg import sql
from psycopg.conninfo import make_conninfo

ROOT = Path(__file__).resolve().parent.parent
NO_SERVICES = (
    'no {what}: set {var} (run `scripts/devstack up` and `eval "$(scripts/devstack env)"`,'
    " or use `make test`), or start a Docker engine for testcontainers"
)


def _docker_answers() -> bool:
    try:
        import docker  # noqa: PLC0415  (only present with testcontainers)

        docker.from_env(timeout=3).ping()
    except Exception:
        return False
    return True


@pytest.fixture(scope="session")
def pg_dsn() -> Iterator[str]:
    """DSN of a superuser connection to database ``postgres`` on a server with wal2json."""
    dsn = os.environ.get("CDC_TEST_PG_DSN")
    if dsn:
        yield dsn
        return
    if not _docker_answers():
        pytest.fail(NO_SERVICES.format(what="PostgreSQL", var="CDC_TEST_PG_DSN"))
    from testcontainers.postgres import PostgresContainer  # noqa: PLC0415

    # debezium/postgres ships wal2json and is configured for logical decoding.
    container = PostgresContainer("debezium/postgres:15", username="postgres", password="postgres")
    with container:
        yield container.get_connection_url(driver=None)


_TOKENS: set[str] = set()
"""Every :func:`unique` token handed out in this session."""


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """``host:port`` of a Kafka broker."""
    servers = os.environ.get("CDC_TEST_KAFKA")
    if servers:
        yield servers
        delete_test_topics(servers, _TOKENS)
        return
    if not _docker_answers():
        pytest.fail(NO_SERVICES.format(what="Kafka", var="CDC_TEST_KAFKA"))
    from testcontainers.kafka import KafkaContainer  # noqa: PLC0415

    with KafkaContainer().with_kraft() as kafka:
        yield kafka.get_bootstrap_server()


@pytest.fixture
def unique() -> str:
    """A short token unique to this test, for database, topic and slot names."""
    token = secrets.token_hex(4)
    _TOKENS.add(token)
    return token


def delete_test_topics(servers: str, tokens: set[str]) -> list[str]:
    """Delete the topics whose names hold one of ``tokens``; return their names."""
    if not tokens:
        return []
    admin = KafkaAdminClient(bootstrap_servers=servers)
    try:
        doomed = [t for t in admin.list_topics() if any(token in t for token in tokens)]
        for i in range(0, len(doomed), 100):
            admin.delete_topics(doomed[i : i + 100])
    finally:
        admin.close()
    return doomed


@pytest.fixture
def database(pg_dsn: str, unique: str) -> Iterator[str]:
    """DSN of a fresh database of this test's own, dropped (with its slots) afterwards."""
    name = f"cdct_{unique}"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_conninfo(pg_dsn, dbname=name)
    finally:
        drop_database(pg_dsn, name)


def drop_database(pg_dsn: str, name: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        # A database with logical slots cannot be dropped; a slot held by a walsender cannot be
        # dropped either, so end the holders first.
        conn.execute(
            "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots"
            " WHERE database = %s AND active_pid IS NOT NULL",
            (name,),
        )
        for (slot,) in conn.execute(
            "SELECT slot_name FROM pg_replication_slots WHERE database = %s", (name,)
        ).fetchall():
            with contextlib.suppress(psycopg.Error):
                conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Tests that restart the devstack run last, so that nothing else runs against a stack that
    # is coming back up.
    items.sort(key=lambda item: item.get_closest_marker("devstack") is not None)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if os.environ.get("CI") == "true" and report.skipped and not hasattr(report, "wasxfail"):
        # Under CI a test that cannot reach its services must fail loudly, never skip.
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, which is not allowed: {report.longrepr}"
    return report


@pytest.fixture
def role(database: str, unique: str) -> Iterator[tuple[str, str]]:
    """A login role with a password, without REPLICATION: (name, password). Dropped after the
    test's database (roles are the server's, not a database's)."""
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
