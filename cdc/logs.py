"""What a log line carries besides its message: the worker it comes from, and the JSON shape of
``--log-format json``.

The CLI installs these on its stderr handler (:mod:`cdc.cli` is the only module that configures
handlers). Each worker of ``cdc run`` runs on a thread of its own; :class:`cdc.supervise.Supervised`
names the thread's worker once with :func:`working_as`, so the records it logs get a ``connector``
or ``sink`` field at no cost per event: the field is looked up per record, by :class:`WorkerFilter`.
"""

from __future__ import annotations

__all__ = [
    "JsonFormatter",
    "WorkerFilter",
    "adopt_worker",
    "current_worker",
    "json_on_stderr",
    "working_as",
]

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime

from pythonjsonlogger.json import JsonFormatter as _LibraryJsonFormatter

_WORKER: ContextVar[tuple[str, str] | None] = ContextVar("cdc_worker", default=None)
"""(field, name) of the worker this thread runs: ("connector", "shop"), ("sink", "lite")."""

_KINDS = ("connector", "sink")


def _as_field(subject: str) -> tuple[str, str]:
    # Workers are named "connector NAME" / "sink NAME" (names have no spaces: cdc.config).
    kind, _, name = subject.partition(" ")
    return (kind, name) if kind in _KINDS and name else ("worker", subject)


@contextmanager
def working_as(subject: str) -> Iterator[None]:
    """Within this block, records logged on this thread say they come from ``subject``."""
    token = _WORKER.set(_as_field(subject))
    try:
        yield
    finally:
        _WORKER.reset(token)


def current_worker() -> tuple[str, str] | None:
    """The worker of this thread, to hand to a thread it starts (:func:`adopt_worker`)."""
    return _WORKER.get()


def adopt_worker(worker: tuple[str, str] | None) -> None:
    """Run first on a helper thread of a worker (its applier, its topic watch): threads do not
    inherit context variables, and their records belong to the worker that started them."""
    _WORKER.set(worker)


class WorkerFilter(logging.Filter):
    """Adds ``connector`` or ``sink`` (the worker's name) to records logged by a worker's
    threads; lets every record through."""

    def filter(self, record: logging.LogRecord) -> bool:
        worker = _WORKER.get()
        if worker is not None:
            setattr(record, *worker)
        return True


class JsonFormatter(_LibraryJsonFormatter):
    """One JSON object a record: ``time`` (ISO-8601, UTC), ``level``, ``logger``, ``message``,
    ``connector`` or ``sink`` when a worker logged it, ``exc_info`` (the traceback, one string)
    when there is one, and any ``extra=`` fields."""

    def __init__(self) -> None:
        super().__init__(
            ["asctime", "levelname", "name", "message"],
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


def json_on_stderr() -> bool:
    """Whether stderr gets JSON log lines: then nothing else (a progress bar) may draw there."""
    return any(
        isinstance(h, logging.StreamHandler)
        and getattr(h, "stream", None) is sys.stderr
        and isinstance(h.formatter, JsonFormatter)
        for h in logging.getLogger().handlers
    )
