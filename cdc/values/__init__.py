"""How values travel: cdc's internal form of a value (its type's text output, as the decoders
give it) to what an event carries, in the connector's ``values`` mode, and back in the sinks.

Decoders, snapshot reads and transforms work on the internal form (integers and floats as
numbers, ``bytea`` as hex digits, everything else PostgreSQL's text). :func:`encoder` makes, once
per column set (the ``cdc-types`` pairs of a table), the function that turns a row into its
event form; :func:`decoder` the inverse for a sink. A column whose encoding is its text costs
nothing per row.
"""

from __future__ import annotations

__all__ = [
    "EXACT",
    "VALUES_HEADER",
    "RowCodec",
    "ValueMode",
    "base_type",
    "decoder",
    "encoder",
    "mode_from_header",
    "placeholder",
]

import functools
import hashlib
import uuid
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from cdc.values import debezium, exact
from cdc.values.from_debezium import Options, decoders_for
from cdc.values.types import UNAVAILABLE, base_type

VALUES_HEADER = "cdc-values"
"""How an event's values are encoded: ``exact``, or ``debezium;decimal=..;time=..;binary=..;
interval=..``. Events without it (written by cdc before 0.9) carry the internal form."""


@dataclass(frozen=True, slots=True)
class ValueMode:
    """A connector's ``values`` and Debezium's four options (which apply to ``debezium``)."""

    values: str = "exact"
    decimal: str = "precise"
    time: str = "adaptive"
    binary: str = "bytes"
    interval: str = "numeric"

    @property
    def header(self) -> bytes:
        if self.values == "exact":
            return b"exact"
        return (
            f"debezium;decimal={self.decimal};time={self.time};binary={self.binary};"
            f"interval={self.interval}"
        ).encode()


EXACT = ValueMode()


def mode_from_header(raw: bytes) -> ValueMode:
    """The mode a ``cdc-values`` header names (ValueError when it names none)."""
    if raw == b"exact":
        return EXACT
    name, *options = raw.decode(errors="replace").split(";")
    if name != "debezium":
        raise ValueError(f"unknown values mode {name!r}")
    found = dict(o.partition("=")[::2] for o in options)
    mode = ValueMode(
        "debezium",
        found.get("decimal", "precise"),
        found.get("time", "adaptive"),
        found.get("binary", "bytes"),
        found.get("interval", "numeric"),
    )
    debezium.check(mode)
    return mode


Convert = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class RowCodec:
    """The columns of a column set whose values change on the way, each with its function and
    the form an unchanged TOASTed value's placeholder takes there (None: the text itself)."""

    columns: tuple[tuple[str, Convert, Any], ...]

    def __call__(
        self, row: dict[str, Any] | None, unavailable: Collection[str] = ()
    ) -> dict[str, Any] | None:
        """``row`` converted; ``unavailable``: columns whose value is a placeholder (a sink's
        ``cdc-unavailable`` header), taken back to :data:`UNAVAILABLE` whatever its form."""
        if not row:
            return row
        out = None
        for column, convert, placeholder in self.columns:
            value = row.get(column)
            if value is None:
                continue
            if value == UNAVAILABLE:
                if placeholder is None:
                    continue
                value = placeholder
            elif column in unavailable:
                value = UNAVAILABLE
            else:
                value = convert(value)
            if out is None:
                out = dict(row)
            out[column] = value
        return row if out is None else out


_PLACEHOLDER = UNAVAILABLE.encode()
_TEXT_ARRAYS = frozenset(("text", "character varying", "character", "bpchar", "json", "jsonb"))


def placeholder(type_name: str, mode: ValueMode) -> Any:
    """An unchanged TOASTed value's placeholder in a column of ``type_name``, as Debezium 3.6.1
    writes it (``UnchangedToastedPlaceholder``): the placeholder's bytes in a bytes field (the
    exact mode's bytea, the debezium mode's under ``binary=bytes``), a list of its bytes in an
    integer or date array, the text in a one-element list in a text-like array, a name-based
    UUID in a uuid array. None: the text itself (JsonConverter refuses it in a bytes field and
    reads [] in an array field, so those get a value of their type)."""
    name, _, array = base_type(type_name)
    if not array:
        if name == "bytea" and (mode.values == "exact" or mode.binary == "bytes"):
            return exact.hex_to_b64(_PLACEHOLDER.hex())
        return None
    if name in ("integer", "date", "bigint"):
        return list(_PLACEHOLDER)
    if name in _TEXT_ARRAYS:
        return [UNAVAILABLE]
    if name == "bytea":
        return [exact.hex_to_b64(_PLACEHOLDER.hex())]
    if name == "uuid":
        digest = hashlib.md5(_PLACEHOLDER, usedforsecurity=False).digest()
        return [str(uuid.UUID(bytes=digest, version=3))]  # Java's UUID.nameUUIDFromBytes
    return None


_ENCODERS: dict[tuple[int, int], tuple[object, ValueMode, RowCodec | None]] = {}
"""Per column set (by the identity of its ``types`` tuple: a decoder hands every change of a
table the same one) and mode (by identity too: a connector holds one), its codec; the entry
holds both so their ids are not reused. Hashing the mode's fields cost as much as a
conversion."""


def encoder(types: tuple[tuple[str, str], ...], mode: ValueMode) -> RowCodec | None:
    """The row encoder of a column set in ``mode``; None when every value travels as it is."""
    cached = _ENCODERS.get((id(types), id(mode)))
    if cached is not None and cached[0] is types and cached[1] is mode:
        return cached[2]
    if len(_ENCODERS) >= 4096:
        _ENCODERS.clear()
    convert = exact.encoder if mode.values == "exact" else functools.partial(debezium.encoder, mode)
    columns = tuple((c, f, placeholder(t, mode)) for c, t in types if (f := convert(t)) is not None)
    codec = RowCodec(columns) if columns else None
    _ENCODERS[(id(types), id(mode))] = (types, mode, codec)
    return codec


@functools.lru_cache(maxsize=1024)
def _decoder(types: tuple[tuple[str, str], ...], mode: ValueMode) -> RowCodec | None:
    if mode.values == "exact":
        columns = tuple((c, f, None) for c, t in types if (f := exact.decoder(t)) is not None)
    else:
        options = Options(mode.decimal, mode.time, mode.binary, mode.interval)
        named = {c: _interval_plain(t) for c, t in types}
        columns = tuple((c, f, None) for c, f in decoders_for(named, options))
    return RowCodec(columns) if columns else None


def _interval_plain(type_name: str) -> str:
    """``interval year to month`` (``second(3)``, ...) as ``interval``, the name Debezium's
    decoders know it by (its fields are a typmod: :func:`base_type`)."""
    name, _, array = base_type(type_name)
    return type_name if name != "interval" else "interval[]" if array else "interval"


def decoder(types: Mapping[str, str], mode: ValueMode) -> RowCodec | None:
    """The row decoder (event form -> internal form) of a column set; None when nothing
    changes. The debezium mode's values come back as Debezium's do (its own losses stay lost:
    docs/encodings.md)."""
    return _decoder(tuple(types.items()), mode)
