"""Source connectors: each reads a database's changes and publishes them through :mod:`cdc`."""
