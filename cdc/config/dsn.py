"""Connection strings: parsed once, their passwords masked wherever they are shown."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from pydantic_core import core_schema

MASK = "***"


class Dsn:
    """A libpq connection string whose password never shows.

    ``str()`` and ``repr()`` give the masked form; only :attr:`conninfo` holds the real one, and
    only code that connects reads it.
    """

    __slots__ = ("conninfo", "masked", "params")

    def __init__(self, conninfo: str) -> None:
        try:
            params = conninfo_to_dict(conninfo)
        except psycopg.ProgrammingError as e:
            # libpq's parse errors never echo the password, but they may quote a fragment.
            reason = _first_line(e)
            raise ValueError(f"not a valid PostgreSQL connection string: {reason}") from None
        self.conninfo = conninfo
        self.params: Mapping[str, str] = {k: str(v) for k, v in params.items()}
        self.masked = mask_dsn(conninfo)

    @property
    def password(self) -> str | None:
        return self.params.get("password")

    def __str__(self) -> str:
        return self.masked

    def __repr__(self) -> str:
        return f"Dsn({self.masked!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Dsn) and other.conninfo == self.conninfo

    def __hash__(self) -> int:
        return hash(self.conninfo)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            _dsn, serialization=core_schema.plain_serializer_function_ser_schema(str)
        )


def mask_dsn(conninfo: str) -> str:
    """Return ``conninfo`` with any password replaced by ``***``, keeping its form (URL or k=v)."""
    if re.match(r"^postgres(ql)?://", conninfo):
        parts = urllib.parse.urlsplit(conninfo)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, hosts = netloc.rpartition("@")
            if ":" in userinfo:
                userinfo = userinfo.split(":", 1)[0] + ":" + MASK
            netloc = f"{userinfo}@{hosts}"
        query = "&".join(
            f"{k}={MASK}" if k == "password" else f"{k}={v}"
            for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        )
        return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    try:
        params = conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError:
        return MASK  # unparseable: show nothing rather than risk a secret
    if "password" in params:
        params["password"] = MASK
    return make_conninfo("", **params)


def _first_line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def _dsn(value: object) -> Dsn:
    if isinstance(value, Dsn):
        return value
    if not isinstance(value, str):
        raise ValueError("must be a string (a postgresql:// URL or key=value pairs)")
    if not value.strip():
        raise ValueError("must not be empty")
    return Dsn(value)
