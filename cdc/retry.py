"""Waiting before trying again: the one backoff policy of cdc, and the loop that applies it.

Every retry in cdc (a worker restarted by its supervisor, a source or sink session reconnecting,
a sink waiting for its target or for Kafka) waits by :class:`Backoff`: delays that double up to a
ceiling and start over once an attempt has run long enough to count as a new incident. Waits are
on the caller's ``stop`` event, so stopping never waits out a delay.
"""

from __future__ import annotations

__all__ = ["Backoff", "Stopped", "retried"]

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from cdc.errors import Stopped

T = TypeVar("T")


@dataclass
class Backoff:
    """Delays that double from ``first_s`` up to ``max_s``, and start over after an attempt ran
    ``reset_after_s`` before failing: then it is a new incident, not the same one again."""

    first_s: float = 1.0
    max_s: float = 60.0
    reset_after_s: float = 60.0
    _next_s: float = field(default=0.0, init=False)

    def delay(self, ran_s: float = 0.0) -> float:
        """The wait before the next attempt, after one that failed after ``ran_s`` seconds."""
        if self._next_s == 0.0 or ran_s >= self.reset_after_s:
            self._next_s = self.first_s
        delay = self._next_s
        self._next_s = min(delay * 2, self.max_s)
        return delay


def retried(
    attempt: Callable[[], T],
    *,
    stop: threading.Event,
    retry_on: type[BaseException] | tuple[type[BaseException], ...],
    log: logging.Logger,
    what: str,
    backoff: Backoff | None = None,
    when: Callable[[BaseException], bool] | None = None,
    before_retry: Callable[[BaseException], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """``attempt()`` until it returns, waiting by ``backoff`` after each ``retry_on`` error.

    An error for which ``when(error)`` is false is raised at once (a permanent one). Each
    failure is logged at WARNING as "``what``: error; retrying in N s". When ``stop`` is
    set the last error is raised again if it came before any wait, else :class:`Stopped`: the
    caller must not take an unfinished attempt for a done one. ``before_retry(error)`` runs
    after the wait (to reconnect, say); its own ``retry_on`` errors count as the next failure."""
    backoff = backoff or Backoff(max_s=30.0)
    failed: BaseException | None = None
    while True:
        began = clock()
        try:
            if failed is not None and before_retry is not None:
                before_retry(failed)  # inside the attempt: its failure is the next one
            return attempt()
        except retry_on as e:
            if stop.is_set() or (when is not None and not when(e)):
                raise
            delay = backoff.delay(clock() - began)
            log.warning("%s: %s; retrying in %.0f s", what, e, delay)
            if stop.wait(delay):
                raise Stopped(what) from e
            failed = e
