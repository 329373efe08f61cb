"""Row filters (``[[connectors.filters]]``). TO BE BUILT (helper A)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cdc.events import Change

if TYPE_CHECKING:
    from cdc.config.models import FilterRule
    from cdc.transforms import TableInfo


def parse_filter(text: str) -> Any:
    """The parsed filter; ValueError naming what is wrong."""
    return text


class RowFilter:
    @classmethod
    def of(cls, rules: list[FilterRule]) -> RowFilter:
        raise NotImplementedError

    def __call__(self, change: Change) -> Change | None:
        """The change to publish (an update may become an insert or a delete), or None."""
        raise NotImplementedError

    def problems(self, name: str, info: TableInfo) -> list[str]:
        raise NotImplementedError
