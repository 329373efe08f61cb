"""Which PostgreSQL failures only a person can fix, and what to do about each.

A refused connection comes from libpq with its message only (no SQLSTATE), so failures are told
apart by SQLSTATE when the server sent one and by the message otherwise. The messages are the
server's English ones: under another ``lc_messages`` a refused login reads as transient and is
retried (logged each time), as it was before this module.
"""

from __future__ import annotations

__all__ = ["mapped", "pg_fix", "refused", "role_of", "translated"]

import contextlib
import getpass
import os
from collections.abc import Iterator

import psycopg
from psycopg.conninfo import conninfo_to_dict

from cdc.config import Dsn
from cdc.errors import CdcError, Refused, SourceUnavailable, describe

# (text in the message, SQLSTATE, fix): the first whose text or SQLSTATE matches wins, so the
# texts that refine a shared SQLSTATE (28000, 42501) come before the SQLSTATE alone.
_RULES: tuple[tuple[str, str, str], ...] = (
    ("password authentication failed", "28P01", "set role {user}'s right password in {dsn}"),
    ("no password supplied", "", "give role {user}'s password in {dsn} (or ~/.pgpass)"),
    ('role "', "", "CREATE ROLE {user} LOGIN, or name an existing role in {dsn}"),
    ("is not permitted to log in", "", "ALTER ROLE {user} LOGIN"),
    (
        "no pg_hba.conf entry",
        "",
        "add a pg_hba.conf line admitting role {user} from this host (for a connector, a"
        " 'replication' line as well), then SELECT pg_reload_conf()",
    ),
    ("", "28000", "let role {user} in: pg_hba.conf and the role's LOGIN"),
    ('database "', "3D000", "create that database, or name an existing one in {dsn}"),
    ("replication role", "", "ALTER ROLE {user} REPLICATION"),  # PostgreSQL 15
    ("to start wal sender", "", "ALTER ROLE {user} REPLICATION"),  # 16 and later
    ("to use replication slots", "", "ALTER ROLE {user} REPLICATION"),
    ("permission denied for database", "", "GRANT CONNECT ON DATABASE <that database> TO {user}"),
    ("", "42501", "grant role {user} the privilege the message names"),
)


_PERMANENT = frozenset(code for _, code, _ in _RULES if code)


def role_of(conninfo: str) -> str:
    """The role a connection string logs in as (libpq's default: $PGUSER, else the OS user)."""
    user = conninfo_to_dict(conninfo).get("user") or os.environ.get("PGUSER")
    return str(user or getpass.getuser())


def pg_fix(message: str, sqlstate: str | None, user: str, dsn: str) -> str | None:
    """What a person must do about this failure, or None when it may pass by itself."""
    if sqlstate is not None and sqlstate not in _PERMANENT:
        return None  # the server said what it is, and it is none of these
    text = message.lower()
    for needle, code, fix in _RULES:
        # 'role "x"' and 'database "x"' count only in 'does not exist'; not other quotes.
        named = needle in text and (not needle.endswith('"') or "does not exist" in text)
        if (needle and named) or (code and code == sqlstate):
            return fix.format(user=user, dsn=dsn)
    return None


def refused(e: psycopg.Error, subject: str, dsn: Dsn) -> Refused | None:
    """``e`` as :class:`Refused` naming ``subject`` and the fix, or None when it may pass."""
    message = describe(e, dsn.password)
    fix = pg_fix(message, e.sqlstate, role_of(dsn.conninfo), f"the dsn of {subject}")
    return None if fix is None else Refused(f"{subject}: {dsn}: {message}", fix)


def unreachable(e: psycopg.Error, subject: str, dsn: Dsn) -> str:
    """``cannot connect to DSN: why``, and the fix when only a person can make it work (what
    ``cdc check`` and ``cdc status`` print)."""
    message = describe(e, dsn.password)
    fix = pg_fix(message, e.sqlstate, role_of(dsn.conninfo), f"the dsn of {subject}")
    return f"cannot connect to {dsn}: {message}" + (f" (fix: {fix})" if fix else "")


def translated(
    e: psycopg.Error,
    subject: str,
    dsn: Dsn,
    unavailable: type[CdcError] = SourceUnavailable,
    other: type[CdcError] | None = None,
) -> Exception:
    """What ``e`` becomes at the boundary: :class:`Refused` naming the fix when only a person
    can make it work; ``unavailable`` (retriable) for a lost or refused connection
    (``OperationalError``); anything else ``other`` when given, else ``e`` itself."""
    permanent = refused(e, subject, dsn)
    if permanent is not None:
        return permanent
    if isinstance(e, psycopg.OperationalError):
        return unavailable(f"{dsn}: {describe(e, dsn.password)}")
    if other is not None:
        return other(f"{subject}: {describe(e, dsn.password)}")
    return e


@contextlib.contextmanager
def mapped(
    subject: str,
    dsn: Dsn,
    unavailable: type[CdcError] = SourceUnavailable,
    other: type[CdcError] | None = None,
) -> Iterator[None]:
    """Translate the psycopg errors raised inside, once, as :func:`translated` says.

    The source wraps a whole session in it (``other=CdcError``: a failure it does not know is
    not retried); a sink passes ``unavailable=TargetUnavailable`` and leaves the rest alone."""
    try:
        yield
    except psycopg.Error as e:
        error = translated(e, subject, dsn, unavailable, other)
        if error is e:
            raise
        raise error from e
