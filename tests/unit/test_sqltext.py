"""cdc.sqltext: SQL text for statements executed with parameters (no services needed)."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql
from psycopg._queries import PostgresQuery
from psycopg.adapt import Transformer

from cdc.sqltext import TypeName, with_params

QUERY = sql.SQL("SELECT {}::{} FROM {} WHERE x = %s AND y = {} AND z = {}").format(
    sql.Identifier("a%b"),
    TypeName('public."100%"'),
    sql.Identifier("s%", "t%s"),
    sql.Literal("50%"),
    sql.Placeholder(),
)


def test_with_params_doubles_the_percent_of_names_only() -> None:
    """The ``%`` of identifiers, literals and type names doubled; the placeholders kept."""
    assert with_params(QUERY, None) == (
        b'SELECT "a%%b"::public."100%%" FROM "s%%"."t%%s" WHERE x = %s AND y = \'50%%\' AND z = %s'
    )
    assert with_params(sql.SQL("SELECT %s"), None) == b"SELECT %s"


def test_psycopg_sends_the_names_as_they_are() -> None:
    """What psycopg makes of it: two placeholders, and the names with one ``%`` each; the
    statement as composed is refused (the bug: ``%b`` and ``%s`` of the names taken for
    placeholders)."""
    parsed = PostgresQuery(Transformer())
    parsed.convert(with_params(QUERY, None), (1, 2))
    assert parsed.query == (
        b'SELECT "a%b"::public."100%" FROM "s%"."t%s" WHERE x = $1 AND y = \'50%\' AND z = $2'
    )
    with pytest.raises(psycopg.ProgrammingError):
        PostgresQuery(Transformer()).convert(QUERY.as_bytes(None), (1, 2))
