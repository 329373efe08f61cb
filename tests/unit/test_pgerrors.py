"""cdc.pgerrors.mapped: psycopg errors translated once at the boundary (no services)."""

from __future__ import annotations

import psycopg

from cdc.config import Dsn
from cdc.errors import CdcError, Refused, SourceUnavailable
from cdc.pgerrors import mapped
from cdc.sink import TargetUnavailable

DSN = Dsn("host=db dbname=app user=app password=s3cret")
REFUSED_LOGIN = 'connection to server at "db" failed: FATAL:  password authentication failed'


def raised(error: Exception, **kwargs: type[CdcError]) -> Exception:
    try:
        with mapped("connector c", DSN, **kwargs):
            raise error
    except Exception as e:
        return e
    raise AssertionError("nothing raised")


def test_a_refusal_names_its_fix_and_a_lost_connection_is_retriable() -> None:
    refusal = raised(psycopg.OperationalError(REFUSED_LOGIN + " (password s3cret)"))
    assert isinstance(refusal, Refused)
    assert "right password" in refusal.fix and "s3cret" not in str(refusal)
    privilege = raised(psycopg.errors.InsufficientPrivilege("permission denied for table t"))
    assert isinstance(privilege, Refused)
    lost = raised(psycopg.OperationalError("server closed the connection unexpectedly"))
    assert isinstance(lost, SourceUnavailable) and lost.retriable
    assert isinstance(lost.__cause__, psycopg.OperationalError)


def test_the_retriable_class_is_the_callers_and_others_stay_or_are_wrapped() -> None:
    """What the PostgreSQL sink's translation does: lost -> TargetUnavailable, rest left."""
    lost = raised(psycopg.OperationalError("terminating connection"), unavailable=TargetUnavailable)
    assert isinstance(lost, TargetUnavailable)
    other = psycopg.errors.UndefinedTable("relation t does not exist")
    assert raised(other) is other
    wrapped = raised(psycopg.errors.UndefinedTable("relation t does not exist"), other=CdcError)
    assert type(wrapped) is CdcError and not wrapped.retriable
    assert str(wrapped).startswith("connector c: relation t does not exist")


def test_errors_that_are_not_psycopg_errors_pass_through() -> None:
    error = ValueError("x")
    assert raised(error) is error
