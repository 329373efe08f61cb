"""Logical decoding messages (``pg_logical_emit_message``) as events: an outbox without a table.

A connector with ``[[connectors.messages]]`` rules decodes the plugin's messages; a message whose
prefix matches a rule's globs (the first rule that matches) is published to the rule's topic, in
Debezium's message event layout: key ``{"prefix": ...}``, value ``{"op": "m", "ts_ms", "source",
"message": {"prefix", "content"}, "transaction"}`` with the content in base64 (it is bytes), and
the ``cdc-event-id`` header: ``{commit_lsn}:{index}`` for a transactional message (the index
counted with its transaction's changes), ``{lsn - 1}:0`` for a non-transactional one (``lsn``
ends its WAL record; no other record starts inside it, so no change has that id). A prefix no rule
matches publishes nothing.
"""

from __future__ import annotations

__all__ = ["MessageLike", "Messages"]

import base64
from collections.abc import Sequence
from typing import Protocol

import orjson

from cdc.config.models import MessagesRule
from cdc.events import EVENT_ID_HEADER, Record, SourceInfo, debezium_source_block, source_block
from cdc.globs import compile_globs
from cdc.transforms.routes import safe_topic
from cdc.values.schemas import message_schemas, wrap


class MessageLike(Protocol):
    """A decoded message (:class:`connectors.postgres.decoding.Message`)."""

    @property
    def transactional(self) -> bool: ...
    @property
    def prefix(self) -> str: ...
    @property
    def content(self) -> bytes: ...
    @property
    def lsn(self) -> int: ...
    @property
    def commit_lsn(self) -> int: ...
    @property
    def index(self) -> int: ...
    @property
    def xid(self) -> int | None: ...
    @property
    def commit_ts_ms(self) -> int: ...
    @property
    def last_commit_lsn(self) -> int: ...
    @property
    def total_order(self) -> int: ...
    @property
    def data_collection_order(self) -> int: ...


class Messages:
    """A connector's message rules, compiled: which prefix goes to which topic."""

    def __init__(self, rules: Sequence[MessagesRule], topic_prefix: str) -> None:
        self._rules = [(compile_globs(r.prefixes), r.topic) for r in rules]
        self._topic_prefix = topic_prefix
        self._topics: dict[str, str | None] = {}

    def topic(self, prefix: str) -> str | None:
        """The topic of a message with this prefix; None: not published (cached per prefix)."""
        try:
            return self._topics[prefix]
        except KeyError:
            pass
        found = None
        for pattern, template in self._rules:
            if pattern.fullmatch(prefix):
                # The template's own text may hold what Kafka forbids too (`events/{prefix}`).
                found = safe_topic(
                    template.format(topic_prefix=self._topic_prefix, prefix=prefix),
                    f"message prefix {prefix[:40]!r}",
                )
                break
        if len(self._topics) >= 4096:  # prefixes made per request, say
            self._topics.clear()
        self._topics[prefix] = found
        return found

    def record(self, message: MessageLike, source: SourceInfo, now_ms: int) -> Record | None:
        """The record of ``message``, None when no rule matches its prefix."""
        topic = self.topic(message.prefix)
        if topic is None:
            return None
        key = orjson.dumps({"prefix": message.prefix})
        body = orjson.dumps(value(message, source, now_ms))
        if source.schemas:
            found = message_schemas(source.values)
            assert found.key is not None
            key, body = wrap(found.key, key), wrap(found.value, body)
        return Record(
            topic, key, body, [(EVENT_ID_HEADER, b"%d:%d" % (message.commit_lsn, message.index))]
        )


def _content(content: bytes, source: SourceInfo) -> str:
    """The content as bytes are written: base64, or under Debezium's ``binary_handling_mode``."""
    mode = source.values
    if mode.values == "debezium" and mode.binary == "hex":
        return content.hex()
    if mode.values == "debezium" and mode.binary == "base64-url-safe":
        return base64.urlsafe_b64encode(content).decode()
    return base64.b64encode(content).decode()


def value(message: MessageLike, source: SourceInfo, now_ms: int) -> dict[str, object]:
    """Debezium's message event, with the change envelope's ``transaction`` block (None for a
    non-transactional message, which belongs to no transaction)."""
    transactional = message.transactional
    # The debezium mode's source, as its change events' (name = topic prefix, ts_us, ...).
    block = source_block if source.values.values == "exact" else debezium_source_block
    return {
        "op": "m",
        "ts_ms": now_ms,
        # A non-transactional message has no commit: its ts_ms is when the connector read it.
        "source": block(
            source,
            message.commit_ts_ms if transactional else now_ms,
            "false",
            message.last_commit_lsn,
            message.lsn,
            "",
            "",
            message.xid,
        ),
        "message": {
            "prefix": message.prefix,
            "content": _content(message.content, source),
        },
        "transaction": {
            "id": f"{message.xid}:{message.commit_lsn}",
            "total_order": message.total_order,
            "data_collection_order": message.data_collection_order,
        }
        if transactional and source.transaction_blocks
        else None,
    }
