"""cdc.retry: the one backoff policy and the loop that applies it."""

from __future__ import annotations

import logging
import threading

import pytest

from cdc.errors import CdcError, Refused, SourceUnavailable
from cdc.retry import Backoff, Stopped, retried

log = logging.getLogger("test")


class Flaky:
    def __init__(self, failures: list[BaseException]) -> None:
        self.failures = failures
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "done"


def test_backoff_doubles_to_its_ceiling_and_starts_over_after_a_long_run() -> None:
    b = Backoff(first_s=1, max_s=5, reset_after_s=60)
    assert [b.delay(0) for _ in range(5)] == [1, 2, 4, 5, 5]
    assert b.delay(61) == 1
    assert b.delay(0) == 2


def test_retried_tries_again_after_each_retriable_error_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    attempt = Flaky([SourceUnavailable("away"), SourceUnavailable("still away")])
    reconnects: list[BaseException] = []
    with caplog.at_level(logging.WARNING):
        got = retried(
            attempt,
            stop=threading.Event(),
            retry_on=CdcError,
            log=log,
            what="sink pg",
            backoff=Backoff(0.001, 0.002),
            before_retry=reconnects.append,
        )
    assert got == "done" and attempt.calls == 3
    assert [str(e) for e in reconnects] == ["away", "still away"]
    assert "sink pg: away; retrying in 0 s" in caplog.text


def test_retried_raises_at_once_what_is_not_retriable() -> None:
    attempt = Flaky([Refused("wrong password", "set it right"), CdcError("never reached")])
    with pytest.raises(Refused):
        retried(
            attempt,
            stop=threading.Event(),
            retry_on=CdcError,
            when=lambda e: isinstance(e, CdcError) and e.retriable,
            log=log,
            what="x",
            backoff=Backoff(0.001, 0.002),
        )
    assert attempt.calls == 1
    with pytest.raises(ValueError, match="bug"):  # not in retry_on
        retried(
            Flaky([ValueError("bug")]), stop=threading.Event(), retry_on=CdcError, log=log, what="x"
        )


def test_retried_stops_waiting_when_stopped_and_never_passes_for_done() -> None:
    stop = threading.Event()
    threading.Timer(0.05, stop.set).start()
    attempt = Flaky([CdcError("away")] * 3)
    with pytest.raises(Stopped):
        retried(attempt, stop=stop, retry_on=CdcError, log=log, what="x", backoff=Backoff(30, 30))
    assert attempt.calls == 1
    # Already stopped: the error itself, not a wait.
    with pytest.raises(CdcError):
        retried(Flaky([CdcError("away")]), stop=stop, retry_on=CdcError, log=log, what="x")


def test_a_failed_before_retry_counts_as_the_next_failure_and_waits_its_backoff(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A reconnect that fails is logged and waited out like a failed attempt, then tried again."""
    attempt = Flaky([SourceUnavailable("away")])
    reconnects = Flaky([SourceUnavailable("reconnect refused")])
    seen: list[BaseException] = []

    def reconnect(e: BaseException) -> None:
        seen.append(e)
        reconnects()

    with caplog.at_level(logging.WARNING):
        got = retried(
            attempt,
            stop=threading.Event(),
            retry_on=CdcError,
            log=log,
            what="sink pg",
            backoff=Backoff(0.001, 0.002),
            before_retry=reconnect,
        )
    assert got == "done" and attempt.calls == 2 and reconnects.calls == 2
    assert [str(e) for e in seen] == ["away", "reconnect refused"]
    assert "sink pg: reconnect refused; retrying in 0 s" in caplog.text
