"""Transaction boundaries (``transaction_topic = true``): a BEGIN and an END record per
transaction on ``{topic_prefix}.transaction``, in Debezium's layout.

Key ``{"id": "{xid}:{commit_lsn}"}`` (the ``transaction.id`` of the transaction's events), value
``{"status": "BEGIN"|"END", "id", "event_count", "data_collections", "ts_ms"}`` with ``ts_ms`` the
commit time. The stream loop (:func:`connectors.postgres.stream.stream`) sends the BEGIN before
the transaction's first published event and the END only once Kafka acked every record of the
transaction; the transaction counts as delivered (the slot may be confirmed past it) only once
the END is acked too. A transaction that publishes nothing has neither.

Counted per transaction: records with a value (not tombstones) published for its changes, under
the change's table (``schema.table``), and its published transactional messages, under their
prefix. Incremental snapshot reads published in a transaction are not its events (their
``transaction.id`` is not its id).
"""

from __future__ import annotations

__all__ = ["TRANSACTION_TOPIC_SUFFIX", "Boundaries", "is_boundary_or_message"]

import orjson

from cdc.events import Record, SourceInfo
from cdc.values.schemas import transaction_schemas, wrap

TRANSACTION_TOPIC_SUFFIX = ".transaction"


class Boundaries:
    """The transaction being read: its id, commit time and counts; makes its records."""

    __slots__ = ("_counts", "_id", "_schemas", "_ts_ms", "begun", "topic")

    def __init__(self, source: SourceInfo) -> None:
        self.topic = source.topic_prefix + TRANSACTION_TOPIC_SUFFIX
        self._schemas = transaction_schemas() if source.schemas else None
        self._id = ""
        self._ts_ms = 0
        self._counts: dict[str, int] = {}
        self.begun = False
        """The BEGIN record of the transaction being read was made."""

    def begin(self, xid: int, commit_lsn: int, commit_ts_ms: int) -> None:
        """A transaction starts (nothing is sent yet)."""
        self._id = f"{xid}:{commit_lsn}"
        self._ts_ms = commit_ts_ms
        self._counts = {}
        self.begun = False

    def event(self, collection: str, count: int) -> Record | None:
        """``count`` events of ``collection`` are about to be published: the BEGIN record to
        send before them, if they are the transaction's first."""
        counts = self._counts
        counts[collection] = counts.get(collection, 0) + count
        if self.begun:
            return None
        self.begun = True
        return self._record(
            {
                "status": "BEGIN",
                "id": self._id,
                "event_count": None,
                "data_collections": None,
                "ts_ms": self._ts_ms,
            }
        )

    def end(self) -> Record | None:
        """The END record of the transaction read, None if it published nothing."""
        if not self.begun:
            return None
        self.begun = False
        counts = self._counts
        return self._record(
            {
                "status": "END",
                "id": self._id,
                "event_count": sum(counts.values()),
                "data_collections": [
                    {"data_collection": name, "event_count": n} for name, n in counts.items()
                ],
                "ts_ms": self._ts_ms,
            }
        )

    def _record(self, value: dict[str, object]) -> Record:
        key, body = orjson.dumps({"id": self._id}), orjson.dumps(value)
        if self._schemas is not None:  # JsonConverter's layout, as the change events
            assert self._schemas.key is not None
            key, body = wrap(self._schemas.key, key), wrap(self._schemas.value, body)
        return Record(self.topic, key, body, [])


def is_boundary_or_message(value: bytes | None) -> bool:
    """Whether a record's value is a transaction boundary or a logical decoding message: not a
    row change, which a sink whose topics match it skips (it is not an error)."""
    if not value:
        return False
    try:
        parsed = orjson.loads(value)
    except orjson.JSONDecodeError:
        return False
    if type(parsed) is dict and "schema" in parsed and type(parsed.get("payload")) is dict:
        parsed = parsed["payload"]  # schemas = true: JsonConverter's layout
    if type(parsed) is not dict:
        return False
    if parsed.get("status") in ("BEGIN", "END") and "id" in parsed and "op" not in parsed:
        return True
    return parsed.get("op") == "m" and type(parsed.get("message")) is dict
