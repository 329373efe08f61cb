"""Which PostgreSQL servers cdc runs on, and what each version can do.

PostgreSQL 14 is the oldest: it is the oldest major still supported upstream that every piece of
the connector was run against (tests/integration/test_pg_versions.py runs 14 to 18).
"""

from __future__ import annotations

__all__ = [
    "FAILOVER_SLOTS_SINCE",
    "OLDEST_SUPPORTED",
    "failover_problem",
    "too_old",
    "version_text",
]

OLDEST_SUPPORTED = 140000
FAILOVER_SLOTS_SINCE = 170000


def version_text(num: int) -> str:
    """``170008`` -> ``"17.8"`` (the numbering of PostgreSQL 10 and later)."""
    return f"{num // 10000}.{num % 10000}"


def too_old(num: int) -> str | None:
    """Why a server of version ``num`` cannot feed a connector, or None when it can."""
    if num >= OLDEST_SUPPORTED:
        return None
    return (
        f"PostgreSQL {version_text(num)} is older than {OLDEST_SUPPORTED // 10000}, the"
        " oldest version cdc supports; upgrade the server to PostgreSQL 14 or later"
    )


def failover_problem(num: int) -> str | None:
    """Why ``failover_slot = true`` cannot work on a server of version ``num``, or None."""
    if num >= FAILOVER_SLOTS_SINCE:
        return None
    return (
        f"failover_slot = true needs PostgreSQL 17 or later (failover slots), but this server"
        f" is PostgreSQL {version_text(num)}; set failover_slot = false or upgrade the server"
    )
