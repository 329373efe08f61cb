"""cdc: change data capture from PostgreSQL to Kafka, and sinks that apply it idempotently.

The core package owns events, configuration, the Kafka channel and the CLI. Source connectors
(``connectors``) and sink consumers (``sinks``) are plugins found by name; the core never imports
them directly. The public names below load lazily, so that the console script can install its
signal handlers before anything heavy is imported (see :mod:`cdc._entry`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cdc.config import Config, load_config
    from cdc.errors import CdcError, ConfigError

__all__ = ["CdcError", "Config", "ConfigError", "__version__", "load_config"]

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in ("Config", "load_config"):
        from cdc import config  # noqa: PLC0415

        return getattr(config, name)
    if name in ("CdcError", "ConfigError"):
        from cdc import errors  # noqa: PLC0415

        return getattr(errors, name)
    raise AttributeError(f"module 'cdc' has no attribute {name!r}")
