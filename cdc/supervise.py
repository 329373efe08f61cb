"""Each connector and sink of ``cdc run`` runs supervised: one worker's failure is its own.

A worker that raises is started again after a backoff, logged at ERROR with the error and the
next attempt, while the others go on: a sink whose target fails must not stop the connectors,
whose slots would then hold WAL. Only a permanent failure (:func:`cdc.errors.is_permanent`)
before the worker ever started is fatal: then nothing has run yet, and the fix is a person's.
Transient failures (a server away) are retried inside the workers, quietly; what reaches the
supervisor is what they could not handle.
"""

from __future__ import annotations

__all__ = ["Backoff", "Supervised"]

import logging
import threading
import time
from collections.abc import Callable

from cdc.errors import CdcError, describe, is_permanent
from cdc.logs import working_as
from cdc.retry import Backoff

log = logging.getLogger(__name__)

Work = Callable[[threading.Event, threading.Event], None]
"""A worker's ``run(stop, started)``: returns when done or stopped, sets ``started`` once it
has everything it needs (connections, slot, consumer group), raises when it fails."""


class Supervised:
    """Runs one worker until ``stop``, starting it again whenever it fails; call it on a thread.

    ``fatal`` is called (and the worker given up) with a permanent error raised before the
    worker had ever started."""

    def __init__(
        self,
        name: str,
        work: Work,
        stop: threading.Event,
        fatal: Callable[[BaseException], None],
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_failure: Callable[[str, str, float], None] | None = None,
    ) -> None:
        self.name = name
        self.work = work
        self.stop = stop
        self.fatal = fatal
        self.backoff = backoff or Backoff()
        self.clock = clock
        self.started = threading.Event()
        """Set by the worker once it ran; never cleared, so a later failure is retried."""
        self.failures = 0
        self.on_failure = on_failure
        """Told ``(name, error, delay)`` at each failure (:class:`cdc.runstate.RunState`)."""

    def __call__(self) -> None:
        with working_as(self.name):  # its records carry its name (cdc.logs)
            self._supervise()

    def _supervise(self) -> None:
        last = ""
        while not self.stop.is_set():
            began = self.clock()
            try:
                self.work(self.stop, self.started)
                return  # done (an initial_only connector) or stopped
            except Exception as e:
                if is_permanent(e) and not self.started.is_set():
                    self.fatal(e)  # also while stopping: two workers may fail at once
                    return
                if self.stop.is_set():
                    log.info("%s: stopped with %s", self.name, _text(e))
                    return
                self.failures += 1
                delay = self.backoff.delay(self.clock() - began)
                text = _text(e)
                log.error(
                    "%s failed: %s; restarting it in %.0f s (failure %d)",
                    self.name,
                    text,
                    delay,
                    self.failures,
                    # A bug: where it happened is what matters, once, not at every attempt.
                    exc_info=None if isinstance(e, CdcError) or text == last else e,
                )
                last = text
                if self.on_failure is not None:
                    self.on_failure(self.name, text, delay)
                self.stop.wait(delay)


def _text(e: BaseException) -> str:
    """One line: a driver's error may carry a CONTEXT or a HINT on lines of their own."""
    return (
        describe(e) if isinstance(e, CdcError) else f"unexpected {type(e).__name__}: {describe(e)}"
    )
