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
Integers (up to 64 bits) parse exactly as they are, and so do floats (PostgreSQL prints them in
their shortest exact form, which orjson reads back to the same double), except those printed
without a point or an exponent (``-0``, ``1``): a JSON parser reads them as integers, ``-0`` as
the integer 0. So the integers a message's ``real`` and ``double precision`` columns hold (the
message's types say which, see :meth:`Wal2JsonDecoder._layout`) become floats again; a zero that
may have been ``-0`` makes the decoder parse the message again, with a ``.0`` after each such
value. The values are then the floats pgoutput and snapshot reads give, and are written as the
same JSON text (``-0.0``, ``1.0``).

A logical message's (``M``) content is what wal2json 2.5 prints: the bytes up to the first NUL
(it reads the content as a C string), JSON-escaped but not made valid UTF-8, so the object may
not be JSON a parser accepts; the content is then read from the bytes themselves
(:func:`_raw_message`). Bytes after a NUL are lost, which pgoutput does not lose.
"""

from __future__ import annotations

__all__ = [
    "WAL2JSON",
    "WAL2JSON_OPTIONS",
    "Begin",
    "Catalog",
    "Commit",
    "TableInfo",
    "Wal2JsonDecoder",
    "wal2json_table_options",
]

import operator
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson

from cdc.config import ConnectorConfig
from cdc.errors import CdcError
from cdc.events import Change, Row
from cdc.globs import compile_globs, is_plain
from connectors.postgres.decoding import Begin, Catalog, Commit, Message, RowDecoder, TableInfo
from connectors.postgres.owntables import SIGNAL_TABLE
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
# A float printed as an integer ("-0", "1"); the look-ahead leaves "1e+20" and "0.5" alone.
_INTEGRAL_FLOAT = re.compile(rb'"type":"(?:real|double precision)","value":-?[0-9]+(?=[,}])')
_FLOAT_TYPES = frozenset({"real", "double precision"})
_MESSAGE_START = b'{"action":"M"'
_CONTENT = b',"content":"'
"""Where an ``M`` object's content starts: inside a JSON string quotes are escaped, so only the
field itself holds these bytes."""
_UNESCAPE = re.compile(rb'\\(["\\/bfnrt]|u[0-9a-fA-F]{4})')
_ESCAPES = {
    b'"': b'"',
    b"\\": b"\\",
    b"/": b"/",
    b"b": b"\b",
    b"f": b"\f",
    b"n": b"\n",
    b"r": b"\r",
    b"t": b"\t",
}
_UNKNOWN: Any = object()
_NAME = operator.itemgetter("name")
_NAME_VALUE = operator.itemgetter("name", "value")
_NAME_TYPE = operator.itemgetter("name", "type")
Types = tuple[tuple[str, str], ...]


_Shape = tuple[int, frozenset[str], tuple[tuple[str, ...], tuple[str, ...]] | None]
_UNSEEN: _Shape = (-1, frozenset(), None)


class Wal2JsonDecoder(RowDecoder):
    """Turns a slot's wal2json messages into :class:`Begin`, :class:`Change`, :class:`Commit`."""

    def __init__(
        self,
        catalog: Catalog,
        selected: Callable[[str, str], bool],
        root: Callable[[str, str, int], tuple[str, str]] | None = None,
    ) -> None:
        super().__init__(catalog, selected, root)
        self._layouts: dict[tuple[str, str, bool], tuple[Types, tuple[str, ...]]] = {}
        self._pairs: dict[tuple[str, str], set[tuple[str, str]]] = {}
        """Every ``(column, type)`` each table's changes have shown."""
        self._tables: dict[tuple[str, str], _Shape] = {}
        """Per table seen, :meth:`_table_shape`: one lookup a row, where the selection was one."""

    def decode(  # noqa: PLR0912, PLR0915  (one piece: a call more would cost every row)
        self, payload: bytes, lsn: int = 0
    ) -> Begin | Change | tuple[Change, ...] | Commit | Message | None:
        """``lsn``, the message's position in the stream, is not needed: wal2json says it."""
        if b'"numeric' in payload:
            payload = _quote_numerics(payload)
        try:
            msg = orjson.loads(payload)
        except orjson.JSONDecodeError:
            if payload.startswith(_MESSAGE_START):  # content that is not UTF-8
                return self._raw_message(payload) if self.messages else None
            raise
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
            if not self.messages:
                return None
            return self._message(
                msg["transactional"],
                msg["prefix"],
                msg["content"].encode(),
                parse_lsn(msg["lsn"]),
            )
        name = (msg["schema"], msg["table"])
        route = self._routes.get(name, _UNKNOWN)
        if route is _UNKNOWN:
            route = self._route(*name)
        if route is None:
            return None  # not captured
        columns = msg.get("columns", ())
        shape = self._tables.get(name, _UNSEEN)
        if shape is _UNSEEN:  # the table wal2json names (a partition: its own columns)
            shape = self._table_shape(*name, len(columns), refresh=False)
        schema, table = route
        lsn = parse_lsn(msg["lsn"])
        if action == "T":
            if not self._truncate_once(name, route, lsn):
                return None
            self._whole_row_key = False
            return self._change("t", schema, table, None, None, None, lsn)
        if action not in ("I", "U", "D"):
            raise CdcError(f"wal2json sent an unknown action {action!r}")
        width, generated, reorder = shape
        if len(columns) > width or (action == "I" and len(columns) != width):
            # A column added or dropped since this table was first seen: generated or not?
            width, generated, reorder = self._table_shape(*name, len(columns), True)
        deleted = action == "D"
        if generated:
            _strip(msg, generated)
        columns = msg.get("identity" if deleted else "columns", ())
        types, floats = self._layout(schema, table, deleted, columns)
        after = None if deleted else _row(columns)
        identity = _row(msg["identity"]) if "identity" in msg else None
        if floats and not (_floats(after, floats, payload) and _floats(identity, floats, payload)):
            # A zero that may be -0, whose sign the parser dropped: parse it again, pointed.
            msg = orjson.loads(_point_floats(payload))
            if generated:
                _strip(msg, generated)
            after = None if deleted else _row(msg["columns"])
            identity = _row(msg["identity"]) if "identity" in msg else None
        pk = msg.get("pk")
        pk_names = tuple(map(_NAME, pk)) if pk else None
        if reorder is not None and pk_names == reorder[0]:
            pk_names = reorder[1]
        self._whole_row_key = self._whole_row(schema, table, pk_names)
        if after is None:
            identity = identity or {}
            key = self._key(schema, table, identity, pk_names)
            return self._change("d", schema, table, key, identity, None, lsn, (), types)
        if action == "I":
            key = self._key(schema, table, after, pk_names)
            return self._change("c", schema, table, key, None, after, lsn, (), types)
        old = msg.get("identity")
        if old is not None and len(old) > len(columns):
            # REPLICA IDENTITY FULL: the old row has every column, the unchanged TOASTed ones
            # left out of ``columns`` too, whose values the event will carry: its types.
            names = frozenset(map(_NAME, old))
            if all(c["name"] in names for c in columns):
                types = self._layout(schema, table, True, old)[0]
        return self._update(schema, table, after, types, identity, lsn, pk_names)

    def _raw_message(self, payload: bytes) -> Message:
        """An ``M`` object that is not valid JSON: its content (the last field) is taken as
        the bytes wal2json printed, unescaped; the fields before it are JSON."""
        start = payload.find(_CONTENT)
        if start < 0 or not payload.endswith(b'"}'):
            raise CdcError(f"wal2json sent a message that cannot be read: {payload[:200]!r}")
        head = orjson.loads(payload[:start].decode(errors="replace") + "}")
        content = _UNESCAPE.sub(_unescaped, payload[start + len(_CONTENT) : -2])
        return self._message(head["transactional"], head["prefix"], content, parse_lsn(head["lsn"]))

    def _layout(
        self, schema: str, table: str, deleted: bool, columns: Any
    ) -> tuple[Types, tuple[str, ...]]:
        """The columns' ``(name, type)`` pairs, and the float columns' names. The same tuple while
        a table's columns stay the same, so the ``cdc-types`` header made of it is made once
        (:func:`cdc.events.encode` caches it by identity); a delete's identity columns are
        apart. A float column may appear at any change (``ALTER COLUMN ... TYPE``): the pairs
        are compared every time, which costs less than searching the payload for float types."""
        types = tuple(map(_NAME_TYPE, columns))
        known = self._layouts.get((schema, table, deleted))
        if known is None or known[0] != types:
            if len(self._layouts) >= 4096:  # tables dropped long ago
                self._layouts.clear()
                self._pairs.clear()
            seen = self._pairs.setdefault((schema, table), set())
            if not seen.issuperset(types):
                # A column or a type not seen before (not an update leaving a TOASTed value
                # out): the table may have changed; its next change learns its shape again.
                seen.update(types)
                self._forget_shape(schema, table)
            floats = tuple(n for n, t in types if t in _FLOAT_TYPES)
            known = self._layouts[(schema, table, deleted)] = (types, floats)
        return known

    def _table_shape(self, schema: str, table: str, seen: int, refresh: bool) -> _Shape:
        """How many columns wal2json prints for a table (a partition: its own);
        which are generated (wal2json prints them; events leave them out, as pgoutput does);
        and, when the primary key's order is not its columns' (wal2json names them in the
        columns' order), that order (the key's JSON, which picks the partition, follows it,
        as in snapshot reads). ``seen``: how many columns this message has, trusted when the
        catalog disagrees (the table was dropped or renamed since), so that a mismatch costs
        one read, not one a row; what was known before stays then."""
        info = self._catalog.table(schema, table, refresh=refresh, xid=self._xid)
        known = self._tables.get((schema, table))
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
        self._tables[(schema, table)] = shape
        return shape


