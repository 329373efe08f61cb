"""The Kafka channel: how cdc talks to Kafka.

Everything that touches a Kafka client library lives here, so that a faster client can replace
kafka-python behind the same functions. kafka-python's errors are translated into
:mod:`cdc.errors` at this boundary.
"""

from __future__ import annotations

__all__ = [
    "AnyPublisher",
    "ConfluentConsumer",
    "ConfluentPublisher",
    "ConfluentTopicLister",
    "Publisher",
    "check_kafka",
    "client_options",
    "kafka_failure",
    "kafka_fix",
    "librdkafka_options",
    "list_offsets",
    "open_publisher",
]

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from kafka import KafkaAdminClient, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
from kafka.errors import (
    AuthorizationError,
    KafkaError,
    LeaderNotAvailableError,
    SaslAuthenticationFailedError,
    TopicAlreadyExistsError,
    UnsupportedSaslMechanismError,
)

from cdc.config import KafkaConfig
from cdc.errors import CdcError, KafkaUnavailable, Refused
from cdc.events import Record
from cdc.findings import Finding
from cdc.oversized import Oversized

log = logging.getLogger(__name__)

SINK_SESSION_TIMEOUT_MS = 10_000
"""A sink that died must hand its partitions over in seconds, not Kafka's 45 s default: its
successor (or its peers) cannot read them until then. Both consumer clients use it."""

CONFLUENT_QUEUE = 5_000
"""Most records confluent-kafka's producer holds unacked (see ConfluentPublisher)."""

SINK_FETCH_BYTES = 32 * 1024 * 1024
"""Bytes a sink's consumer fetches at once (Kafka's default is 50 MiB): with the 32 MiB it
queues, what bounds a sink's records in memory, whatever their count."""

BUFFER_BYTES = 64 * 1024 * 1024
"""Bytes of records a producer holds unacked (:attr:`Publisher.unacked_bytes`): reading waits
beyond it, so memory is bounded in bytes as well as in records (``max_unacked_records``).
kafka-python has no such bound of its own; librdkafka is given it (``ConfluentPublisher``)."""


def _limit(max_request_size: int, topic_max: str | None, socket_max: str | None, topic: str) -> int:
    """The largest record ``topic`` takes: the smallest of the three limits that apply."""
    limits = [max_request_size]
    for value in (topic_max, socket_max):
        if value is not None and value.isdigit():
            limits.append(int(value))
    if topic_max is None:
        log.warning(
            "%s: cannot read the topic's max.message.bytes; records are checked against"
            " max_request_size (%d) only",
            topic,
            max_request_size,
        )
    return min(limits)


def client_options(config: KafkaConfig) -> dict[str, Any]:
    """kafka-python options shared by producers, consumers and admin clients."""
    options: dict[str, Any] = {
        "bootstrap_servers": list(config.bootstrap_servers),
        "client_id": config.client_id,
        "security_protocol": config.security_protocol,
        # kafka-python backs off up to 30 s between reconnects; a broker back from a restart
        # should be found within a second, as the Java client does.
        "reconnect_backoff_max_ms": 1000,
        # Fail fast when no broker answers at start: the caller's retry loop, not the client,
        # waits, so that SIGTERM is heard within seconds.
        "bootstrap_timeout_ms": 5000,
    }
    options.update(_security(config))
    return options


def list_offsets(
    client: Any, partitions: Iterable[TopicPartition], *, end: bool = False
) -> dict[TopicPartition, int]:
    """The first (or, with ``end``, the next to be written) offset of each partition.

    kafka-python (3.0.12) leaves a partition whose leader its metadata does not know yet (a
    topic created moments ago) out of its ListOffsets request, then fails with a bare KeyError;
    that is raised here as the retriable :class:`LeaderNotAvailableError` naming the partition.
    """
    partitions = list(partitions)
    if not partitions:
        return {}
    try:
        offsets = client.end_offsets(partitions) if end else client.beginning_offsets(partitions)
    except KeyError as e:
        tp = e.args[0] if e.args else None
        if not isinstance(tp, TopicPartition):
            raise
        raise LeaderNotAvailableError(
            f"Kafka names no leader yet for {tp.topic}[{tp.partition}]"
        ) from e
    return dict(offsets)


