"""``cdc tail`` without services: records as cdc publishes them (:func:`cdc.events.encode`),
read, filtered and rendered; its options parsed."""

from __future__ import annotations

import threading
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from cdc import tail as tail_module
from cdc.cli import cli
from cdc.config import KafkaConfig
from cdc.events import Change, SourceInfo, encode, tombstone
from cdc.kafka import ConsumedRecord, TopicPartition
from cdc.tail import (
    Filter,
    Start,
    Tailed,
    TopicMatch,
    parse_event_id,
    parse_key,
    parse_since,
    read,
    render,
    render_json,
)

SOURCE = SourceInfo("shop", "shopdb", "shop")
TP = TopicPartition("shop.public.orders", 2)
COMMIT_MS = 1_796_000_000_123  # 2026-11-30T00:53:20.123Z


def change(op: str, key: Any, before: Any, after: Any, **more: Any) -> Change:
    fields: dict[str, Any] = {
        "op": op,
        "schema": "public",
        "table": "orders",
        "key": key,
        "before": before,
        "after": after,
        "commit_lsn": 24023664,
        "index": 3,
        "lsn": 24023000,
        "xid": 777,
        "commit_ts_ms": COMMIT_MS,
    }
    return Change(**{**fields, **more})


def consumed(c: Change, offset: int = 17) -> ConsumedRecord:
    r = encode(c, SOURCE, now_ms=COMMIT_MS + 5)
    return ConsumedRecord(offset, r.key, r.value, r.headers, COMMIT_MS + 9)


def line(c: Change) -> str:
    return render(read(TP, consumed(c)))


def test_an_insert_shows_time_op_table_key_id_values_and_where_it_sits() -> None:
    row = {"id": 1, "total": 9.5, "note": "new"}
    assert line(change("c", {"id": 1}, None, row)) == (
        '2026-11-30T00:53:20.123Z INSERT public.orders key={"id":1} event=24023664:3'
        ' id=1 total=9.5 note="new" [shop.public.orders:2@17]'
    )


def test_a_snapshot_read_is_shown_like_an_insert() -> None:
    assert " READ public.orders " in line(change("r", {"id": 1}, None, {"id": 1}))


def test_an_update_shows_only_the_columns_it_changed() -> None:
    before = {"id": 1, "total": 9.5, "note": "new", "big": "x" * 10}
    after = {"id": 1, "total": 10, "note": "new", "big": "x" * 10}
    assert line(change("u", {"id": 1}, before, after)) == (
        '2026-11-30T00:53:20.123Z UPDATE public.orders key={"id":1} event=24023664:3'
        " total: 9.5 -> 10 [shop.public.orders:2@17]"
    )


def test_an_update_without_old_values_says_they_are_unknown() -> None:
    """REPLICA IDENTITY DEFAULT: no before image; the key is the old key, the rest unknown;
    an unchanged TOASTed value the source did not send is left out."""
    after = {"id": 1, "total": 10, "doc": "__debezium_unavailable_value"}
    text = line(change("u", {"id": 1}, None, after, unavailable=("doc",)))
    assert text.endswith(" total: ? -> 10 [shop.public.orders:2@17]")
    assert "doc" not in text


def test_an_update_that_changed_nothing_says_so() -> None:
    row = {"id": 1, "total": 9.5}
    assert "(no column changed)" in line(change("u", {"id": 1}, row, row))


def test_a_delete_shows_its_key() -> None:
    assert line(change("d", {"id": 1}, {"id": 1}, None)) == (
        '2026-11-30T00:53:20.123Z DELETE public.orders key={"id":1} event=24023664:3'
        " [shop.public.orders:2@17]"
    )


def test_a_truncate_shows_its_table() -> None:
    assert line(change("t", None, None, None)) == (
        "2026-11-30T00:53:20.123Z TRUNCATE public.orders event=24023664:3 [shop.public.orders:2@17]"
    )


def test_a_long_value_is_cut() -> None:
    text = line(change("c", {"id": 1}, None, {"id": 1, "doc": "y" * 1000}))
    assert '"' + "y" * 199 + "...(1002 chars)" in text
    assert "y" * 201 not in text


def test_a_tombstone_and_records_that_are_not_events() -> None:
    record = encode(change("d", {"id": 1}, {"id": 1}, None), SOURCE, COMMIT_MS)
    gone = tombstone(record)
    assert render(read(TP, ConsumedRecord(18, gone.key, None, gone.headers, 0))) == (
        'TOMBSTONE key={"id":1} [shop.public.orders:2@18]'
    )
    bad = read(TP, ConsumedRecord(19, b"\xff", b"not json", [], 0))
    assert render(bad).startswith("BAD [shop.public.orders:2@19] value is not JSON")
    other = read(TP, ConsumedRecord(20, None, b'{"op": "x"}', [("cdc-dlq-reason", b"why")], 0))
    assert render(other) == (
        "BAD [shop.public.orders:2@20] not a change event: op is 'x', expected one of c, u, d,"
        " r, t (dead-lettered: why)"
    )
    assert orjson.loads(render_json(bad))["problem"].startswith("value is not JSON")


