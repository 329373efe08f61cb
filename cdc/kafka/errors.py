"""The one place where the Kafka clients' errors become cdc's (:mod:`cdc.errors`).

kafka-python raises :class:`kafka.errors.KafkaError`; confluent-kafka raises ``KafkaException``
(holding a ``KafkaError``) or hands a ``KafkaError`` to a delivery callback. Each becomes
:class:`~cdc.errors.Refused` when only a person can fix it (credentials, ACLs), else
:class:`~cdc.errors.KafkaUnavailable`, which is retried.
"""

from __future__ import annotations

__all__ = [
    "AUTHENTICATION_FIX",
    "AUTHORIZATION_FIX",
    "LeaderUnknown",
    "PartitionRevoked",
    "kafka_failure",
    "kafka_fix",
    "reason",
    "translated",
]

import contextlib
import sys
from collections.abc import Iterator

from kafka.errors import (
    AuthorizationError,
    KafkaError,
    SaslAuthenticationFailedError,
    UnsupportedSaslMechanismError,
)

from cdc.errors import CdcError, KafkaUnavailable, LeaderUnknown, PartitionRevoked, Refused

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


def reason(e: BaseException) -> str:
    """A client error in a line: its text, prefixed with its class unless the text names it;
    confluent-kafka's KafkaException as its KafkaError's text."""
    inner = e.args[0] if e.args else None
    described = getattr(inner, "str", None)
    if callable(described) and not isinstance(inner, str):
        return str(described())
    text = str(e).strip()
    name = type(e).__name__
    return text if text.startswith(name) else f"{name}: {text}" if text else name


def _is_client_error(e: BaseException) -> bool:
    if isinstance(e, KafkaError):
        return True
    confluent = sys.modules.get("confluent_kafka")  # imported only when a setting chose it
    return confluent is not None and isinstance(e, confluent.KafkaException)


@contextlib.contextmanager
def translated(what: str) -> Iterator[None]:
    """Raise a client's error inside as cdc's, ``what: the error`` (for calls off the hot
    paths; those translate with :func:`kafka_failure` in their own ``except``)."""
    try:
        yield
    except Exception as e:
        if not _is_client_error(e):
            raise
        raise kafka_failure(f"{what}: {reason(e)}", e) from e
