"""The Kafka channel: how cdc talks to Kafka.

Everything that touches a Kafka client library lives here, so that a faster client can replace
kafka-python behind the same functions. kafka-python's errors are translated into
:mod:`cdc.errors` at this boundary.
"""

from __future__ import annotations

__all__ = ["Publisher", "check_kafka", "client_options"]

import logging
from collections.abc import Callable
from typing import Any

from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from cdc.config import KafkaConfig
from cdc.errors import KafkaUnavailable
from cdc.events import Record
from cdc.findings import Finding

log = logging.getLogger(__name__)


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
    if config.sasl_mechanism:
        options["sasl_mechanism"] = config.sasl_mechanism
    if config.sasl_plain_username is not None:
        options["sasl_plain_username"] = config.sasl_plain_username
    if config.sasl_plain_password is not None:
        options["sasl_plain_password"] = config.sasl_plain_password.get_secret_value()
    for key in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
        if getattr(config, key) is not None:
            options[key] = getattr(config, key)
    if config.ssl_password is not None:
        options["ssl_password"] = config.ssl_password.get_secret_value()
    if config.security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_check_hostname"] = config.ssl_check_hostname
    return options


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

    def __init__(self, config: KafkaConfig) -> None:
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
            raise KafkaUnavailable(f"Kafka at {servers}: {_reason(e)}") from e
        self._topics_config = config.topics
        self._only_partition: dict[str, int | None] = {}

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
            raise KafkaUnavailable(f"cannot create topic {topic}: {_reason(e)}") from e
        # With one partition there is nothing to choose: skipping kafka-python's pure-Python
        # murmur2 saves a tenth of the CPU per record. Re-read at every session start.
        partitions = self._producer.partitions_for(topic) or set()
        self._only_partition[topic] = 0 if partitions == {0} else None

    def send(
        self,
        record: Record,
        on_ack: Callable[..., None],
        on_error: Callable[[Exception], None],
        *args: Any,
    ) -> None:
        """Queue ``record``; later, on the I/O thread, ``on_ack(*args)`` or ``on_error(e)``."""
        partition = self._only_partition.get(record.topic, -1)
        if partition == -1:
            self.ensure_topic(record.topic)
            partition = self._only_partition[record.topic]
        try:
            future = self._producer.send(
                record.topic,
                key=record.key,
                value=record.value,
                headers=record.headers,
                partition=partition,
            )
        except KafkaError as e:
            raise KafkaUnavailable(f"cannot send to {record.topic}: {_reason(e)}") from e
        future.add_callback(_call_with, on_ack, args)
        future.add_errback(on_error)

    def flush(self, timeout_s: float) -> None:
        try:
            self._producer.flush(timeout=timeout_s)
        except KafkaError as e:
            raise KafkaUnavailable(f"flush failed: {_reason(e)}") from e

    def close(self, timeout_s: float = 5.0) -> None:
        self._producer.close(timeout=timeout_s)
        self._admin.close()


def _call_with(fn: Callable[..., None], args: tuple[Any, ...], _metadata: object) -> None:
    fn(*args)
