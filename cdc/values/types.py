"""Type names as ``cdc-types`` gives them (``format_type``: ``numeric(10,2)[]``), taken apart."""

from __future__ import annotations

__all__ = ["UNAVAILABLE", "base_type"]

import functools
import re

UNAVAILABLE = "__debezium_unavailable_value"
"""Stands in for an unchanged TOASTed value the source did not send (Debezium's placeholder);
:data:`cdc.events.UNAVAILABLE` is this one."""

_MODIFIERS = re.compile(r"\(([^)]*)\)")


@functools.lru_cache(maxsize=4096)
def base_type(type_name: str) -> tuple[str, tuple[int, ...], bool]:
    """``(name without modifiers, modifiers, is an array)`` of a ``format_type`` name:
    ``numeric(10,2)[]`` -> ``("numeric", (10, 2), True)``. An interval's fields are part of its
    modifier: ``interval year to month`` and ``interval second(3)`` are ``interval``."""
    array = type_name.endswith("[]")
    name = type_name[:-2] if array else type_name
    modifiers: tuple[int, ...] = ()
    found = _MODIFIERS.search(name)
    if found is not None:
        try:
            modifiers = tuple(int(m) for m in found.group(1).split(","))
        except ValueError:
            modifiers = ()
        name = (name[: found.start()] + name[found.end() :]).strip()
    if name.startswith("interval "):
        name = "interval"
    return name, modifiers, array