def _quote_numerics(payload: bytes) -> bytes:
    """Every bare numeric value in quotes (slicing: faster than ``re.sub``'s template)."""
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


def _floats(row: Row | None, floats: tuple[str, ...], payload: bytes) -> bool:
    """Float columns' values that the parser read as integers made floats again: False, and
    ``row`` half done, when one is a zero that may have been ``-0``."""
    if row is None:
        return True
    for name in floats:
        value = row.get(name)
        if type(value) is int:
            if not value and (b":-0," in payload or b":-0}" in payload):
                return False
            row[name] = float(value)  # the double float(text) gives: both round alike
    return True


def _point_floats(payload: bytes) -> bytes:
    """``.0`` after every float value printed as an integer, so it parses as a float; the payload
    itself when there is none."""
    parts: list[bytes] = []
    last = 0
    for match in _INTEGRAL_FLOAT.finditer(payload):
        end = match.end()
        parts += (payload[last:end], b".0")
        last = end
    if not parts:
        return payload
    parts.append(payload[last:])
    return b"".join(parts)


def _strip(msg: dict[str, Any], generated: frozenset[str]) -> None:
    """Leave the generated columns out of a message (pgoutput leaves them out too)."""
    for part in ("columns", "identity"):
        if part in msg:
            msg[part] = [c for c in msg[part] if c["name"] not in generated]


