"""Columns kept, dropped or masked (``[[connectors.columns]]``).

Every rule whose ``tables`` glob matches a table applies, merged: the columns kept are those every
``include`` names (all when none does), less every ``exclude``; ``mask`` replaces a value with
constant text, ``hash`` with the hex SHA-256 of ``mask_salt`` followed by the value's text (a
string as UTF-8, any other JSON value as its JSON text: ``42``, ``true``, ``{"a":1}``). NULL stays
NULL, and the placeholder of an unchanged TOASTed value (:data:`cdc.events.UNAVAILABLE`) stays as
it is: it is not the value, and sinks keep the value they hold.

The rules shape ``after`` and ``before`` (REPLICA IDENTITY FULL puts whole old rows there) and the
headers' column lists: ``cdc-types`` (a masked column's type becomes ``text``, so a sink creates a
text column for it), ``cdc-missing`` and ``cdc-unavailable``. Key columns are never dropped or
masked: :meth:`ColumnShaper.problems` refuses such rules at start, and a key that changed since
(a new primary key) stops the connector with an error naming the column.
"""

from __future__ import annotations

__all__ = ["ColumnShaper"]

import hashlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

from cdc.errors import CdcError
from cdc.events import UNAVAILABLE, Change, Row

if TYPE_CHECKING:
    from cdc.config.models import ColumnsRule
    from cdc.transforms import TableInfo

Pairs = tuple[tuple[str, str], ...]

_CACHE_LIMIT = 4096
_HASH_CACHE_LIMIT = 16_384
"""Hashes remembered per type: a few MB at most."""


def hash_value(salt: bytes, value: Any) -> str:
    """The hex SHA-256 of ``salt`` and ``value``'s text (a string as UTF-8, any other JSON value
    as its JSON text)."""
    text = value.encode() if isinstance(value, str) else orjson.dumps(value)
    return hashlib.sha256(salt + text).hexdigest()


class _Hasher:
    """:func:`hash_value` with the salt bound, remembering the hashes of recent strings and
    integers: a hashed column (a customer id, an e-mail) repeats its values, and a lookup costs
    a tenth of a SHA-256. Keyed by type as well, so that ``1``, ``1.0`` and ``true`` (equal in
    Python) never share an entry."""

    __slots__ = ("_ints", "_salt", "_strs")

    def __init__(self, salt: bytes) -> None:
        self._salt = salt
        self._strs: dict[str, str] = {}
        self._ints: dict[int, str] = {}

    def __call__(self, value: Any) -> str:
        kind = type(value)
        cache = self._strs if kind is str else self._ints if kind is int else None
        if cache is None:
            return hash_value(self._salt, value)
        found = cache.get(value)
        if found is None:
            if len(cache) >= _HASH_CACHE_LIMIT:
                cache.clear()
            found = cache[value] = hash_value(self._salt, value)
        return found


def _constant(text: str) -> Callable[[Any], Any]:
    def replace(_value: Any) -> str:
        return text

    return replace


