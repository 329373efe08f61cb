"""parse_record: a Kafka record in, a checked SinkEvent out, or BadRecord naming the problem."""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
import pytest

from cdc.events import UNAVAILABLE, Change, SourceInfo, encode
from cdc.records import BadRecord, collapse, key_id, parse_record

TYPES = b'{"id":"bigint","v":"text"}'
GOOD_HEADERS = [("cdc-event-id", b"12345:7"), ("cdc-types", TYPES)]


def value(**changes: Any) -> bytes:
    envelope: dict[str, Any] = {
        "before": None,
        "after": {"id": 1, "v": "x"},
        "source": {"schema": "app", "table": "items", "lsn": 12345},
        "op": "c",
        "ts_ms": 1,
    }
    envelope.update(changes)
    return orjson.dumps(envelope)


def test_a_good_record() -> None:
    headers = [*GOOD_HEADERS, ("cdc-unavailable", b'["big"]'), ("cdc-identity", b"full")]
    event = parse_record("t", 3, 42, b'{"id":1}', value(), headers)
    assert event is not None
    assert (event.topic, event.partition, event.offset) == ("t", 3, 42)
    assert (event.schema, event.table, event.op) == ("app", "items", "c")
    assert event.key == {"id": 1}
    assert event.before is None
    assert event.after == {"id": 1, "v": "x"}
    assert event.version == (12345, 7)
    assert event.unavailable == frozenset({"big"})
    assert dict(event.types) == {"id": "bigint", "v": "text"}
    assert event.whole_row_key


def test_keys_written_in_another_column_order_are_one_key() -> None:
    """Parsing names each key by its JSON with sorted names; collapsing goes by that name, so
    two producers' spellings of one key collapse to the newer event, and an event made without
    parsing (``key_id`` unset) is named the same way."""
    older = parse_record("t", 0, 0, b'{"a":1,"b":"x"}', value(), GOOD_HEADERS)
    newer = parse_record(
        "t", 0, 1, b'{"b":"x","a":1}', value(op="u"), [("cdc-event-id", b"12346:0")]
    )
    other = parse_record("t", 0, 2, b'{"a":2,"b":"x"}', value(), [("cdc-event-id", b"1:0")])
    assert older is not None and newer is not None and other is not None
    assert older.key_id == newer.key_id == b'{"a":1,"b":"x"}' != other.key_id
    unparsed = dataclasses.replace(newer, key_id=None)
    assert key_id(unparsed) == key_id(newer) == newer.key_id
    upserts, deletes = collapse([newer, other, older])
    assert (upserts, deletes) == ([other, newer], [])
    upserts, _ = collapse([unparsed, older])
    assert upserts == [unparsed]


def test_defaults_and_a_tombstone() -> None:
    event = parse_record("t", 0, 0, None, value(source={"table": "items"}), GOOD_HEADERS[:1])
    assert event is not None
    assert (event.schema, event.key, dict(event.types)) == ("public", None, {})
    assert not event.whole_row_key and not event.unavailable
    assert parse_record("t", 0, 1, b'{"id":1}', None, GOOD_HEADERS) is None


@pytest.mark.parametrize(
    ("key", "raw", "headers", "reason"),
    [
        (None, b"{nope", GOOD_HEADERS, "value is not JSON"),
        (None, b"[1, 2]", GOOD_HEADERS, "value is not a JSON object"),
        (None, value(op="x"), GOOD_HEADERS, "not a change event: op is 'x'"),
        (None, value(source=None), GOOD_HEADERS, "source.table is missing"),
        (None, value(source={"table": 5}), GOOD_HEADERS, "source.table is missing"),
        (None, value(before=[1]), GOOD_HEADERS, "before is not a JSON object"),
        (None, value(after="row"), GOOD_HEADERS, "after is not a JSON object"),
        (None, value(op="u", after=None), GOOD_HEADERS, "op 'u' without an after image"),
        (
            None,
            value(source={"schema": "app", "table": "items"}),
            [],
            "no cdc-event-id header, and no source.lsn",
        ),
        (None, value(), [("cdc-event-id", b"12:x")], "bad cdc-event-id header"),
        (None, value(), [("cdc-event-id", b"12")], "bad cdc-event-id header"),
        (b"{nope", value(), GOOD_HEADERS, "key is not JSON"),
        (b"[1]", value(), GOOD_HEADERS, "key is not a JSON object"),
        (None, value(), [*GOOD_HEADERS[:1], ("cdc-types", b"[1]")], "bad cdc-types header"),
        (
            None,
            value(),
            [*GOOD_HEADERS, ("cdc-unavailable", b'{"a": 1}')],
            "bad cdc-unavailable header",
        ),
    ],
)
def test_bad_records_name_the_problem(
    key: bytes | None, raw: bytes, headers: list[tuple[str, bytes]], reason: str
) -> None:
    with pytest.raises(BadRecord, match=reason.replace("(", r"\(")):
        parse_record("t", 0, 0, key, raw, headers)


