"""One contract, every sink: the same event streams applied in hostile ways give the same table.

The suite drives each :class:`cdc.sink.Target` directly (PostgreSQL on the devstack, SQLite in a
temporary file, and :mod:`tests.memory_target`, a target written only against the Protocol) with
a seeded stream of events for one table, and checks against a model:
duplicates, replays of any suffix and from offset zero, older events of a key after newer ones, a
batch that fails before commit; and, while replaying, that no row ever shows an older version
than it showed before.
"""

from __future__ import annotations

import dataclasses
import math
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import orjson
import psycopg
import pytest

from cdc.config import PostgresSinkConfig, SqliteSinkConfig
from cdc.config.models import RouteRule
from cdc.events import UNAVAILABLE, Change, SourceInfo, encode
from cdc.records import SinkEvent, parse_record
from cdc.sink import Target
from cdc.transforms.routes import Router
from cdc.values import ValueMode
from sinks.postgres import PostgresTarget
from sinks.sqlite import SqliteTarget
from tests.support.decoding import FLOAT_TEXTS
from tests.support.harness import waiting_on
from tests.support.memory_target import MemoryTarget, Store

TYPES = {"id": "bigint", "v": "text", "n": "numeric", "big": "text"}
AWKWARD = ["", "\\", "\\N", "a\tb", "line\nbreak\r", 'quo"te', "back\\slash\\n", "é☃𝄞", "\x01\x1f"]
"""Text that every layer between event and row must leave alone (JSON, COPY and SQL escaping)."""
GROUP = "contract"


def event(
    op: str,
    version: tuple[int, int],
    key: int,
    row: dict[str, Any] | None,
    offset: int = 0,
    unavailable: frozenset[str] = frozenset(),
) -> SinkEvent:
    after = None if op in ("d", "t") else dict(row or {})
    if after is not None:
        for c in unavailable:
            after[c] = UNAVAILABLE
    return SinkEvent(
        topic="src.public.items",
        partition=0,
        offset=offset,
        schema="public",
        table="items",
        op=op,
        key=None if op == "t" else {"id": key},
        before={"id": key} if op == "d" else None,
        after=after,
        version=version,
        unavailable=unavailable,
        types=TYPES,
    )


def stream(
    seed: int, n: int = 400, toast: bool = True, truncate: bool = True
) -> tuple[list[SinkEvent], dict[int, dict[str, Any]]]:
    """A random history of one table, and the table it leaves behind."""
    rng = random.Random(seed)
    state: dict[int, dict[str, Any]] = {}
    events: list[SinkEvent] = []
    lsn = 1000
    for i in range(n):
        lsn += rng.randrange(1, 50)
        key = rng.randrange(1, 25)
        roll = rng.random()
        if truncate and i == n // 2:
            events.append(event("t", (lsn, 0), 0, None, offset=i))
            state.clear()
        elif key in state and roll < 0.2:
            events.append(event("d", (lsn, 0), key, None, offset=i))
            del state[key]
        elif key in state and roll < 0.7:
            v = f"v{i}{rng.choice(AWKWARD)}"
            row = dict(state[key], v=v, n=f"{rng.randrange(-(10**6), 10**6)}.{i:03d}")
            keep_big = toast and rng.random() < 0.5
            state[key] = row
            events.append(
                event(
                    "u",
                    (lsn, rng.randrange(0, 3)),
                    key,
                    row,
                    offset=i,
                    unavailable=frozenset({"big"}) if keep_big else frozenset(),
                )
            )
        else:
            v = f"v{i}{rng.choice(AWKWARD)}"
            row = {"id": key, "v": v, "n": f"{i}.50", "big": f"big{i}-" + "x" * 3000}
            if key in state:  # the source would have deleted it first
                events.append(event("d", (lsn, 0), key, None, offset=i))
                lsn += 1
            state[key] = row
            events.append(event("c", (lsn, 0), key, row, offset=i))
    return events, state


def batches(events: list[SinkEvent], size: int) -> Iterator[list[SinkEvent]]:
    for i in range(0, len(events), size):
        yield events[i : i + size]


def apply(
    target: Target, events: list[SinkEvent], watch: Callable[[], None] | None = None, size: int = 37
) -> None:
    """As the runtime does: a target's ``plan`` of a batch is made before the batch ahead of it
    is applied, so with the truncate floors of before that one."""
    chunks = list(batches(events, size))
    plan = target.plan(chunks[0]) if chunks else None
    for i, batch in enumerate(chunks):
        offsets = {("src.public.items", 0): batch[-1].offset + 1}
        following = target.plan(chunks[i + 1]) if i + 1 < len(chunks) else None
        target.apply(GROUP, batch, offsets, lambda rejected: None, plan)
        plan = following
        if watch:
            watch()


class Harness:
    """A target plus a way to read its table back."""

    def __init__(
        self, make: Callable[[], Target], read: Callable[[], dict[int, dict[str, Any]]]
    ) -> None:
        self.make, self.read = make, read
        self.target = make()

    def versions(self) -> dict[int, tuple[int, int]]:
        return {k: (r["_cdc_lsn"], r["_cdc_index"]) for k, r in self.read().items()}

    def rows(self) -> dict[int, dict[str, Any]]:
        return {
            k: {c: v for c, v in r.items() if not c.startswith("_cdc_")}
            for k, r in self.read().items()
        }


