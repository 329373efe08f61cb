"""The output settings of every connection that reads values (the stream, snapshot reads).

Values travel as their types' text output, which depends on the session: a server or role set to
``DateStyle = 'SQL, DMY'``, another ``TimeZone``, ``IntervalStyle = iso_8601`` or
``bytea_output = escape`` would change the text cdc reads and publishes. Every reading connection
pins them, so the text is always the one :mod:`cdc.values` encodes (and the walsender, a backend
like any other, takes them from the startup packet too)."""

from __future__ import annotations

__all__ = ["OUTPUT_SETTINGS", "pinned"]

from psycopg.conninfo import conninfo_to_dict, make_conninfo

OUTPUT_SETTINGS = (
    "-c TimeZone=UTC -c DateStyle=ISO -c IntervalStyle=postgres -c bytea_output=hex"
    " -c extra_float_digits=3"
)
"""``extra_float_digits`` above 0 gives the shortest exact text on PostgreSQL 12 and later (17
significant digits, still exact, before)."""


def pinned(conninfo: str) -> str:
    """``conninfo`` with :data:`OUTPUT_SETTINGS` after any ``options`` it has (the later setting
    of a name wins)."""
    existing = conninfo_to_dict(conninfo).get("options")
    options = f"{existing} {OUTPUT_SETTINGS}" if existing else OUTPUT_SETTINGS
    return make_conninfo(conninfo, options=options)
