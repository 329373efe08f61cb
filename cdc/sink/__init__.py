"""The sink engine: consume a sink's topics and apply them to a target, idempotently.

- :mod:`cdc.sink.plan`: what to do with a batch's events, decided once for every target;
- :mod:`cdc.sink.target`: the :class:`Target` Protocol a store implements, and what it rejects;
- :mod:`cdc.sink.runtime`: the consume-apply loop, offsets stored with the data;
- :mod:`cdc.sink.dlq`: the records no target can apply, written to their dead-letter topics;
- :mod:`cdc.sink.watch`: which topics and partitions a sink reads;
- :mod:`cdc.sink.lag`: how far behind a sink is (``cdc status``).
"""

from __future__ import annotations

__all__ = [
    "BatchPlan",
    "Partition",
    "Rejected",
    "SinkRuntime",
    "TablePlan",
    "Target",
    "TargetUnavailable",
    "consumer_lag",
    "subscription_pattern",
]

from cdc.sink.lag import consumer_lag
from cdc.sink.plan import BatchPlan, TablePlan
from cdc.sink.runtime import SinkRuntime
from cdc.sink.target import Partition, Rejected, Target, TargetUnavailable
from cdc.sink.watch import subscription_pattern
