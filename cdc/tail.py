"""``cdc tail``: the events on Kafka, decoded for a person, as they arrive or from a point in time.

A tail reads without a consumer group (it is assigned the partitions and seeks them itself), so
it joins no group and commits nothing: the brokers and every sink are as they were. Reading
records (:func:`read`), choosing them (:class:`Filter`) and writing them (:func:`render`,
:func:`render_json`) are pure; :func:`tail` only moves records from the consumer to them.
"""

from __future__ import annotations

__all__ = [
    "Filter",
    "Start",
    "Tailed",
    "TopicMatch",
    "parse_event_id",
    "parse_key",
    "parse_since",
    "read",
    "render",
    "render_json",
    "tail",
]

import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

from cdc.config import KafkaConfig
from cdc.errors import BadRecord, CdcError, describe
from cdc.events import EVENT_ID_HEADER
from cdc.globs import compile_globs
from cdc.kafka import (
    Admin,
    ConsumedRecord,
    Consumer,
    TopicPartition,
    open_admin,
    open_consumer,
)
from cdc.records import parse_record

log = logging.getLogger(__name__)

OPS = {"c": "INSERT", "u": "UPDATE", "d": "DELETE", "r": "READ", "t": "TRUNCATE"}
VALUE_CHARS = 200
"""A value longer than this (as JSON) is cut in the readable form; ``--json`` has it whole."""
TOPIC_LOOK_S = 5.0
"""How often the topics are listed again, so that a table's new topic is read from its start."""
DLQ_SUFFIX = ".dlq"
DLQ_REASON = "cdc-dlq-reason"

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")
_UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_EVENT_ID = re.compile(r"^\d+:\d+$")


def parse_since(text: str, now_ms: int) -> int:
    """Milliseconds since the epoch for ``--since``: a duration back from now (``90s``, ``10m``,
    ``2h``, ``1d``) or an ISO 8601 time (``2026-12-06T17:00:00+01:00``; UTC when it names no
    zone; a date alone is its midnight). ValueError when it is neither."""
    text = text.strip()
    relative = _RELATIVE.match(text)
    if relative:
        return now_ms - int(float(relative[1]) * _UNITS_S[relative[2]] * 1000)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is neither a time (2026-12-06T17:00:00Z) nor a duration (10m, 2h, 1d)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def parse_key(text: str) -> bytes:
    """The key ``--key`` names, as :func:`cdc.records.key_id` writes it (names sorted), so that
    the order of the columns does not matter. ValueError when it is not a JSON object."""
    try:
        key = orjson.loads(text)
    except orjson.JSONDecodeError as e:
        raise ValueError(f"{text!r} is not JSON: {e}") from None
    if type(key) is not dict:
        raise ValueError(f'{text!r} is not a JSON object (a key is like {{"id": 42}})')
    return orjson.dumps(key, option=orjson.OPT_SORT_KEYS)


def parse_event_id(text: str) -> str:
    """An event id as the ``cdc-event-id`` header holds it: ``commit_lsn:index``, in decimal."""
    text = text.strip()
    if not _EVENT_ID.match(text):
        raise ValueError(f"{text!r} is not an event id (commit LSN and index: 24023664:0)")
    return text


class TopicMatch:
    """The topics a tail reads: any matching a glob. Dead-letter topics (``*.dlq``) only when a
    glob itself ends in ``.dlq``: their records are copies of records the other topics hold."""

    def __init__(self, globs: Sequence[str]) -> None:
        self._plain = compile_globs(g for g in globs if not g.endswith(DLQ_SUFFIX))
        self._dlq = compile_globs(g for g in globs if g.endswith(DLQ_SUFFIX))

    def __call__(self, topic: str) -> bool:
        if topic.endswith(DLQ_SUFFIX):
            return bool(self._dlq.match(topic))
        return bool(self._plain.match(topic))


@dataclass(frozen=True, slots=True)
class Tailed:
    """One record as a tail shows it: where it sits, what it says, or why it is not an event."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    """The record's Kafka timestamp (what ``--since`` compares)."""
    key: bytes | None
    """The key with its names sorted when it is a JSON object, else as it came."""
    event_id: str | None
    headers: dict[str, str]
    value: Any
    """The value as parsed JSON; its text when it is not JSON; None for a tombstone."""
    op: str | None = None
    schema: str = ""
    table: str = ""
    event_key: dict[str, Any] | None = None
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    unavailable: frozenset[str] = frozenset()
    commit_ms: int | None = None
    """The commit time at the source (``source.ts_ms``)."""
    problem: str | None = None
    """Why the record is not a change event, or None."""


