"""What both output plugins' decoders share: the table metadata they consult, the transaction
markers they return, and the making of :class:`~cdc.events.Change`\\ s from decoded rows.

A decoder (:mod:`~connectors.postgres.wal2json`, :mod:`~connectors.postgres.pgoutput`) parses its
plugin's bytes into rows; :class:`RowDecoder` turns rows into events the same way for both: key
columns, an update that moved a row to another key, unchanged TOASTed values, the event id's
transaction position. No I/O except through the :class:`Catalog`.
"""

from __future__ import annotations

__all__ = [
    "JSON_KINDS",
    "NOT_NUMBERS",
    "Begin",
    "Catalog",
    "Commit",
    "Message",
    "RowDecoder",
    "TableInfo",
]

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from cdc.events import UNAVAILABLE, Change, Row

log = logging.getLogger(__name__)

JSON_KINDS = {20: "i", 21: "i", 23: "i", 26: "i", 700: "f", 701: "f", 16: "b", 17: "x"}
"""Type oid -> how an event carries a value given as its type's text output, as wal2json does:
``i`` a JSON integer (int8, int2, int4, oid), ``f`` a JSON float (float4, float8), ``b`` a JSON
boolean, ``x`` bytea's hex digits without ``\\x``; any other type (numeric too, to stay exact)
the text itself."""
NOT_NUMBERS = frozenset({"NaN", "Infinity", "-Infinity"})
"""Float texts JSON has no number for: they stay strings."""


@dataclass(frozen=True, slots=True)
class TableInfo:
    """What the decoder needs to know of a table beyond what the plugin says."""

    columns: tuple[str, ...]
    key: tuple[str, ...]
    """Primary key, else replica-identity index columns, else (REPLICA IDENTITY FULL) every
    column, else nothing."""
    identity: Literal["default", "full", "index", "nothing"]
    has_primary_key: bool = True
    generated: tuple[str, ...] = ()
    """Generated columns: not in ``columns``, left out of every event (the target computes
    them if its table defines them)."""
    missing: tuple[tuple[str, str], ...] = ()
    """``(column, text)`` of columns added with a default that rows written before hold
    (PostgreSQL's ``attmissingval``): the ``cdc-missing`` header."""
    toastable: frozenset[str] | None = None
    """Columns whose values may be TOASTed (variable length, not ``PLAIN``); None: any."""
    shape: frozenset[tuple[str, str]] | None = None
    """``(column, format_type)`` of every column, as the catalog says now; None: unknown."""
    unknown: frozenset[str] = frozenset()
    """Columns with a default (or NOT NULL) whose value in rows that predate them the catalog
    cannot tell (no ``attmissingval``: a volatile default, or the table was rewritten)."""
    relid: int = 0
    """The table's OID: what :meth:`Catalog.known_shape` is keyed by (it survives renames);
    0: unknown, nothing is compared."""
    column_set: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "column_set", frozenset(self.columns))

    @property
    def whole_row_key(self) -> bool:
        """No primary key and REPLICA IDENTITY FULL: the key is the whole row."""
        return not self.has_primary_key and self.identity == "full"


class Catalog(Protocol):
    """Table metadata, read from the source database (and cached) by the connector."""

    def table(
        self, schema: str, table: str, refresh: bool = False, xid: int = 0
    ) -> TableInfo | None:
        """``xid``: the transaction being decoded; a read from the database waits until it is
        visible (see :meth:`PostgresCatalog._see`)."""
        ...

    def current_values(
        self, schema: str, table: str, key: Row, columns: Sequence[str], xid: int = 0
    ) -> Row | None:
        """The row's present values of ``columns``, encoded as events carry them; None if gone.
        ``xid`` as for :meth:`table`."""
        ...

    def relation(self, relid: int, xid: int = 0) -> TableInfo | None:
        """The table whose OID is ``relid``, as it is now (a renamed table keeps its OID); None
        if it is gone. ``xid`` as for :meth:`table`."""
        ...

    def relations(self, xid: int = 0) -> dict[int, TableInfo]:
        """Every table there is now, by OID. ``xid`` as for :meth:`table`."""
        ...

    def type_name(self, oid: int, typmod: int) -> str:
        """``format_type(oid, typmod)``: the name the ``cdc-types`` header gives the type."""
        ...

    def known_shape(self, relid: int) -> tuple[str, dict[str, str]] | None:
        """``("schema.table", {column: type})`` the connector last published table ``relid``
        with (kept across restarts), or None."""
        ...

    def remember_shape(self, relid: int, name: str, columns: dict[str, str]) -> None: ...