def _security(config: KafkaConfig) -> dict[str, Any]:
    """The SASL and SSL settings that are set, secrets revealed, in kafka-python's names (which
    are ours); :func:`librdkafka_options` renames them."""
    found: dict[str, Any] = {}
    if config.sasl_mechanism:
        found["sasl_mechanism"] = config.sasl_mechanism
    for key in ("sasl_plain_username", "ssl_cafile", "ssl_certfile", "ssl_keyfile"):
        if getattr(config, key) is not None:
            found[key] = getattr(config, key)
    for key in ("sasl_plain_password", "ssl_password"):
        if getattr(config, key) is not None:
            found[key] = getattr(config, key).get_secret_value()
    if config.security_protocol in ("SSL", "SASL_SSL"):
        found["ssl_check_hostname"] = config.ssl_check_hostname
    return found


_LIBRDKAFKA_NAMES = {
    "sasl_mechanism": "sasl.mechanism",
    "sasl_plain_username": "sasl.username",
    "sasl_plain_password": "sasl.password",
    "ssl_cafile": "ssl.ca.location",
    "ssl_certfile": "ssl.certificate.location",
    "ssl_keyfile": "ssl.key.location",
    "ssl_password": "ssl.key.password",
}


def check_kafka(config: KafkaConfig, timeout_s: float = 5.0) -> list[Finding]:
    """Whether the brokers answer a metadata request, and what the cluster looks like."""
    servers = ",".join(config.bootstrap_servers)
    try:
        options = client_options(config)
        options["request_timeout_ms"] = options["bootstrap_timeout_ms"] = int(timeout_s * 1000)
        admin = KafkaAdminClient(**options)
    except KafkaError as e:
        return [Finding.fail("kafka", f"no broker answers at {servers}: {_reason(e)}")]
    try:
        cluster = admin.describe_cluster()
        brokers = cluster.get("brokers", [])
        cluster_id = cluster.get("cluster_id")
        return [
            Finding.ok(
                "kafka",
                f"{len(brokers)} broker(s) answer at {servers} (cluster id {cluster_id})",
            )
        ]
    except KafkaError as e:
        return [
            Finding.fail(
                "kafka", f"brokers at {servers} did not describe the cluster: {_reason(e)}"
            )
        ]
    finally:
        admin.close()


AUTHENTICATION_FIX = (
    "give [kafka] credentials the brokers accept (security_protocol, sasl_mechanism,"
    " sasl_plain_username, sasl_plain_password)"
)
AUTHORIZATION_FIX = (
    "grant cdc's Kafka principal its ACLs (connectors: Describe, Create and Write on their"
    " topics; sinks: Describe and Read on theirs and Read on their consumer group)"
)
_CONFLUENT_FIXES = {
    "_AUTHENTICATION": AUTHENTICATION_FIX,
    "SASL_AUTHENTICATION_FAILED": AUTHENTICATION_FIX,
    "UNSUPPORTED_SASL_MECHANISM": AUTHENTICATION_FIX,
    "TOPIC_AUTHORIZATION_FAILED": AUTHORIZATION_FIX,
    "GROUP_AUTHORIZATION_FAILED": AUTHORIZATION_FIX,
    "CLUSTER_AUTHORIZATION_FAILED": AUTHORIZATION_FIX,
}


def kafka_fix(e: object) -> str | None:
    """What a person must do about a Kafka client's error, or None when it may pass (a broker
    away, a leader moving). ``e``: a kafka-python error, or confluent-kafka's KafkaException or
    KafkaError."""
    if isinstance(e, SaslAuthenticationFailedError | UnsupportedSaslMechanismError):
        return AUTHENTICATION_FIX
    if isinstance(e, AuthorizationError):
        return AUTHORIZATION_FIX
    inner = e.args[0] if isinstance(e, Exception) and e.args else e  # KafkaException's error
    name = getattr(inner, "name", None)
    return _CONFLUENT_FIXES.get(str(name())) if callable(name) else None


def kafka_failure(message: str, e: object) -> CdcError:
    """``message`` as :class:`Refused` when ``e`` needs a person, else :class:`KafkaUnavailable`."""
    fix = kafka_fix(e)
    return KafkaUnavailable(message) if fix is None else Refused(message, fix)