class ColumnShaper:
    """One table's column rules, merged (every matching rule applies)."""

    def __init__(
        self,
        include: frozenset[str] | None,
        exclude: frozenset[str],
        mask: dict[str, str],
        hashed: frozenset[str],
        salt: bytes,
    ) -> None:
        self.include = include
        """Only these columns are kept; None: every column not excluded."""
        self.exclude = exclude
        self.mask = mask
        self.hashed = hashed
        self._salt = salt
        masks: dict[str, Callable[[Any], Any]] = {}
        for name, text in mask.items():
            masks[name] = _constant(text)
        hasher = _Hasher(salt)
        for name in hashed:
            masks[name] = hasher
        if include is not None:
            masks = {n: f for n, f in masks.items() if n in include}
        masks = {n: f for n, f in masks.items() if n not in exclude}
        self._masks = masks
        self._exclude_list = tuple(exclude)
        self._mask_items = tuple(masks.items())
        self.masked = frozenset(masks)
        """Columns whose values are replaced (and still published)."""
        self._types: dict[int, tuple[Pairs, Pairs]] = {}
        self._missing: dict[int, tuple[Pairs, Pairs]] = {}
        self._keys_checked: set[tuple[str, ...]] = set()
        self.conflicts: frozenset[str] = frozenset()
        """Columns masked by one rule and hashed by another (an error at start)."""

    @classmethod
    def of(cls, rules: list[ColumnsRule], salt: bytes) -> ColumnShaper:
        include: frozenset[str] | None = None
        exclude: set[str] = set()
        mask: dict[str, str] = {}
        hashed: set[str] = set()
        for rule in rules:
            if rule.include:
                include = (
                    frozenset(rule.include) if include is None else include & set(rule.include)
                )
            exclude.update(rule.exclude)
            mask.update(rule.mask)
            hashed.update(rule.hash)
        # A column both masked and hashed (by two rules) is hashed: problems() says so.
        conflicts = frozenset(hashed.intersection(mask))
        for name in conflicts:
            del mask[name]
        shaper = cls(include, frozenset(exclude), mask, frozenset(hashed), salt)
        shaper.conflicts = conflicts
        return shaper

    def kept(self, name: str) -> bool:
        """Whether column ``name`` is published (masked or not)."""
        return name not in self.exclude and (self.include is None or name in self.include)

    def __call__(self, change: Change) -> Change:
        """``change`` with ``before``/``after`` (and the headers' column lists) shaped."""
        key = change.key
        if key is not None:
            names = tuple(key)
            if names not in self._keys_checked:
                self._check_key(change, names)
        unavailable = change.unavailable
        after = self._row(change.after, unavailable) if change.after is not None else None
        before = self._row(change.before, None) if change.before is not None else None
        if unavailable:
            unavailable = tuple(c for c in unavailable if self.kept(c))
        types = self._pairs(change.types, self._types, "text") if change.types else change.types
        missing = (
            self._pairs(change.missing, self._missing, None) if change.missing else change.missing
        )
        c = change
        # Positional, in the order of Change's fields (a unit test holds it): a fifth of what
        # dataclasses.replace costs, on the path of every row change.
        return Change(
            c.op,
            c.schema,
            c.table,
            key,
            before,
            after,
            c.commit_lsn,
            c.index,
            c.lsn,
            c.xid,
            c.commit_ts_ms,
            unavailable,
            types,
            c.whole_row_key,
            c.snapshot,
            c.last_commit_lsn,
            c.total_order,
            c.data_collection_order,
            missing,
        )

    def _row(self, row: Row, unavailable: tuple[str, ...] | None) -> Row:
        """``unavailable``: the columns of ``after`` that hold the placeholder; None for an
        old row, where a plugin may mark a value not logged with it too."""
        include = self.include
        if include is not None:
            out = {k: v for k, v in row.items() if k in include and k not in self.exclude}
        else:
            # A copy less a few columns: a fifth of what a filtering comprehension costs.
            out = row.copy()
            for name in self._exclude_list:
                out.pop(name, None)
        for name, replace in self._mask_items:
            value = out.get(name)
            if value is None:
                continue
            if name in unavailable if unavailable is not None else value == UNAVAILABLE:
                continue
            out[name] = replace(value)
        return out

    def _pairs(
        self, pairs: Pairs, cache: dict[int, tuple[Pairs, Pairs]], masked_as: str | None
    ) -> Pairs:
        """``types`` (``masked_as`` ``text``: a masked column's type) or ``missing`` (None: a
        masked column's value masked) shaped, cached by the tuple's identity: a decoder hands
        every change of a table the same tuple, and :func:`cdc.events.encode` caches their
        JSON by identity too. The entry holds the tuple, so its id is not reused meanwhile."""
        cached = cache.get(id(pairs))
        if cached is not None and cached[0] is pairs:
            return cached[1]
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        shaped: list[tuple[str, str]] = []
        for name, text in pairs:
            if not self.kept(name):
                continue
            if name in self._masks:
                shaped.append((name, masked_as or str(self._masks[name](text))))
            else:
                shaped.append((name, text))
        result = tuple(shaped)
        cache[id(pairs)] = (pairs, result)
        return result

    def _check_key(self, change: Change, names: tuple[str, ...]) -> None:
        """The key's columns must be published as they are (once per key-names tuple)."""
        for name in names:
            if not self.kept(name) or name in self.masked:
                raise CdcError(
                    f"{change.schema}.{change.table}: key column {name} is"
                    f" {'masked' if self.kept(name) else 'dropped'} by [[connectors.columns]]"
                    " (the table's key changed since the start?): keys are never dropped or"
                    " masked; change the rule"
                )
        self._keys_checked.add(names)

    def problems(
        self, name: str, info: TableInfo, elsewhere: frozenset[str] = frozenset()
    ) -> list[str]:
        """Errors at start: unknown columns (but those in ``elsewhere``, which other tables of
        the rules naming them have), key columns dropped or masked."""
        errors: list[str] = []
        known = set(info.columns)
        # Generated columns are never published: naming them changes nothing, and is no typo.
        generated = set(getattr(info, "generated", ()))
        named: list[tuple[str, str]] = [
            *(("include", c) for c in sorted(self.include or ())),
            *(("exclude", c) for c in sorted(self.exclude)),
            *(("mask", c) for c in sorted(self.mask)),
            *(("hash", c) for c in sorted(self.hashed)),
        ]
        for fate, column in named:
            if column not in known and column not in generated and column not in elsewhere:
                errors.append(
                    f"{name}: column {column} ([[connectors.columns]] {fate}) does not exist"
                )
        for column in sorted(self.conflicts):
            errors.append(f"{name}: column {column} is both masked and hashed by two rules")
        whole_row = not info.has_primary_key and info.identity == "full"
        touched = sorted(c for c in known if not self.kept(c) or c in self.masked)
        if whole_row and touched:
            errors.append(
                f"{name}: has no primary key and REPLICA IDENTITY FULL, so its key is the whole"
                f" row: column(s) {', '.join(touched)} cannot be dropped or masked"
            )
            return errors
        for column in info.key:
            if not self.kept(column):
                why = (
                    "not in include"
                    if self.include is not None and column not in self.include
                    else "excluded"
                )
                errors.append(f"{name}: key column {column} is {why}: keys are never dropped")
            elif column in self.masked:
                errors.append(f"{name}: key column {column} is masked: keys are never masked")
        return errors
