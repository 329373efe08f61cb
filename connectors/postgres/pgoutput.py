"""pgoutput (logical replication protocol 1) decoding: bytes from the stream in, events out. No I/O
except the :class:`~connectors.postgres.decoding.Catalog`'s reads.

pgoutput is PostgreSQL's own output plugin, the one its subscribers and Debezium use: compact
binary messages, each value as its type's text output. A table is described once by a ``R``
(relation) message (names, type oids and modifiers, which columns identify a row), sent before its
first change of a session and again after the table changed; its changes then carry only the
relation's id and the values. Per message:

- ``B`` begin: the commit's LSN, its time, the xid. The event id (``{commit_lsn}:{index}``) is
  known before the first row, as with wal2json's ``include-lsn``.
- ``I`` / ``U`` / ``D`` with tuples of values: ``t`` text, ``n`` null, ``u`` an unchanged
  TOASTed value the WAL does not hold (said outright, where wal2json leaves the column out).
  An update carries the old key (``K``) when it changed, or the whole old row (``O``) under
  REPLICA IDENTITY FULL; a delete one of the two.
- ``T`` truncate of several relations, ``C`` commit with the end of the commit record (the
  position to confirm). ``O`` origin and ``Y`` type carry nothing for us.
- ``M`` a logical decoding message (only when started with ``messages``, PostgreSQL 14 and
  later, the oldest cdc supports; the connector asks for it when it publishes messages): flags (1:
  transactional), its LSN, the prefix, the content's length and bytes, exact.

The position of a change is the XLogData message's start, which the caller passes in: for a row
change, the change's own LSN, as wal2json's ``lsn``.

Values come out as wal2json gives them (:data:`~connectors.postgres.decoding.JSON_KINDS`), so
events are the same whichever plugin decoded them, with one gain: ``NaN`` and ``±Infinity`` of
floats and numerics are the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"`` (wal2json 2.5
writes ``null``), as snapshot reads carry them.
"""

from __future__ import annotations

__all__ = [
    "PGOUTPUT",
    "PgOutputDecoder",
    "has_c_tuples",
    "pgoutput_options",
]

import logging
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from cdc.config import ConnectorConfig
from cdc.errors import CdcError
from cdc.events import UNAVAILABLE, Change, Row
from connectors.postgres.decoding import (
    JSON_KINDS,
    Begin,
    Catalog,
    Commit,
    Message,
    RowDecoder,
    TableInfo,
)

log = logging.getLogger(__name__)

try:
    from connectors.postgres._tuples import row as _native_row
except ImportError:  # built where no C compiler was: the Python loop of _tuple does the same
    _native_row = None  # type: ignore[assignment]

_PG_EPOCH_MS = 946_684_800_000
_BEGIN = struct.Struct(">Qqi")  # final (commit) LSN, commit time (µs since 2000), xid
_COMMIT = struct.Struct(">BQQq")  # flags, commit LSN, end LSN, commit time
_U32 = struct.Struct(">I")
_I32 = struct.Struct(">i")
_H16 = struct.Struct(">H")
_RELATION_COLUMN = struct.Struct(">Ii")  # type oid, type modifier
_IGNORED = frozenset(b"OY")  # origin, type
_MESSAGE = struct.Struct(">BQ")  # flags, LSN

Convert = Callable[[bytes], object] | None


def has_c_tuples() -> bool:
    """Whether tuples are decoded in C (:mod:`connectors.postgres._tuples` was built)."""
    return _native_row is not None


def pgoutput_options(publication: str, messages: bool = False) -> dict[str, str]:
    """``START_REPLICATION`` options: protocol 1 (every PostgreSQL from 10), text values;
    ``messages``: logical decoding messages too (PostgreSQL 14 and later, as cdc)."""
    options = {"proto_version": "1", "publication_names": publication}
    if messages:
        options["messages"] = "true"
    return options


def _float(raw: bytes) -> object:
    # NaN and ±Infinity have no JSON number: they stay text, as in snapshot reads.
    return float(raw) if raw[-1] in b"0123456789" else raw.decode()


def _bytea(raw: bytes) -> object:
    return raw[2:].decode()  # "\x00ff": events carry the hex digits only


def _bool(raw: bytes) -> object:
    return raw == b"t"


_CONVERT: dict[str, Convert] = {"i": int, "f": _float, "b": _bool, "x": _bytea}


