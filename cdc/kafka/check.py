"""``cdc check``'s look at Kafka: do the brokers answer, and what does the cluster look like."""

from __future__ import annotations

__all__ = ["check_kafka"]

from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from cdc.config import KafkaConfig
from cdc.findings import Finding
from cdc.kafka.errors import reason
from cdc.kafka.options import client_options


def check_kafka(config: KafkaConfig, timeout_s: float = 5.0) -> list[Finding]:
    """Whether the brokers answer a metadata request, and what the cluster looks like."""
    servers = ",".join(config.bootstrap_servers)
    try:
        options = client_options(config)
        options["request_timeout_ms"] = options["bootstrap_timeout_ms"] = int(timeout_s * 1000)
        admin = KafkaAdminClient(**options)
    except KafkaError as e:
        return [Finding.fail("kafka", f"no broker answers at {servers}: {reason(e)}")]
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
            Finding.fail("kafka", f"brokers at {servers} did not describe the cluster: {reason(e)}")
        ]
    finally:
        admin.close()