@dataclass(slots=True)
class Begin:
    """Never changed once made; not ``frozen``, which makes building one, for every
    transaction, slower."""

    xid: int
    commit_lsn: int
    end_lsn: int
    """End of the commit record: the position to confirm once the transaction is on Kafka.
    pgoutput says it only at the commit; until then this is ``commit_lsn + 1``, which confirms
    the same transaction (a slot resumes with the first commit at or after its position)."""
    commit_ts_ms: int = 0
    """Commit time, milliseconds since the Unix epoch (the transaction topic's ``ts_ms``)."""


@dataclass(slots=True)
class Commit:
    """Never changed once made (not ``frozen``, as :class:`Begin`)."""

    xid: int
    commit_lsn: int
    end_lsn: int


@dataclass(slots=True)
class Message:
    """A logical decoding message (``pg_logical_emit_message``), decoded only when the connector
    publishes messages (:attr:`RowDecoder.messages`).

    A transactional one comes inside its transaction and takes the next index of the
    transaction's changes (its event id is ``{commit_lsn}:{index}``, as a change's); a
    non-transactional one comes between transactions, and is its own: ``commit_lsn`` is its
    ``lsn - 1`` (so that no change shares its id), ``index`` 0."""

    transactional: bool
    prefix: str
    content: bytes
    lsn: int
    """Where the server says the message is: the end of its WAL record (the position that,
    confirmed, makes the slot skip it, and no transaction committed after it)."""
    commit_lsn: int
    index: int
    xid: int | None
    """None for a non-transactional message."""
    commit_ts_ms: int
    """Its transaction's commit time; 0 for a non-transactional message."""
    last_commit_lsn: int
    total_order: int
    """1-based position in its transaction, counted with the changes (0: non-transactional)."""
    data_collection_order: int
    """1-based position among its transaction's messages of the same prefix."""


