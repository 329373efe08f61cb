"""The initial snapshot's counts for ``/metrics`` over several tables, with the database and Kafka
faked: a table's published reads and rows read only ever grow, and end at its row count.

The snapshot advanced a table's progress every 1 000 rows of *all* tables, so the second table
of two ran ahead of its real count and its counter went back at its end (issue 20, from a
review); a counter that goes back is a reset to Prometheus.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from cdc.config import parse_config
from cdc.events import Change, Record, SourceInfo
from connectors.postgres import initial
from connectors.postgres.initial import InitialSnapshot
from connectors.postgres.stats import SourceStats

CONFIG = """
[kafka]
bootstrap_servers = "127.0.0.1:1"
[[connectors]]
name = "fake"
dsn = "host=127.0.0.1 dbname=fake"
"""
ROWS = {"a": 1500, "b": 2600}
"""1 500 + 2 600: the second table's rows end between two thousands of the total."""


class GrowingOnly(defaultdict[tuple[str, str, str], int]):
    """``by_table`` that fails on any value going back."""

    def __init__(self) -> None:
        super().__init__(int)

    def __setitem__(self, key: tuple[str, str, str], value: int) -> None:
        assert value >= self.get(key, 0), f"{key} went back from {self.get(key)} to {value}"
        super().__setitem__(key, value)


class FakeConnection:
    isolation_level: Any = None
    read_only = False

    def __enter__(self) -> FakeConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def execute(self, *args: Any) -> None:
        pass

    def rollback(self) -> None:
        pass


class FakeReads:
    """Each table's rows as ``r`` changes, counting per table as the real reader does."""

    def __init__(self, conn: Any, position: int, started_ms: int) -> None:
        self.started_ms = started_ms
        self.count = 0
        self.shape = None

    def table(self, schema: str, table: str, first_index: int) -> Iterator[Change]:
        self.count = 0
        for i in range(ROWS[table]):
            self.count += 1
            yield Change("r", schema, table, {"id": i}, None, {"id": i}, 1, i, 1, 0, 0)


class Acking:
    """A publisher whose every record is acked as it is sent."""

    unacked_bytes = 0

    @staticmethod
    def callback(on_ack: Any, on_error: Any, *args: Any) -> Any:
        return lambda: on_ack(*args)

    def send_with(self, record: Record, callback: Any) -> None:
        callback()

    def poll(self, timeout_s: float = 0.0) -> None:
        pass

    def flush(self, timeout_s: float) -> None:
        pass


def test_each_tables_counts_only_grow_and_end_at_its_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    config = parse_config(CONFIG)
    stats = SourceStats("fake")
    stats.by_table = GrowingOnly()
    monkeypatch.setattr(psycopg, "connect", lambda *a, **k: FakeConnection())
    monkeypatch.setattr(initial, "selected_tables", lambda *a: [("public", t) for t in ROWS])
    monkeypatch.setattr(initial, "estimated_rows", lambda conn, s, t: ROWS[t])
    monkeypatch.setattr(initial, "_TableReads", FakeReads)
    monkeypatch.setattr(initial, "PostgresCatalog", lambda *a: None)
    monkeypatch.setattr(InitialSnapshot, "_record", lambda *a: None)
    snapshot = InitialSnapshot(config.connectors[0], 100_000, lambda s, t: True, "fake", stats)
    rows = snapshot.run(
        threading.Event(),
        None,
        100,
        SourceInfo("fake", "fake", "fake"),
        Acking(),  # type: ignore[arg-type]
        FakeConnection(),  # type: ignore[arg-type]
    )
    assert rows == sum(ROWS.values())
    assert dict(stats.by_table) == {("public", t, "r"): n for t, n in ROWS.items()}
    for table, n in ROWS.items():
        progress = stats.snapshots["initial", f"public.{table}"]
        assert (progress.done, progress.state) == (n, "done")
    assert stats.last_event > 0
