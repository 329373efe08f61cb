"""One contract, both Kafka clients: what cdc asks of a publisher, a consumer and an admin
(:mod:`cdc.kafka.protocols`), checked on kafka-python and on confluent-kafka against the
devstack's Kafka. Records are written by cdc's publisher and read back by a plain kafka-python
consumer (and the other way round), so neither side checks itself.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KafkaTopicPartition
from kafka.admin import NewTopic

from cdc.config import KafkaConfig
from cdc.errors import CdcError
from cdc.events import Record
from cdc.kafka import (
    Admin,
    ConsumedRecord,
    Consumer,
    Publisher,
    TopicPartition,
    open_admin,
    open_consumer,
    open_publisher,
)
from cdc.oversized import Oversized, OversizedRecord
from tests.support.harness import wait_for

CLIENTS = ["kafka-python", "confluent-kafka"]

AWKWARD: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]] = [
    (b"k", b"v", []),
    (None, b"no key", [("h", b"1")]),
    (b"tombstone", None, [("cdc-event-id", b"1:0")]),
    (b"", b"", [("empty", b"")]),
    (bytes(range(256)), bytes(range(255, -1, -1)) * 3, [("bin", bytes(range(256)))]),
    (b"\xff\xfe", "é☃𝄞".encode(), [("dup", b"a"), ("dup", b"b"), ("é", b"\x00")]),
]
"""Keys, values and headers that must arrive byte for byte, in order: none, empty, binary,
repeated and non-ASCII header names."""


def config(kafka: str, client: str, partitions: int = 1, linger_ms: int = 5) -> KafkaConfig:
    return KafkaConfig.model_validate(
        {
            "bootstrap_servers": [kafka],
            "producer": {"client": client, "linger_ms": linger_ms},
            "consumer": {"client": client},
            "topics": {"partitions": partitions, "replication_factor": 1},
        }
    )


@pytest.fixture(params=CLIENTS)
def client(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class Acks:
    """The callbacks a publisher is given, counting what they were told."""

    def __init__(self) -> None:
        self.acked: list[Any] = []
        self.errors: list[Exception] = []

    def ack(self, *args: Any) -> None:
        self.acked.append(args)

    def settled(self, publisher: Publisher, n: int, timeout_s: float = 30) -> None:
        """Poll (no flush) until ``n`` callbacks ran."""
        deadline = time.monotonic() + timeout_s
        while len(self.acked) + len(self.errors) < n:
            assert time.monotonic() < deadline, f"{len(self.acked)} acks of {n}"
            publisher.poll(0.01)


@pytest.fixture
def publisher(kafka_bootstrap: str, client: str) -> Iterator[Publisher]:
    opened = open_publisher(config(kafka_bootstrap, client, partitions=3))
    yield opened
    opened.close(5.0)


def read_back(kafka: str, topic: str, n: int, timeout_s: float = 30) -> list[Any]:
    """The first ``n`` records of every partition of ``topic``, read by kafka-python itself."""
    consumer = KafkaConsumer(bootstrap_servers=kafka, enable_auto_commit=False)
    try:
        partitions = [KafkaTopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        found: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while len(found) < n and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=200).values():
                found.extend(records)
        return found
    finally:
        consumer.close()


def end_offsets(kafka: str, topic: str) -> dict[int, int]:
    consumer = KafkaConsumer(bootstrap_servers=kafka, enable_auto_commit=False)
    try:
        tps = [KafkaTopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return {tp.partition: o for tp, o in consumer.end_offsets(tps).items()}
    finally:
        consumer.close()


# The publisher


def test_acks_come_once_the_broker_has_each_record_byte_exact(
    publisher: Publisher, kafka_bootstrap: str, unique: str
) -> None:
    topic = f"contract{unique}.acks"
    acks = Acks()
    callback = publisher.callback(acks.ack, acks.errors.append, "txn", 7)
    for key, value, headers in AWKWARD:
        publisher.send_with(Record(topic, key, value, headers), callback)
    acks.settled(publisher, len(AWKWARD))
    assert acks.errors == []
    assert acks.acked == [("txn", 7)] * len(AWKWARD)  # the args given, once per record
    # Acked, so on the broker now: no flush, no wait.
    assert sum(end_offsets(kafka_bootstrap, topic).values()) == len(AWKWARD)
    found = read_back(kafka_bootstrap, topic, len(AWKWARD))
    found.sort(key=lambda r: AWKWARD.index(next(a for a in AWKWARD if a[0] == r.key)))
    assert [(r.key, r.value, list(r.headers)) for r in found] == AWKWARD


def test_one_keys_records_arrive_in_the_order_sent(
    publisher: Publisher, kafka_bootstrap: str, unique: str
) -> None:
    topic = f"contract{unique}.order"
    acks = Acks()
    callback = publisher.callback(acks.ack, acks.errors.append)
    n = 600
    for i in range(n):
        publisher.send_with(Record(topic, f"k{i % 7}".encode(), str(i).encode(), []), callback)
    acks.settled(publisher, n)
    assert acks.errors == []
    found = read_back(kafka_bootstrap, topic, n)
    assert len(found) == n
    by_key: dict[bytes, list[tuple[int, int]]] = {}
    for r in sorted(found, key=lambda r: (r.partition, r.offset)):
        by_key.setdefault(r.key, []).append((r.partition, int(r.value)))
    assert len(by_key) == 7
    assert len({p for rs in by_key.values() for p, _ in rs}) > 1  # the keys are spread
    for key, records in by_key.items():
        assert len({p for p, _ in records}) == 1, f"{key!r} in several partitions"
        sent = [i for i in range(n) if f"k{i % 7}".encode() == key]
        assert [v for _, v in records] == sent


def test_flush_runs_every_callback_and_close_delivers_what_was_sent(
    kafka_bootstrap: str, client: str, unique: str
) -> None:
    topic = f"contract{unique}.flush"
    # Records wait 5 s for company before they are sent: only flush and close send them sooner.
    publisher = open_publisher(config(kafka_bootstrap, client, linger_ms=5_000))
    acks = Acks()
    callback = publisher.callback(acks.ack, acks.errors.append)
    n = 2000
    try:
        for i in range(n):
            publisher.send_with(Record(topic, None, b"x%d" % i, []), callback)
        publisher.flush(30)
        assert (len(acks.acked), acks.errors) == (n, [])  # flush returned: callbacks ran
        for i in range(n, 2 * n):
            publisher.send_with(Record(topic, None, b"x%d" % i, []), callback)
    finally:
        started = time.monotonic()
        publisher.close(30)  # no flush first: close gives them their time
    assert end_offsets(kafka_bootstrap, topic) == {0: 2 * n}
    assert time.monotonic() - started < 4  # on the broker before the linger ran out


@pytest.fixture
def small_topic(kafka_bootstrap: str, unique: str) -> str:
    """A topic that takes records up to 2 000 bytes."""
    topic = f"contract{unique}.small"
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        admin.create_topics([NewTopic(topic, 1, 1, topic_configs={"max.message.bytes": "2000"})])
    finally:
        admin.close()
    return topic


def test_a_record_the_topic_refuses_fails_alone(
    kafka_bootstrap: str, client: str, small_topic: str
) -> None:
    """Without an oversized policy the broker's refusal reaches ``on_error`` as cdc's error
    naming the topic; the record acked before it stays. (Records batched with it may fail with
    it, and an idempotent producer may stop there: the source starts a new session.)"""
    publisher = open_publisher(config(kafka_bootstrap, client))
    acks = Acks()
    callback = publisher.callback(acks.ack, acks.errors.append)
    try:
        publisher.send_with(Record(small_topic, b"a", b"small", []), callback)
        acks.settled(publisher, 1)
        publisher.send_with(Record(small_topic, b"b", b"x" * 50_000, []), callback)
        acks.settled(publisher, 2)
    finally:
        publisher.close(5.0)
    assert len(acks.acked) == 1
    assert len(acks.errors) == 1
    assert isinstance(acks.errors[0], CdcError)
    assert small_topic in str(acks.errors[0])
    assert end_offsets(kafka_bootstrap, small_topic) == {0: 1}


@pytest.mark.parametrize("policy", ["fail", "skip"])
def test_the_oversize_check_knows_the_topics_limit(
    kafka_bootstrap: str, client: str, small_topic: str, policy: Any
) -> None:
    """The publisher measures a record against its topic's max.message.bytes before sending:
    ``fail`` raises naming the limit, ``skip`` acks it at once and sends nothing."""
    oversized = Oversized(policy, "contract")
    publisher = open_publisher(config(kafka_bootstrap, client), oversized)
    acks = Acks()
    callback = publisher.callback(acks.ack, acks.errors.append)
    big = Record(small_topic, b"big", b"x" * 50_000, [])
    try:
        if policy == "fail":
            with pytest.raises(OversizedRecord, match=r"over the \d+ bytes"):
                publisher.send_with(big, callback)
            assert acks.acked == []
        else:
            publisher.send_with(big, callback)
            assert len(acks.acked) == 1  # at once, not by the broker
            assert oversized.skipped == 1
        publisher.send_with(Record(small_topic, b"a", b"fits", []), callback)
        publisher.flush(10)
        acks.settled(publisher, 1 if policy == "fail" else 2)
    finally:
        publisher.close(5.0)
    assert acks.errors == []
    assert end_offsets(kafka_bootstrap, small_topic) == {0: 1}


# The consumer


def produce(kafka: str, topic: str, partitions: int, per_partition: int) -> tuple[int, int]:
    """Records ``p:i`` with key ``k:p:i`` and a header; the time before and after, in ms."""
    admin = KafkaAdminClient(bootstrap_servers=kafka)
    try:
        admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        admin.close()
    before = int(time.time() * 1000)
    producer = KafkaProducer(bootstrap_servers=kafka, acks="all")
    for p in range(partitions):
        for i in range(per_partition):
            producer.send(
                topic,
                key=b"k:%d:%d" % (p, i),
                value=b"%d:%d" % (p, i),
                headers=[("n", b"%d" % i), ("bin", b"\x00\xff")],
                partition=p,
            )
    producer.flush()
    producer.close()
    return before, int(time.time() * 1000)


class Listener:
    def __init__(self) -> None:
        self.assigned: set[TopicPartition] = set()
        self.revoked: set[TopicPartition] = set()
        self.lock = threading.Lock()

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        with self.lock:
            self.assigned |= assigned

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        with self.lock:
            self.revoked |= revoked


class Reader:
    """Drives a consumer as the sink runtime does: positions each newly assigned partition
    (inside the rebalance for confluent-kafka, after the poll for kafka-python) and drops the
    records of a partition not positioned yet."""

    def __init__(self, kafka: KafkaConfig, group: str, wanted: dict[int, int | None]) -> None:
        self.wanted = wanted
        self.positioned: set[TopicPartition] = set()
        self.consumer: Consumer = open_consumer(kafka, group, self.position, 100)

    def position(self, tps: list[TopicPartition]) -> None:
        for tp in tps:
            at = self.wanted[tp.partition]
            if at is None:
                at = self.consumer.beginning_offsets([tp])[tp]
            self.consumer.seek(tp, at)
            self.positioned.add(tp)

    def read(self, n: int, timeout_s: float = 60) -> dict[TopicPartition, list[ConsumedRecord]]:
        found: dict[TopicPartition, list[ConsumedRecord]] = {}
        deadline = time.monotonic() + timeout_s
        while sum(map(len, found.values())) < n:
            assert time.monotonic() < deadline, f"read {found}"
            batch = self.consumer.poll(200, 100)
            unpositioned = [tp for tp in self.consumer.assignment() if tp not in self.positioned]
            batch = {tp: rs for tp, rs in batch.items() if tp in self.positioned}
            if unpositioned:
                self.position(unpositioned)
            for tp, records in batch.items():
                found.setdefault(tp, []).extend(records)
        return found


def test_a_subscribed_consumer_reads_from_where_it_seeks(
    kafka_bootstrap: str, client: str, unique: str
) -> None:
    topic = f"contract{unique}.read"
    before, after = produce(kafka_bootstrap, topic, 2, 5)
    reader = Reader(config(kafka_bootstrap, client), f"contract{unique}", {0: 2, 1: None})
    listener = Listener()
    a, b = TopicPartition(topic, 0), TopicPartition(topic, 1)
    try:
        reader.consumer.subscribe([topic], listener)
        found = reader.read(8)
        assert listener.assigned == {a, b}
        assert reader.consumer.assignment() == {a, b}
        assert [r.offset for r in found[a]] == [2, 3, 4]  # from the offset sought
        assert [r.offset for r in found[b]] == [0, 1, 2, 3, 4]  # from the beginning
        for tp, records in found.items():
            for r in records:
                assert type(r) is ConsumedRecord
                assert (r.key, r.value) == (
                    b"k:%d:%d" % (tp.partition, r.offset),
                    b"%d:%d" % (tp.partition, r.offset),
                )
                assert r.headers == [("n", b"%d" % r.offset), ("bin", b"\x00\xff")]
                assert before - 1000 <= r.timestamp <= after + 1000
        assert all(type(tp) is TopicPartition for tp in found)
        # Back to an earlier offset of a partition being read.
        reader.consumer.seek(a, 0)
        again = reader.read(5)
        assert [r.offset for r in again[a]] == [0, 1, 2, 3, 4]
    finally:
        reader.consumer.close()
    assert listener.revoked <= {a, b}


def test_a_consumer_without_a_group_reads_what_it_is_assigned(
    kafka_bootstrap: str, client: str, unique: str
) -> None:
    topic = f"contract{unique}.assign"
    produce(kafka_bootstrap, topic, 2, 4)
    consumer = open_consumer(config(kafka_bootstrap, client), None)
    a, b = TopicPartition(topic, 0), TopicPartition(topic, 1)
    try:
        consumer.assign([a, b])
        assert consumer.assignment() == {a, b}
        consumer.seek(a, 3)  # each seek right after the assignment: the other keeps its own
        consumer.seek(b, 1)
        found: list[ConsumedRecord] = []
        deadline = time.monotonic() + 30
        while len(found) < 4 and time.monotonic() < deadline:
            for records in consumer.poll(200, 10).values():
                found.extend(records)
        assert sorted(r.value or b"" for r in found) == [b"0:3", b"1:1", b"1:2", b"1:3"]
    finally:
        consumer.close()


# The admin


def test_the_admin_creates_lists_and_measures_topics(
    kafka_bootstrap: str, client: str, unique: str
) -> None:
    topic = f"contract{unique}.admin"
    admin: Admin = open_admin(config(kafka_bootstrap, client))
    try:
        admin.create_topic(topic, 3, 1)
        admin.create_topic(topic, 5, 1)  # exists: left as it is, no error
        wait_for(lambda: topic in admin.topics(), 30, "the topic listed")
        assert admin.partitions_for_topic(topic) == {0, 1, 2}
        assert admin.partitions_for_topic(f"contract{unique}.nosuch") is None
        producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
        for _ in range(4):
            producer.send(topic, value=b"x", partition=1)
        producer.flush()
        producer.close()
        tps = [TopicPartition(topic, p) for p in range(3)]
        ends = wait_for(lambda: _offsets(admin, tps, end=True), 30, "the end offsets")
        assert ends == {tps[0]: 0, tps[1]: 4, tps[2]: 0}
        assert all(type(tp) is TopicPartition for tp in ends)
        assert admin.beginning_offsets(tps) == dict.fromkeys(tps, 0)
        topic_max, socket_max = admin.topic_limits(topic)
        assert topic_max is not None and int(topic_max) > 0
        assert socket_max is not None and int(socket_max) > 0
    finally:
        admin.close()


def _offsets(admin: Admin, tps: list[TopicPartition], end: bool) -> Any:
    try:
        return admin.end_offsets(tps) if end else admin.beginning_offsets(tps)
    except CdcError:  # a leader not known yet
        return None


def test_the_admin_finds_the_first_offset_at_a_time(
    kafka_bootstrap: str, client: str, unique: str
) -> None:
    """What ``cdc tail --since`` seeks to: the first record of each partition at or after a
    time; None for a partition with nothing that recent."""
    topic = f"contract{unique}.times"
    produce(kafka_bootstrap, topic, 2, 3)
    time.sleep(0.05)
    between = int(time.time() * 1000)
    time.sleep(0.05)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    producer.send(topic, value=b"late", partition=1)
    producer.flush()
    producer.close()
    admin: Admin = open_admin(config(kafka_bootstrap, client))
    a, b = TopicPartition(topic, 0), TopicPartition(topic, 1)
    try:
        assert admin.offsets_for_time([a, b], 0) == {a: 0, b: 0}
        assert admin.offsets_for_time([a, b], between) == {a: None, b: 3}
        assert admin.offsets_for_time([a, b], between + 3_600_000) == {a: None, b: None}
        assert admin.offsets_for_time([], between) == {}
    finally:
        admin.close()