def sqlite_harness(tmp_path: Path) -> Harness:
    config = SqliteSinkConfig(
        name="c", type="sqlite", topics=("src.*",), path=str(tmp_path / "t.db")
    )

    def read() -> dict[int, dict[str, Any]]:
        db = sqlite3.connect(config.path)
        db.row_factory = sqlite3.Row
        try:
            rows = db.execute("SELECT * FROM public_items").fetchall()
        except sqlite3.OperationalError:  # not created yet
            rows = []
        finally:
            db.close()
        return {int(r["id"]): dict(r) for r in rows}

    return Harness(lambda: SqliteTarget(config), read)


def postgres_harness(database: str) -> Harness:
    config = PostgresSinkConfig.model_validate(
        {"name": "c", "type": "postgres", "topics": ["src.*"], "dsn": database}
    )

    def read() -> dict[int, dict[str, Any]]:
        with psycopg.connect(database) as conn:
            if conn.execute("SELECT to_regclass('public.items')").fetchone() == (None,):
                return {}
            cur = conn.execute(
                "SELECT id, v, n::text AS n, big, _cdc_lsn, _cdc_index FROM public.items"
            )
            names = [d.name for d in cur.description or ()]
            return {int(r[0]): dict(zip(names, r, strict=True)) for r in cur.fetchall()}

    return Harness(lambda: PostgresTarget(config), read)


def memory_harness() -> Harness:
    store = Store()

    def read() -> dict[int, dict[str, Any]]:
        return {int(r["id"]): dict(r) for r in memory_rows(store, "items")}

    return Harness(lambda: MemoryTarget(store), read)


def memory_rows(store: Store, table: str) -> list[dict[str, Any]]:
    """A :class:`MemoryTarget`'s rows of ``public.{table}``."""
    held = store.tables.get(("public", table))
    return [] if held is None else [*held.rows.values(), *held.loose.values()]


@pytest.fixture(params=[pytest.param("postgres", marks=pytest.mark.services), "sqlite", "memory"])
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    if request.param == "memory":
        h = memory_harness()
    elif request.param == "sqlite":
        h = sqlite_harness(tmp_path)
    else:
        h = postgres_harness(request.getfixturevalue("database"))
    yield h
    h.target.close()


def test_in_order_batches_give_the_model(harness: Harness) -> None:
    events, expected = stream(1)
    apply(harness.target, events)
    assert harness.rows() == expected


def test_every_batch_twice(harness: Harness) -> None:
    events, expected = stream(2)
    for batch in batches(events, 23):
        apply(harness.target, batch)
        apply(harness.target, batch)
    assert harness.rows() == expected


