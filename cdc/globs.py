"""Glob matching for table and topic selections (``public.*``, ``shop.public.order_*``)."""

from __future__ import annotations

__all__ = ["TableSelector", "compile_globs", "is_plain"]

import fnmatch
import re
from collections.abc import Iterable

_GLOB_CHARS = frozenset("*?[")


def is_plain(glob: str) -> bool:
    """Whether ``glob`` has no wildcard, so that it matches only the name it spells."""
    return _GLOB_CHARS.isdisjoint(glob)


def compile_globs(globs: Iterable[str]) -> re.Pattern[str]:
    """One case-sensitive regex that matches a name when any glob does."""
    parts = [fnmatch.translate(g) for g in globs]
    return re.compile("|".join(parts) if parts else "(?!)")


class TableSelector:
    """Decides, once per table, whether ``schema.table`` is captured (``tables`` less
    ``exclude_tables``)."""

    def __init__(self, include: Iterable[str], exclude: Iterable[str] = ()) -> None:
        self._include = compile_globs(include)
        self._exclude = compile_globs(exclude)
        self._seen: dict[tuple[str, str], bool] = {}

    def __call__(self, schema: str, table: str) -> bool:
        key = (schema, table)
        found = self._seen.get(key)
        if found is None:
            name = f"{schema}.{table}"
            found = bool(self._include.match(name)) and not self._exclude.match(name)
            self._seen[key] = found
        return found
