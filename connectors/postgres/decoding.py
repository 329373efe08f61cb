"""What both output plugins' decoders share: the table metadata they consult, the transaction
markers they return, and the making of :class:`~cdc.events.Change`\\ s from decoded rows.

A decoder (:mod:`~connectors.postgres.wal2json`, :mod:`~connectors.postgres.pgoutput`) parses its
plugin's bytes into rows; :class:`RowDecoder` turns rows into events the same way for both: key
columns, an update that moved a row to another key, unchanged TOASTed values, the event id's
transaction position. No I/O except through the :class:`Catalog`.
"""

from __future__ import annotations

__all__ = ["JSON_KINDS", "NOT_NUMBERS", "Begin", "Catalog", "Commit", "RowDecoder", "TableInfo"]

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from cdc.events import UNAVAILABLE, Change, Row

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

    def type_name(self, oid: int, typmod: int) -> str:
        """``format_type(oid, typmod)``: the name the ``cdc-types`` header gives the type."""
        ...


@dataclass(slots=True)
class Begin:
    """Never changed once made; not ``frozen``, which makes building one, for every
    transaction, three times slower."""

    xid: int
    commit_lsn: int
    end_lsn: int
    """End of the commit record: the position to confirm once the transaction is on Kafka.
    pgoutput says it only at the commit; until then this is ``commit_lsn + 1``, which confirms
    the same transaction (a slot resumes with the first commit at or after its position)."""


@dataclass(slots=True)
class Commit:
    """Never changed once made (not ``frozen``, as :class:`Begin`)."""

    xid: int
    commit_lsn: int
    end_lsn: int


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
        self._whole_row_key = False
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
        return Begin(xid, commit_lsn, end_lsn)

    def _commit(self, end_lsn: int) -> Commit:
        self._last_commit_lsn = self._commit_lsn
        return Commit(self._xid, self._commit_lsn, end_lsn)

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
    ) -> Change | tuple[Change, ...]:
        """``unavailable``: the columns whose unchanged TOASTed value the plugin did not send,
        already ``UNAVAILABLE`` in ``after`` (pgoutput says which); None when the plugin leaves
        them out without a word (wal2json), so the catalog's column list tells."""
        info = self._catalog.table(schema, table, xid=self._xid)
        if unavailable is None:
            unavailable = ()
            if info is not None and (
                len(after) < len(info.columns) or not after.keys() <= info.column_set
            ):
                if not after.keys() <= info.column_set:
                    info = self._catalog.table(schema, table, refresh=True, xid=self._xid)
                if info is not None:
                    # An unchanged TOASTed value left out: never publish it as null.
                    unavailable = tuple(c for c in info.columns if c not in after)
                    for column in unavailable:
                        after[column] = UNAVAILABLE
        new_key = self._key(schema, table, after, pk)
        old_key = self._key(schema, table, identity, pk) if identity is not None else new_key
        full = info is not None and info.identity == "full"
        before = identity if full else None
        if old_key is not None and new_key is not None and old_key != new_key:
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
        # Positional, in the order of Change's fields: a third of the time of keywords, for
        # every row change.
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
        )