def test_json_lines_carry_the_record_as_it_is() -> None:
    c = change("u", {"id": 1}, {"id": 1, "n": 1}, {"id": 1, "n": 2})
    found = orjson.loads(render_json(read(TP, consumed(c))))
    assert (found["topic"], found["partition"]) == ("shop.public.orders", 2)
    assert (found["offset"], found["timestamp"]) == (17, COMMIT_MS + 9)
    assert found["key"] == {"id": 1}
    assert found["headers"]["cdc-event-id"] == "24023664:3"
    assert found["value"]["after"] == {"id": 1, "n": 2}
    assert found["value"]["source"]["ts_ms"] == COMMIT_MS
    assert "problem" not in found


def test_key_and_id_filters() -> None:
    one = read(TP, consumed(change("c", {"a": 1, "b": "x"}, None, {"a": 1, "b": "x"})))
    other = read(TP, consumed(change("c", {"a": 2, "b": "x"}, None, {"a": 2, "b": "x"}, index=4)))
    assert Filter()(one) and Filter()(other)
    by_key = Filter(key=parse_key('{"b": "x", "a": 1}'))  # the columns' order does not matter
    assert by_key(one) and not by_key(other)
    by_id = Filter(event_id=parse_event_id("24023664:4"))
    assert by_id(other) and not by_id(one)
    assert not Filter(key=parse_key('{"a": 2}'), event_id="24023664:4")(other)


@pytest.mark.parametrize("bad", ["42", "[1]", "{id: 1}"])
def test_a_key_must_be_a_json_object(bad: str) -> None:
    with pytest.raises(ValueError, match="JSON"):
        parse_key(bad)


@pytest.mark.parametrize("bad", ["0/16B3748", "12", "a:1", "1:2:3"])
def test_an_event_id_is_commit_lsn_and_index(bad: str) -> None:
    with pytest.raises(ValueError, match="not an event id"):
        parse_event_id(bad)


NOW = 1_796_000_000_000


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", NOW - 90_000),
        ("10m", NOW - 600_000),
        ("1.5h", NOW - 5_400_000),
        ("1d", NOW - 86_400_000),
        ("2026-11-30T00:53:20Z", NOW),
        ("2026-11-30T00:53:20", NOW),  # no zone: UTC
        ("2026-11-30T01:53:20+01:00", NOW),
        ("2026-11-30 00:53:20.5", NOW + 500),
        ("2026-11-30", 1_795_996_800_000),  # a date: its midnight,
    ],
)
def test_since_takes_a_time_or_a_duration(text: str, expected: int) -> None:
    assert parse_since(text, NOW) == expected


def test_since_refuses_anything_else() -> None:
    with pytest.raises(ValueError, match="neither a time"):
        parse_since("yesterday", NOW)


def test_dead_letter_topics_only_when_asked_for() -> None:
    match = TopicMatch(["shop.*"])
    assert match("shop.public.orders") and not match("shop.public.orders.dlq")
    assert not match("other.public.orders")
    dlq = TopicMatch(["shop.*", "shop.*.dlq"])
    assert dlq("shop.public.orders.dlq") and dlq("shop.public.orders")


def test_the_command_refuses_bad_options(tmp_path: Any) -> None:
    path = tmp_path / "cdc.toml"
    path.write_text('[kafka]\nbootstrap_servers = ["127.0.0.1:1"]\n')
    runner = CliRunner()
    both = runner.invoke(cli, ["tail", "-c", str(path), "--from-beginning", "--since", "1m"])
    assert both.exit_code == 2 and "exclude each other" in both.output
    key = runner.invoke(cli, ["tail", "-c", str(path), "--key", "[1]"])
    assert key.exit_code == 2 and "Invalid value for '--key'" in key.output
    since = runner.invoke(cli, ["tail", "-c", str(path), "--since", "soon"])
    assert since.exit_code == 2 and "neither a time" in since.output


