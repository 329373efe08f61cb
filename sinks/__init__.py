"""Sink consumers: each applies events from Kafka to a target store, idempotently."""
