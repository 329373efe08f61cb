"""cdc.sink.foreign: Debezium's untyped columns decoded by the target table's types."""

from __future__ import annotations

from collections.abc import Mapping

import orjson

from cdc.records import SinkEvent, parse_record
from cdc.sink.foreign import Foreign, pending
from cdc.values.from_debezium import Options

TABLE = {"id": "integer", "d": "date", "ba": "bytea", "note": "text"}


def _event(after: dict[str, object], key: bytes = b'{"id":1}') -> SinkEvent:
    value = {
        "before": None,
        "after": after,
        "source": {"schema": "app", "table": "items", "lsn": 500},
        "op": "c",
    }
    event = parse_record("t", 0, 3, key, orjson.dumps(value), [])
    assert event is not None
    return event


def test_schemaless_columns_take_the_target_tables_types() -> None:
    asked: list[tuple[str, str]] = []

    def types(schema: str, table: str) -> Mapping[str, str] | None:
        asked.append((schema, table))
        return TABLE

    foreign = Foreign(Options(), types, "no target table")
    event = _event({"id": 1, "d": 19724, "ba": "3q2+7w==", "note": "x"})
    assert pending([event])
    (decoded,), refused = foreign.decode([event])
    assert not refused
    assert decoded.after == {"id": 1, "d": "2024-01-02", "ba": "deadbeef", "note": "x"}
    assert dict(decoded.types) == TABLE
    assert not decoded.undecoded and not pending([decoded])
    assert decoded.key_id == b'{"id":1}'
    assert event.after == {"id": 1, "d": 19724, "ba": "3q2+7w==", "note": "x"}  # untouched
    foreign.decode([event])
    assert asked == [("app", "items")]  # looked up once


def test_a_missing_table_is_looked_up_once_a_batch() -> None:
    asked: list[str] = []

    def types(schema: str, table: str) -> Mapping[str, str] | None:
        asked.append(table)
        return None

    foreign = Foreign(Options(), types, "no target table")
    events = [_event({"id": i, "d": 19724}, key=b'{"id":%d}' % i) for i in range(5)]
    _, refused = foreign.decode(events)
    assert len(refused) == 5 and asked == ["items"]
    foreign.decode(events)
    assert asked == ["items", "items"]  # made since, perhaps


def test_a_key_column_is_decoded_too() -> None:
    foreign = Foreign(Options(), lambda s, t: {"d": "date", "note": "text"}, "no target table")
    (decoded,), _ = foreign.decode([_event({"d": 19724, "note": "x"}, key=b'{"d":19724}')])
    assert decoded.key == {"d": "2024-01-02"}
    assert decoded.key_id == b'{"d":"2024-01-02"}'


def test_what_cannot_be_typed_is_refused_with_why() -> None:
    none = Foreign(Options(), lambda s, t: None, "no target table")
    event = _event({"id": 1, "d": 19724})
    out, ((refused, why),) = none.decode([event])
    assert out == [] and refused is event
    assert "no target table: enable schemas in Debezium's converters" in why
    assert "or create the target table" in why
    lacking = Foreign(Options(), lambda s, t: {"id": "integer"}, "no target table")
    _, ((_, why),) = lacking.decode([event])
    assert "has columns the target table lacks (d)" in why


def test_a_placeholder_in_bytes_is_unavailable() -> None:
    foreign = Foreign(Options(), lambda s, t: TABLE, "no target table")
    after = {"id": 1, "ba": "X19kZWJleml1bV91bmF2YWlsYWJsZV92YWx1ZQ=="}
    (decoded,), _ = foreign.decode([_event(after)])
    assert decoded.unavailable == frozenset({"ba"})


def test_plain_strings_of_a_schema_take_the_targets_type_or_stay_as_they_are() -> None:
    schema = {
        "type": "struct",
        "fields": [
            {"field": "after", "type": "struct", "fields": [
                {"field": "id", "type": "int32"},
                {"field": "note", "type": "string"},
            ]},
        ],
    }  # fmt: skip
    value = {
        "schema": schema,
        "payload": {
            "before": None,
            "after": {"id": 1, "note": "3q2+7w=="},
            "source": {"schema": "app", "table": "items", "lsn": 500},
            "op": "c",
        },
    }
    event = parse_record("t", 0, 3, b'{"id":1}', orjson.dumps(value), [])
    assert event is not None and event.undecoded == frozenset({"id", "note"})  # key: no schema
    text = Foreign(Options(binary="base64"), lambda s, t: {"id": "integer", "note": "text"}, "")
    (same,), _ = text.decode([event])
    assert same.after is event.after and not same.undecoded  # nothing to decode: no copy
    assert dict(same.types) == {"id": "integer", "note": "text"}
    binary = Foreign(Options(binary="base64"), lambda s, t: {"id": "integer", "note": "bytea"}, "")
    (decoded,), _ = binary.decode([event])
    assert decoded.after == {"id": 1, "note": "deadbeef"}
    none = Foreign(Options(), lambda s, t: None, "no target table")
    (kept,), refused = none.decode([event])
    assert not refused and kept.after == {"id": 1, "note": "3q2+7w=="}  # a new table: text
