"""parse_record on records Debezium 3.6.1 wrote (no cdc-event-id): tests/fixtures/debezium."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from cdc.records import BadRecord, SinkEvent, parse_record

FIXTURES = Path(__file__).parent.parent / "fixtures" / "debezium"


def _parsed(name: str) -> list[SinkEvent | None]:
    out = []
    with (FIXTURES / name).open() as f:
        for i, line in enumerate(f):
            r = json.loads(line)
            key = None if r["key"] is None else orjson.dumps(r["key"])
            value = None if r["value"] is None else orjson.dumps(r["value"])
            headers = [
                (k, v.encode() if isinstance(v, str) else orjson.dumps(v))
                for k, v in r["headers"].items()
            ]
            out.append(parse_record("t", 0, 100 + i, key, value, headers))
    return out


CDC = [e for e in _parsed("cdc-pgoutput.jsonl") if e is not None and e.op != "t"]


@pytest.mark.parametrize(
    "name",
    ["debezium-defaults.jsonl", "debezium-exact-options.jsonl", "debezium-defaults-schemas.jsonl"],
)
def test_debeziums_records_are_events(name: str) -> None:
    events = _parsed(name)
    assert all(e is not None for e in events)
    assert [(e.op, e.key, e.schema, e.table) for e in events if e] == [
        (e.op, e.key, e.schema, e.table) for e in CDC
    ]
    versions = [e.version for e in events if e]
    # source.lsn, then the Kafka position (no transaction metadata): the key change's delete
    # and create share an LSN and still have two versions
    assert [v[0] for v in versions] == [
        57203137672,
        57203138376,
        57203138760,
        57203139016,
        57203139992,
        57203139992,
        57203140352,
    ]
    assert len(set(versions)) == len(versions)
    assert versions == sorted(versions)
    first = events[0]
    assert first is not None and first.commit_ts_ms == 1796603500825


def test_without_schema_every_column_waits_for_the_targets_types() -> None:
    event = _parsed("debezium-defaults.jsonl")[0]
    assert event is not None
    assert not event.types
    assert event.after is not None
    assert event.undecoded == frozenset(event.after)
    assert event.after["d"] == 19724  # as Debezium wrote it


def test_with_schema_values_are_decoded_and_typed() -> None:
    event = _parsed("debezium-defaults-schemas.jsonl")[0]
    assert event is not None and event.after is not None
    assert event.key == {"id": 1}
    assert event.after["d"] == "2024-01-02"
    assert event.after["ts"] == "2024-01-02 03:04:05.123456"
    assert event.after["n"] == "12345678901234567890.123456789012345678"
    assert event.after["ba"] == "deadbeef"
    assert event.types["ts"] == "timestamp"
    assert event.types["n102"] == "numeric(10,2)"
    # plain strings: text, inet, range...: the target's type says which
    assert event.undecoded == frozenset({"ip", "mac", "r", "c", "vc", "tx"})


def _envelope(**changes: Any) -> dict[str, Any]:
    envelope: dict[str, Any] = {
        "before": None,
        "after": {"id": 1, "d": 19724},
        "source": {"schema": "app", "table": "items", "lsn": 500, "ts_ms": 7},
        "op": "c",
        "transaction": None,
    }
    envelope.update(changes)
    return envelope


def test_transaction_order_is_the_index() -> None:
    tx = {"id": "571:500", "total_order": 3, "data_collection_order": 1}
    event = parse_record("t", 0, 9, b'{"id":1}', orjson.dumps(_envelope(transaction=tx)), [])
    assert event is not None and event.version == (500, 3)


def test_a_key_with_a_schema_is_decoded() -> None:
    key = {
        "schema": {
            "type": "struct",
            "fields": [{"field": "d", "type": "int32", "name": "io.debezium.time.Date"}],
        },
        "payload": {"d": 19724},
    }
    value = {"schema": {"type": "struct", "fields": []}, "payload": _envelope()}
    event = parse_record("t", 0, 9, orjson.dumps(key), orjson.dumps(value), [])
    assert event is not None
    assert event.key == {"d": "2024-01-02"}
    assert event.key_id == b'{"d":"2024-01-02"}'


def test_tombstones_and_truncates() -> None:
    assert parse_record("t", 0, 1, b'{"id":1}', None, []) is None
    truncate = _envelope(op="t", after=None)
    event = parse_record("t", 0, 1, None, orjson.dumps(truncate), [])
    assert event is not None and (event.op, event.version[0]) == ("t", 500)


def test_an_unchanged_toasted_value_is_unavailable() -> None:
    after = {"id": 1, "v": "__debezium_unavailable_value"}
    raw = orjson.dumps(_envelope(op="u", after=after))
    event = parse_record("t", 0, 1, b'{"id":1}', raw, [])
    assert event is not None and event.unavailable == frozenset({"v"})


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (_envelope(source={"table": "items"}), "no cdc-event-id header, and no source.lsn"),
        (_envelope(op="m"), "op is 'm'"),
        ({"schema": None, "payload": "x"}, "value is not a JSON object"),
        ({"schema": "x", "payload": _envelope()}, "the value's schema is not JSON"),
    ],
)
def test_what_is_not_a_debezium_change(value: Any, reason: str) -> None:
    raw = orjson.dumps(value)
    if reason.startswith("the value's schema"):
        raw = raw.replace(b'"schema":"x"', b'"schema":{x')
        reason = "value is not JSON"
    with pytest.raises(BadRecord, match=reason):
        parse_record("t", 0, 1, b'{"id":1}', raw, [])