def read(tp: TopicPartition, record: ConsumedRecord) -> Tailed:
    """``record`` decoded; a record that is not cdc's envelope says why in ``problem``."""
    headers = {k: (v or b"").decode(errors="replace") for k, v in record.headers}
    key = record.key
    if key is not None:
        try:
            parsed = orjson.loads(key)
            if type(parsed) is dict:
                key = orjson.dumps(parsed, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONDecodeError:
            pass  # shown as it came; parse_record names the problem
    value: Any = None
    if record.value is not None:
        try:
            value = orjson.loads(record.value)
        except orjson.JSONDecodeError:
            value = record.value.decode(errors="replace")
    base = (tp.topic, tp.partition, record.offset, record.timestamp, key)
    found = Tailed(*base, headers.get(EVENT_ID_HEADER), headers, value)
    try:
        event = parse_record(*tp, record.offset, record.key, record.value, record.headers)
    except BadRecord as e:
        return _replace(found, problem=str(e))
    if event is None:
        return found  # a tombstone
    source = value.get("source") if type(value) is dict else None
    commit_ms = source.get("ts_ms") if type(source) is dict else None
    return _replace(
        found,
        op=event.op,
        schema=event.schema,
        table=event.table,
        event_key=event.key,
        before=event.before,
        after=event.after,
        unavailable=event.unavailable,
        commit_ms=commit_ms if type(commit_ms) is int else None,
    )


def _replace(t: Tailed, **changes: Any) -> Tailed:
    fields = {f: getattr(t, f) for f in Tailed.__slots__}
    return Tailed(**{**fields, **changes})


@dataclass(frozen=True, slots=True)
class Filter:
    """``--key`` and ``--id``: a record is shown when it matches every one given."""

    key: bytes | None = None
    """As :func:`parse_key` gives it."""
    event_id: str | None = None

    def __call__(self, t: Tailed) -> bool:
        if self.event_id is not None and t.event_id != self.event_id:
            return False
        return self.key is None or t.key == self.key


def render(t: Tailed) -> str:
    """One line for a person: commit time, op, table, key, event id, what changed, and where the
    record sits (``topic:partition@offset``)."""
    at = f"[{t.topic}:{t.partition}@{t.offset}]"
    dlq = f" (dead-lettered: {t.headers[DLQ_REASON]})" if DLQ_REASON in t.headers else ""
    if t.problem is not None:
        return f"BAD {at} {t.problem}{dlq}"
    key = "" if t.key is None else f" key={t.key.decode(errors='replace')}"
    if t.op is None:
        return f"TOMBSTONE{key} {at}"
    when = _time(t.commit_ms) if t.commit_ms is not None else "-"
    parts = [when, OPS[t.op], f"{t.schema}.{t.table}"]
    if t.op != "t":
        parts.append(key.strip())
    parts.append(f"event={t.event_id}")
    if t.op in ("c", "r"):
        parts.append(" ".join(f"{c}={_value(v)}" for c, v in (t.after or {}).items()))
    elif t.op == "u":
        parts.append(_changes(t))
    return " ".join(p for p in parts if p) + f" {at}{dlq}"


def _changes(t: Tailed) -> str:
    """The columns an update changed, ``col: old -> new``; ``col: ? -> new`` where the source did
    not send the old value (REPLICA IDENTITY DEFAULT sends only the key's). Columns whose
    unchanged TOASTed value was not sent are left out: they did not change."""
    # Without a before image the key did not change: its values are the old ones.
    old = t.before if t.before is not None else (t.event_key or {})
    shown = []
    for column, new in (t.after or {}).items():
        if column in t.unavailable:
            continue
        if column not in old:
            shown.append(f"{column}: ? -> {_value(new)}")
        elif old[column] != new:
            shown.append(f"{column}: {_value(old[column])} -> {_value(new)}")
    return ", ".join(shown) if shown else "(no column changed)"


def _value(v: Any) -> str:
    text = orjson.dumps(v).decode()
    if len(text) > VALUE_CHARS:
        return f"{text[:VALUE_CHARS]}...({len(text)} chars)"
    return text


def _time(ms: int) -> str:
    when = datetime.fromtimestamp(ms / 1000, UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def render_json(t: Tailed) -> str:
    """One JSON object a line: where the record sits, its key, headers and value as they are
    on Kafka (parsed), and ``problem`` when it is not a change event."""
    line: dict[str, Any] = {
        "topic": t.topic,
        "partition": t.partition,
        "offset": t.offset,
        "timestamp": t.timestamp_ms,
        "key": t.event_key if t.event_key is not None else _json_or_text(t.key),
        "headers": t.headers,
        "value": t.value,
    }
    if t.problem is not None:
        line["problem"] = t.problem
    return orjson.dumps(line).decode()


def _json_or_text(raw: bytes | None) -> Any:
    if raw is None:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode(errors="replace")


@dataclass(frozen=True, slots=True)
class Start:
    """Where each partition is read from: its end (only what comes), its beginning, or its
    first record at or after ``since_ms``."""

    at: Literal["end", "beginning", "since"] = "end"
    since_ms: int = 0


def tail(
    kafka: KafkaConfig,
    topics: Callable[[str], bool],
    start: Start,
    shown: Callable[[Tailed], bool],
    emit: Callable[[list[Tailed]], None],
    stop: threading.Event,
    first_only: bool = False,
) -> bool:
    """Read the topics ``topics`` accepts from ``start`` and ``emit`` the records ``shown``
    accepts, a poll's worth at a time, until ``stop`` is set. Topics that appear meanwhile are
    read from their beginning. With ``first_only`` it searches instead: it reads up to the end
    each partition had when it began, ends at the first record shown, and says whether there
    was one."""
    admin = open_admin(kafka)
    consumer = open_consumer(kafka, None)
    try:
        positions = _partitions(admin, topics)
        for tp, offset in _starts(admin, list(positions), start).items():
            positions[tp] = offset
        ends = admin.end_offsets(positions) if first_only else {}
        _assign(consumer, positions)
        topic_count = len({tp.topic for tp in positions})
        log.info("reading %d partition(s) of %d topic(s)", len(positions), topic_count)
        looked = time.monotonic()
        while not stop.is_set():
            if first_only and all(positions[tp] >= end for tp, end in ends.items()):
                return False
            if not first_only and time.monotonic() - looked >= TOPIC_LOOK_S:
                looked = time.monotonic()
                firsts = _new_partitions(admin, topics, positions)
                if firsts:
                    positions.update(firsts)
                    _assign(consumer, positions)
                    log.info("reading %d new partition(s)", len(firsts))
            batch: list[Tailed] = []
            for tp, records in consumer.poll(500, 500).items():
                if tp not in positions:
                    continue
                for r in records:
                    positions[tp] = r.offset + 1
                    t = read(tp, r)
                    if shown(t):
                        batch.append(t)
                        if first_only:
                            emit(batch)
                            return True
            if batch:
                emit(batch)
        return False
    finally:
        consumer.close()
        admin.close()


def _partitions(admin: Admin, topics: Callable[[str], bool]) -> dict[TopicPartition, int]:
    """Every partition of the topics accepted, each at offset 0 (positioned later)."""
    found: dict[TopicPartition, int] = {}
    for topic in sorted(t for t in admin.topics() if topics(t)):
        for p in sorted(admin.partitions_for_topic(topic) or ()):
            found[TopicPartition(topic, p)] = 0
    return found


def _new_partitions(
    admin: Admin, topics: Callable[[str], bool], known: dict[TopicPartition, int]
) -> dict[TopicPartition, int]:
    """The partitions of the topics accepted that are not ``known``, at their first offset."""
    try:
        new = [tp for tp in _partitions(admin, topics) if tp not in known]
        return admin.beginning_offsets(new) if new else {}
    except CdcError as e:  # a topic with no leader yet, say: looked at again soon
        log.debug("listing topics: %s", describe(e))
        return {}


def _starts(admin: Admin, tps: list[TopicPartition], start: Start) -> dict[TopicPartition, int]:
    if start.at == "beginning":
        return admin.beginning_offsets(tps)
    ends = admin.end_offsets(tps)
    if start.at == "end":
        return ends
    at_time = admin.offsets_for_time(tps, start.since_ms)
    # A partition with nothing that recent is read from its end: only what comes.
    return {tp: ends[tp] if (o := at_time[tp]) is None else o for tp in tps}


def _assign(consumer: Consumer, positions: dict[TopicPartition, int]) -> None:
    # Assigning anew forgets where each partition was: every one is sought again.
    consumer.assign(list(positions))
    for tp, offset in positions.items():
        consumer.seek(tp, offset)
