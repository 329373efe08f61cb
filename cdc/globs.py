"""Glob matching for table and topic selections (``public.*``, ``shop.public.order_*``)."""

from __future__ import annotations

__all__ = ["compile_globs", "matches"]

import fnmatch
import re
from collections.abc import Iterable


def compile_globs(globs: Iterable[str]) -> re.Pattern[str]:
    """One case-sensitive regex that matches a name when any glob does."""
    parts = [fnmatch.translate(g) for g in globs]
    return re.compile("|".join(parts) if parts else "(?!)")


def matches(name: str, include: Iterable[str], exclude: Iterable[str] = ()) -> bool:
    """Whether ``name`` is selected by ``include`` and not removed by ``exclude``."""
    return bool(compile_globs(include).match(name)) and not compile_globs(exclude).match(name)
