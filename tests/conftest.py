"""Services for the tests: PostgreSQL (with wal2json) and Kafka.

They come from ``CDC_TEST_PG_DSN`` / ``CDC_TEST_KAFKA`` when set (``eval "$(scripts/devstack
env)"``), else from testcontainers when a Docker engine answers, else the test fails with a message
naming ``scripts/devstack up``. Under ``CI=true`` a test that would skip fails instead. Every test
gets its own database and its own topic names, so tests never see each other's data. The
databases are dropped after each test; the topics whose names hold a test's :func:`unique` token
are deleted when the session ends (on the devstack's broker they added up to tens of gigabytes).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Generator, Iterator

import psycopg
import pytest
from psycopg import sql

from tests.support.services import delete_test_topics, fresh_database

pytest_plugins = ["tests.support.replicas"]  # the replicas fixture

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


@pytest.fixture
def database(pg_dsn: str, unique: str) -> Iterator[str]:
    """DSN of a fresh database of this test's own, dropped (with its slots) afterwards."""
    with fresh_database(pg_dsn, f"cdct_{unique}") as dsn:
        yield dsn


SERVICE_FIXTURES = frozenset({"pg_dsn", "kafka_bootstrap"})
"""A test that asks for one of these, directly or through another fixture, needs services."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if fixtures & SERVICE_FIXTURES or item.get_closest_marker("devstack"):
            item.add_marker(pytest.mark.services)
        elif "/tests/unit/" in str(item.path) and item.get_closest_marker("services"):
            raise pytest.UsageError(
                f"{item.nodeid} needs services: it belongs under tests/integration"
            )
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