def _reason(e: BaseException) -> str:
    text = str(e).strip()
    name = type(e).__name__
    return text if text.startswith(name) else f"{name}: {text}" if text else name


class Publisher:
    """Sends records to Kafka without waiting, and reports each record's fate by callback.

    The producer is idempotent with ``acks=all``, so a record the broker acked is durable on
    every in-sync replica, and retries neither duplicate nor reorder records of one partition.
    ``on_ack`` and ``on_error`` run on the client's I/O thread: they must only hand over. The
    caller bounds memory by bounding its unacked records (``max_unacked_records``).
    """

    def __init__(self, config: KafkaConfig, oversized: Oversized | None = None) -> None:
        p = config.producer
        options = client_options(config)
        try:
            self._producer = KafkaProducer(
                **options,
                acks="all",
                enable_idempotence=True,
                max_in_flight_requests_per_connection=5,
                linger_ms=p.linger_ms,
                batch_size=p.batch_size,
                compression_type=None if p.compression_type == "none" else p.compression_type,
                max_request_size=p.max_request_size,
                request_timeout_ms=p.request_timeout_ms,
                allow_auto_create_topics=False,
            )
            self._admin = KafkaAdminClient(**options)
        except KafkaError as e:
            servers = ",".join(config.bootstrap_servers)
            raise kafka_failure(f"Kafka at {servers}: {_reason(e)}", e) from e
        self._topics_config = config.topics
        self._only_partition: dict[str, int | None] = {}
        self._max_request_size = p.max_request_size
        self._oversized = oversized
        self._limits: dict[str, int] = {}
        self._gate = p.max_request_size // 2 - 65_536
        """Records whose value is at most this long fit whatever their key and headers: only
        longer ones are measured against their topic's limit."""
        self._socket_max: str | None = None
        self._sent_bytes = 0
        self._acked_bytes = 0
        """Written by kafka-python's I/O thread only (:meth:`_acked`), read here."""

    def ensure_topic(self, topic: str) -> None:
        """Create ``topic`` when missing (partitions and replication from ``[kafka.topics]``)."""
        if topic in self._only_partition:
            return
        new = NewTopic(
            topic,
            num_partitions=self._topics_config.partitions,
            replication_factor=self._topics_config.replication_factor,
        )
        try:
            self._admin.create_topics([new])
            log.info("created topic %s", topic)
        except TopicAlreadyExistsError:
            pass
        except KafkaError as e:
            raise kafka_failure(f"cannot create topic {topic}: {_reason(e)}", e) from e
        # With one partition there is nothing to choose: skipping kafka-python's pure-Python
        # murmur2 saves CPU on every record. Re-read at every session start.
        partitions = self._producer.partitions_for(topic) or set()
        self._limits[topic] = self._topic_limit(topic)
        self._gate = min(self._gate, self._limits[topic] // 2 - 65_536)
        self._only_partition[topic] = 0 if partitions == {0} else None

    def _topic_limit(self, topic: str) -> int:
        topic_max = None
        try:
            found = self._admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, topic, ["max.message.bytes"])],
                config_filter="all",
            )
            topic_max = found["topic"][topic]["max.message.bytes"]["value"]
            if self._socket_max is None:
                broker = str(self._admin.describe_cluster()["brokers"][0]["broker_id"])
                wanted = ["socket.request.max.bytes"]
                found = self._admin.describe_configs(
                    [ConfigResource(ConfigResourceType.BROKER, broker, wanted)],
                    config_filter="all",
                )
                self._socket_max = found["broker"][broker]["socket.request.max.bytes"]["value"]
        except (KafkaError, KeyError, IndexError, TypeError) as e:
            log.debug("describing %s: %s", topic, e)
        return _limit(self._max_request_size, topic_max, self._socket_max, topic)

    @staticmethod
    def callback(
        on_ack: Callable[..., None], on_error: Callable[[Exception], None], *args: Any
    ) -> tuple[Callable[..., None], Callable[[Exception], None], tuple[Any, ...]]:
        """What :meth:`send_with` needs to call back, made once for many records."""
        return on_ack, on_error, args

    def send_with(
        self,
        record: Record,
        callback: tuple[Callable[..., None], Callable[[Exception], None], tuple[Any, ...]],
    ) -> None:
        """Queue ``record``; later, on the I/O thread, ``on_ack(*args)`` or ``on_error(e)``, as
        :meth:`callback` was given them."""
        on_ack, on_error, args = callback
        partition = self._only_partition.get(record.topic, -1)
        if partition == -1:
            self.ensure_topic(record.topic)
            partition = self._only_partition[record.topic]
        value = record.value
        if value is not None and len(value) > self._gate and self._oversized is not None:
            checked = self._oversized.check(record, self._limits[record.topic])
            if checked is None:
                on_ack(*args)  # left out: nothing waits for it
                return
            record = checked
        try:
            future = self._producer.send(
                record.topic,
                key=record.key,
                value=record.value,
                headers=record.headers,
                partition=partition,
            )
        except KafkaError as e:
            raise kafka_failure(f"cannot send to {record.topic}: {_reason(e)}", e) from e
        self._sent_bytes += len(value or b"")
        future.add_callback(self._acked, on_ack, args)
        future.add_errback(_refused, record.topic, on_error)

    def _acked(self, fn: Callable[..., None], args: tuple[Any, ...], metadata: Any) -> None:
        self._acked_bytes += max(0, metadata.serialized_value_size)
        fn(*args)

    @property
    def unacked_bytes(self) -> int:
        """Value bytes of the records sent and not yet acked (an upper bound)."""
        return self._sent_bytes - self._acked_bytes

    @staticmethod
    def poll(timeout_s: float = 0.0) -> None:
        """Acks arrive on kafka-python's I/O thread: nothing to do here but wait, as asked."""
        if timeout_s:
            time.sleep(timeout_s)

    def flush(self, timeout_s: float) -> None:
        try:
            self._producer.flush(timeout=timeout_s)
        except KafkaError as e:
            raise kafka_failure(f"flush failed: {_reason(e)}", e) from e

    def close(self, timeout_s: float = 5.0) -> None:
        """Give records in flight ``timeout_s``; what is still undelivered then is dropped (it was
        never confirmed at the source, so a later session publishes it again)."""
        try:
            self._producer.close(timeout=timeout_s)
        except KafkaError as e:
            # kafka-python's close() flushes first and, when records are left (one the broker
            # refuses, say), raises without stopping its I/O thread: stop it without waiting.
            log.warning("closing the Kafka producer with records undelivered: %s", _reason(e))
            sender = getattr(self._producer, "_sender", None)
            if sender is not None:
                sender.force_close()
        finally:
            self._admin.close()


