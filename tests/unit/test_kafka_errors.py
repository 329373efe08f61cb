"""Both Kafka clients' errors become cdc's in one place (:mod:`cdc.kafka.errors`), no services."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError as ConfluentError
from confluent_kafka import KafkaException
from kafka.errors import KafkaTimeoutError, SaslAuthenticationFailedError

from cdc.errors import KafkaUnavailable, Refused
from cdc.kafka.errors import AUTHENTICATION_FIX, reason, translated


def test_a_client_error_inside_is_raised_as_cdcs() -> None:
    slow = r"^Kafka: KafkaTimeoutError: too slow"
    with pytest.raises(KafkaUnavailable, match=slow) as away, translated("Kafka"):
        raise KafkaTimeoutError("too slow")
    assert isinstance(away.value.__cause__, KafkaTimeoutError)
    with pytest.raises(Refused) as refused, translated("Kafka"):
        raise SaslAuthenticationFailedError("bad creds")
    assert refused.value.fix == AUTHENTICATION_FIX
    down = r"^Kafka: Local: All broker connections"
    with pytest.raises(KafkaUnavailable, match=down), translated("Kafka"):
        raise KafkaException(ConfluentError(ConfluentError._ALL_BROKERS_DOWN))
    with pytest.raises(Refused), translated("Kafka"):
        raise KafkaException(ConfluentError(ConfluentError.TOPIC_AUTHORIZATION_FAILED))


def test_other_errors_pass_through_untouched() -> None:
    for error in (KeyError("t"), ValueError("Unassigned partition"), BufferError()):
        with pytest.raises(type(error)), translated("Kafka"):
            raise error


def test_a_client_error_in_one_line() -> None:
    assert reason(KafkaTimeoutError("too slow")) == "KafkaTimeoutError: too slow"
    assert reason(KafkaTimeoutError()) == "KafkaTimeoutError"
    text = reason(KafkaException(ConfluentError(ConfluentError._ALL_BROKERS_DOWN)))
    assert "KafkaError{" not in text and text.startswith("Local: All broker connections")
