"""cdc: change data capture from PostgreSQL to Kafka, and sinks that apply it idempotently.

The core package owns events, configuration, the Kafka channel and the CLI. Source connectors
(``connectors``) and sink consumers (``sinks``) are plugins found by name; the core never imports
them directly.
"""

from cdc.config import Config, load_config
from cdc.errors import CdcError, ConfigError

__all__ = ["CdcError", "Config", "ConfigError", "__version__", "load_config"]

__version__ = "0.1.0"
