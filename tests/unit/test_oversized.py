"""cdc.oversized: records over the size Kafka takes, by policy (unit, no services)."""

from __future__ import annotations

import logging

import orjson
import pytest

from cdc.events import UNAVAILABLE, UNAVAILABLE_HEADER, Record
from cdc.oversized import OVERHEAD, OVERSIZED_HEADER, Oversized, OversizedRecord, record_size

LIMIT = 10_000 + OVERHEAD


def record(body: str, note: str = "n", before: dict[str, object] | None = None) -> Record:
    value = {
        "before": before,
        "after": {"id": 7, "body": body, "note": note},
        "source": {"table": "docs"},
        "op": "u",
    }
    return Record(
        "p.public.docs",
        b'{"id":7}',
        orjson.dumps(value),
        [("cdc-event-id", b"100:0"), (UNAVAILABLE_HEADER, b'["note"]')],
    )


def test_a_record_that_fits_is_sent_as_it_is() -> None:
    small = record("x" * 100)
    for policy in ("fail", "skip", "truncate"):
        assert Oversized(policy, "c").check(small, LIMIT) is small


def test_fail_names_the_table_key_size_and_limit_and_may_be_retried() -> None:
    big = record("x" * 20_000)
    with pytest.raises(OversizedRecord) as raised:
        Oversized("fail", "connector c").check(big, LIMIT)
    text = str(raised.value)
    assert "p.public.docs" in text and '{"id":7}' in text
    assert f"is {record_size(big)} bytes, over the 10000 bytes" in text
    assert 'oversized = "truncate" or "skip"' in text
    assert raised.value.retriable


def test_skip_leaves_it_out_logs_and_counts(caplog: pytest.LogCaptureFixture) -> None:
    policy = Oversized("skip", "connector c")
    with caplog.at_level(logging.ERROR):
        assert policy.check(record("x" * 20_000), LIMIT) is None
        assert policy.check(record("y" * 30_000), LIMIT) is None
    assert policy.skipped == 2
    assert "left out (oversized = 'skip'; 2 so far)" in caplog.text
    assert '{"id":7}' in caplog.text


def test_truncate_replaces_the_largest_values_and_names_them() -> None:
    policy = Oversized("truncate", "connector c")
    big = record("x" * 20_000, before={"id": 7, "body": "y" * 20_000, "note": "old"})
    cut = policy.check(big, LIMIT)
    assert cut is not None and record_size(cut) + OVERHEAD <= LIMIT
    value = orjson.loads(cut.value or b"")
    assert value["after"] == {"id": 7, "body": UNAVAILABLE, "note": "n"}
    assert value["before"]["body"] == UNAVAILABLE and value["before"]["note"] == "old"
    headers = dict(cut.headers)
    assert orjson.loads(headers[UNAVAILABLE_HEADER]) == ["body", "note"]  # merged
    assert orjson.loads(headers[OVERSIZED_HEADER]) == {"body": 20_002}
    assert headers["cdc-event-id"] == b"100:0"
    assert cut.key == big.key and policy.truncated == 1


def test_truncate_skips_what_cannot_fit() -> None:
    policy = Oversized("truncate", "connector c")
    huge_key = Record("p.public.t", b"k" * 20_000, b'{"after":{"a":1}}', [])
    assert policy.check(huge_key, LIMIT) is None
    assert policy.skipped == 1 and policy.truncated == 0


def test_truncate_never_rewrites_an_outbox_event() -> None:
    """An outbox event's value is its payload (bytes, or any JSON, here one with an ``after``):
    not an envelope whose values may be replaced. Left out, never rewritten."""
    policy = Oversized("truncate", "connector c")
    for value in (b"\xff" * LIMIT, orjson.dumps({"after": {"big": "x" * LIMIT}, "n": 1})):
        event = Record("outbox.event.Order", b"42", value, [("cdc-event-id", b"1:0")])
        assert policy.check(event, LIMIT) is None
    assert policy.skipped == 2 and policy.truncated == 0
