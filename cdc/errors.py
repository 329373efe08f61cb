"""The error tree of cdc.

Every error the project raises on purpose derives from :class:`CdcError`. Each class says whether
trying the same thing again may succeed (``retriable``), so that the loops that own retries decide
from the class, never from the text. Driver errors (psycopg, kafka-python) are translated into this
tree once, where the driver is called.
"""

from __future__ import annotations

__all__ = [
    "BadRecord",
    "CdcError",
    "ConfigError",
    "ConfigProblem",
    "KafkaUnavailable",
    "LeaderUnknown",
    "OversizedRecord",
    "PartitionRevoked",
    "Refused",
    "SlotExists",
    "SlotInUse",
    "SlotMissing",
    "SourceUnavailable",
    "Stopped",
    "TargetUnavailable",
    "describe",
    "is_permanent",
]

from dataclasses import dataclass


class CdcError(Exception):
    """Root of every error cdc raises on purpose."""

    retriable: bool = False


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One thing wrong with a configuration file."""

    path: str
    """Key path inside the file, such as ``connectors[1].snapshot``; empty for the whole file."""
    message: str
    """What is wrong and what is allowed; the bad value appears here, secrets masked."""


class ConfigError(CdcError):
    """The configuration file cannot be used. Never retriable: the file must change."""

    def __init__(self, file: str, problems: list[ConfigProblem]) -> None:
        self.file = file
        self.problems = problems
        super().__init__(self._render())

    def _render(self) -> str:
        lines = []
        for p in self.problems:
            where = f"{self.file}: {p.path}" if p.path else self.file
            lines.append(f"{where}: {p.message}")
        return "\n".join(lines)


class SourceUnavailable(CdcError):
    """The source database cannot be reached or refused us; it may come back."""

    retriable = True


class KafkaUnavailable(CdcError):
    """No Kafka broker answers; it may come back."""

    retriable = True


class LeaderUnknown(KafkaUnavailable):
    """A partition's leader is not known yet (its topic was created moments ago): ask again."""


class PartitionRevoked(CdcError):
    """A rebalance took the partition away while it was being positioned: its next assignment
    positions it again. Not an outage, so not retried as one."""


class Refused(CdcError):
    """A server answers but refuses us for a reason only a person can fix: wrong credentials, a
    missing privilege, a database that does not exist. Not retriable: at first start ``cdc run``
    stops and names the fix; a worker that had run is retried, in case someone fixes it."""

    def __init__(self, cause: str, fix: str) -> None:
        self.cause = cause
        self.fix = fix
        super().__init__(f"{cause} (fix: {fix})")


class BadRecord(CdcError):
    """A record no sink can apply; it goes to the dead-letter topic with this reason."""


class OversizedRecord(CdcError):
    """A record over the size Kafka takes, under ``oversized = "fail"``. Retriable: the limits
    are read again at each session, and raising them lets the stream go on."""

    retriable = True


class TargetUnavailable(CdcError):
    """The target store cannot be reached: retry the same batch, never skip it."""

    retriable = True


class SlotInUse(SourceUnavailable):
    """Another process streams the slot (a second connector, or our previous self not yet gone)."""


class SlotExists(CdcError):
    """A replication slot of that name exists already."""


class SlotMissing(CdcError):
    """The replication slot does not exist."""


class Stopped(CdcError):
    """Not a failure: ``stop`` was set while waiting to try again (:func:`cdc.retry.retried`), so
    the attempt did not finish and must not be taken for done."""


def is_permanent(e: BaseException) -> bool:
    """Whether trying again cannot help until something outside cdc changes.

    Only cdc's own non-retriable errors are: anything else escaped a worker unforeseen (a bug,
    or a driver error nobody translated), and may well pass when the worker starts again."""
    return isinstance(e, CdcError) and not e.retriable


def describe(e: BaseException, secret: str | None = None) -> str:
    """The first line of a driver error, for a one-line message, with ``secret`` masked.

    libpq and Kafka clients do not echo passwords, but a message nobody foresaw must not leak one.
    """
    text = str(e).strip()
    line = text.splitlines()[0] if text else type(e).__name__
    return line.replace(secret, "***") if secret else line
