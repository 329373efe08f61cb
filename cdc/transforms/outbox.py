"""The outbox event router (``[[connectors.outbox]]``). TO BE BUILT (helper B)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cdc.events import Change, Record, SourceInfo

if TYPE_CHECKING:
    from cdc.config.models import OutboxConfig
    from cdc.transforms import TableInfo


def check_outbox(config: OutboxConfig) -> None:
    """ValueError when the table is not ``schema.table`` or the template is bad."""


class Outbox:
    def __init__(self, config: OutboxConfig) -> None:
        self.config = config

    def records(self, change: Change, source: SourceInfo) -> list[Record]:
        raise NotImplementedError

    @staticmethod
    def problems(config: OutboxConfig, name: str, info: TableInfo) -> list[str]:
        raise NotImplementedError
