"""The outbox event router (``[[connectors.outbox]]``): inserts published as domain events, with
the payload as it is whatever its type; updates, deletes, truncates and reads publish nothing."""

from __future__ import annotations

import dataclasses
import logging
import re
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import ValidationError

from cdc.config import parse_config
from cdc.config.models import ConnectorConfig, OutboxConfig
from cdc.errors import CdcError, ConfigError
from cdc.events import Change, SourceInfo
from cdc.transforms import Transforms
from cdc.transforms.outbox import Outbox

SOURCE = SourceInfo("shop", "shopdb", "src")
ROW = {
    "id": "5f0c6f4e-0000-4000-8000-000000000001",
    "aggregatetype": "Order",
    "aggregateid": "42",
    "type": "OrderCreated",
}


def change(
    op: str,
    payload: Any = None,
    payload_type: str = "jsonb",
    lsn: int = 400,
    index: int = 0,
    **row: Any,
) -> Change:
    after = {**ROW, "payload": payload, **row} if op in ("c", "u", "r") else None
    key = None if op == "t" else {"id": ROW["id"]}
    before = dict(key or {}) if op == "d" else None
    types = (
        ("id", "uuid"),
        ("aggregatetype", "text"),
        ("aggregateid", "text"),
        ("type", "text"),
        ("payload", payload_type),
    )
    return Change(op, "public", "outbox", key, before, after, 900, index, lsn, 7, 1000, (), types)  # type: ignore[arg-type]


def outbox(**config: Any) -> Outbox:
    return Outbox(OutboxConfig.model_validate({"table": "public.outbox", **config}))


@pytest.mark.parametrize(
    ("payload", "payload_type", "value"),
    [
        ('{"total": 1.50, "b": [1, 2]}', "json", b'{"total": 1.50, "b": [1, 2]}'),
        ('{"b": [1, 2], "total": 1.50}', "jsonb", b'{"b": [1, 2], "total": 1.50}'),
        ("héllo ☃", "text", "héllo ☃".encode()),
        ("00ff10", "bytea", b"\x00\xff\x10"),
        (None, "jsonb", None),
        (None, "bytea", None),
    ],
)
def test_an_insert_is_published_with_its_payload_as_it_is(
    payload: Any, payload_type: str, value: bytes | None
) -> None:
    (record,) = outbox().records(change("c", payload, payload_type), SOURCE)
    assert record.topic == "outbox.event.Order"
    assert record.key == b"42"
    assert record.value == value
    assert dict(record.headers) == {
        "cdc-event-id": b"900:0",
        "cdc-outbox": b"public.outbox",  # sinks whose globs match the topic skip it
        "id": ROW["id"].encode(),
        "type": b"OrderCreated",
    }


def test_topic_template_and_column_names_are_configurable() -> None:
    box = outbox(
        topic="{topic_prefix}.{schema}.{table}.{aggregatetype}",
        aggregate_type_column="kind",
        aggregate_id_column="agg",
        payload_column="body",
        type_column="what",
        id_column="eid",
    )
    row = {"eid": 7, "kind": "Cust omer", "agg": 99, "what": None, "body": "x"}
    c = Change("c", "public", "outbox", {"eid": 7}, None, row, 900, 3, 400, 7, 1000)
    (record,) = box.records(c, SOURCE)
    assert record.topic == "src.public.outbox.Cust_omer"  # Kafka forbids the space
    assert record.key == b"99" and record.value == b"x"
    # A NULL type: no type header.
    assert dict(record.headers) == {
        "cdc-event-id": b"900:3",
        "cdc-outbox": b"public.outbox",
        "id": b"7",
    }


def test_a_null_aggregate_id_is_a_null_key_and_a_null_type_the_null_topic() -> None:
    (record,) = outbox().records(change("c", "{}", aggregateid=None, aggregatetype=None), SOURCE)
    assert record.key is None and record.topic == "outbox.event.null"


def test_updates_deletes_truncates_and_reads_publish_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    box = outbox()
    caplog.set_level(logging.WARNING)
    assert box.records(change("u", "{}"), SOURCE) == []
    assert box.records(change("u", "{}"), SOURCE) == []
    assert box.records(change("d"), SOURCE) == []
    assert box.records(change("t"), SOURCE) == []
    assert box.records(change("r", "{}"), SOURCE) == []
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings  # once per table, as Debezium does
    assert "public.outbox" in warnings[0] and "update" in warnings[0]


