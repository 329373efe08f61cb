"""The sinks' watchdog (:class:`cdc.sink.runtime.Progress`): records that wait while nothing is
applied start a new consumer session; records that are applied, or none waiting, never do. And
positioning after an assignment survives a rebalance that takes a partition away meanwhile, and
a topic so new that Kafka's metadata names no leader for it yet."""

from __future__ import annotations

import logging
import re
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, cast

import orjson
import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

from cdc.config import KafkaConfig, SqliteSinkConfig
from cdc.errors import KafkaUnavailable
from cdc.kafka import ConfluentAdmin, KafkaPythonAdmin, KafkaPythonConsumer, LeaderUnknown
from cdc.kafka.kafka_python import list_offsets
from cdc.sink import lag
from cdc.sink import runtime as sink_runtime
from cdc.sink import watch as sink_watch
from cdc.sink.runtime import Progress, SinkRuntime
from cdc.sink.watch import TopicWatch, subscription_pattern
from sinks.sqlite import SqliteTarget
from tests.support.harness import wait_for
from tests.support.sinks import TYPES, envelope

A, B = ("src.public.a", 0), ("src.public.b", 0)


def test_waiting_records_with_no_stored_progress_are_stuck_after_the_delay() -> None:
    progress = Progress()
    ranges = {A: (0, 10)}
    assert progress.stuck(ranges, {A: 4}, now=100.0, after_s=30) == []
    assert progress.stuck(ranges, {A: 4}, now=129.0, after_s=30) == []
    assert progress.stuck(ranges, {A: 4}, now=130.0, after_s=30) == [A]


def test_progress_restarts_the_clock() -> None:
    progress = Progress()
    ranges = {A: (0, 100)}
    progress.stuck(ranges, {A: 4}, now=100.0, after_s=30)
    assert progress.stuck(ranges, {A: 5}, now=125.0, after_s=30) == []
    assert progress.stuck(ranges, {A: 5}, now=150.0, after_s=30) == []
    assert progress.stuck(ranges, {A: 5}, now=155.0, after_s=30) == [A]


def test_a_partition_never_stored_is_stuck_too() -> None:
    progress = Progress()
    ranges = {A: (0, 3), B: (0, 3)}
    progress.stuck(ranges, {A: 3}, now=0.0, after_s=30)
    assert progress.stuck(ranges, {A: 3}, now=31.0, after_s=30) == [B]


def test_nothing_waiting_is_never_stuck() -> None:
    progress = Progress()
    # Caught up; empty; and records removed by retention before they were read.
    ranges = {A: (0, 7), B: (5, 5), ("src.public.c", 2): (9, 9)}
    for now in (0.0, 100.0, 1000.0):
        assert progress.stuck(ranges, {A: 7}, now=now, after_s=30) == []


def test_reset_and_records_arriving_later_start_fresh_clocks() -> None:
    progress = Progress()
    progress.stuck({A: (0, 5)}, {A: 5}, now=0.0, after_s=30)  # caught up: no clock
    assert progress.stuck({A: (0, 9)}, {A: 5}, now=100.0, after_s=30) == []
    progress.reset()
    assert progress.stuck({A: (0, 9)}, {A: 5}, now=129.0, after_s=30) == []
    assert progress.stuck({A: (0, 9)}, {A: 5}, now=159.0, after_s=30) == [A]