def test_replays_of_any_suffix_and_from_zero_change_nothing_and_never_go_back(
    harness: Harness,
) -> None:
    events, expected = stream(3)
    apply(harness.target, events)
    seen = harness.versions()

    def never_back() -> None:
        for key, version in harness.versions().items():
            assert version >= seen.get(key, (0, 0)), f"row {key} went back to {version}"
            seen[key] = version

    for start in (0, 1, len(events) // 3, len(events) // 2, len(events) - 5):
        apply(harness.target, events[start:], watch=never_back, size=19)
        assert harness.rows() == expected


def test_older_events_after_newer_ones(harness: Harness) -> None:
    # As when a topic's partition count changes: a key's history arrives out of order.
    events, expected = stream(4, toast=False)
    shuffled = events[:]
    random.Random(4).shuffle(shuffled)
    seen: dict[int, tuple[int, int]] = {}

    def never_back() -> None:
        for key, version in harness.versions().items():
            assert version >= seen.get(key, (0, 0)), f"row {key} went back to {version}"
            seen[key] = version

    apply(harness.target, shuffled, watch=never_back, size=31)
    assert harness.rows() == expected


def test_a_batch_that_fails_before_commit_leaves_nothing(harness: Harness) -> None:
    events, expected = stream(5)
    half = len(events) // 2
    apply(harness.target, events[:half])
    before = harness.read()

    def fail(rejected: list[Any]) -> None:
        raise RuntimeError("crash just before commit")

    with pytest.raises(RuntimeError):
        harness.target.apply(GROUP, events[half:], {("src.public.items", 0): 10**6}, fail)
    assert harness.read() == before
    assert harness.target.stored_offsets(GROUP, [("src.public.items", 0)]) == {
        ("src.public.items", 0): events[half - 1].offset + 1
    }
    apply(harness.target, events[half:])
    assert harness.rows() == expected


def test_a_new_target_resumes_from_stored_offsets(harness: Harness) -> None:
    events, _ = stream(6, n=100)
    apply(harness.target, events)
    harness.target.close()
    harness.target = harness.make()
    stored = harness.target.stored_offsets(GROUP, [("src.public.items", 0), ("other", 3)])
    assert stored == {("src.public.items", 0): events[-1].offset + 1}
    # Offsets never move back, even if an older batch is committed again.
    apply(harness.target, events[:10])
    assert harness.target.stored_offsets(GROUP, [("src.public.items", 0)]) == stored


def bag_event(op: str, version: tuple[int, int], row: dict[str, Any]) -> SinkEvent:
    """An event of a table with no primary key and REPLICA IDENTITY FULL."""
    return SinkEvent(
        topic="src.public.bag",
        partition=0,
        offset=version[0],
        schema="public",
        table="bag",
        op=op,
        key=dict(row),
        before=dict(row) if op == "d" else None,
        after=None if op == "d" else dict(row),
        version=version,
        unavailable=frozenset(),
        types={"a": "integer", "b": "text"},
        whole_row_key=True,
    )


def bag_stream(seed: int) -> tuple[list[SinkEvent], dict[tuple[int, str], int]]:
    """Inserts and deletes of rows that are often equal: the table is a multiset."""
    rng = random.Random(seed)
    bag: dict[tuple[int, str], int] = {}
    events = []
    for i in range(300):
        row = (rng.randrange(3), rng.choice("xy"))
        if bag.get(row) and rng.random() < 0.4:
            bag[row] -= 1
            events.append(bag_event("d", (1000 + i, 0), {"a": row[0], "b": row[1]}))
        else:
            bag[row] = bag.get(row, 0) + 1
            events.append(bag_event("c", (1000 + i, 0), {"a": row[0], "b": row[1]}))
    return events, {r: n for r, n in bag.items() if n}


def read_bag(harness: Harness) -> dict[tuple[int, str], int]:
    target = harness.target
    if isinstance(target, MemoryTarget):
        rows = [(r["a"], r["b"]) for r in memory_rows(target.store, "bag")]
    elif isinstance(target, SqliteTarget):
        rows = target.db.execute("SELECT a, b FROM public_bag").fetchall()
    else:
        assert isinstance(target, PostgresTarget)
        with psycopg.connect(target.config.dsn.conninfo) as conn:
            rows = conn.execute("SELECT a, b FROM public.bag").fetchall()
    bag: dict[tuple[int, str], int] = {}
    for a, b in rows:
        bag[(int(a), str(b))] = bag.get((int(a), str(b)), 0) + 1
    return bag


def test_whole_row_tables_are_multisets_whatever_the_order(harness: Harness) -> None:
    events, expected = bag_stream(8)
    apply(harness.target, events)  # in order
    assert read_bag(harness) == expected
    apply(harness.target, events, size=13)  # all again: every event counts once
    assert read_bag(harness) == expected
    shuffled = events[:]
    random.Random(8).shuffle(shuffled)
    apply(harness.target, shuffled[: len(events) // 2], size=7)  # replays, out of order
    assert read_bag(harness) == expected


def test_whole_row_deletes_before_their_inserts(harness: Harness) -> None:
    events, expected = bag_stream(9)
    backwards = list(reversed(events))  # every delete arrives before the insert it undoes
    apply(harness.target, backwards, size=11)
    assert read_bag(harness) == expected


def test_keyless_updates_and_deletes_are_rejected_with_a_reason(harness: Harness) -> None:
    # A table with neither primary key nor replica identity: its rows cannot be matched.
    def keyless(op: str, version: tuple[int, int]) -> SinkEvent:
        row = {"a": 1, "b": "x"}
        return SinkEvent(
            topic="src.public.loose",
            partition=0,
            offset=version[0],
            schema="public",
            table="loose",
            op=op,
            key=None,
            before=None if op == "c" else row,
            after=None if op == "d" else row,
            version=version,
            unavailable=frozenset(),
            types={"a": "integer", "b": "text"},
        )

    events = [keyless("c", (1, 0)), keyless("u", (2, 0)), keyless("d", (3, 0))]
    rejected: list[tuple[SinkEvent, str]] = []
    for _ in range(2):  # the insert counts once
        harness.target.apply(GROUP, events, {("src.public.loose", 0): 4}, rejected.extend)
    assert [(e.op, reason.split(":")[0]) for e, reason in rejected] == [
        ("u", "table public.loose has no primary key or replica identity"),
        ("d", "table public.loose has no primary key or replica identity"),
    ] * 2
    table = "public_loose" if isinstance(harness.target, SqliteTarget) else "public.loose"
    count: tuple[Any, ...] | None
    if isinstance(harness.target, MemoryTarget):
        count = (len(memory_rows(harness.target.store, "loose")),)
    elif isinstance(harness.target, SqliteTarget):
        count = harness.target.db.execute(f"SELECT count(*) FROM {table}").fetchone()
    else:
        assert isinstance(harness.target, PostgresTarget)
        with psycopg.connect(harness.target.config.dsn.conninfo) as conn:
            count = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    assert count == (1,)


def test_postgres_finds_rows_by_key_however_much_the_table_grew(database: str) -> None:
    """Deletes and upserts reach their rows through the key's index, not by reading the target:
    also in the same session once the table has grown far past the size its statements were
    first planned at (the generic plan of a prepared statement is made once, and the planner
    takes every batch for 100 rows)."""
    harness = postgres_harness(database)
    target = harness.target
    assert isinstance(target, PostgresTarget)
    lsn = 1000

    def churn(rounds: int) -> None:
        # Small batches like a steady load's: inserts, and deletes of half of them.
        nonlocal lsn
        for _ in range(rounds):
            keys = range(lsn, lsn + 6)  # keys and versions both count up from lsn
            events = [event("c", (k, 0), k, {"id": k, "v": "x", "n": "1", "big": ""}) for k in keys]
            events += [event("d", (k + 100, 0), k, None) for k in keys[::2]]
            target.apply(GROUP, events, {("src.public.items", 0): lsn}, lambda rejected: None)
            lsn += 1000

    def seq_scans() -> int:
        # The target's backend publishes its table statistics as it goes idle, before it
        # answers the commit.
        target.conn.execute("SELECT pg_stat_force_next_flush()")
        target.conn.commit()
        with psycopg.connect(database, autocommit=True) as conn:
            row = conn.execute(
                "SELECT seq_scan FROM pg_stat_user_tables WHERE relid = 'public.items'::regclass"
            ).fetchone()
        assert row is not None
        return int(row[0])

    try:
        churn(8)  # enough executions for every statement's generic plan
        with psycopg.connect(database, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO public.items (id, v, n, big, _cdc_lsn, _cdc_index)"
                " SELECT -g, 'y', 2, '', 1, 0 FROM generate_series(1, 20000) g"
            )
        before = seq_scans()
        churn(8)
        assert seq_scans() == before
        assert len(harness.rows()) == 20000 + 16 * 3  # each round leaves 3 of its 6
    finally:
        target.close()


def test_a_column_that_appears_later_is_added(harness: Harness) -> None:
    first = event("c", (10, 0), 1, {"id": 1, "v": "a", "n": "1", "big": ""})
    apply(harness.target, [first, event("u", (11, 0), 1, {"id": 1, "v": "b", "n": "1", "big": ""})])
    grown = event("c", (12, 0), 2, {"id": 2, "v": "c", "n": "2", "big": "", "extra": "new"})
    grown.types = {**TYPES, "extra": "text"}
    # Every whole row after the column's addition carries it (one lacking it says it was dropped).
    later = event("u", (13, 0), 1, {"id": 1, "v": "d", "n": "1", "big": "", "extra": None})
    later.types = grown.types
    apply(harness.target, [grown, later])
    query = "SELECT id, v, extra FROM {} ORDER BY id"
    rows: list[Any]
    if isinstance(harness.target, MemoryTarget):
        stored = memory_rows(harness.target.store, "items")
        rows = sorted((r["id"], r["v"], r.get("extra")) for r in stored)
    elif isinstance(harness.target, SqliteTarget):
        rows = harness.target.db.execute(query.format("public_items")).fetchall()
    else:
        assert isinstance(harness.target, PostgresTarget)
        with psycopg.connect(harness.target.config.dsn.conninfo) as conn:
            rows = conn.execute(query.format("public.items")).fetchall()
    assert [tuple(r) for r in rows] == [(1, "d", None), (2, "c", "new")]


def test_a_plan_made_before_a_truncate_is_made_again(harness: Harness) -> None:
    """A target's ``plan`` is made on the consuming thread while the batch ahead is applied.
    When that batch truncates, the plan's floor is stale: an old event planned to be applied
    (here one that arrives late, older than the truncate) must not bring its row back."""
    target = harness.target
    row = {"id": 1, "v": "a", "n": "1.5", "big": "b"}
    offsets = {("src.public.items", 0): 1}
    target.apply(GROUP, [event("c", (100, 0), 1, row)], offsets, lambda rejected: None)
    late = [event("c", (150, 0), 2, dict(row, id=2))]
    plan = target.plan(late)
    assert [len(t.upserts) for t in plan.tables] == [1], "planned for the floor before"
    if isinstance(target, PostgresTarget):  # its rows' JSON is made here, off the applying thread
        assert plan.json and plan.tables[0].upserts[0].json is not None
    target.apply(GROUP, [event("t", (200, 0), 0, None)], offsets, lambda rejected: None)
    target.apply(GROUP, late, offsets, lambda rejected: None, plan)
    assert harness.rows() == {}
    target.apply(GROUP, [event("c", (250, 0), 3, dict(row, id=3))], offsets, lambda r: None)
    assert set(harness.rows()) == {3}


def test_a_truncate_applied_meanwhile_by_another_process_is_seen(database: str) -> None:
    """Two sink processes share a topic's partitions, and a truncate (no key: any partition)
    is applied by one while the other applies older rows of the same table. The older rows must
    not outlive the truncate: the second waits for the first's transaction, then reads the
    floor. Here the first is held inside its transaction (``before_commit``) until the second
    has either finished or is waiting for it."""
    first, second = postgres_harness(database), postgres_harness(database)
    row = {"id": 1, "v": "a", "n": "1.5", "big": "b"}
    offsets = {("src.public.items", 0): 1}
    first.target.apply(GROUP, [event("c", (50, 0), 1, row)], offsets, lambda rejected: None)
    held, release = threading.Event(), threading.Event()

    def hold(rejected: Any) -> None:
        held.set()
        assert release.wait(60)

    truncating = threading.Thread(
        target=first.target.apply,
        args=(GROUP, [event("t", (200, 0), 0, None)], offsets, hold),
    )
    truncating.start()
    assert held.wait(30)
    older = threading.Thread(
        target=second.target.apply,
        args=(GROUP, [event("c", (100, 0), 5, dict(row, id=5))], offsets, lambda r: None),
    )
    older.start()
    deadline = time.monotonic() + 30
    while older.is_alive() and not waiting_on(database) and time.monotonic() < deadline:
        time.sleep(0.01)
    release.set()
    truncating.join(30)
    older.join(30)
    assert not truncating.is_alive() and not older.is_alive()
    assert first.rows() == {}
    first.target.close()
    second.target.close()


def test_a_number_beyond_64_bits_is_kept_exactly(harness: Harness) -> None:
    big = 123456789012345678901234567890
    value = orjson.dumps(
        {
            "op": "c",
            "source": {"schema": "public", "table": "items"},
            "after": {"id": 1, "v": "a", "n": 0, "big": "b"},
        }
    ).replace(b'"n":0', b'"n":%d' % big)  # orjson writes no integer beyond 64 bits
    parsed = parse_record("src.public.items", 0, 0, b'{"id":1}', value, [("cdc-event-id", b"10:0")])
    assert parsed is not None and parsed.after is not None and parsed.after["n"] == big
    parsed.types = TYPES
    apply(harness.target, [parsed])
    assert str(harness.rows()[1]["n"]) == str(big)


def test_a_placeholder_is_never_stored_as_data(harness: Harness) -> None:
    """Whoever made the event, a sink never stores the unchanged-TOAST placeholder as a value: an
    update keeps the stored value; a new row at a key gets null (a later event of the stream
    brings the value or deletes the row); a table without a key, whose rows are told apart by
    their content, does not take the row at all and says why."""
    row = {"id": 1, "v": "a", "n": "1.00", "big": "b" * 3000}
    apply(
        harness.target,
        [
            event("c", (10, 0), 1, row),
            event("u", (11, 0), 1, dict(row, v="b"), unavailable=frozenset({"big"})),
            event("c", (12, 0), 2, dict(row, id=2, big="other")),
        ],
    )
    apply(
        harness.target,
        [
            # Row 2 is deleted, and row 3 moves to its key and on before cdc could read its value
            # back: one batch, so the target still holds row 2 when the create comes.
            event("d", (13, 0), 2, None),
            event("c", (13, 1), 2, dict(row, id=2, v="c"), unavailable=frozenset({"big"})),
            event("c", (14, 0), 4, dict(row, id=4), unavailable=frozenset({"big"})),
        ],
    )
    assert harness.rows() == {
        1: dict(row, v="b"),
        2: dict(row, id=2, v="c", big=None),
        4: dict(row, id=4, big=None),
    }
    # A later event brings the value, or deletes the row.
    apply(harness.target, [event("u", (15, 0), 4, dict(row, id=4)), event("d", (16, 0), 2, None)])
    assert harness.rows() == {1: dict(row, v="b"), 4: dict(row, id=4)}

    # The same from another producer, which marks the value by the placeholder alone.
    debezium = orjson.dumps(
        {
            "op": "u",
            "source": {"schema": "public", "table": "items"},
            "after": dict(row, v="d", big=UNAVAILABLE),
        }
    )
    parsed = parse_record(
        "src.public.items", 0, 0, b'{"id":1}', debezium, [("cdc-event-id", b"17:0")]
    )
    assert parsed is not None
    apply(harness.target, [parsed])
    assert harness.rows()[1] == dict(row, v="d")

    # Tables without a key: a multiset (REPLICA IDENTITY FULL) and one with no identity at all.
    def keyless(table: str, op: str, version: tuple[int, int], a: int) -> SinkEvent:
        after = {"a": a, "b": UNAVAILABLE}
        return SinkEvent(
            topic=f"src.public.{table}",
            partition=0,
            offset=version[0],
            schema="public",
            table=table,
            op=op,
            key=dict(after) if table == "bag" else None,
            before=None,
            after=after,
            version=version,
            unavailable=frozenset({"b"}),
            types={"a": "integer", "b": "text"},
            whole_row_key=table == "bag",
        )

    rejected: list[tuple[SinkEvent, str]] = []
    events = [keyless("bag", "c", (20, 0), 1), keyless("loose", "c", (21, 0), 2)]
    harness.target.apply(GROUP, events, {("src.public.bag", 0): 22}, rejected.extend)
    assert [(e.table, reason.split(":")[0]) for e, reason in rejected] == [
        (table, f"table public.{table} has no primary key, and this 'c' event lacks the value of b"
         " (an unchanged TOASTed value its producer did not send)")
        for table in ("bag", "loose")
    ]  # fmt: skip
    for table in ("bag", "loose"):
        stored: list[Any]
        if isinstance(harness.target, MemoryTarget):
            stored = memory_rows(harness.target.store, table)
        elif isinstance(harness.target, SqliteTarget):
            stored = harness.target.db.execute(f"SELECT a, b FROM public_{table}").fetchall()
        else:
            assert isinstance(harness.target, PostgresTarget)
            with psycopg.connect(harness.target.config.dsn.conninfo) as conn:
                stored = conn.execute(f"SELECT a, b FROM public.{table}").fetchall()
        assert stored == [], table


FLOAT_TYPES = {"id": "bigint", "r": "real", "d": "double precision"}
NOT_NUMBERS = ["NaN", "Infinity", "-Infinity"]


def float_rows() -> list[dict[str, Any]]:
    """One row per value of FLOAT_TEXTS (in its type's column), then NaN and ±Infinity, which
    events carry as strings (pgoutput, snapshots), in both columns."""
    rows: list[dict[str, Any]] = []
    for t, text in FLOAT_TEXTS:
        row: dict[str, Any] = {"id": len(rows), "r": None, "d": None}
        row["r" if t == "real" else "d"] = float(text)
        rows.append(row)
    rows += [{"id": len(rows) + i, "r": s, "d": s} for i, s in enumerate(NOT_NUMBERS)]
    return rows


def float_event(table: str, op: str, version: tuple[int, int], row: dict[str, Any]) -> SinkEvent:
    """``fl``: keyed by ``id``; ``fl_nokey``: no key; ``fl_bag``: the whole row is the key."""
    key = {"fl": {"id": row["id"]}, "fl_nokey": None, "fl_bag": dict(row)}[table]
    return SinkEvent(
        topic=f"src.public.{table}",
        partition=0,
        offset=version[0],
        schema="public",
        table=table,
        op=op,
        key=key,
        before=dict(row) if op == "d" else None,
        after=None if op == "d" else dict(row),
        version=version,
        unavailable=frozenset(),
        types=FLOAT_TYPES,
        whole_row_key=table == "fl_bag",
    )


def read_floats(target: Target, table: str) -> dict[int, tuple[Any, Any]]:
    """Per id, the stored ``(r, d)``: PostgreSQL's text of them, SQLite's and memory's values."""
    if isinstance(target, MemoryTarget):
        rows = [(r["id"], r["r"], r["d"]) for r in memory_rows(target.store, table)]
    elif isinstance(target, SqliteTarget):
        rows = target.db.execute(f"SELECT id, r, d FROM public_{table}").fetchall()
    else:
        assert isinstance(target, PostgresTarget)
        with psycopg.connect(target.config.dsn.conninfo) as conn:
            rows = conn.execute(f"SELECT id, r::text, d::text FROM public.{table}").fetchall()
    return {int(i): (r, d) for i, r, d in rows}


def stored_as(target: Target, value: Any, t: str) -> Any:
    """What the target must hold for an event's value: PostgreSQL prints it as the source
    did; SQLite holds the same double (compared by repr, which shows the sign) or string."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(target, (SqliteTarget, MemoryTarget)):
        return repr(value)
    return next(text for typ, text in FLOAT_TEXTS if typ == t and float(text) == value and
                math.copysign(1, float(text)) == math.copysign(1, value))  # fmt: skip


@pytest.mark.parametrize("table", ["fl", "fl_nokey", "fl_bag"])
def test_floats_are_stored_with_their_value_and_sign(harness: Harness, table: str) -> None:
    rows = float_rows()
    events = [float_event(table, "c", (1000 + r["id"], 0), r) for r in rows]
    if table != "fl_nokey":  # zeros change sign: an update, or a delete and a create
        lsn = 2000
        for r in rows:
            if r["r"] == 0 or r["d"] == 0:
                flipped = {c: -v if isinstance(v, float) else v for c, v in r.items()}
                if table == "fl":
                    events.append(float_event(table, "u", (lsn, 0), flipped))
                else:
                    events.append(float_event(table, "d", (lsn, 0), r))
                    events.append(float_event(table, "c", (lsn, 1), flipped))
                r.update(flipped)
                lsn += 1
    apply(harness.target, events, size=5)
    got = {
        i: (repr(r) if isinstance(r, float) else r, repr(d) if isinstance(d, float) else d)
        for i, (r, d) in read_floats(harness.target, table).items()
    }  # SQLite's doubles by repr, which shows the sign; PostgreSQL's are texts already
    want = {
        r["id"]: (stored_as(harness.target, r["r"], "real"),
                  stored_as(harness.target, r["d"], "double precision"))
        for r in rows
    }  # fmt: skip
    assert got == want


@pytest.mark.parametrize("mode", ["keep", "drop"])
@pytest.mark.parametrize("kind", [pytest.param("postgres", marks=pytest.mark.services), "sqlite"])
def test_dropped_columns_are_kept_or_dropped_and_never_come_back_from_older_events(
    request: pytest.FixtureRequest, tmp_path: Path, kind: str, mode: str
) -> None:
    """Column ``extra`` is carried at 10, gone from a whole row at 20 (dropped at the source),
    still carried by an event of 15 that arrives after (another partition), then carried again
    at 30 (added again, rows before holding its default). Applied in every batch split."""

    def row(key: int, v: str, extra: str | None = None) -> dict[str, Any]:
        image: dict[str, Any] = {"id": key, "v": v, "n": "1", "big": ""}
        if extra is not None:
            image["extra"] = extra
        return image

    def with_extra(e: SinkEvent, default: str | None = None) -> SinkEvent:
        e.types = {**TYPES, "extra": "text"}
        if default is not None:
            e.missing = {"extra": default}
        return e

    history = [
        with_extra(event("c", (10, 0), 1, row(1, "a", "x1"))),
        with_extra(event("c", (10, 1), 2, row(2, "b", "x2"))),
        with_extra(event("c", (10, 2), 3, row(3, "c", "x3"))),
        event("u", (20, 0), 1, row(1, "a2")),  # extra dropped before 20
        with_extra(event("u", (15, 0), 2, row(2, "b15", "x15"))),  # late, from before the drop
        event("c", (21, 0), 4, row(4, "d")),
        with_extra(event("u", (30, 0), 4, row(4, "d30", "new")), default="dflt"),  # added again
    ]
    for size in (1, 2, 3, len(history)):
        if kind == "sqlite":
            path = tmp_path / f"{mode}{size}.db"
            config: Any = SqliteSinkConfig.model_validate(
                {"name": "c", "type": "sqlite", "topics": ["src.*"], "path": str(path)}
                | {"dropped_columns": mode}
            )
            target: Target = SqliteTarget(config)
        else:
            database = request.getfixturevalue("database")
            with psycopg.connect(database, autocommit=True) as conn:
                conn.execute("DROP TABLE IF EXISTS public.items")
                conn.execute("DROP SCHEMA IF EXISTS cdc CASCADE")
            config = PostgresSinkConfig.model_validate(
                {"name": "c", "type": "postgres", "topics": ["src.*"], "dsn": database}
                | {"dropped_columns": mode}
            )
            target = PostgresTarget(config)
        try:
            for i, e in enumerate(history):
                e.offset = i
            apply(target, history, size=size)
            query = "SELECT * FROM {} ORDER BY id"
            if isinstance(target, SqliteTarget):
                lite = target.db.execute(query.format("public_items"))
                names = [d[0] for d in lite.description]
                rows = lite.fetchall()
            else:
                with psycopg.connect(config.dsn.conninfo) as conn:
                    pg = conn.execute(query.format("public.items"))
                    names = [d.name for d in pg.description or ()]
                    rows = pg.fetchall()
        finally:
            target.close()
        table = [
            {c: v for c, v in zip(names, r, strict=True) if c in ("id", "v", "extra")} for r in rows
        ]
        # Added again at 30: a new column, which every row untouched since holds as its default
        # (the old column's values are gone in both modes).
        assert table == [
            {"id": 1, "v": "a2", "extra": "dflt"},
            {"id": 2, "v": "b15", "extra": "dflt"},
            {"id": 3, "v": "c", "extra": "dflt"},
            {"id": 4, "v": "d30", "extra": "new"},
        ], (size, table)


ROUTED_TYPES = (("id", "bigint"), ("v", "text"))


def routed_stream(seed: int) -> tuple[list[Change], dict[str, dict[int, dict[str, Any]]]]:
    """A random history of two tables whose keys overlap (ids 1 to 8 in both), with a truncate
    of one of them, and the tables it leaves behind."""
    rng = random.Random(seed)
    state: dict[str, dict[int, dict[str, Any]]] = {"items": {}, "goods": {}}
    changes: list[Change] = []
    for i in range(300):
        table = rng.choice(("items", "goods"))
        rows = state[table]
        key = rng.randrange(1, 9)
        lsn = 1000 + i
        if i == 150:
            changes.append(Change("t", "public", "items", None, None, None, lsn, 0, lsn, 1, 0))
            state["items"].clear()
            continue
        row = {"id": key, "v": f"{table}{i}{rng.choice(AWKWARD)}"}
        key_row = {"id": key}
        if key in rows and rng.random() < 0.3:
            change = Change("d", "public", table, key_row, key_row, None, lsn, 0, lsn, 1, 0)
            del rows[key]
        else:
            op: Literal["c", "u"] = "u" if key in rows else "c"
            change = Change(op, "public", table, key_row, None, row, lsn, 0, lsn, 1, 0)
            rows[key] = row
        change.types = ROUTED_TYPES
        changes.append(change)
    return changes, state


def read_table(target: Target, table: str) -> dict[int, dict[str, Any]]:
    """``public.{table}`` of any target, by id, without cdc's own columns."""
    rows: list[dict[str, Any]]
    if isinstance(target, MemoryTarget):
        rows = memory_rows(target.store, table)
    elif isinstance(target, SqliteTarget):
        lite = target.db.execute(f"SELECT * FROM public_{table}")
        names = [d[0] for d in lite.description]
        rows = [dict(zip(names, r, strict=True)) for r in lite.fetchall()]
    else:
        assert isinstance(target, PostgresTarget)
        with psycopg.connect(target.config.dsn.conninfo) as conn:
            cur = conn.execute(f"SELECT * FROM public.{table}")
            names = [d.name for d in cur.description or ()]
            rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    return {int(r["id"]): {c: v for c, v in r.items() if not c.startswith("_cdc_")} for r in rows}


@pytest.mark.parametrize("key_table_field", [None, ""])
def test_a_routed_topic_of_several_tables(harness: Harness, key_table_field: str | None) -> None:
    """Two tables routed onto one topic (``[[connectors.routes]]`` with a template without
    ``{table}``), their keys overlapping, the key naming the table or not: every event is applied
    to its own table, in order, shuffled, and replayed."""
    rule: dict[str, Any] = {"topic": "{topic_prefix}.merged"}
    if key_table_field is not None:
        rule["key_table_field"] = key_table_field
    router = Router(RouteRule.model_validate(rule))
    source = SourceInfo("src", "db", "src")
    changes, expected = routed_stream(11)
    events: list[SinkEvent] = []
    for change in changes:
        for record in router.records(change, source, 1, True):
            assert record.topic == "src.merged"
            parsed = parse_record(
                record.topic, 0, len(events), record.key, record.value, record.headers
            )
            if parsed is not None:  # tombstones are no events
                parsed.offset = len(events)
                events.append(parsed)
    if key_table_field is None:
        assert {e.key_id for e in events if e.key} == {b'{"id":%d}' % k for k in range(1, 9)}
    offsets = {("src.merged", 0): len(events)}
    for batch in batches(events, 29):
        harness.target.apply(GROUP, batch, offsets, lambda rejected: None)
    want = {t: {k: dict(r) for k, r in rows.items()} for t, rows in expected.items()}
    assert {t: read_table(harness.target, t) for t in want} == want
    shuffled = events[:]
    random.Random(11).shuffle(shuffled)
    for batch in batches(shuffled, 17):
        harness.target.apply(GROUP, batch, offsets, lambda rejected: None)
    assert {t: read_table(harness.target, t) for t in want} == want


FIXTURE = Path(__file__).parent.parent / "fixtures" / "debezium" / "cdc-pgoutput.jsonl"
VALUE_MODES = {
    "exact": (ValueMode(), False),
    "exact_schemas": (ValueMode(), True),
    # Debezium's options that keep what they can (decimal strings, microsecond times, string
    # intervals): with and without schemas. Debezium's own losses are left out below.
    "dbz": (
        ValueMode("debezium", "string", "adaptive_time_microseconds", "bytes", "string"),
        False,
    ),
    "dbz_schemas": (
        ValueMode("debezium", "string", "adaptive_time_microseconds", "hex", "string"),
        True,
    ),
}
LOST_BY_DEBEZIUM = {"ttz", "m"}
"""timetz moved to UTC; money's text without its symbol (the same value once PostgreSQL reads it:
SQLite keeps the text)."""


def _captured_changes() -> list[Change]:
    """The changes cdc read for a table of every type (tests/fixtures/debezium)."""
    changes = []
    for line in FIXTURE.read_text().splitlines():
        record = orjson.loads(line)
        value = record["value"]
        if value is None or value["op"] == "t":
            continue
        commit, index = (int(x) for x in record["headers"]["cdc-event-id"].split(":"))
        types = tuple(record["headers"]["cdc-types"].items())
        changes.append(
            Change(
                value["op"],
                "public",
                "every_type",
                record["key"],
                value["before"],
                value["after"],
                commit,
                index,
                commit,
                1,
                1,
                types=types,
            )
        )
    return changes


@pytest.mark.parametrize("harness", ["postgres", "sqlite"], indirect=True)
def test_every_type_reads_back_the_same_in_every_values_mode(harness: Harness) -> None:
    """The rows of a table of every type, encoded in each values mode (and with schemas), read
    back by the sink into the same table: the encodings lose nothing the exact mode keeps."""
    tables: dict[str, dict[int, dict[str, Any]]] = {}
    for name, (mode, with_schemas) in VALUE_MODES.items():
        source = SourceInfo("src", "db", "src", mode, True, with_schemas)
        events: list[SinkEvent] = []
        for change in _captured_changes():
            renamed = dataclasses.replace(change, table=f"every_{name}")
            record = encode(renamed, source, 1)
            parsed = parse_record(record.topic, 0, len(events), record.key, record.value,
                                  record.headers)  # fmt: skip
            assert parsed is not None
            events.append(parsed)
        offsets = {(events[0].topic, 0): len(events)}
        rejected: list[Any] = []
        harness.target.apply(GROUP, events, offsets, rejected.extend)
        assert not rejected, name
        tables[name] = _read_as_text(harness.target, f"every_{name}")
    exact = tables["exact"]
    assert len(exact) == 2 and all(len(row) > 30 for row in exact.values())
    # The exact mode's own values are the source's (the update left ba = '\x00ff').
    assert exact[1]["ba"] in ("\\x00ff", b"\x00\xff"), exact[1]["ba"]
    assert exact[1]["n"] in ("1.10", 1.10)
    for name, rows in tables.items():
        lost = LOST_BY_DEBEZIUM if name.startswith("dbz") else set()
        strip = {k: {c: v for c, v in r.items() if c not in lost} for k, r in rows.items()}
        want = {k: {c: v for c, v in r.items() if c not in lost} for k, r in exact.items()}
        assert strip.keys() == want.keys(), name
        for k, wanted in want.items():
            differ = {c: (strip[k].get(c), v) for c, v in wanted.items() if strip[k].get(c) != v}
            assert not differ, (name, k, differ)


def _read_as_text(target: Target, table: str) -> dict[int, dict[str, Any]]:
    """``public.{table}`` by id, PostgreSQL's values as their text (a BC date has no Python
    value), without cdc's own columns."""
    if not isinstance(target, PostgresTarget):
        return read_table(target, table)
    with psycopg.connect(target.config.dsn.conninfo) as conn:
        query = f'SELECT row_to_json("whole_row")::text FROM public.{table} "whole_row"'
        texts = conn.execute(query).fetchall()
    rows = [orjson.loads(text) for (text,) in texts]
    return {int(r["id"]): {c: v for c, v in r.items() if not c.startswith("_cdc_")} for r in rows}
