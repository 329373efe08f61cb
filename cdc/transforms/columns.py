"""Columns kept, dropped or masked (``[[connectors.columns]]``). TO BE BUILT (helper A)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cdc.events import Change

if TYPE_CHECKING:
    from cdc.config.models import ColumnsRule
    from cdc.transforms import TableInfo


class ColumnShaper:
    """One table's column rules, merged (every matching rule applies)."""

    @classmethod
    def of(cls, rules: list[ColumnsRule], salt: bytes) -> ColumnShaper:
        raise NotImplementedError

    def __call__(self, change: Change) -> Change:
        """``change`` with ``before``/``after`` (and the headers' column lists) shaped."""
        raise NotImplementedError

    def problems(self, name: str, info: TableInfo) -> list[str]:
        """Errors at start: unknown columns, key columns dropped or masked."""
        raise NotImplementedError
