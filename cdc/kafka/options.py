"""The clients' settings: cdc's ``[kafka]`` configuration in kafka-python's and librdkafka's
names, and the limits both clients are given."""

from __future__ import annotations

__all__ = [
    "BUFFER_BYTES",
    "CONFLUENT_QUEUE",
    "SINK_FETCH_BYTES",
    "SINK_SESSION_TIMEOUT_MS",
    "client_options",
    "confluent_kafka_module",
    "librdkafka_options",
]

import logging
from typing import Any

from cdc.config import KafkaConfig
from cdc.errors import CdcError

LIBRDKAFKA_LOGGER = "confluent_kafka"
"""The logger librdkafka's own log lines go to (quiet unless --log-level DEBUG)."""
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


def librdkafka_options(config: KafkaConfig) -> dict[str, Any]:
    """The same connection settings, in librdkafka's names (confluent-kafka)."""
    options: dict[str, Any] = {
        "bootstrap.servers": ",".join(config.bootstrap_servers),
        "client.id": config.client_id,
        "security.protocol": config.security_protocol.lower(),
        "reconnect.backoff.max.ms": 1000,
        # librdkafka's own lines (every failed connection attempt while a broker is away) go
        # through logging, not straight to stderr: shown at DEBUG, like kafka-python's.
        "logger": logging.getLogger(LIBRDKAFKA_LOGGER),
    }
    for key, value in _security(config).items():
        if key == "ssl_check_hostname":
            options["ssl.endpoint.identification.algorithm"] = "https" if value else "none"
        else:
            options[_LIBRDKAFKA_NAMES[key]] = value
    return options


def confluent_kafka_module(setting: str) -> Any:
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
