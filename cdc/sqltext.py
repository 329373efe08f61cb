"""SQL text for statements executed with parameters, whatever the names in it hold.

psycopg finds the placeholders (``%s``) of a statement executed with parameters by parsing its
text on the client, quoted names and strings included: a table ``"100%"`` or a column
``"a%s"`` would be taken for a placeholder (``only '%s', '%b', '%t' are allowed as
placeholders``, or a wrong placeholder count). :func:`with_params` renders a composed statement
with the ``%`` of every identifier, literal and :class:`TypeName` doubled, which the parser turns
back into one; only the placeholders written in its :class:`~psycopg.sql.SQL` text stay single.
A statement executed without parameters is sent as it is, never parsed: it must not be rendered
here.
"""

from __future__ import annotations

__all__ = ["TypeName", "with_params"]

from psycopg import sql
from psycopg.abc import AdaptContext


class TypeName(sql.SQL):
    """A type's name as ``format_type`` prints it (``numeric(12,2)``, ``public."100%"``): SQL
    text that :func:`with_params` escapes as it does identifiers."""


def with_params(query: sql.Composable, context: AdaptContext | None) -> bytes:
    """``query``'s bytes for ``execute(query, params)`` (see the module's docstring)."""
    if isinstance(query, sql.Composed):
        return b"".join(with_params(part, context) for part in query)
    if type(query) is sql.SQL or isinstance(query, sql.Placeholder):
        return query.as_bytes(context)
    return query.as_bytes(context).replace(b"%", b"%%")
