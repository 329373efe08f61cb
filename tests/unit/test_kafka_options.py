"""Client settings: the same SASL/SSL configuration in kafka-python's and librdkafka's names."""

from __future__ import annotations

import logging
import subprocess
import sys
from typing import Any

import pytest

from cdc.config import KafkaConfig
from cdc.errors import CdcError
from cdc.kafka import ConfluentConsumer, ConfluentPublisher, client_options, librdkafka_options

SECURED = {
    "bootstrap_servers": ["a:1", "b:2"],
    "security_protocol": "SASL_SSL",
    "sasl_mechanism": "PLAIN",
    "sasl_plain_username": "u",
    "sasl_plain_password": "p",
    "ssl_cafile": "/ca",
    "ssl_certfile": "/c",
    "ssl_keyfile": "/k",
    "ssl_password": "kp",
    "ssl_check_hostname": False,
}


def test_secured_settings_in_both_clients_names() -> None:
    config = KafkaConfig.model_validate(SECURED)
    assert client_options(config) == {
        "bootstrap_servers": ["a:1", "b:2"],
        "client_id": "cdc",
        "security_protocol": "SASL_SSL",
        "reconnect_backoff_max_ms": 1000,
        "bootstrap_timeout_ms": 5000,
        "sasl_mechanism": "PLAIN",
        "sasl_plain_username": "u",
        "sasl_plain_password": "p",
        "ssl_cafile": "/ca",
        "ssl_certfile": "/c",
        "ssl_keyfile": "/k",
        "ssl_password": "kp",
        "ssl_check_hostname": False,
    }
    assert librdkafka_options(config) == {
        "bootstrap.servers": "a:1,b:2",
        "client.id": "cdc",
        "security.protocol": "sasl_ssl",
        "reconnect.backoff.max.ms": 1000,
        "logger": logging.getLogger("confluent_kafka"),
        "sasl.mechanism": "PLAIN",
        "sasl.username": "u",
        "sasl.password": "p",
        "ssl.ca.location": "/ca",
        "ssl.certificate.location": "/c",
        "ssl.key.location": "/k",
        "ssl.key.password": "kp",
        "ssl.endpoint.identification.algorithm": "none",
    }


def test_plaintext_has_no_security_settings() -> None:
    config = KafkaConfig.model_validate({"bootstrap_servers": ["a:1"]})
    assert client_options(config) == {
        "bootstrap_servers": ["a:1"],
        "client_id": "cdc",
        "security_protocol": "PLAINTEXT",
        "reconnect_backoff_max_ms": 1000,
        "bootstrap_timeout_ms": 5000,
    }
    assert librdkafka_options(config) == {
        "bootstrap.servers": "a:1",
        "client.id": "cdc",
        "security.protocol": "plaintext",
        "reconnect.backoff.max.ms": 1000,
        "logger": logging.getLogger("confluent_kafka"),
    }
    hostname = KafkaConfig.model_validate(
        {"bootstrap_servers": ["a:1"], "security_protocol": "SSL"}
    )
    assert librdkafka_options(hostname)["ssl.endpoint.identification.algorithm"] == "https"
    assert client_options(hostname)["ssl_check_hostname"] is True


@pytest.mark.parametrize(
    ("make", "setting"),
    [
        (ConfluentPublisher, "[kafka.producer] client"),
        (lambda c: ConfluentConsumer(c, "g", lambda tps: None), "[kafka.consumer] client"),
    ],
)
def test_confluent_kafka_missing_is_a_plain_error_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, make: Any, setting: str
) -> None:
    monkeypatch.setitem(sys.modules, "confluent_kafka", None)  # import fails as if not installed
    monkeypatch.setitem(sys.modules, "confluent_kafka.admin", None)
    config = KafkaConfig.model_validate({"bootstrap_servers": ["a:1"]})
    with pytest.raises(CdcError) as raised:
        make(config)
    assert str(raised.value) == (
        f"{setting} = 'confluent-kafka' needs the confluent-kafka package (pip install 'cdc[fast]')"
    )
    assert not raised.value.retriable


def test_librdkafka_lines_go_through_logging_not_to_stderr() -> None:
    """With no broker, librdkafka wrote a line per failed connection attempt straight to stderr
    (hundreds in a minute); now they go to the confluent_kafka logger, quiet unless DEBUG."""
    script = (
        "import logging, time\n"
        "from cdc.config import KafkaConfig\n"
        "from cdc.kafka import open_consumer\n"
        "logging.getLogger('confluent_kafka').setLevel(logging.CRITICAL)\n"
        "config = KafkaConfig.model_validate({'bootstrap_servers': ['127.0.0.1:1'],"
        " 'consumer': {'client': 'confluent-kafka'}})\n"
        "consumer = open_consumer(config, 'g')\n"
        "consumer.subscribe(topics=['t'], listener=None)\n"
        "deadline = time.monotonic() + 2\n"
        "while time.monotonic() < deadline:\n"
        "    consumer.poll(timeout_ms=200, max_records=10)\n"
        "print('polled')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.stdout.strip() == "polled", done.stderr
    assert "|FAIL|" not in done.stderr, done.stderr[:500]  # librdkafka: %3|time|FAIL|...
