"""The supervisor of ``cdc run``'s workers and the permanent/transient classification (no
services)."""

from __future__ import annotations

import logging
import threading

import pytest
from confluent_kafka import KafkaError as ConfluentError
from confluent_kafka import KafkaException
from kafka.errors import (
    BrokerNotAvailableError,
    GroupAuthorizationFailedError,
    KafkaTimeoutError,
    SaslAuthenticationFailedError,
    TopicAuthorizationFailedError,
)

from cdc.errors import CdcError, KafkaUnavailable, Refused, SourceUnavailable, is_permanent
from cdc.kafka import AUTHENTICATION_FIX, AUTHORIZATION_FIX, kafka_failure, kafka_fix
from cdc.pgerrors import pg_fix
from cdc.supervise import Backoff, Supervised

HOST = 'connection to server at "127.0.0.1", port 5432 failed: '

PERMANENT = [
    (HOST + 'FATAL:  password authentication failed for user "app"', None, "right password"),
    (HOST + "fe_sendauth: no password supplied", None, "give role app's password"),
    (HOST + 'FATAL:  role "app" does not exist', None, "CREATE ROLE app LOGIN"),
    (HOST + 'FATAL:  database "shop" does not exist', None, "create that database"),
    (HOST + 'FATAL:  role "app" is not permitted to log in', None, "ALTER ROLE app LOGIN"),
    (
        HOST + 'FATAL:  no pg_hba.conf entry for host "10.0.0.1", user "app", database "shop"',
        None,
        "pg_hba.conf",
    ),
    (
        "FATAL:  must be superuser or replication role to start walsender",
        None,
        "ALTER ROLE app REPLICATION",
    ),
    ("FATAL:  permission denied to start WAL sender", None, "ALTER ROLE app REPLICATION"),
    ("permission denied to use replication slots", "42501", "ALTER ROLE app REPLICATION"),
    ("permission denied for schema cdc", "42501", "grant role app"),
    ("permission denied for database shop", None, "GRANT CONNECT ON DATABASE"),
    ("anything at all", "28P01", "right password"),
    ("anything at all", "3D000", "create that database"),
]

TRANSIENT = [
    (HOST + "Connection refused\n\tIs the server running on that host?", None),
    (HOST + "timeout expired", None),
    ("terminating connection due to administrator command", "57P01"),
    ("FATAL:  the database system is starting up", "57P03"),
    ("FATAL:  sorry, too many clients already", "53300"),
    ("server closed the connection unexpectedly", None),
    ("canceling statement due to lock timeout", "55P03"),
    # A server error of another kind that happens to quote a role: told by its SQLSTATE.
    ('column "role "x" does not exist" of relation', "42703"),
    ("target says no", "P0001"),
    (HOST + 'FATAL:  database "shop" is not currently accepting connections', None),
]


@pytest.mark.parametrize(("message", "sqlstate", "fix"), PERMANENT)
def test_permanent_postgres_failures_name_their_fix(
    message: str, sqlstate: str | None, fix: str
) -> None:
    found = pg_fix(message, sqlstate, "app", "the dsn of connector shop")
    assert found is not None and fix in found, found


@pytest.mark.parametrize(("message", "sqlstate"), TRANSIENT)
def test_transient_postgres_failures_have_no_fix(message: str, sqlstate: str | None) -> None:
    assert pg_fix(message, sqlstate, "app", "the dsn of connector shop") is None


def test_kafka_auth_errors_are_permanent_and_outages_are_not() -> None:
    assert kafka_fix(SaslAuthenticationFailedError("bad creds")) == AUTHENTICATION_FIX
    assert kafka_fix(TopicAuthorizationFailedError()) == AUTHORIZATION_FIX
    assert kafka_fix(GroupAuthorizationFailedError()) == AUTHORIZATION_FIX
    assert kafka_fix(BrokerNotAvailableError()) is None
    assert kafka_fix(KafkaTimeoutError()) is None
    # confluent-kafka: a KafkaException around a KafkaError, or the KafkaError of a callback.
    assert kafka_fix(KafkaException(ConfluentError(ConfluentError._AUTHENTICATION))) == (
        AUTHENTICATION_FIX
    )
    assert kafka_fix(ConfluentError(ConfluentError.TOPIC_AUTHORIZATION_FAILED)) == (
        AUTHORIZATION_FIX
    )
    assert kafka_fix(KafkaException(ConfluentError(ConfluentError._TRANSPORT))) is None
    assert kafka_fix(ConfluentError(ConfluentError._ALL_BROKERS_DOWN)) is None

    refused = kafka_failure("Kafka: bad creds", SaslAuthenticationFailedError())
    assert isinstance(refused, Refused) and is_permanent(refused)
    assert "fix: give [kafka] credentials" in str(refused)
    away = kafka_failure("Kafka: no broker", BrokerNotAvailableError())
    assert isinstance(away, KafkaUnavailable) and not is_permanent(away)