@dataclass(frozen=True, slots=True)
class _Relation:
    """What a ``R`` message said of a table, ready for decoding its rows."""

    schema: str
    table: str
    wanted: bool
    names: tuple[str, ...]
    converts: tuple[Convert, ...]
    kinds: bytes
    """Per column, its :data:`JSON_KINDS` letter (``s`` for text): the converts, for C."""
    types: tuple[tuple[str, str], ...]
    identity: tuple[bool, ...]
    """Per column: part of the replica identity (what a ``K`` old tuple holds)."""
    key: tuple[str, ...] | None
    """The event key's columns (see :meth:`PgOutputDecoder._identify`); None when the table
    has none."""
    whole_row_key: bool
    full: bool = False
    """REPLICA IDENTITY FULL: an update's or delete's old tuple is the whole old row."""
    drop: tuple[str, ...] = ()
    """Generated columns the publication sends (PostgreSQL 18 can): left out, as elsewhere."""
    identity_types: tuple[tuple[str, str], ...] = field(init=False, repr=False, compare=False)
    """``types`` of the replica identity's columns: a delete's with a ``K`` old tuple. One tuple
    for all of them, so the ``cdc-types`` header made of it is made once (cached by identity)."""

    def __post_init__(self) -> None:
        flagged = {n for n, ident in zip(self.names, self.identity, strict=True) if ident}
        kept = tuple(t for t in self.types if t[0] in flagged)
        object.__setattr__(self, "identity_types", kept)