def test_a_key_change_split_into_delete_and_create_is_an_update() -> None:
    # The decoders publish an update of the key as a delete and a create at the same LSN.
    box = outbox()
    assert box.records(change("d", lsn=500), SOURCE) == []
    assert box.records(change("c", "{}", lsn=500, index=1), SOURCE) == []
    # An insert after a delete in the same transaction has an LSN of its own: published.
    assert box.records(change("d", lsn=600), SOURCE) == []
    assert len(box.records(change("c", "{}", lsn=601, index=2), SOURCE)) == 1


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"table": "outbox"}, "must be schema.table"),
        ({"table": "public.out*"}, "must be schema.table"),
        ({"table": "a.b.c"}, "must be schema.table"),
        ({"table": "public.outbox", "topic": "x.{aggregate}"}, "unknown placeholder {aggregate}"),
        ({"table": "public.outbox", "topic": "x.{db"}, "outbox topic template 'x.{db'"),
    ],
)
def test_bad_configs_are_refused_at_load(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        OutboxConfig.model_validate(config)


def test_one_table_in_two_outbox_entries_is_refused_naming_it() -> None:
    # The second entry silently replaced the first (its topic, its columns).
    text = (
        '[kafka]\nbootstrap_servers = "k:9092"\n[[connectors]]\nname = "shop"\n'
        'dsn = "host=h dbname=d"\n[[connectors.outbox]]\ntable = "public.outbox"\n'
        '[[connectors.outbox]]\ntable = "public.outbox"\ntopic = "other.{aggregatetype}"\n'
    )
    with pytest.raises(ConfigError, match=r"connectors\[0\].*public\.outbox.*outbox\[0\]"):
        parse_config(text)


@dataclass(frozen=True)
class Info:
    columns: tuple[str, ...]
    key: tuple[str, ...] = ("id",)
    identity: str = "default"
    has_primary_key: bool = True


def test_problems_name_the_missing_column() -> None:
    config = OutboxConfig.model_validate({"table": "public.outbox"})
    assert Outbox.problems(config, "public.outbox", Info((*ROW, "payload"))) == []
    (error,) = Outbox.problems(config, "public.outbox", Info(tuple(ROW)))
    assert error == "outbox table public.outbox: payload_column 'payload': no such column"


def test_publish_rows_also_publishes_the_row_events() -> None:
    def shape(publish_rows: bool) -> list[str]:
        config = ConnectorConfig.model_validate(
            {
                "name": "shop",
                "dsn": "dbname=x",
                "outbox": [{"table": "public.outbox", "publish_rows": publish_rows}],
            }
        )
        found = Transforms(config).shape("public", "outbox")
        assert found is not None
        records = found.records(change("c", '{"a":1}'), SOURCE, 1, True)
        records += found.records(change("d"), SOURCE, 1, True)
        return [r.topic for r in records]

    assert shape(False) == ["outbox.event.Order"]
    assert shape(True) == [
        "outbox.event.Order",
        "src.public.outbox",
        "src.public.outbox",
        "src.public.outbox",  # the delete's tombstone
    ]


def test_an_update_a_filter_turns_into_an_insert_is_still_an_update() -> None:
    # REPLICA IDENTITY FULL and a filter on the outbox: an update moving a row into the filter
    # is published as a create for row events, but it is no new outbox event.
    config = ConnectorConfig.model_validate(
        {
            "name": "shop",
            "dsn": "dbname=x",
            "outbox": [{"table": "public.outbox"}],
            "filters": [{"tables": ["public.outbox"], "where": "aggregatetype = 'Order'"}],
        }
    )
    found = Transforms(config).shape("public", "outbox")
    assert found is not None
    moved_in = dataclasses.replace(
        change("u", '{"a":1}'), before={**ROW, "aggregatetype": "Draft", "payload": '{"a":1}'}
    )
    assert found.records(moved_in, SOURCE, 1, True) == []
    assert len(found.records(change("c", '{"a":1}'), SOURCE, 1, True)) == 1


def test_an_aggregate_type_that_makes_a_topic_kafka_refuses_stops_naming_it() -> None:
    with pytest.raises(CdcError, match=r"outbox public\.outbox \(aggregatetype = 'xxx.*262 char"):
        outbox().records(change("c", "{}", aggregatetype="x" * 249), SOURCE)