def _refused(topic: str, on_error: Callable[[Exception], None], e: BaseException) -> None:
    on_error(kafka_failure(f"{topic}: {_reason(e)}", e))


def librdkafka_options(config: KafkaConfig) -> dict[str, Any]:
    """The same connection settings, in librdkafka's names (confluent-kafka)."""
    options: dict[str, Any] = {
        "bootstrap.servers": ",".join(config.bootstrap_servers),
        "client.id": config.client_id,
        "security.protocol": config.security_protocol.lower(),
        "reconnect.backoff.max.ms": 1000,
    }
    for key, value in _security(config).items():
        if key == "ssl_check_hostname":
            options["ssl.endpoint.identification.algorithm"] = "https" if value else "none"
        else:
            options[_LIBRDKAFKA_NAMES[key]] = value
    return options


def _confluent_kafka(setting: str) -> Any:
    """The confluent_kafka module (and its admin part), imported when a setting asks for it."""
    try:
        import confluent_kafka  # noqa: PLC0415  (optional: only with client = "confluent-kafka")
        import confluent_kafka.admin  # noqa: PLC0415
    except ImportError as e:  # not retriable: the installation must change
        raise CdcError(
            f"{setting} = 'confluent-kafka' needs the confluent-kafka package"
            " (pip install 'cdc[fast]')"
        ) from e
    return confluent_kafka


