"""The Kafka channel: how cdc talks to Kafka.

Everything that touches a Kafka client library lives here, so that a faster client can replace
kafka-python behind the same functions. kafka-python's errors are translated into
:mod:`cdc.errors` at this boundary.
"""

from __future__ import annotations

__all__ = ["check_kafka", "client_options"]

from typing import Any

from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from cdc.config import KafkaConfig
from cdc.findings import Finding


def client_options(config: KafkaConfig) -> dict[str, Any]:
    """kafka-python options shared by producers, consumers and admin clients."""
    options: dict[str, Any] = {
        "bootstrap_servers": list(config.bootstrap_servers),
        "client_id": config.client_id,
        "security_protocol": config.security_protocol,
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
        admin = KafkaAdminClient(
            **client_options(config),
            request_timeout_ms=int(timeout_s * 1000),
            bootstrap_timeout_ms=int(timeout_s * 1000),
        )
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