def _unescaped(match: re.Match[bytes]) -> bytes:
    escape = match.group(1)
    if escape[0] == 117:  # u: a control character (wal2json escapes nothing else so)
        return chr(int(escape[1:], 16)).encode()
    return _ESCAPES[escape]


def _row(columns: Any) -> Row:
    return dict(map(_NAME_VALUE, columns))


def _ts_ms(text: str) -> int:
    # wal2json: "2026-11-27 05:30:18.979158+00"
    return int(datetime.fromisoformat(text).timestamp() * 1000)


class Wal2JsonPlugin:
    """wal2json in the decoder registry: its decoder and its ``START_REPLICATION`` options."""

    name = "wal2json"
    publication = False
    binary = False
    install_hint = "install the server package postgresql-NN-wal2json"
    probe_options = {"format-version": "2"}  # noqa: RUF012  (read only)

    @staticmethod
    def options(
        config: ConnectorConfig, partition_schemas: frozenset[str] = frozenset()
    ) -> dict[str, str]:
        return {**WAL2JSON_OPTIONS, **wal2json_table_options(config, partition_schemas)}

    @staticmethod
    def decoder(
        catalog: Catalog,
        selected: Callable[[str, str], bool],
        root: Callable[[str, str, int], tuple[str, str]] | None = None,
        subject: str = "cdc",
    ) -> Wal2JsonDecoder:
        return Wal2JsonDecoder(catalog, selected, root)


WAL2JSON = Wal2JsonPlugin()


def _escape(part: str) -> str:
    return "".join("\\" + ch if ch in " ',.*\\" else ch for ch in part)


def _pushable(glob: str) -> str | None:
    schema, _, table = glob.partition(".")
    parts = []
    for part in (schema, table):
        if part == "*":
            parts.append("*")
        elif is_plain(part):
            parts.append(_escape(part))
        else:
            return None
    return ".".join(parts)


def wal2json_table_options(
    config: ConnectorConfig, partition_schemas: frozenset[str] = frozenset()
) -> dict[str, str]:
    """``add-tables`` / ``filter-tables`` for the globs wal2json can apply itself.

    wal2json understands only whole-part wildcards (``public.*``, ``*.orders``). Where every
    include glob is of that form, wal2json skips unselected tables before they cost anything;
    otherwise the connector filters them after decoding. Either way the result is the same.

    wal2json names a partition's changes by the partition, whose name the globs need not
    match when it is published under its partitioned table's name (``partitions = "root"``):
    then only whole schemas are pushed (``SCHEMA.*``), when they hold every partition of the
    captured partitioned tables (``partition_schemas``), and no exclusion is.
    """
    options = {}
    root = config.partitions == "root"
    includes = [_pushable(g) for g in config.tables]
    if root and not all(i and i.endswith(".*") and not i.startswith("*.") for i in includes):
        includes = [None]
    if root and not partition_schemas <= {i[:-2] for i in includes if i}:
        includes = [None]
    if "*.*" not in includes and all(includes):
        # The signal table carries snapshot watermarks and requests: always decoded.
        signal = ".".join(SIGNAL_TABLE)
        options["add-tables"] = ",".join([*(i for i in includes if i), signal])
    # An exclusion that would hide the signal table from wal2json is left to the connector,
    # which never publishes the cdc schema anyway.
    excludes = [
        e
        for g in config.exclude_tables
        if (e := _pushable(g)) and not compile_globs([g]).match(".".join(SIGNAL_TABLE))
    ]
    if excludes and not root:
        options["filter-tables"] = ",".join(excludes)
    return options
