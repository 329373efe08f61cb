"""How far behind a sink is (``cdc status``): end offsets against the offsets its target stored."""

from __future__ import annotations

__all__ = ["consumer_lag"]

import logging
import re
import time
from collections.abc import Callable, Sequence

from cdc.config import KafkaConfig
from cdc.errors import CdcError, Refused, describe
from cdc.findings import Finding
from cdc.kafka import Consumer, LeaderUnknown, TopicPartition, open_admin, open_consumer
from cdc.runstate import dlq_since
from cdc.sink.target import DLQ_SUFFIX, Target, TargetUnavailable
from cdc.sink.watch import partitions_of, subscription_pattern

log = logging.getLogger(__name__)


def consumer_lag(
    name: str,
    group_id: str,
    topics: Sequence[str],
    kafka: KafkaConfig,
    target_factory: Callable[[], Target],
) -> list[Finding]:
    """How many records of its topics a sink has not applied yet, from the offsets it stored."""
    subject = f"sink {name}"
    try:
        target = target_factory()
    except (TargetUnavailable, Refused) as e:
        return [Finding.fail(subject, str(e).removeprefix(subject + ": "))]
    try:
        return _lag(subject, group_id, topics, kafka, target)
    finally:
        target.close()


def _lag(
    subject: str, group_id: str, topics: Sequence[str], kafka: KafkaConfig, target: Target
) -> list[Finding]:
    pattern = re.compile(subscription_pattern(topics))
    try:
        # kafka-python, whatever the sinks' client, as ever: status makes one look.
        admin = open_admin(kafka, client="kafka-python", request_timeout_ms=10_000)
        try:
            every = admin.topics()
            names = [t for t in every if pattern.match(t)]
            partitions = partitions_of(admin, names)
            end = admin.end_offsets(partitions)
            dead = partitions_of(admin, [t + DLQ_SUFFIX for t in names if t + DLQ_SUFFIX in every])
            dead_end = admin.end_offsets(dead)
            dead_start = admin.beginning_offsets(dead)
            tails = {tp: dead_end[tp] for tp in dead if dead_end[tp] > dead_start[tp]}
            newest = _newest(kafka, tails) if tails else {}
        finally:
            admin.close()
    except LeaderUnknown as e:  # a topic created a moment ago
        return [Finding.warn(subject, f"lag unknown for now: {describe(e)}")]
    except CdcError as e:
        return [Finding.fail(subject, f"Kafka does not answer: {describe(e)}")]
    stored = target.stored_offsets(group_id, [(tp.topic, tp.partition) for tp in partitions])
    lag = {tp: max(0, end[tp] - stored.get((tp.topic, tp.partition), 0)) for tp in partitions}
    behind = sorted(f"{tp.topic}[{tp.partition}] {n}" for tp, n in lag.items() if n)
    findings = [
        Finding.ok(
            subject,
            f"group {group_id}: {len(names)} topic(s), {len(partitions)} partition(s),"
            f" lag {sum(lag.values())} record(s)"
            + (f" ({', '.join(behind[:10])})" if behind else ""),
        )
    ]
    held: dict[str, int] = {}
    ends: dict[str, int] = {}
    for tp in dead:
        held[tp.topic] = held.get(tp.topic, 0) + dead_end[tp] - dead_start[tp]
        ends[tp.topic] = ends.get(tp.topic, 0) + dead_end[tp]
    since = dlq_since(f"{','.join(kafka.bootstrap_servers)}|{subject}", ends)
    for topic, n in sorted(held.items()):
        if not n:
            continue
        last = newest.get(topic)
        newest_text = (
            f"; newest at {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(last[0] / 1000))}"
            f" UTC: {last[1]}"
            if last
            else ""
        )
        if topic in since:
            new, at = since[topic]
            newest_text += (
                f"; {new} new since the last cdc status"
                f" ({time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(at))} UTC)"
            )
        findings.append(
            Finding.warn(
                subject,
                f"{n} record(s) it could not apply are in {topic}{newest_text} (each record's"
                " reason: its cdc-dlq-reason header)",
            )
        )
    return findings


def _newest(
    kafka: KafkaConfig, ends: dict[TopicPartition, int], timeout_s: float = 5.0
) -> dict[str, tuple[int, str]]:
    """Per DLQ topic, the newest record's timestamp (ms) and cdc-dlq-reason: the last record of
    each partition read, within ``timeout_s`` (what is not read in time is left out)."""
    consumer = open_consumer(kafka, None, client="kafka-python")
    try:
        return _tails(consumer, ends, timeout_s)
    finally:
        consumer.close()


def _tails(
    consumer: Consumer, ends: dict[TopicPartition, int], timeout_s: float
) -> dict[str, tuple[int, str]]:
    consumer.assign(list(ends))
    for tp, end in ends.items():
        consumer.seek(tp, end - 1)
    newest: dict[str, tuple[int, str]] = {}
    left, deadline = set(ends), time.monotonic() + timeout_s
    while left and time.monotonic() < deadline:
        for tp, records in consumer.poll(timeout_ms=500, max_records=500).items():
            left.discard(tp)
            for r in records:  # from the last offset on: the partition's last record
                reason = dict(r.headers or ()).get("cdc-dlq-reason", b"").decode(errors="replace")
                reason = reason.strip().split("\n")[0][:300]
                if r.timestamp >= newest.get(tp.topic, (-1, ""))[0]:
                    newest[tp.topic] = (r.timestamp, reason or "no cdc-dlq-reason header")
    return newest