class RowDecoder:
    """Transaction state, and the making of events from one change's decoded rows."""

    def __init__(
        self,
        catalog: Catalog,
        selected: Callable[[str, str], bool],
        root: Callable[[str, str, int], tuple[str, str]] | None = None,
    ) -> None:
        """``selected``: whether a table (by the name its changes are published under) is
        captured. ``root``: the name a table's changes are published under, given the xid being
        decoded (a partition's partitioned table); None publishes every table under its own."""
        self._catalog = catalog
        self._selected = selected
        self._root = root
        self._xid = 0
        self._commit_lsn = 0
        self._last_commit_lsn = 0
        self._commit_ts_ms = 0
        self._index = 0
        self._per_table: dict[tuple[str, str], int] = {}
        self.messages = False
        """Decode logical decoding messages (:class:`Message`). False: the plugin's messages
        are dropped and take no index, so the changes' event ids are those of a connector that
        publishes no messages."""
        self._whole_row_key = False
        self._is_selected: dict[tuple[str, str], bool] = {}
        self._shapes: dict[tuple[str, str], tuple[int, tuple[tuple[str, str], ...]]] = {}
        """Per table: how many columns its rows last had in the stream, and its columns'
        missing values (:attr:`TableInfo.missing`) as the catalog said then."""
        self.rereads: list[tuple[str, str, str]] = []
        """``(schema, table, why)`` of keyed tables whose rows may hold values that no change
        in the stream carries (a column added or altered in a way the catalog cannot tell
        apart): the connector reads them again (an incremental snapshot) and clears this."""
        self._routes: dict[tuple[str, str], tuple[str, str] | None] = {}
        self._truncated_at: dict[tuple[str, str], int] = {}
        self.truncated: dict[tuple[str, str], set[tuple[str, str]]] = {}
        """In this transaction: per published table, the tables whose truncate it stands for
        (a partitioned table's partitions). Read at the commit: a partitioned table of which
        some partitions, not all, were truncated needs its other rows again."""

    def _begin(self, xid: int, commit_lsn: int, end_lsn: int, commit_ts_ms: int) -> Begin:
        self._xid = xid
        self._commit_lsn = commit_lsn
        self._commit_ts_ms = commit_ts_ms
        self._index = 0
        self._per_table.clear()
        self.truncated.clear()
        self._truncated_at.clear()
        return Begin(xid, commit_lsn, end_lsn, commit_ts_ms)

    def _commit(self, end_lsn: int) -> Commit:
        # source.sequence's first LSN, as Debezium's: where the commit record ends (the
        # position it reads the COMMIT at), not where it starts
        self._last_commit_lsn = end_lsn
        return Commit(self._xid, self._commit_lsn, end_lsn)

    def _message(self, transactional: bool, prefix: str, content: bytes, lsn: int) -> Message:
        if not transactional:
            # Its id is {lsn - 1}:0: lsn ends the message's WAL record, where the next (a
            # commit, whose {commit_lsn}:0 is a change's id) may start; lsn - 1 is inside the
            # message's own record, where no other record starts.
            return Message(
                False, prefix, content, lsn, lsn - 1, 0, None, 0, self._last_commit_lsn, 0, 0
            )
        index = self._index
        self._index = index + 1
        # Apart from the tables' counts: a prefix is no table.
        key = ("\0message", prefix)
        per_prefix = self._per_table.get(key, 0) + 1
        self._per_table[key] = per_prefix
        return Message(
            True,
            prefix,
            content,
            lsn,
            self._commit_lsn,
            index,
            self._xid,
            self._commit_ts_ms,
            self._last_commit_lsn,
            index + 1,
            per_prefix,
        )

    def _route(self, schema: str, table: str, fresh: bool = False) -> tuple[str, str] | None:
        """The name ``schema.table``'s changes are published under, None when not captured.
        Cached per name; ``fresh`` asks the catalog again (pgoutput's relation messages)."""
        key = (schema, table)
        if not fresh and key in self._routes:
            return self._routes[key]
        published = key if self._root is None else self._root(schema, table, self._xid)
        route = self._routes[key] = published if self._selected(*published) else None
        return route

    def forget_routes(self) -> None:
        """Partitions were attached or detached: look every table's root up again."""
        self._routes.clear()

    def _truncate_once(self, name: tuple[str, str], route: tuple[str, str], lsn: int) -> bool:
        """Whether a truncate of ``name``, published as a truncate of ``route``, is the first of
        ``route`` in its statement (at ``lsn``): a partitioned table's truncate names its
        partitions too, and its target is emptied once."""
        self.truncated.setdefault(route, set()).add(name)
        if self._truncated_at.get(route) == lsn:
            return False
        self._truncated_at[route] = lsn
        return True

    def _update(
        self,
        schema: str,
        table: str,
        after: Row,
        types: tuple[tuple[str, str], ...],
        identity: Row | None,
        lsn: int,
        pk: Sequence[str] | None,
        unavailable: tuple[str, ...] | None = None,
        full: bool | None = None,
    ) -> Change | tuple[Change, ...]:
        """``unavailable``: the columns whose unchanged TOASTed value the plugin did not send,
        already ``UNAVAILABLE`` in ``after`` (pgoutput says which); None when the plugin leaves
        them out without a word (wal2json), so the catalog's column list tells. ``full``: REPLICA
        IDENTITY FULL, when the plugin says so (pgoutput); None: the catalog tells."""
        info = None
        if unavailable is None or full is None:
            info = self._catalog.table(schema, table, xid=self._xid)
        if unavailable is None:
            unavailable = ()
            if info is not None and (
                len(after) < len(info.columns) or not after.keys() <= info.column_set
            ):
                if not after.keys() <= info.column_set or _dropped(after, info):
                    info = self._catalog.table(schema, table, refresh=True, xid=self._xid)
                if info is not None:
                    # An unchanged TOASTed value left out: never publish it as null.
                    unavailable = tuple(c for c in info.columns if c not in after)
                    for column in unavailable:
                        after[column] = UNAVAILABLE
        if unavailable and identity:
            # The old row holds the value (REPLICA IDENTITY FULL: PostgreSQL logs it whole,
            # TOASTed values included), and an unchanged value is the old one: publish it, as
            # Debezium does. Filled before the keys are made: a whole-row key holds it too.
            unavailable = _fill(after, identity, unavailable)
        new_key = self._key(schema, table, after, pk)
        old_key = self._key(schema, table, identity, pk) if identity is not None else new_key
        if full is None:
            full = info is not None and info.identity == "full"
        before = identity if full else None
        if (
            old_key is not None
            and new_key is not None
            and (
                old_key != new_key
                # Python's -0.0 == 0.0: a whole-row key must still tell the rows apart
                or (self._whole_row_key and _negative_zeros(old_key) != _negative_zeros(new_key))
            )
        ):
            # The row moved to another key: as Debezium does, a delete of the old key and a
            # create of the new one, so each key's partition sees its own history in order.
            if unavailable:
                # The create must carry the whole row, but PostgreSQL did not log the unchanged
                # TOASTed values, and the old row the sink holds is not at this key. Read them
                # from the source now: if they changed since, a later event brings the same
                # values or deletes the row, so the target ends where the source is.
                found = self._catalog.current_values(schema, table, new_key, unavailable, self._xid)
                if found is not None:
                    after.update(found)
                    unavailable = tuple(c for c in unavailable if c not in found)
            return (
                self._change("d", schema, table, old_key, identity, None, lsn, (), types),
                self._change("c", schema, table, new_key, None, after, lsn, unavailable, types),
            )
        return self._change("u", schema, table, new_key, before, after, lsn, unavailable, types)

    def _key(
        self, schema: str, table: str, row: Row | None, pk: Sequence[str] | None
    ) -> Row | None:
        """``pk``: the primary key's columns when the plugin names them, else the catalog's key."""
        if row is None:
            return None
        names: Sequence[str]
        if pk:
            names = pk
        else:
            info = self._catalog.table(schema, table, xid=self._xid)
            if info is None or not info.key:
                return None
            names = info.key
        return {n: row.get(n) for n in names}

    def _whole_row(self, schema: str, table: str, pk: Sequence[str] | None) -> bool:
        if pk:
            return False
        info = self._catalog.table(schema, table, xid=self._xid)
        return info is not None and info.whole_row_key

    def _change(
        self,
        op: Literal["c", "u", "d", "t"],
        schema: str,
        table: str,
        key: Row | None,
        before: Row | None,
        after: Row | None,
        lsn: int,
        unavailable: tuple[str, ...] = (),
        types: tuple[tuple[str, str], ...] = (),
    ) -> Change:
        index = self._index
        self._index = index + 1
        per_table = self._per_table.get((schema, table), 0) + 1
        self._per_table[(schema, table)] = per_table
        missing: tuple[tuple[str, str], ...] = ()
        # A delete's old row (REPLICA IDENTITY FULL) says it too: a sink may add a column
        # from a batch that holds only deletes.
        image = after if after is not None else before
        if image is not None:
            shape = self._shapes.get((schema, table))
            if shape is None or len(image) > shape[0] or (op == "c" and len(image) < shape[0]):
                # New, or its columns changed (an insert carries them all; an update may leave
                # unchanged TOASTed values out): the catalog says which hold missing values.
                complete = after is not None and not unavailable
                shape = self._learn(schema, table, len(image), types, complete=complete)
            missing = shape[1]
        # Positional, in the order of Change's fields: faster than keywords, for every row
        # change.
        return Change(
            op,
            schema,
            table,
            key,
            before,
            after,
            self._commit_lsn,
            index,
            lsn,
            self._xid,
            self._commit_ts_ms,
            unavailable,
            types,
            key is not None and self._whole_row_key,  # whole_row_key
            "false",  # snapshot
            self._last_commit_lsn,
            index + 1,  # total_order
            per_table,  # data_collection_order
            missing,
        )

    def _learn(
        self,
        schema: str,
        table: str,
        width: int,
        types: tuple[tuple[str, str], ...],
        complete: bool,
    ) -> tuple[int, tuple[tuple[str, str], ...]]:
        """What the catalog says of the table now, for a change whose columns (and their types)
        are ``types``, all of the table's if ``complete``; compared with the columns the
        connector last published it with, so that a schema change is noticed."""
        info = self._table_info(schema, table)
        if info is None:
            self._shapes[(schema, table)] = (width, ())
            return (width, ())
        if complete and types and info.relid:
            self._compare(schema, table, info, {n: t.replace('"', "") for n, t in types})
        shape = self._shapes[(schema, table)] = (width, info.missing)
        return shape

    def _table_info(self, schema: str, table: str) -> TableInfo | None:
        """The catalog's view of a table whose shape changed in the stream, read again: what
        it said before this change may predate a column's addition."""
        return self._catalog.table(schema, table, refresh=True, xid=self._xid)

    def _compare(self, schema: str, table: str, info: TableInfo, columns: dict[str, str]) -> None:
        """Compare ``columns`` (a change's, all of them) with those the table was last published
        with; ask for it to be read again where its rows may hold values no change carries."""
        name = f"{schema}.{table}"
        known = self._catalog.known_shape(info.relid)
        if known is not None and known == (name, columns):
            return
        self._catalog.remember_shape(info.relid, name, columns)
        if known is None:
            return  # first seen: what came before is a snapshot's, or the table is new
        old_name, old = known
        why = []
        if old_name != name:
            why.append(f"renamed from {old_name}")
        added = [c for c in columns if c not in old]
        removed = [c for c in old if c not in columns]
        if added and removed:
            why.append(f"column(s) {', '.join(removed)} gone and {', '.join(added)} new (renamed?)")
        else:
            catalog = {(n, t.replace('"', "")) for n, t in info.shape or ()}
            ahead = info.shape is not None and not set(columns.items()) <= catalog
            for c in added:
                if ahead or c in info.unknown:
                    why.append(f"column {c} added with a value the catalog no longer tells")
            if ahead and not added:
                why.append("altered again since this change")
        why += [
            f"column {c} changed from {old[c]} to {t}"
            for c, t in columns.items()
            if c in old and old[c] != t
        ]
        if why:
            self._reread(schema, table, info, "; ".join(why))

    def _reread(self, schema: str, table: str, info: TableInfo, reason: str) -> None:
        """Ask for the table to be read again (:attr:`rereads`)."""
        if info.has_primary_key:
            self.rereads.append((schema, table, reason))
        else:
            log.warning(
                "%s.%s: %s; its rows may hold values no change carries, and a table without a"
                " primary key cannot be read again while streaming: its targets may differ",
                schema,
                table,
                reason,
            )

    def _forget_shape(self, schema: str, table: str) -> None:
        """The plugin says the table changed: learn its shape again at its next change."""
        self._shapes.pop((schema, table), None)


def _dropped(after: Row, info: TableInfo) -> bool:
    """Whether ``after`` lacks a column that cannot be an unchanged TOASTed value: the
    catalog's view predates a ``DROP COLUMN``."""
    if info.toastable is None:
        return False
    return any(c not in after and c not in info.toastable for c in info.columns)


def _fill(after: Row, old: Row, unavailable: tuple[str, ...]) -> tuple[str, ...]:
    """Put into ``after`` the ``unavailable`` columns' values that the ``old`` row holds; return
    the columns still unavailable. A value the old row lacks too (``UNAVAILABLE`` itself, as a
    plugin marks it, or left out) stays unavailable."""
    missing = []
    for column in unavailable:
        value = old.get(column, UNAVAILABLE)
        if value is UNAVAILABLE:
            missing.append(column)
        else:
            after[column] = value
    return tuple(missing)


def _negative_zeros(row: Row) -> list[str]:
    return [c for c, v in row.items() if type(v) is float and not v and math.copysign(1.0, v) < 0]
