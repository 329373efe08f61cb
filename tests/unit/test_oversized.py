"""cdc.oversized: records over the size Kafka takes, by policy (unit, no services)."""

from __future__ import annotations

import logging

import orjson
import pytest

from cdc.events import UNAVAILABLE, UNAVAILABLE_HEADER, Change, Record, SourceInfo, encode
from cdc.oversized import OVERHEAD, OVERSIZED_HEADER, Oversized, OversizedRecord, record_size
from cdc.records import parse_record

B64_PLACEHOLDER = "X19kZWJleml1bV91bmF2YWlsYWJsZV92YWx1ZQ=="

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


@pytest.mark.parametrize("schemas", [False, True])
def test_truncate_writes_the_typed_placeholder_and_keeps_the_schema_layout(schemas: bool) -> None:
    """A record in JsonConverter's layout (schemas = true) is truncated too, its schema kept;
    a bytea value cut is the placeholder's bytes (a bytes field refuses the text), as for an
    unchanged TOASTed value, and cdc's sinks read the column as unavailable."""
    types = (("id", "integer"), ("doc", "bytea"), ("note", "text"))
    before = {"id": 7, "doc": "ab" * 10_000, "note": "old"}
    change = Change(
        "u", "public", "docs", {"id": 7}, before, {**before, "note": "new"}, 100, 0, 90, 7, 0,
        (), types,
    )  # fmt: skip
    big = encode(change, SourceInfo("c", "db", "p", schemas=schemas), 0)
    policy = Oversized("truncate", "connector c")
    cut = policy.check(big, LIMIT)
    assert cut is not None and record_size(cut) + OVERHEAD <= LIMIT
    assert policy.truncated == 1 and policy.skipped == 0
    assert cut.value is not None
    assert cut.value.startswith(b'{"schema":') == schemas
    value = orjson.loads(cut.value)
    payload = value["payload"] if schemas else value
    if schemas:
        assert value["schema"] == orjson.loads(big.value or b"")["schema"]
    assert payload["after"]["doc"] == payload["before"]["doc"] == B64_PLACEHOLDER
    event = parse_record(cut.topic, 0, 0, cut.key, cut.value, cut.headers)
    assert event is not None
    assert event.after == {"id": 7, "doc": UNAVAILABLE, "note": "new"}
    assert event.before == {"id": 7, "doc": UNAVAILABLE, "note": "old"}
    assert event.unavailable == {"doc"}
