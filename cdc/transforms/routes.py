"""Routing (``[[connectors.routes]]``). TO BE BUILT (helper B)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cdc.events import Change, Record, SourceInfo

if TYPE_CHECKING:
    from cdc.config.models import RouteRule
    from cdc.transforms import TableInfo


def check_route(rule: RouteRule) -> None:
    """ValueError when the rule is not one of the three ways, or its template is bad."""


class Router:
    def __init__(self, rule: RouteRule) -> None:
        self.rule = rule

    def records(
        self, change: Change, source: SourceInfo, now_ms: int | None, tombstones: bool
    ) -> list[Record]:
        raise NotImplementedError

    @staticmethod
    def problems(rule: RouteRule, name: str, info: TableInfo) -> list[str]:
        raise NotImplementedError