class ConfluentPublisher:
    """:class:`Publisher`'s contract on confluent-kafka (librdkafka), for speed.

    librdkafka delivers acks only from ``poll()``, which the caller's loop calls (:meth:`poll`),
    so ``on_ack`` and ``on_error`` run on the caller's thread. A thread of ours polling instead
    would take the GIL from the reader at every ack.
    Idempotence with ``acks=all`` as in :class:`Publisher`.
    """

    def __init__(self, config: KafkaConfig, oversized: Oversized | None = None) -> None:
        confluent_kafka = _confluent_kafka("[kafka.producer] client")
        self._ck = confluent_kafka
        self._new_topic = confluent_kafka.admin.NewTopic
        p = config.producer
        options = librdkafka_options(config)
        self._producer = confluent_kafka.Producer(
            {
                **options,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": p.linger_ms,
                "batch.size": min(p.batch_size, 2_147_483_647),
                "compression.type": p.compression_type,
                "message.max.bytes": p.max_request_size,
                "request.timeout.ms": p.request_timeout_ms,
                # Each record waiting in librdkafka costs resident memory: keep the queue
                # short, whatever max_unacked_records allows.
                "queue.buffering.max.messages": min(p.max_unacked_records, CONFLUENT_QUEUE),
                "queue.buffering.max.kbytes": BUFFER_BYTES // 1024,
            }
        )
        self._admin = confluent_kafka.admin.AdminClient(options)
        self._topics_config = config.topics
        self._known: set[str] = set()
        self.on_wait: Callable[[], None] | None = None
        """Called about twice a second while :meth:`send_with` waits for room in librdkafka's
        full queue (Kafka away): the caller's loop is not turning, so it says so here."""
        self._max_request_size = p.max_request_size
        self._oversized = oversized
        self._limits: dict[str, int] = {}
        self._gate = p.max_request_size // 2 - 65_536
        self._socket_max: str | None = None

    def poll(self, timeout_s: float = 0.0) -> None:
        """Run the callbacks of the acks that arrived, waiting up to ``timeout_s`` for one."""
        self._producer.poll(timeout_s)

    unacked_bytes = 0
    """librdkafka bounds its queue in bytes itself (``queue.buffering.max.kbytes``): a full queue
    makes :meth:`send_with` wait for acks."""

    def ensure_topic(self, topic: str) -> None:
        if topic in self._known:
            return
        new = self._new_topic(
            topic,
            num_partitions=self._topics_config.partitions,
            replication_factor=self._topics_config.replication_factor,
        )
        future = self._admin.create_topics([new], operation_timeout=10)[topic]
        try:
            future.result(timeout=30)
            log.info("created topic %s", topic)
        except self._ck.KafkaException as e:
            if e.args[0].code() != self._ck.KafkaError.TOPIC_ALREADY_EXISTS:
                raise kafka_failure(f"cannot create topic {topic}: {e.args[0].str()}", e) from e
        self._limits[topic] = self._topic_limit(topic)
        self._gate = min(self._gate, self._limits[topic] // 2 - 65_536)
        self._known.add(topic)

    def _topic_limit(self, topic: str) -> int:
        admin = self._ck.admin
        topic_max = None
        try:
            found = self._admin.describe_configs(
                [admin.ConfigResource(admin.ResourceType.TOPIC, topic)]
            )
            for future in found.values():
                topic_max = future.result(timeout=30)["max.message.bytes"].value
            if self._socket_max is None:
                brokers = self._admin.list_topics(timeout=10).brokers
                broker = str(min(brokers))
                found = self._admin.describe_configs(
                    [admin.ConfigResource(admin.ResourceType.BROKER, broker)]
                )
                for future in found.values():
                    self._socket_max = future.result(timeout=30)["socket.request.max.bytes"].value
        except (self._ck.KafkaException, KeyError, ValueError) as e:
            log.debug("describing %s: %s", topic, e)
        return _limit(self._max_request_size, topic_max, self._socket_max, topic)

    @staticmethod
    def callback(
        on_ack: Callable[..., None], on_error: Callable[[Exception], None], *args: Any
    ) -> Callable[[Any, Any], None]:
        """What :meth:`send_with` calls back with, made once for many records (a transaction's):
        making one per record costs."""

        def delivered(err: Any, msg: Any) -> None:
            if err is None:
                on_ack(*args)
            else:
                on_error(kafka_failure(f"{msg.topic()}: {err.str()}", err))

        return delivered

    def send_with(self, record: Record, callback: Callable[[Any, Any], None]) -> None:
        """Queue ``record``; later, in :meth:`poll`, ``on_ack(*args)`` or ``on_error(e)``, as
        :meth:`callback` was given them."""
        if record.topic not in self._known:
            self.ensure_topic(record.topic)
        value = record.value
        if value is not None and len(value) > self._gate and self._oversized is not None:
            checked = self._oversized.check(record, self._limits[record.topic])
            if checked is None:
                callback(None, None)  # left out: nothing waits for it
                return
            record = checked
        waited = time.monotonic() + 0.5
        while True:
            try:
                self._producer.produce(
                    record.topic,
                    value=record.value,
                    key=record.key,
                    headers=record.headers,  # librdkafka copies them
                    on_delivery=callback,
                )
                return
            except BufferError:
                self._producer.poll(0.005)  # the local queue is full: take acks, freeing it
                if self.on_wait is not None and time.monotonic() >= waited:
                    self.on_wait()
                    waited = time.monotonic() + 0.5
            except self._ck.KafkaException as e:
                raise kafka_failure(f"cannot send to {record.topic}: {e}", e) from e

    def flush(self, timeout_s: float) -> None:
        self._producer.flush(timeout_s)

    def close(self, timeout_s: float = 5.0) -> None:
        self._producer.flush(timeout_s)


AnyPublisher = Publisher | ConfluentPublisher


class ConfluentTopicLister:
    """The part of kafka-python's ``KafkaConsumer`` that a sink's topic watch uses (``topics``,
    ``partitions_for_topic``, ``beginning_offsets``, ``end_offsets``), on librdkafka.

    Listing topics means reading the metadata of every topic in the cluster. kafka-python parses
    it in Python on its I/O thread, holding the GIL from the sink's threads, whose rows then
    arrive late on a broker with many topics. librdkafka parses it in C, far faster.
    """

    def __init__(self, config: KafkaConfig) -> None:
        confluent_kafka = _confluent_kafka("[kafka.consumer] client")
        self._ck = confluent_kafka
        self._admin = confluent_kafka.admin.AdminClient(
            {**librdkafka_options(config), "allow.auto.create.topics": False}
        )
        self._topics: dict[str, Any] = {}

    def _metadata(self, topic: str | None = None) -> dict[str, Any]:
        try:
            return self._admin.list_topics(topic, timeout=10).topics  # type: ignore[no-any-return]
        except self._ck.KafkaException as e:
            raise kafka_failure(f"Kafka did not list its topics: {e.args[0].str()}", e) from e

    def topics(self) -> set[str]:
        self._topics = self._metadata()
        return set(self._topics)

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        """As of the last :meth:`topics`; a topic it did not list is asked for alone."""
        found = self._topics.get(topic)
        if found is None:
            found = self._metadata(topic).get(topic)
            if found is None or found.error is not None:
                return None  # no such topic (or no leader yet)
        return set(found.partitions)

    def beginning_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        return self._offsets(partitions, self._ck.admin.OffsetSpec.earliest())

    def end_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        return self._offsets(partitions, self._ck.admin.OffsetSpec.latest())

    def _offsets(
        self, partitions: Iterable[TopicPartition], spec: Any
    ) -> dict[TopicPartition, int]:
        asked = {self._ck.TopicPartition(tp.topic, tp.partition): tp for tp in partitions}
        if not asked:
            return {}
        futures = self._admin.list_offsets(dict.fromkeys(asked, spec), request_timeout=10)
        found = {}
        for ck_tp, future in futures.items():
            tp = asked[self._ck.TopicPartition(ck_tp.topic, ck_tp.partition)]
            try:
                found[tp] = future.result().offset
            except self._ck.KafkaException as e:
                raise KafkaUnavailable(
                    f"no offsets for {tp.topic}[{tp.partition}]: {e.args[0].str()}"
                ) from e
        return found

    def close(self) -> None:
        pass  # the admin client has no close; it goes with its last reference


def open_publisher(config: KafkaConfig, oversized: Oversized | None = None) -> AnyPublisher:
    """The publisher ``[kafka.producer] client`` names."""
    if config.producer.client == "confluent-kafka":
        return ConfluentPublisher(config, oversized)
    return Publisher(config, oversized)


class ConsumedRecord(NamedTuple):
    """What the sink runtime reads of a record (kafka-python's ``ConsumerRecord`` has the same
    attributes)."""

    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


class ConfluentConsumer:
    """The part of kafka-python's ``KafkaConsumer`` the sink runtime uses, on confluent-kafka.

    Positions come from the target, never from Kafka: kafka-python's runtime seeks after the
    assignment, but librdkafka only honours positions given when a partition is assigned. So
    the rebalance callbacks, which librdkafka runs inside :meth:`poll` on the caller's thread,
    hand the new partitions to ``position`` (the runtime's seek, whose :meth:`seek` calls are
    collected here) and assign them at the offsets it chose.
    """

    def __init__(
        self,
        config: KafkaConfig,
        group_id: str,
        position: Callable[[list[TopicPartition]], None],
    ) -> None:
        confluent_kafka = _confluent_kafka("[kafka.consumer] client")
        self._ck = confluent_kafka
        self._position = position
        self._consumer = confluent_kafka.Consumer(
            {
                **librdkafka_options(config),
                "group.id": group_id,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "session.timeout.ms": SINK_SESSION_TIMEOUT_MS,
                "topic.metadata.refresh.interval.ms": 5_000,
                "queued.max.messages.kbytes": 32_768,
                "fetch.max.bytes": SINK_FETCH_BYTES,
            }
        )
        self._listener: Any = None
        self._assigned: set[TopicPartition] = set()
        self._seeks: dict[TopicPartition, int] = {}
        self._assigning = False
        self._tps: dict[tuple[str, int], TopicPartition] = {}

    def _tp(self, topic: str, partition: int) -> TopicPartition:
        tp = self._tps.get((topic, partition))
        if tp is None:
            tp = self._tps[(topic, partition)] = TopicPartition(topic, partition)
        return tp

    def subscribe(self, topics: list[str], listener: Any) -> None:
        self._listener = listener
        self._consumer.subscribe(topics, on_assign=self._on_assign, on_revoke=self._on_revoke)

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        tps = [self._tp(p.topic, p.partition) for p in partitions]
        self._listener.on_partitions_assigned(set(tps))
        self._seeks = {}
        self._assigning = True
        try:
            self._position(tps)  # calls seek() for every partition
        finally:
            self._assigning = False
        self._assigned = set(tps)
        consumer.assign(
            [self._ck.TopicPartition(tp.topic, tp.partition, self._seeks[tp]) for tp in tps]
        )

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        tps = {self._tp(p.topic, p.partition) for p in partitions}
        self._assigned -= tps
        self._listener.on_partitions_revoked(tps)
        consumer.unassign()

    def seek(self, tp: TopicPartition, offset: int) -> None:
        if self._assigning:
            self._seeks[tp] = offset  # assigned at this offset when the callback returns
        else:
            self._consumer.seek(self._ck.TopicPartition(tp.topic, tp.partition, offset))

    def beginning_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """librdkafka's "the beginning" marker: resolved by the broker when fetching starts."""
        return {tp: self._ck.OFFSET_BEGINNING for tp in partitions}

    def assignment(self) -> set[TopicPartition]:
        return self._assigned

    def poll(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[ConsumedRecord]]:
        try:
            # consume() waits for max_records or the timeout, whichever comes last at a low
            # rate: take what is queued, else wait for one record, then take what came with it.
            messages: list[Any] = self._consumer.consume(max_records, 0)
            if not messages:
                first = self._consumer.poll(timeout_ms / 1000)
                if first is None:
                    return {}
                messages = [first, *self._consumer.consume(max_records - 1, 0)]
        except self._ck.KafkaException as e:
            raise kafka_failure(f"Kafka: {e.args[0].str()}", e) from e
        batch: dict[TopicPartition, list[ConsumedRecord]] = {}
        for m in messages:
            err = m.error()
            if err is not None:
                if err.fatal():
                    raise kafka_failure(f"Kafka: {err.str()}", err)
                log.debug("consumer: %s", err.str())
                continue
            tp = self._tp(m.topic(), m.partition())
            records = batch.get(tp)
            if records is None:
                records = batch[tp] = []
            records.append(ConsumedRecord(m.offset(), m.key(), m.value(), m.headers() or []))
        return batch

    def close(self, autocommit: bool = False) -> None:
        del autocommit  # offsets live in the target: never committed to Kafka
        self._consumer.close()