def test_a_placeholder_from_another_producer_is_taken_as_unavailable() -> None:
    # Debezium's own connector marks an unchanged TOASTed value by the placeholder alone; cdc's
    # events say their types and name the unavailable columns, so their values are taken as sent.
    after = {"id": 1, "v": "__debezium_unavailable_value"}
    theirs = parse_record("t", 0, 0, b'{"id":1}', value(after=after), [("cdc-event-id", b"1:0")])
    ours = parse_record("t", 0, 0, b'{"id":1}', value(after=after), GOOD_HEADERS)
    assert theirs is not None and ours is not None
    assert theirs.unavailable == frozenset({"v"})
    assert ours.unavailable == frozenset()


def test_a_new_row_without_its_toasted_value_is_null_never_the_placeholder() -> None:
    # A create at a key whose row moved on before cdc could read its value back: an update
    # keeps what the target has, a new row has nothing to keep (what the target holds at that
    # key belonged to a row deleted before), so null, not the placeholder nor the deleted row's.
    def event(op: str, index: int, after: dict[str, Any] | None) -> Any:
        headers = [("cdc-event-id", b"5:%d" % index), ("cdc-types", TYPES)]
        if after and after.get("v") == "__debezium_unavailable_value":
            headers.append(("cdc-unavailable", b'["v"]'))
        return parse_record("t", 0, index, b'{"id":1}', value(op=op, after=after), headers)

    placeholder = {"id": 1, "v": "__debezium_unavailable_value"}
    upserts, _ = collapse([event("c", 0, {"id": 1, "v": "x"}), event("u", 1, placeholder)])
    assert [(e.after, e.unavailable) for e in upserts] == [({"id": 1, "v": "x"}, frozenset())]
    upserts, _ = collapse([event("d", 0, None), event("c", 1, placeholder)])
    assert [(e.after, e.unavailable) for e in upserts] == [({"id": 1, "v": None}, frozenset())]
    upserts, _ = collapse([event("u", 1, placeholder)])
    assert [(e.after, e.unavailable) for e in upserts] == [(placeholder, frozenset({"v"}))]


def test_a_cdc_placeholder_in_an_encoded_column_reads_back_as_unavailable() -> None:
    """The exact mode writes an unchanged bytea or integer array as Debezium's placeholder of
    that type (valid base64, a list of ints); the sink takes the header's columns back to the
    placeholder, never decodes them as values."""
    types = (("id", "integer"), ("ba", "bytea"), ("ai", "integer[]"), ("ad", "date[]"))
    change = Change(
        "u", "public", "t", {"id": 1}, None,
        {"id": 1, "ba": UNAVAILABLE, "ai": UNAVAILABLE, "ad": UNAVAILABLE},
        100, 0, 90, 7, 0, ("ba", "ai", "ad"), types,
    )  # fmt: skip
    record = encode(change, SourceInfo("c", "db", "c"), 0)
    assert record.value is not None
    assert orjson.loads(record.value)["after"]["ba"] == "X19kZWJleml1bV91bmF2YWlsYWJsZV92YWx1ZQ=="
    event = parse_record(record.topic, 0, 0, record.key, record.value, record.headers)
    assert event is not None
    assert event.after == {"id": 1, "ba": UNAVAILABLE, "ai": UNAVAILABLE, "ad": UNAVAILABLE}
    assert event.unavailable == {"ba", "ai", "ad"}
