"""Configuration: the TOML file, parsed once into typed, frozen objects.

:func:`load_config` is the only way in. It reads the file with :mod:`tomllib`, substitutes
``${ENV_VAR}`` references, validates everything with pydantic and returns a :class:`Config`. Nothing
downstream reads raw dicts. Every problem found becomes a :class:`~cdc.errors.ConfigProblem` naming
the key path, the bad value and what is allowed; secrets (passwords inside DSNs, ``*_password``
keys) are masked in every repr and message.
"""

from __future__ import annotations

__all__ = [
    "LINGER_MS",
    "Config",
    "ConnectorConfig",
    "Dsn",
    "KafkaConfig",
    "KafkaConsumerConfig",
    "KafkaProducerConfig",
    "KafkaTopicsConfig",
    "LoggingConfig",
    "MetricsConfig",
    "PostgresSinkConfig",
    "SinkConfig",
    "SqliteSinkConfig",
    "load_config",
    "mask_dsn",
    "parse_config",
]

from cdc.config.dsn import Dsn, mask_dsn
from cdc.config.load import load_config, parse_config
from cdc.config.models import (
    LINGER_MS,
    Config,
    ConnectorConfig,
    KafkaConfig,
    KafkaConsumerConfig,
    KafkaProducerConfig,
    KafkaTopicsConfig,
    LoggingConfig,
    MetricsConfig,
    PostgresSinkConfig,
    SinkConfig,
    SqliteSinkConfig,
)
