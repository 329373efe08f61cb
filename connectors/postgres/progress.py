"""A snapshot's progress through a table: a bar on a terminal, a log line otherwise."""

from __future__ import annotations

__all__ = ["Progress"]

import logging
import sys
import time
from typing import Any

from tqdm import tqdm

from cdc.logs import json_on_stderr

log = logging.getLogger(__name__)


class Progress:
    """Rows done of a table: a bar on a terminal, a log line every so often otherwise."""

    LOG_EVERY_S = 10.0

    def __init__(self, subject: str, label: str, total: int | None, done: int = 0) -> None:
        self.subject, self.label, self.total = subject, label, total
        self.done = self.base = done
        """Rows done in all, and before this process started on the table."""
        self.state = "running"
        """``running``, ``done``, or ``stopped`` (its session ended first), for ``/metrics``."""
        self.started = self.last_log = time.monotonic()
        self.bar: Any = None
        if sys.stderr.isatty() and not json_on_stderr():  # JSON lines only, then
            self.bar = tqdm(
                total=total, initial=done, desc=f"{subject}: {label}", unit=" rows", leave=True
            )

    def add(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            return
        now = time.monotonic()
        if now - self.last_log >= self.LOG_EVERY_S:
            self.last_log = now
            log.info("%s: snapshot %s", self.subject, self.describe(now))

    def describe(self, now: float | None = None) -> str:
        elapsed = max((now or time.monotonic()) - self.started, 1e-9)
        rate = (self.done - self.base) / elapsed
        text = f"{self.label}: {self.done} rows, {rate:.0f} rows/s"
        if self.total:
            left = max(self.total - self.done, 0)
            pct = min(100.0, 100.0 * self.done / self.total)
            eta = f", ETA {left / rate:.0f} s" if rate > 0 else ""
            text = (
                f"{self.label}: {self.done}/~{self.total} rows ({pct:.0f}%), {rate:.0f} rows/s{eta}"
            )
        return text

    def close(self) -> None:
        self.state = "done"
        if self.bar is not None:
            self.bar.close()
        log.info("%s: snapshot %s, finished", self.subject, self.describe())
