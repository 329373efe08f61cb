"""wal2json (format-version 2) decoding: bytes from the stream in, events out. No I/O.

One XLogData payload is one JSON object: ``B`` (begin), ``I``/``U``/``D`` (row changes), ``T``
(truncate), ``M`` (logical message) or ``C`` (commit). With ``include-lsn`` the ``B`` object already
carries the commit LSN, so each change's event id (``{commit_lsn}:{index}``) is known as the row
arrives, and a transaction of any size streams through without being buffered.

Values must be exact. wal2json 2.5 writes numeric values as bare JSON numbers, which a JSON
parser would turn into floats (``numeric-data-types-as-string`` arrived only in 2.6). So before
parsing, the bare number after every ``"type":"numeric","value":`` (or ``"numeric(12,2)"``,
whose modifier wal2json prints whatever ``include-typmod`` says) is wrapped in quotes and stays
its exact decimal text. That sequence cannot occur inside a JSON string, where quotes are escaped.
Integers (up to 64 bits) and floats parse exactly as they are: PostgreSQL prints floats in their
shortest exact form, and orjson reads them back to the same double.
"""

from __future__ import annotations

__all__ = ["WAL2JSON_OPTIONS", "Begin", "Catalog", "Commit", "TableInfo", "Wal2JsonDecoder"]

import operator
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson

from cdc.errors import CdcError
from cdc.events import Change, Row
from connectors.postgres.decoding import Begin, Catalog, Commit, RowDecoder, TableInfo
from connectors.postgres.replication import parse_lsn

WAL2JSON_OPTIONS = {
    "format-version": "2",
    "include-lsn": "true",
    "include-xids": "true",
    "include-timestamp": "true",
    "include-types": "true",
    "include-typmod": "false",
    "include-pk": "true",
}

# wal2json prints a numeric's modifier even with include-typmod off: "numeric(12,2)".
_BARE_NUMERIC = re.compile(rb'"type":"numeric(?:\([0-9,]+\))?","value":(-?[0-9][0-9.eE+-]*)')
_NAME = operator.itemgetter("name")
_NAME_VALUE = operator.itemgetter("name", "value")
_NAME_TYPE = operator.itemgetter("name", "type")


_Shape = tuple[int, frozenset[str], tuple[tuple[str, ...], tuple[str, ...]] | None]
_UNSEEN: _Shape = (-1, frozenset(), None)


class Wal2JsonDecoder(RowDecoder):
    """Turns a slot's wal2json messages into :class:`Begin`, :class:`Change`, :class:`Commit`."""

    def __init__(self, catalog: Catalog, selected: Callable[[str, str], bool]) -> None:
        super().__init__(catalog, selected)
        self._shapes: dict[tuple[str, str], _Shape | None] = {}
        """Per table seen, :meth:`_shape`: one lookup a row, where the selection was one."""

    def decode(  # noqa: PLR0912  (one piece: a call more would cost every row)
        self, payload: bytes, lsn: int = 0
    ) -> Begin | Change | tuple[Change, ...] | Commit | None:
        """``lsn``, the message's position in the stream, is not needed: wal2json says it."""
        if b'"numeric' in payload:
            payload = _quote_numerics(payload)
        msg = orjson.loads(payload)
        action = msg["action"]
        if action == "B":
            return self._begin(
                msg.get("xid", 0),
                parse_lsn(msg["lsn"]),
                parse_lsn(msg["nextlsn"]),
                _ts_ms(msg["timestamp"]),
            )
        if action == "C":
            return self._commit(parse_lsn(msg["nextlsn"]))
        if action == "M":
            return None
        schema, table = msg["schema"], msg["table"]
        columns = msg.get("columns", ())
        shape = self._shapes.get((schema, table), _UNSEEN)
        if shape is _UNSEEN:
            shape = self._shape(schema, table, len(columns), refresh=False)
        if shape is None:
            return None  # not captured
        lsn = parse_lsn(msg["lsn"])
        if action == "T":
            self._whole_row_key = False
            return self._change("t", schema, table, None, None, None, lsn)
        width, generated, reorder = shape
        if len(columns) > width or (action == "I" and len(columns) != width):
            # A column added or dropped since this table was first seen: generated or not?
            width, generated, reorder = self._shape(schema, table, len(columns), True) or shape
        pk = msg.get("pk")
        pk_names = tuple(map(_NAME, pk)) if pk else None
        if reorder is not None and pk_names == reorder[0]:
            pk_names = reorder[1]
        self._whole_row_key = self._whole_row(schema, table, pk_names)
        if action == "I":
            if generated:
                columns = _without(columns, generated)
            after = _row(columns)
            key = self._key(schema, table, after, pk_names)
            return self._change("c", schema, table, key, None, after, lsn, (), _types(columns))
        if action == "U":
            old = msg.get("identity")
            if generated:
                columns = _without(columns, generated)
                old = None if old is None else _without(old, generated)
            identity = None if old is None else _row(old)
            return self._update(
                schema, table, _row(columns), _types(columns), identity, lsn, pk_names
            )
        if action == "D":
            old = msg.get("identity", ())
            if generated:
                old = _without(old, generated)
            identity = _row(old)
            key = self._key(schema, table, identity, pk_names)
            return self._change("d", schema, table, key, identity, None, lsn, (), _types(old))
        raise CdcError(f"wal2json sent an unknown action {action!r}")

    def _shape(self, schema: str, table: str, seen: int, refresh: bool) -> _Shape | None:
        """None if the table is not captured, else: how many columns wal2json prints for it;
        which are generated (wal2json prints them; events leave them out, as pgoutput does);
        and, when the primary key's order is not its columns' (wal2json names them in the
        columns' order), that order (the key's JSON, which picks the partition, follows it,
        as in snapshot reads). ``seen``: how many columns this message has, trusted when the
        catalog disagrees (the table was dropped or renamed since), so that a mismatch costs
        one read, not one a row; what was known before stays then."""
        if not self._is_wanted(schema, table):
            self._shapes[(schema, table)] = None
            return None
        info = self._catalog.table(schema, table, refresh=refresh, xid=self._xid)
        known = self._shapes.get((schema, table))
        shape: _Shape = (seen, frozenset(), None) if known is None else (seen, *known[1:])
        if info is not None:
            width = len(info.columns) + len(info.generated)
            in_column_order = tuple(c for c in info.columns if c in info.key)
            shape = (
                width if width == seen or not refresh else seen,
                frozenset(info.generated),
                (in_column_order, info.key)
                if info.has_primary_key and in_column_order != info.key
                else None,
            )
        self._shapes[(schema, table)] = shape
        return shape


def _quote_numerics(payload: bytes) -> bytes:
    """Every bare numeric value in quotes (slicing is twice as fast as ``re.sub``'s template)."""
    parts: list[bytes] = []
    last = 0
    for match in _BARE_NUMERIC.finditer(payload):
        start, end = match.span(1)
        parts += (payload[last:start], b'"', payload[start:end], b'"')
        last = end
    if not parts:
        return payload
    parts.append(payload[last:])
    return b"".join(parts)


def _without(columns: Any, generated: frozenset[str]) -> Any:
    return [c for c in columns if c["name"] not in generated]


def _row(columns: Any) -> Row:
    return dict(map(_NAME_VALUE, columns))


def _types(columns: Any) -> tuple[tuple[str, str], ...]:
    return tuple(map(_NAME_TYPE, columns))


def _ts_ms(text: str) -> int:
    # wal2json: "2026-11-27 05:30:18.979158+00"
    return int(datetime.fromisoformat(text).timestamp() * 1000)