class PgOutputDecoder(RowDecoder):
    """Turns a slot's pgoutput messages into :class:`Begin`, :class:`Change`, :class:`Commit`."""

    def __init__(
        self,
        catalog: Catalog,
        selected: Callable[[str, str], bool],
        root: Callable[[str, str, int], tuple[str, str]] | None = None,
    ) -> None:
        super().__init__(catalog, selected, root)
        self._relations: dict[int, _Relation] = {}
        self._known: dict[int, TableInfo] = {}
        """The catalog's last answer per relation OID: a table's key after it was dropped."""
        self._read_all = False
        self._by_name: dict[tuple[str, str], TableInfo | None] = {}
        """Per table name in the stream, what its relation's OID read (:meth:`_table_info`)."""
        self._names: dict[int, tuple[str, str]] = {}
        """Per relation id, the table's own name (``_Relation`` holds the published one)."""

    def decode(
        self, payload: bytes, lsn: int
    ) -> Begin | Change | tuple[Change, ...] | Commit | Message | None:
        """One pgoutput message; ``lsn`` is where the stream said it starts."""
        kind = payload[0]
        if kind == 73:  # I
            rel = self._relation(payload, "I")
            if not rel.wanted:
                return None
            after, unavailable = self._tuple(payload, 6, rel)[:2]
            self._whole_row_key = rel.whole_row_key
            key = self._key(rel.schema, rel.table, after, rel.key) if rel.key else None
            return self._change(
                "c", rel.schema, rel.table, key, None, after, lsn, unavailable, rel.types
            )
        if kind == 85:  # U
            return self._update_message(payload, lsn)
        if kind == 68:  # D
            rel = self._relation(payload, "D")
            if not rel.wanted:
                return None
            identity, _, _ = self._tuple(payload, 6, rel, old=payload[5])
            self._whole_row_key = rel.whole_row_key
            key = self._key(rel.schema, rel.table, identity, rel.key) if rel.key else None
            types = rel.identity_types if payload[5] == 75 else rel.types  # K: the identity's
            return self._change("d", rel.schema, rel.table, key, identity, None, lsn, (), types)
        if kind == 66:  # B
            commit_lsn, commit_us, xid = _BEGIN.unpack_from(payload, 1)
            return self._begin(
                xid & 0xFFFFFFFF, commit_lsn, commit_lsn + 1, _PG_EPOCH_MS + commit_us // 1000
            )
        if kind == 67:  # C
            _, _, end_lsn, _ = _COMMIT.unpack_from(payload, 1)
            return self._commit(end_lsn)
        if kind == 82:  # R
            self._describe(payload)
            return None
        if kind == 84:  # T
            return self._truncate(payload, lsn)
        if kind in _IGNORED:
            return None
        if kind == 77:  # M
            return self._logical_message(payload) if self.messages else None
        raise CdcError(f"pgoutput sent a message of unknown kind {chr(kind)!r}")

    def _logical_message(self, payload: bytes) -> Message:
        flags, lsn = _MESSAGE.unpack_from(payload, 1)
        end = payload.index(b"\0", 10)
        # A prefix is text; one in another encoding than UTF-8 still names a topic.
        prefix = payload[10:end].decode(errors="replace")
        size = _U32.unpack_from(payload, end + 1)[0]
        content = payload[end + 5 : end + 5 + size]
        return self._message(bool(flags & 1), prefix, bytes(content), lsn)

    def _relation(self, payload: bytes, kind: str) -> _Relation:
        relid = _U32.unpack_from(payload, 1)[0]
        rel = self._relations.get(relid)
        if rel is None:
            raise CdcError(
                f"pgoutput sent a {kind} change of relation {relid} before its R message"
            )
        return rel

    def _update_message(self, payload: bytes, lsn: int) -> Change | tuple[Change, ...] | None:
        rel = self._relation(payload, "U")
        if not rel.wanted:
            return None
        identity: Row | None = None
        pos = 5
        if payload[pos] in b"KO":
            identity, _, pos = self._tuple(payload, pos + 1, rel, old=payload[pos])
        if payload[pos] != 78:  # N
            raise CdcError(f"pgoutput update of {rel.schema}.{rel.table}: no new row")
        after, unavailable, _ = self._tuple(payload, pos + 1, rel)
        self._whole_row_key = rel.whole_row_key
        return self._update(
            rel.schema, rel.table, after, rel.types, identity, lsn, rel.key, unavailable, rel.full
        )

    @staticmethod
    def _tuple(
        payload: bytes, pos: int, rel: _Relation, old: int = 0
    ) -> tuple[Row, tuple[str, ...], int]:
        """The row at ``pos`` (TupleData), the columns whose unchanged TOASTed value it lacks,
        and where the row ends. ``old`` ``K``: only the replica identity's columns are real."""
        decoded = (
            None
            if _native_row is None
            else _native_row(payload, pos, rel.names, rel.kinds, UNAVAILABLE)
        )
        if decoded is None:  # no C, or a tuple it leaves to Python (which says what is wrong)
            decoded = PgOutputDecoder._python_tuple(payload, pos, rel)
        row, unavailable, pos = decoded
        if old == 75:  # K: the other columns are nulls standing for "not logged"
            row = {
                n: v
                for n, v, ident in zip(rel.names, row.values(), rel.identity, strict=True)
                if ident
            }
        if rel.drop:  # rare (a publication of PostgreSQL 18 that publishes generated columns)
            for name in rel.drop:
                row.pop(name, None)
            unavailable = tuple(c for c in unavailable if c not in rel.drop)
        return row, unavailable, pos

    @staticmethod
    def _python_tuple(payload: bytes, pos: int, rel: _Relation) -> tuple[Row, tuple[str, ...], int]:
        """What :func:`~connectors.postgres._tuples.row` does, in Python."""
        count = _H16.unpack_from(payload, pos)[0]
        if count != len(rel.names):
            raise CdcError(
                f"pgoutput sent {count} values for {rel.schema}.{rel.table}, whose R message"
                f" had {len(rel.names)} columns"
            )
        pos += 2
        values: list[object] = []
        append = values.append
        unavailable: list[str] = []
        unpack = _I32.unpack_from
        for convert in rel.converts:
            kind = payload[pos]
            if kind == 116:  # t: text
                end = pos + 5 + unpack(payload, pos + 1)[0]
                raw = payload[pos + 5 : end]
                pos = end
                append(raw.decode() if convert is None else convert(raw))
            elif kind == 110:  # n: null
                append(None)
                pos += 1
            elif kind == 117:  # u: unchanged TOASTed value
                unavailable.append(rel.names[len(values)])
                append(UNAVAILABLE)
                pos += 1
            else:
                raise CdcError(
                    f"pgoutput sent a value of kind {chr(kind)!r} for {rel.schema}.{rel.table}"
                    f".{rel.names[len(values)]} (only text values are asked for)"
                )
        # One dict from two lists: faster than setting the columns one by one.
        return dict(zip(rel.names, values, strict=True)), tuple(unavailable), pos

    def _describe(self, payload: bytes) -> None:
        relid = _U32.unpack_from(payload, 1)[0]
        schema, pos = _cstring(payload, 5)
        table, pos = _cstring(payload, pos)
        schema = schema or "pg_catalog"
        replident = payload[pos]
        own = (schema, table)
        count = _H16.unpack_from(payload, pos + 1)[0]
        pos += 3
        names: list[str] = []
        columns: list[tuple[int, int]] = []
        identity: list[bool] = []
        for _ in range(count):
            flags = payload[pos]
            name, pos = _cstring(payload, pos + 1)
            columns.append(_RELATION_COLUMN.unpack_from(payload, pos))
            pos += _RELATION_COLUMN.size
            names.append(name)
            identity.append(bool(flags & 1))
        route = self._route(schema, table, fresh=True)
        wanted = route is not None
        if route is not None:
            schema, table = route
        self._forget_shape(schema, table)
        key: tuple[str, ...] | None = None
        whole_row_key = False
        types: tuple[tuple[str, str], ...] = ()
        drop: tuple[str, ...] = ()
        if wanted:
            key, whole_row_key, drop = self._identify(
                relid, replident, names, identity, schema, table
            )
            types = tuple(
                (n, self._catalog.type_name(oid, typmod))
                for n, (oid, typmod) in zip(names, columns, strict=True)
                if n not in drop
            )
        self._names[relid] = own
        self._relations[relid] = _Relation(
            schema=schema,
            table=table,
            wanted=wanted,
            names=tuple(names),
            converts=tuple(_CONVERT.get(JSON_KINDS.get(oid, "s")) for oid, _ in columns),
            kinds="".join(JSON_KINDS.get(oid, "s") for oid, _ in columns).encode(),
            types=types,
            identity=tuple(identity),
            key=key,
            whole_row_key=whole_row_key,
            full=replident == 102,
            drop=drop,
        )

    def _table_info(self, schema: str, table: str) -> TableInfo | None:
        """What :meth:`_identify` read by the relation's OID at its last ``R`` message: the
        table may have another name now, or none."""
        return self._by_name.get((schema, table))

    def _identify(
        self,
        relid: int,
        replident: int,
        names: list[str],
        identity: list[bool],
        schema: str,
        table: str,
    ) -> tuple[tuple[str, ...] | None, bool, tuple[str, ...]]:
        """The event key's columns, whether the key is the whole row, and the generated columns
        to leave out, for a relation as its ``R`` message describes it.

        The message is the truth of the moment the change was written: it names the replica
        identity's columns, even of a table renamed or dropped since. What it does not say, the
        primary key's column order (the key's JSON, which picks its partition, follows it) and
        whether a table of REPLICA IDENTITY FULL has one, is read by the table's OID, which a
        rename keeps; for a table dropped since, what this session read of the OID before (it
        reads every table's when it describes its first)."""
        if not self._read_all:
            # Every table's, once a session: a table dropped while the session lags behind
            # is then still known when its changes come.
            self._known.update(self._catalog.relations(xid=self._xid))
            self._read_all = True
        now = self._catalog.relation(relid, xid=self._xid)
        if now is not None:
            self._known[relid] = now
        info = now if now is not None else self._known.get(relid)
        self._by_name[(schema, table)] = info
        pk = info.key if info is not None and info.has_primary_key else ()
        if not set(pk) <= set(names):
            pk = ()  # the table changed since this message: its key then is not this one's
        flagged = tuple(n for n, ident in zip(names, identity, strict=True) if ident)
        drop = tuple(n for n in names if info is not None and n in info.generated)
        if replident == 100:  # d: the primary key's columns are flagged
            return (pk if set(pk) == set(flagged) else flagged) or None, False, drop
        if replident == 105:  # i: a unique index's, flagged; the primary key is the key
            return pk or flagged or None, False, drop
        if replident == 102:  # f: every column flagged; without a primary key, the whole row
            if pk:
                return pk, False, drop
            return tuple(n for n in names if n not in drop), True, drop
        return pk or None, False, drop  # n: nothing identifies a row

    def _truncate(self, payload: bytes, lsn: int) -> tuple[Change, ...] | None:
        count = _U32.unpack_from(payload, 1)[0]
        changes = []
        for i in range(count):
            relid = _U32.unpack_from(payload, 6 + 4 * i)[0]
            rel = self._relations.get(relid)
            if rel is None:
                raise CdcError(f"pgoutput sent a truncate of relation {relid} before its R message")
            if rel.wanted and self._truncate_once(self._names[relid], (rel.schema, rel.table), lsn):
                self._whole_row_key = False
                changes.append(self._change("t", rel.schema, rel.table, None, None, None, lsn))
        return tuple(changes) or None


def _cstring(payload: bytes, pos: int) -> tuple[str, int]:
    end = payload.index(b"\0", pos)
    return payload[pos:end].decode(), end + 1


class PgOutputPlugin:
    """pgoutput in the decoder registry: its decoder and its ``START_REPLICATION`` options."""

    name = "pgoutput"
    publication = True
    binary = True
    install_hint = ""
    probe_options = pgoutput_options("cdc_check_probe")

    @staticmethod
    def options(
        config: ConnectorConfig, partition_schemas: frozenset[str] = frozenset()
    ) -> dict[str, str]:
        return pgoutput_options(config.publication, messages=bool(config.messages))

    @staticmethod
    def decoder(
        catalog: Catalog,
        selected: Callable[[str, str], bool],
        root: Callable[[str, str, int], tuple[str, str]] | None = None,
        subject: str = "cdc",
    ) -> PgOutputDecoder:
        if not has_c_tuples():
            log.warning(
                "%s: pgoutput's values are decoded in Python, at about half the speed: cdc was"
                " installed without its C extension (no C compiler)",
                subject,
            )
        return PgOutputDecoder(catalog, selected, root)


PGOUTPUT = PgOutputPlugin()