def test_a_consumer_that_reads_nothing_is_replaced_and_the_records_applied(
    tmp_path: Path, kafka_bootstrap: str, unique: str, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    """Integration (devstack Kafka, a SQLite target): the first session's consumer hears nothing,
    as kafka-python's did when it stalled; the watchdog must start a session that applies."""
    monkeypatch.setattr(sink_runtime, "STALL_S", 2.0)
    monkeypatch.setattr(sink_runtime, "TOPIC_LOOK_S", 0.5)
    monkeypatch.setattr(sink_watch, "TOPIC_LOOK_S", 0.5)
    topic = f"stall{unique}.public.items"
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    admin.create_topics([NewTopic(topic, 1, 1)])
    admin.close()
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    for i in range(3):
        producer.send(
            topic,
            key=orjson.dumps({"id": i}),
            value=envelope("c", {"id": i, "n": str(i), "note": f"row {i}"}),
            headers=[("cdc-event-id", f"{100 + i}:0".encode()), ("cdc-types", TYPES)],
        )
    producer.flush()
    producer.close()

    deaf: list[int] = []
    real_poll = KafkaConsumer.poll

    def poll(self: KafkaConsumer, *args: Any, **kwargs: Any) -> Any:
        if not deaf:
            deaf.append(id(self))  # the first session's consumer
        if id(self) == deaf[0]:
            time.sleep(0.05)
            return {}
        return real_poll(self, *args, **kwargs)

    monkeypatch.setattr(KafkaConsumer, "poll", poll)
    lite = tmp_path / "lite.db"
    config = SqliteSinkConfig(
        name="lite", type="sqlite", topics=(f"stall{unique}.*",), path=str(lite)
    )
    runtime = SinkRuntime(
        "lite",
        f"stall-{unique}",
        config.topics,
        KafkaConfig(bootstrap_servers=(kafka_bootstrap,)),
        lambda: SqliteTarget(config),
    )
    stop = threading.Event()
    thread = threading.Thread(target=runtime.run, args=(stop,), daemon=True)
    caplog.set_level(logging.WARNING, logger="cdc.sink.runtime")
    thread.start()
    try:
        wait_for(lambda: sum(runtime.stats.applied.values()) == 3, 60, "the records to be applied")
    finally:
        stop.set()
        thread.join(15)
    assert deaf, "the first session never polled"
    assert any("a new consumer session" in r.getMessage() for r in caplog.records)
    db = sqlite3.connect(lite)
    try:
        rows = db.execute("SELECT id, note FROM public_items ORDER BY id").fetchall()
    finally:
        db.close()
    assert rows == [(0, "row 0"), (1, "row 1"), (2, "row 2")]


class _Revoking:
    """A kafka-python consumer whose seek of ``failing`` raises ``error``; with ``revoke``, its
    rebalance thread took that partition away just then."""

    def __init__(
        self,
        assigned: set[TopicPartition],
        failing: TopicPartition | None,
        error: Exception,
        revoke: bool,
    ) -> None:
        self.assigned, self.failing, self.error, self.revoke = set(assigned), failing, error, revoke
        self.sought: dict[TopicPartition, int] = {}
        self.leaderless: TopicPartition | None = None

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        if tp == self.failing:
            if self.revoke:
                self.assigned.discard(tp)
            raise self.error
        self.sought[tp] = offset

    def beginning_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        if self.leaderless in tps:
            raise KeyError(self.leaderless)  # what kafka-python 3.0.12 does (see list_offsets)
        return {tp: 0 for tp in tps}


class _Stored:
    def stored_offsets(self, group: str, partitions: Any) -> dict[tuple[str, int], int]:
        return {("t", 0): 7, ("t", 1): 9}


def kafka_python_consumer(client: Any) -> KafkaPythonConsumer:
    """cdc's kafka-python consumer around ``client`` in place of kafka-python's own."""
    consumer = object.__new__(KafkaPythonConsumer)
    consumer._consumer, consumer._tps = client, {}
    return consumer


def runtime_with(consumer: _Revoking) -> SinkRuntime:
    config = KafkaConfig(bootstrap_servers=("x:1",))
    runtime = SinkRuntime("s", "g", ("t",), config, lambda: cast(Any, _Stored()))
    runtime.consumer, runtime.target = kafka_python_consumer(consumer), cast(Any, _Stored())
    return runtime


def test_a_partition_revoked_while_positioned_is_left_for_its_next_assignment() -> None:
    a, b, c = TopicPartition("t", 0), TopicPartition("t", 1), TopicPartition("t", 2)
    for error in (KeyError(b), ValueError("Unassigned partition")):  # kafka-python's two races
        consumer = _Revoking({a, b, c}, failing=b, error=error, revoke=True)
        runtime = runtime_with(consumer)
        runtime.seek_to_stored([a, b, c])
        assert consumer.sought == {a: 7, c: 0}  # c has nothing stored: from its beginning
        assert runtime.positioned == {a, c}


def test_a_failed_seek_of_a_partition_still_assigned_is_an_error() -> None:
    a = TopicPartition("t", 0)
    consumer = _Revoking({a}, failing=a, error=ValueError("bad offset"), revoke=False)
    with pytest.raises(ValueError, match="bad offset"):
        runtime_with(consumer).seek_to_stored([a])


def test_a_partition_without_a_known_leader_is_positioned_on_a_later_poll() -> None:
    a, c = TopicPartition("t", 0), TopicPartition("t", 2)
    consumer = _Revoking({a, c}, failing=None, error=ValueError(), revoke=False)
    consumer.leaderless = c
    runtime = runtime_with(consumer)
    runtime.seek_to_stored([a, c])
    assert consumer.sought == {a: 7}
    assert runtime.positioned == {a}  # c is asked for again by the next poll
    consumer.leaderless = None
    runtime.seek_to_stored([c])
    assert consumer.sought == {a: 7, c: 0}
    assert runtime.positioned == {a, c}


def test_list_offsets_names_the_partition_kafka_python_left_out() -> None:
    tp = TopicPartition("t", 3)

    class Leaderless:
        def beginning_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
            raise KeyError(tp)

        def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
            raise KeyError("not a partition")  # some other bug: not ours to rename

    with pytest.raises(LeaderUnknown, match=r"no leader yet for t\[3\]"):
        list_offsets(Leaderless(), [tp])
    with pytest.raises(KeyError, match="not a partition"):
        list_offsets(Leaderless(), [tp], end=True)
    assert list_offsets(Leaderless(), []) == {}


def test_the_topic_watch_lists_a_topic_before_its_offsets_can_be() -> None:
    class NewTopicClient:
        def topics(self) -> set[str]:
            return {"src.public.a", "src.public.a.dlq", "other"}

        def partitions_for_topic(self, topic: str) -> set[int]:
            return {0}

        def beginning_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
            raise KeyError(tps[0])

        def close(self) -> None:
            pass

    watch = TopicWatch(cast(Any, NewTopicClient()), re.compile(r"(?!.*[.]dlq$)src\."))
    try:
        wait_for(lambda: watch.found is not None, 5, "the first listing")
        assert watch.found == {"src.public.a"}  # subscribed to now; its offsets come later
        assert watch.ranges == {}
        assert watch._thread.is_alive()  # a KeyError here used to end the thread for good
    finally:
        watch.close()


def test_kafka_python_still_fails_offsets_of_a_topic_it_has_no_metadata_for(
    kafka_bootstrap: str, unique: str
) -> None:
    """The upstream behaviour list_offsets works around: if this starts failing, kafka-python
    has fixed it and the workaround can go."""
    old, new = f"known-{unique}", f"leaderless-{unique}"
    client = KafkaConsumer(bootstrap_servers=kafka_bootstrap, enable_auto_commit=False)
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        admin.create_topics([NewTopic(old, num_partitions=1, replication_factor=1)])
        known = TopicPartition(old, 0)
        wait_for(lambda: _listed(client, known), 30, "the first topic's leader")
        admin.create_topics([NewTopic(new, num_partitions=1, replication_factor=1)])
        tp = TopicPartition(new, 0)
        # The known partition is answered, the other left out of the request: a KeyError.
        with pytest.raises(KeyError):
            client.beginning_offsets([known, tp])
        wait_for(lambda: _listed(client, tp), 30, "the new topic's leader")
        assert list_offsets(client, [known, tp]) == {known: 0, tp: 0}
    finally:
        admin.delete_topics([old, new])
        admin.close()
        client.close()


def _listed(client: KafkaConsumer, tp: TopicPartition) -> bool:
    try:
        list_offsets(client, [tp], end=True)
    except LeaderUnknown:
        return False
    return True


def test_a_partition_reassigned_while_positioned_is_positioned_again() -> None:
    a, b = TopicPartition("t", 0), TopicPartition("t", 1)
    fake = _Revoking({a, b}, failing=None, error=ValueError(), revoke=False)
    runtime = runtime_with(fake)
    listener = sink_runtime._Unseek(runtime)
    real_seek = fake.seek

    def seek_then_rebalance(tp: TopicPartition, offset: int) -> None:
        real_seek(tp, offset)
        if tp == a:  # kafka-python's thread revokes and assigns ``a`` again: its seek is lost
            listener.on_partitions_revoked({a, b})
            listener.on_partitions_assigned({a, b})

    fake.seek = seek_then_rebalance  # type: ignore[method-assign]
    runtime.seek_to_stored([a, b])
    assert runtime.positioned == set()  # read from the beginning if marked: sought again
    fake.seek = real_seek  # type: ignore[method-assign]
    runtime.seek_to_stored([a, b])
    assert runtime.positioned == {a, b}
    assert fake.sought == {a: 7, b: 9}


def test_status_of_a_sink_whose_new_topic_has_no_leader_yet_is_a_warning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tp = TopicPartition("src.public.a", 0)

    class Leaderless:
        def __init__(self, **options: Any) -> None:
            pass

        def topics(self) -> set[str]:
            return {tp.topic}

        def partitions_for_topic(self, topic: str) -> set[int]:
            return {0}

        def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
            raise KeyError(tp)  # kafka-python, when the topic's leader is not known yet

        def close(self) -> None:
            pass

    config = KafkaConfig(bootstrap_servers=("x:1",))
    admin = KafkaPythonAdmin(config)
    admin._client = cast(Any, Leaderless())  # in place of kafka-python's consumer
    monkeypatch.setattr(lag, "open_admin", lambda *args, **kwargs: admin)
    findings = lag._lag("sink s", "g", ("src.*",), config, cast(Any, _Stored()))
    assert [f.render() for f in findings] == [
        "WARN  sink s: lag unknown for now: Kafka names no leader yet for src.public.a[0]"
    ]


@pytest.mark.parametrize("client", ["kafka-python", "confluent-kafka"])
def test_the_topic_watch_finds_topics_and_their_offsets(
    client: str, kafka_bootstrap: str, unique: str
) -> None:
    """Integration (devstack Kafka), with each client: globs list every topic; plain names are
    asked for alone. A sink on confluent-kafka lists with librdkafka (kafka-python parses the
    metadata of every topic in the cluster in Python, holding the sink's threads off the GIL:
    46-95 ms every few seconds with 2 083 topics)."""
    topic, other = f"watch{unique}.public.a", f"watch{unique}.public.b"
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    admin.create_topics([NewTopic(topic, 2, 1), NewTopic(other, 1, 1)])
    admin.close()
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    for i in range(5):
        producer.send(topic, value=b"x", partition=i % 2)
    producer.flush()
    producer.close()
    config = KafkaConfig(bootstrap_servers=(kafka_bootstrap,))

    def lister() -> Any:
        if client == "confluent-kafka":
            return ConfluentAdmin(config)
        return KafkaPythonAdmin(config)

    ranges = {(topic, 0): (0, 3), (topic, 1): (0, 2)}
    pattern = re.compile(subscription_pattern([topic, f"watch{unique}.missing"]))
    for names in ([topic, f"watch{unique}.missing"], None):
        watch = TopicWatch(lister(), pattern, names)
        try:
            wait_for(lambda w=watch: w.ranges == ranges, 30, f"the offsets, names {names}")
            assert watch.found == {topic}
        finally:
            watch.close()
    globbed = TopicWatch(lister(), re.compile(subscription_pattern([f"watch{unique}.*"])))
    try:
        wait_for(lambda: len(globbed.ranges) == 3, 30, "the offsets of both topics")
        assert globbed.found == {topic, other}
        assert globbed.ranges[(other, 0)] == (0, 0)
    finally:
        globbed.close()


def test_a_watch_of_plain_names_never_lists_every_topic() -> None:
    class NamedOnly:
        def __init__(self) -> None:
            self.asked: list[str] = []

        def topics(self) -> set[str]:
            raise AssertionError("listed every topic of the cluster")

        def partitions_for_topic(self, topic: str) -> set[int] | None:
            self.asked.append(topic)
            return {0} if topic == "src.public.a" else None

        def beginning_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
            return dict.fromkeys(tps, 0)

        def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
            return dict.fromkeys(tps, 4)

        def close(self) -> None:
            pass

    client = NamedOnly()
    watch = TopicWatch(cast(Any, client), re.compile("x"), ["src.public.a", "src.public.b"])
    try:
        wait_for(lambda: watch.ranges != {}, 5, "the first look")
    finally:
        watch.close()
    assert watch.found == {"src.public.a"}
    assert watch.ranges == {("src.public.a", 0): (0, 4)}
    # Each name asked once a look: a second lookup of a found topic is a second metadata request.
    assert client.asked.count("src.public.a") == client.asked.count("src.public.b") >= 1


def test_the_confluent_lister_names_what_it_could_not_find(
    kafka_bootstrap: str, unique: str
) -> None:
    lister = ConfluentAdmin(KafkaConfig(bootstrap_servers=(kafka_bootstrap,)))
    assert lister.partitions_for_topic(f"nosuch{unique}") is None
    with pytest.raises(KafkaUnavailable, match=rf"no offsets for nosuch{unique}\[0\]"):
        lister.end_offsets([TopicPartition(f"nosuch{unique}", 0)])


def test_a_sink_of_plain_topic_names_watches_those_names_only() -> None:
    config = KafkaConfig(bootstrap_servers=("x:1",))

    def names(*globs: str) -> list[str] | None:
        return SinkRuntime("s", "g", globs, config, lambda: cast(Any, _Stored())).names

    assert names("a.public.t", "b.x") == ["a.public.t", "b.x"]
    for globs in (("a.*",), ("a.public.t", "b.?"), ("a.[ab]",)):
        assert names(*globs) is None