class FakeKafka:
    """Partitions of records, an admin and a consumer over them: what :func:`tail` is given."""

    def __init__(self) -> None:
        self.records: dict[TopicPartition, list[ConsumedRecord]] = {}
        self.positions: dict[TopicPartition, int] = {}
        self.polls = 0
        self.on_poll: Any = None

    def add(self, tp: TopicPartition, c: Change, timestamp: int = 0) -> None:
        found = self.records.setdefault(tp, [])
        r = encode(c, SOURCE, COMMIT_MS)
        found.append(ConsumedRecord(len(found), r.key, r.value, r.headers, timestamp))

    # Admin
    def topics(self) -> set[str]:
        return {tp.topic for tp in self.records}

    def partitions_for_topic(self, topic: str) -> set[int]:
        return {tp.partition for tp in self.records if tp.topic == topic}

    def beginning_offsets(self, tps: Any) -> dict[TopicPartition, int]:
        return dict.fromkeys(tps, 0)

    def end_offsets(self, tps: Any) -> dict[TopicPartition, int]:
        return {tp: len(self.records[tp]) for tp in tps}

    def offsets_for_time(self, tps: Any, ms: int) -> dict[TopicPartition, int | None]:
        return {
            tp: next((r.offset for r in self.records[tp] if r.timestamp >= ms), None) for tp in tps
        }

    # Consumer
    def assign(self, tps: list[TopicPartition]) -> None:
        self.positions = dict.fromkeys(tps, 0)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.positions[tp] = offset

    def poll(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[ConsumedRecord]]:
        self.polls += 1
        if self.on_poll is not None:
            self.on_poll(self)
        batch = {}
        for tp, at in self.positions.items():
            if self.records[tp][at:]:
                batch[tp] = self.records[tp][at:]
                self.positions[tp] = len(self.records[tp])
        return batch

    def close(self) -> None:
        pass


@pytest.fixture
def kafka(monkeypatch: pytest.MonkeyPatch) -> FakeKafka:
    fake = FakeKafka()
    monkeypatch.setattr(tail_module, "open_admin", lambda config: fake)
    monkeypatch.setattr(tail_module, "open_consumer", lambda config, group: fake)
    monkeypatch.setattr(tail_module, "TOPIC_LOOK_S", 0.0)
    return fake


def insert(i: int, index: int = 0) -> Change:
    return change("c", {"id": i}, None, {"id": i}, index=index, commit_lsn=100 + i)


ALL = Filter()
KAFKA = KafkaConfig.model_validate({"bootstrap_servers": ["127.0.0.1:1"]})
A, B = TopicPartition("shop.public.a", 0), TopicPartition("shop.public.b", 0)


def run_tail(
    kafka: FakeKafka, start: Start, shown: Filter = ALL, first_only: bool = False
) -> tuple[bool, list[str]]:
    """Runs a tail for three polls; a search (``first_only``) must end by itself within 50."""
    stop = threading.Event()
    emitted: list[str] = []
    kafka.polls = 0

    def stop_after(fake: FakeKafka) -> None:
        assert fake.polls < 50, "the search did not end"
        if fake.polls >= 3 and not first_only:
            stop.set()

    kafka.on_poll = stop_after
    found = tail_module.tail(
        KAFKA,
        TopicMatch(["shop.*"]),
        start,
        shown,
        lambda batch: emitted.extend(render(t) for t in batch),
        stop,
        first_only,
    )
    return found, emitted


def test_it_starts_at_the_end_the_beginning_or_a_time(kafka: FakeKafka) -> None:
    for i in range(3):
        kafka.add(A, insert(i), timestamp=i * 1000)
    kafka.add(TopicPartition("other.public.a", 0), insert(9))
    assert run_tail(kafka, Start("end")) == (False, [])
    _, everything = run_tail(kafka, Start("beginning"))
    assert [line.split(" event=")[1][:5] for line in everything] == ["100:0", "101:0", "102:0"]
    _, recent = run_tail(kafka, Start("since", 1000))
    assert len(recent) == 2 and "event=101:0" in recent[0]
    _, future = run_tail(kafka, Start("since", 5000))
    assert future == []


def test_a_topic_that_appears_is_read_from_its_start(kafka: FakeKafka) -> None:
    kafka.add(A, insert(0))

    def later(fake: FakeKafka) -> None:
        if fake.polls == 2:
            fake.add(B, insert(1))
            fake.add(B, insert(2))
        if fake.polls >= 5:
            stop.set()

    stop = threading.Event()
    kafka.on_poll = later
    emitted: list[Tailed] = []
    tail_module.tail(KAFKA, TopicMatch(["shop.*"]), Start("end"), Filter(), emitted.extend, stop)
    assert [(t.topic, t.offset) for t in emitted] == [(B.topic, 0), (B.topic, 1)]


def test_an_id_search_ends_at_the_match_or_at_the_end(kafka: FakeKafka) -> None:
    for i in range(3):
        kafka.add(A, insert(i))
        kafka.add(B, insert(10 + i))
    found, lines = run_tail(kafka, Start("beginning"), Filter(event_id="111:0"), True)
    assert found and len(lines) == 1 and "event=111:0" in lines[0]
    assert run_tail(kafka, Start("beginning"), Filter(event_id="1:1"), True) == (False, [])
