"""Records Kafka will never take: a connector's ``oversized`` policy.

A topic takes records up to its ``max.message.bytes`` (broker default 1 MiB), a producer sends
requests up to ``max_request_size``, and a broker reads requests up to its
``socket.request.max.bytes``. A record over the smallest of them is refused every time it is sent,
so retrying it blocks every table behind it. The publisher checks each record's size before it
sends it (:meth:`Oversized.check`) and applies the policy:

- ``fail`` (the default): the connector stops publishing there, with an error that names the
  table, the key, the size and the limit, and tries again with backoff (it goes on by itself
  once the limits are raised). Nothing is lost and nothing is confirmed past it. It is the
  default because the other two change what the topic says, which only the operator can decide.
- ``skip``: leave the change out, log it at ERROR (table, key, size) and count it.
- ``truncate``: replace the largest values of the row with the unchanged-value placeholder until
  the record fits; the ``cdc-unavailable`` header names them (so sinks keep the value they hold,
  as for an unchanged TOASTed value) and ``cdc-oversized`` gives each one's size. Logged at
  WARNING and counted. A record whose key alone is too big is skipped (``truncate``) or fails.
"""

from __future__ import annotations

__all__ = ["OVERSIZED_HEADER", "Oversized", "OversizedRecord", "record_size"]

import logging
from typing import Any, Literal

import orjson

from cdc.errors import OversizedRecord
from cdc.events import TYPES_HEADER, UNAVAILABLE, UNAVAILABLE_HEADER, Record
from cdc.values import VALUES_HEADER, mode_from_header, placeholder

log = logging.getLogger(__name__)

OVERSIZED_HEADER = "cdc-oversized"
"""``{"column": bytes}``: the values a record left out to fit (``oversized = "truncate"``)."""

OVERHEAD = 1024
"""Bytes a record costs beyond its key, value and headers (batch and request framing), kept free
under the limit."""

Policy = Literal["fail", "skip", "truncate"]


def record_size(record: Record) -> int:
    """Key, value and header bytes of ``record``."""
    size = len(record.key or b"") + len(record.value or b"")
    for name, value in record.headers:
        size += len(name) + len(value or b"")
    return size


class Oversized:
    """A connector's policy for records over a topic's limit, and its counts."""

    def __init__(self, policy: Policy, subject: str) -> None:
        self.policy = policy
        self.subject = subject
        self.skipped = 0
        self.truncated = 0

    def check(self, record: Record, limit: int) -> Record | None:
        """``record`` as it may be sent (itself when it fits), or None: leave it out."""
        size = record_size(record)
        if size + OVERHEAD <= limit:
            return record
        what = _describe(record)
        if self.policy == "fail":
            raise OversizedRecord(
                f"Kafka did not take a record: {what} is {size} bytes, over the"
                f" {limit - OVERHEAD} bytes"
                f" {record.topic} takes (the smallest of the topic's max.message.bytes, the"
                " broker's socket.request.max.bytes and [kafka.producer] max_request_size)."
                ' Raise those limits, or set oversized = "truncate" or "skip" on the connector'
            )
        if self.policy == "truncate":
            cut = _truncated(record, limit - OVERHEAD)
            if cut is not None:
                self.truncated += 1
                log.warning(
                    "%s: %s is %d bytes, over the %d %s takes: published with %s left out"
                    ' (oversized = "truncate"; %d so far)',
                    self.subject,
                    what,
                    size,
                    limit - OVERHEAD,
                    record.topic,
                    ", ".join(f"{c} ({n} bytes)" for c, n in cut[1].items()),
                    self.truncated,
                )
                return cut[0]
        self.skipped += 1
        log.error(
            "%s: %s is %d bytes, over the %d %s takes: left out (oversized = %r; %d so far)",
            self.subject,
            what,
            size,
            limit - OVERHEAD,
            record.topic,
            self.policy,
            self.skipped,
        )
        return None


def _describe(record: Record) -> str:
    key = record.key or b"null"
    shown = key.decode(errors="replace")
    if len(shown) > 200:
        shown = shown[:200] + "..."
    return f"the record of {record.topic} with key {shown}"


def _truncated(record: Record, limit: int) -> tuple[Record, dict[str, int]] | None:
    """``record`` with its largest row values replaced by the placeholder until it fits in
    ``limit`` bytes, and the size of each value left out; None if nothing makes it fit."""
    found = _event(record.value)
    if found is None:
        return None
    schema, envelope = found
    after = envelope.get("after") or {}
    before = envelope.get("before") or {}
    placeholders = _placeholders(record.headers)
    sizes = sorted(
        ((len(orjson.dumps(v)), c) for c, v in after.items() if v != UNAVAILABLE),
        reverse=True,
    )
    excess = record_size(record) - limit
    cut: dict[str, int] = {}
    for size, column in sizes:
        if excess <= 0:
            break
        cut[column] = size
        placeholder = len(orjson.dumps(placeholders.get(column, UNAVAILABLE)))
        excess -= size - placeholder
        before_value = before.get(column)
        if before_value is not None and before_value != UNAVAILABLE:
            excess -= len(orjson.dumps(before_value)) - placeholder
    if excess > 0 or not cut:
        return None
    for column in cut:
        # As an unchanged TOASTed value: the placeholder in its column type's shape
        after[column] = placeholders.get(column, UNAVAILABLE)
        if column in before:
            before[column] = after[column]
    headers = [(n, v) for n, v in record.headers if n != UNAVAILABLE_HEADER]
    unavailable = set(cut)
    for name, value in record.headers:
        if name == UNAVAILABLE_HEADER and value:
            unavailable.update(orjson.loads(value))
    headers.append((UNAVAILABLE_HEADER, orjson.dumps(sorted(unavailable))))
    headers.append((OVERSIZED_HEADER, orjson.dumps(cut)))
    value = orjson.dumps(envelope if schema is None else {"schema": schema, "payload": envelope})
    smaller = Record(record.topic, record.key, value, headers)
    if record_size(smaller) > limit:
        return None
    return smaller, cut


def _event(value: bytes | None) -> tuple[Any, dict[str, Any]] | None:
    """The row event of a record's value, and its schema (None unless schemas = true, whose
    JsonConverter layout keeps the event in ``payload``); None when it is no row event (an
    outbox event's payload, bytes or JSON), which is never rewritten."""
    if value is None:
        return None
    try:
        envelope = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    schema = None
    if type(envelope) is dict and "schema" in envelope and "payload" in envelope:
        schema, envelope = envelope["schema"], envelope["payload"]
    if type(envelope) is not dict or "op" not in envelope or "source" not in envelope:
        return None
    return schema, envelope


def _placeholders(headers: list[tuple[str, bytes]]) -> dict[str, Any]:
    """Per column of the record (``cdc-types``), the placeholder's shape in the record's values
    mode (``cdc-values``) where it is not the text (:func:`cdc.values.placeholder`)."""
    found = dict(headers)
    raw_types, raw_mode = found.get(TYPES_HEADER), found.get(VALUES_HEADER)
    if raw_types is None or raw_mode is None:
        return {}
    try:
        mode = mode_from_header(raw_mode)
        types = orjson.loads(raw_types)
    except (ValueError, orjson.JSONDecodeError):
        return {}
    if type(types) is not dict:
        return {}
    shaped = {c: placeholder(str(t), mode) for c, t in types.items()}
    return {c: p for c, p in shaped.items() if p is not None}