def test_permanence_is_told_by_the_error_class() -> None:
    assert is_permanent(Refused("wrong password", "set it"))
    assert is_permanent(CdcError("server too old"))
    assert not is_permanent(SourceUnavailable("connection refused"))
    assert not is_permanent(RuntimeError("a bug: may pass on a fresh start"))


def test_backoff_doubles_to_its_cap_and_starts_over_after_a_good_run() -> None:
    backoff = Backoff(first_s=1, max_s=60, reset_after_s=60)
    assert [backoff.delay(0.5) for _ in range(8)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert backoff.delay(61) == 1  # it ran a good while: a new incident
    assert backoff.delay(3) == 2


class _Worker:
    """Fails as told, one item per attempt: an exception to raise, or "start" to set
    ``started`` and raise the next item, or "done" to return."""

    def __init__(self, *script: BaseException | str) -> None:
        self.script = list(script)
        self.attempts = 0

    def __call__(self, stop: threading.Event, started: threading.Event) -> None:
        self.attempts += 1
        step = self.script.pop(0)
        if step == "start":
            started.set()
            step = self.script.pop(0)
        if step == "done":
            return
        assert isinstance(step, BaseException)
        raise step


def _supervise(worker: _Worker, stop: threading.Event | None = None) -> list[BaseException]:
    fatal: list[BaseException] = []
    stop = stop or threading.Event()
    Supervised("sink pg", worker, stop, fatal.append, Backoff(0.01, 0.04, 60))()
    return fatal


def test_a_failing_worker_is_restarted_with_an_error_line_each_time(
    caplog: pytest.LogCaptureFixture,
) -> None:
    worker = _Worker(RuntimeError("boom"), KeyError("k"), Refused("no", "fix it"), "done")
    worker.script.insert(2, "start")  # it ran once before the refusal: retried, not fatal
    with caplog.at_level(logging.ERROR, logger="cdc.supervise"):
        assert _supervise(worker) == []
    assert worker.attempts == 4
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert lines == [
        "sink pg failed: unexpected RuntimeError: boom; restarting it in 0 s (failure 1)",
        "sink pg failed: unexpected KeyError: 'k'; restarting it in 0 s (failure 2)",
        "sink pg failed: no (fix: fix it); restarting it in 0 s (failure 3)",
    ]
    assert caplog.records[0].exc_info is not None  # a bug's traceback is in the log


def test_a_permanent_failure_before_the_first_start_is_fatal() -> None:
    refused = Refused("password authentication failed", "set the right password")
    worker = _Worker(refused, "done")
    assert _supervise(worker) == [refused]
    assert worker.attempts == 1


def test_a_transient_or_unexpected_failure_before_the_first_start_is_retried() -> None:
    worker = _Worker(SourceUnavailable("away"), RuntimeError("bug"), "start", "done")
    assert _supervise(worker) == []
    assert worker.attempts == 3


def test_stop_ends_the_backoff_wait_at_once() -> None:
    stop = threading.Event()
    worker = _Worker(RuntimeError("boom"), "done")
    supervised = Supervised("sink pg", worker, stop, lambda e: None, Backoff(600, 600, 600))
    thread = threading.Thread(target=supervised)
    thread.start()
    stop.set()
    thread.join(2)
    assert not thread.is_alive()
    assert worker.attempts == 1


def test_a_bugs_traceback_is_logged_once_per_new_error(caplog: pytest.LogCaptureFixture) -> None:
    worker = _Worker(RuntimeError("a\nb"), RuntimeError("a\nb"), RuntimeError("c"), "done")
    with caplog.at_level(logging.ERROR, logger="cdc.supervise"):
        _supervise(worker)
    assert [r.exc_info is not None for r in caplog.records] == [True, False, True]
    assert caplog.records[0].getMessage().startswith("sink pg failed: unexpected RuntimeError: a;")
