"""Routing (``[[connectors.routes]]``): templates, regex rewrites (``$1``), by-column topics, key
moves between topics, the key field naming the table, and what sinks make of routed records."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from cdc.config.models import ConnectorConfig, RouteRule
from cdc.errors import CdcError
from cdc.events import Change, Record, SourceInfo
from cdc.records import parse_record
from cdc.transforms import Transforms
from cdc.transforms.routes import KEY_TABLE_FIELD, Router

SOURCE = SourceInfo("shop", "shopdb", "src")


def change(
    op: str,
    table: str = "orders",
    key: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    before: dict[str, Any] | None = None,
    schema: str = "public",
    index: int = 0,
) -> Change:
    key = {"id": 1} if key is None and op != "t" else key
    if after is None and op in ("c", "u", "r"):
        after = {**(key or {}), "v": "x"}
    if before is None and op == "d":
        before = dict(key or {})
    return Change(op, schema, table, key, before, after, 500, index, 400, 7, 1000)  # type: ignore[arg-type]


def route(**rule: Any) -> Router:
    return Router(RouteRule.model_validate(rule))


def headers(record: Record) -> dict[str, bytes]:
    return dict(record.headers)


def test_template_topic_with_every_placeholder() -> None:
    r = route(topic="{topic_prefix}.{db}.{schema}.{table}.x")
    (record,) = r.records(change("c"), SOURCE, 1, True)
    assert record.topic == "src.shopdb.public.orders.x"
    assert headers(record)["cdc-table"] == b"public.orders"
    assert headers(record)["cdc-event-id"] == b"500:0"
    # {schema} and {table} both there: no table can share the topic, the key stays as it is
    assert record.key == b'{"id":1}' and "cdc-key-field" not in headers(record)


def test_characters_kafka_forbids_become_underscores() -> None:
    r = route(topic="all/{table}")
    (record,) = r.records(change("c", table="ord ers%"), SOURCE, 1, True)
    assert record.topic == "all_ord_ers_"


def test_a_template_that_merges_tables_puts_the_table_in_the_key() -> None:
    r = route(topic="{topic_prefix}.all")
    (a,) = r.records(change("c", table="orders"), SOURCE, 1, True)
    (b,) = r.records(change("c", table="items"), SOURCE, 1, True)
    assert a.topic == b.topic == "src.all"
    assert orjson.loads(a.key or b"") == {"id": 1, KEY_TABLE_FIELD: "src.public.orders"}
    assert orjson.loads(b.key or b"") == {"id": 1, KEY_TABLE_FIELD: "src.public.items"}
    assert headers(a)["cdc-key-field"] == KEY_TABLE_FIELD.encode()
    assert headers(b)["cdc-table"] == b"public.items"


def test_the_key_field_can_be_renamed_or_left_out() -> None:
    renamed = route(topic="all", key_table_field="tbl")
    (record,) = renamed.records(change("c"), SOURCE, 1, True)
    assert orjson.loads(record.key or b"") == {"id": 1, "tbl": "src.public.orders"}
    assert headers(record)["cdc-key-field"] == b"tbl"
    bare = route(topic="all", key_table_field="")
    (record,) = bare.records(change("c"), SOURCE, 1, True)
    assert record.key == b'{"id":1}' and "cdc-key-field" not in headers(record)
    assert headers(record)["cdc-table"] == b"public.orders"


def test_a_template_without_schema_merges_only_across_schemas() -> None:
    across = route(topic="t.{table}")
    (record,) = across.records(change("c"), SOURCE, 1, True)
    assert KEY_TABLE_FIELD in orjson.loads(record.key or b"")
    one_schema = route(tables=["public.*"], topic="t.{table}")
    (record,) = one_schema.records(change("c"), SOURCE, 1, True)
    assert record.key == b'{"id":1}'


def test_regex_rewrites_the_default_topic_with_dollar_groups() -> None:
    r = route(regex=r"src\.public\.orders_(\d+)", replacement="src.orders.$1")
    (record,) = r.records(change("c", table="orders_2024"), SOURCE, 1, True)
    assert record.topic == "src.orders.2024"
    assert orjson.loads(record.key or b"") == {"id": 1, KEY_TABLE_FIELD: "src.public.orders_2024"}
    # A table the regex does not match keeps its default topic (and still says its table).
    (other,) = r.records(change("c", table="items"), SOURCE, 1, True)
    assert other.topic == "src.public.items"
    assert headers(other)["cdc-table"] == b"public.items"


@pytest.mark.parametrize(
    ("replacement", "topic"),
    [
        ("all_$1", "all_orders"),
        ("all_${t}", "all_orders"),
        (r"all_\1", "all_orders"),
        (r"all_\g<t>", "all_orders"),
        (r"cost\$_$1", "cost__orders"),  # a literal $, which Kafka forbids: _
        ("$0.x", "src.public.orders.x"),
    ],
)
def test_replacement_syntaxes(replacement: str, topic: str) -> None:
    r = route(regex=r"src\.public\.(?P<t>.*)", replacement=replacement)
    assert r.records(change("c"), SOURCE, 1, True)[0].topic == topic


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"topic": "x.{tabel}"}, "unknown placeholder {tabel}"),
        ({"topic": "x.{table"}, "topic template 'x.{table'"),
        ({"topic": "x.{table:>5}"}, "no format spec"),
        ({"topic": "x.{value}"}, "unknown placeholder {value}"),
        ({"by_column": "tenant", "topic": "x.{table}"}, "must use {value}"),
        ({"regex": "(a", "replacement": "$1"}, "regex '(a'"),
        ({"regex": "(a)", "replacement": "$2"}, "no group 2"),
        ({"regex": "(a)", "replacement": "${x}"}, "no group named 'x'"),
        ({"regex": "(a)", "replacement": "b$"}, "replacement 'b$'"),
        ({"regex": "(a)"}, "needs both regex and replacement"),
        ({"regex": "(a)", "replacement": "$1", "topic": "x"}, "one of topic"),
        ({"by_column": "tenant"}, "needs topic"),
        ({}, "needs topic"),
    ],
)
def test_bad_rules_are_refused_at_load_naming_the_problem(
    rule: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        RouteRule.model_validate(rule)


def test_by_column_puts_each_value_on_its_topic_and_deletes_follow() -> None:
    r = route(tables=["public.orders"], by_column="tenant", topic="{topic_prefix}.tenant.{value}")
    key = {"tenant": "acme", "id": 1}
    (created,) = r.records(change("c", key=key), SOURCE, 1, True)
    assert created.topic == "src.tenant.acme"
    assert created.key == b'{"tenant":"acme","id":1}'  # one table per topic: no key field
    deleted, tomb = r.records(change("d", key=key), SOURCE, 1, True)
    assert deleted.topic == tomb.topic == "src.tenant.acme"
    assert tomb.value is None and tomb.key == deleted.key
    assert headers(tomb)["cdc-event-id"] == b"500:0"
    assert headers(tomb)["cdc-table"] == b"public.orders"
    assert r.records(change("d", key=key), SOURCE, 1, False) == [deleted]
    other = r.records(change("c", key={"tenant": "Big Co", "id": 2}), SOURCE, 1, True)
    assert other[0].topic == "src.tenant.Big_Co"
    numeric = r.records(change("c", key={"tenant": 42, "id": 3}), SOURCE, 1, True)
    assert numeric[0].topic == "src.tenant.42"
    null = r.records(change("c", key={"tenant": None, "id": 4}), SOURCE, 1, True)
    assert null[0].topic == "src.tenant.null"
    # A truncate has no row: the table's default topic.
    (truncate,) = r.records(change("t"), SOURCE, 1, True)
    assert truncate.topic == "src.public.orders" and truncate.key is None


def test_by_column_topics_are_cached_and_the_cache_is_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("cdc.transforms.routes.MAX_VALUES", 3)
    r = route(by_column="tenant", topic="t.{value}")
    for i in range(10):
        key = {"tenant": f"n{i}", "id": i}
        assert r.records(change("c", key=key), SOURCE, 1, True)[0].topic == f"t.n{i}"
    assert all(len(t.values) <= 3 for t in r._tables.values())


def test_an_update_that_moves_the_row_to_another_topic() -> None:
    r = route(by_column="tenant", topic="t.{value}")
    moved = change(
        "u",
        key={"id": 1},
        before={"id": 1, "tenant": "a", "v": "x"},
        after={"id": 1, "tenant": "b", "v": "y"},
    )
    gone, tomb, made = r.records(moved, SOURCE, 1, True)
    assert (gone.topic, tomb.topic, made.topic) == ("t.a", "t.a", "t.b")
    assert orjson.loads(gone.value or b"")["op"] == "d"
    assert orjson.loads(gone.value or b"")["before"] == {"id": 1, "tenant": "a", "v": "x"}
    assert orjson.loads(made.value or b"")["op"] == "c"
    assert orjson.loads(made.value or b"")["after"] == {"id": 1, "tenant": "b", "v": "y"}
    assert tomb.value is None
    assert {headers(x)["cdc-event-id"] for x in (gone, tomb, made)} == {b"500:0"}
    # Without tombstones, no tombstone; an update that stays on its topic is an update.
    assert [x.topic for x in r.records(moved, SOURCE, 1, False)] == ["t.a", "t.b"]
    stays = change(
        "u", key={"id": 1}, before={"id": 1, "tenant": "b"}, after={"id": 1, "tenant": "b"}
    )
    (update,) = r.records(stays, SOURCE, 1, True)
    assert update.topic == "t.b" and orjson.loads(update.value or b"")["op"] == "u"


def test_a_key_change_split_by_the_decoder_routes_each_half_by_its_key() -> None:
    # The decoders publish a key change as a delete of the old key and a create of the new.
    r = route(by_column="tenant", topic="t.{value}")
    gone = change("d", key={"tenant": "a", "id": 1})
    made = change("c", key={"tenant": "b", "id": 1}, index=1)
    assert [x.topic for x in r.records(gone, SOURCE, 1, True)] == ["t.a", "t.a"]
    assert [x.topic for x in r.records(made, SOURCE, 1, True)] == ["t.b"]


def test_every_event_of_a_row_has_the_same_key_bytes() -> None:
    """Same key bytes, same partition: a row's events stay in order on a merged topic."""
    r = route(topic="all")
    key = {"id": 5}
    records = [
        *r.records(change("c", key=key), SOURCE, 1, True),
        *r.records(change("u", key=key), SOURCE, 1, True),
        *r.records(change("d", key=key), SOURCE, 1, True),
        *r.records(change("r", key=key), SOURCE, 1, True),
    ]
    assert len({x.key for x in records}) == 1
    assert len({x.topic for x in records}) == 1


@dataclass(frozen=True)
class Info:
    columns: tuple[str, ...]
    key: tuple[str, ...]
    identity: str = "default"
    has_primary_key: bool = True


def test_problems_by_column_must_be_a_key_column() -> None:
    rule = RouteRule.model_validate({"by_column": "tenant", "topic": "t.{value}"})
    assert Router.problems(rule, "public.o", Info(("id", "tenant"), ("tenant", "id"))) == []
    (error,) = Router.problems(rule, "public.o", Info(("id", "tenant"), ("id",)))
    assert "public.o" in error and "'tenant' is not in the table's key (id)" in error
    (error,) = Router.problems(rule, "public.o", Info(("id",), ("id",)))
    assert "public.o" in error and "'tenant': no such column" in error
    clash = RouteRule.model_validate({"topic": "all"})
    (error,) = Router.problems(
        clash, "public.o", Info(("id", KEY_TABLE_FIELD), ("id", KEY_TABLE_FIELD))
    )
    assert "key_table_field" in error and "public.o" in error


def connector(**more: Any) -> ConnectorConfig:
    return ConnectorConfig.model_validate({"name": "shop", "dsn": "dbname=x", **more})


def test_the_first_matching_rule_applies() -> None:
    transforms = Transforms(
        connector(
            routes=[
                {"tables": ["public.orders"], "topic": "first.{table}"},
                {"tables": ["public.*"], "topic": "second.{table}"},
            ]
        )
    )
    orders = transforms.shape("public", "orders")
    items = transforms.shape("public", "items")
    assert orders is not None and items is not None
    assert orders.records(change("c"), SOURCE, 1, True)[0].topic == "first.orders"
    assert items.records(change("c", table="items"), SOURCE, 1, True)[0].topic == "second.items"
    assert transforms.shape("other", "x") is None
    errors, warnings = transforms.problems(
        {("public", "orders"): Info(("id",), ("id",)), ("public", "items"): Info(("id",), ("id",))}
    )
    assert errors == [] and warnings == []


def test_sinks_drop_the_key_field_and_apply_to_the_named_table() -> None:
    r = route(topic="all")
    for table in ("orders", "items"):
        (record,) = r.records(change("c", table=table, key={"id": 1}), SOURCE, 1, True)
        event = parse_record(record.topic, 0, 0, record.key, record.value, record.headers)
        assert event is not None
        assert (event.schema, event.table, event.key) == ("public", table, {"id": 1})
        assert event.key_id == b'{"id":1}'
        tomb = r.records(change("d", table=table), SOURCE, 1, True)[1]
        assert parse_record(tomb.topic, 0, 1, tomb.key, tomb.value, tomb.headers) is None
    # Without the header, a key field is a key column as any other.
    event = parse_record("t", 0, 0, b'{"id":1,"x":2}', record.value, record.headers[:1])
    assert event is not None and event.key == {"id": 1, "x": 2}


def test_a_value_that_makes_a_topic_kafka_refuses_stops_naming_table_and_value() -> None:
    # Kafka takes topic names of up to 249 characters: retrying such a record would never end.
    r = route(tables=["public.orders"], by_column="tenant", topic="{topic_prefix}.tenant.{value}")
    (fits,) = r.records(change("c", key={"tenant": "t" * 238, "id": 1}), SOURCE, 1, True)
    assert len(fits.topic) == 249
    with pytest.raises(CdcError, match=r"table public\.orders's route \(tenant = 'tttt.*250 char"):
        r.records(change("c", key={"tenant": "t" * 239, "id": 1}), SOURCE, 1, True)


def test_tables_routed_onto_one_topic_without_their_table_in_the_key_are_a_warning() -> None:
    info = Info(("id",), ("id",))
    tables = {("public", "a"): info, ("public", "b"): info, ("public", "c"): info}
    # Two single-table rules onto one topic, and one onto another table's default topic.
    split = Transforms(
        connector(
            routes=[
                {"tables": ["public.a"], "topic": "shop.all"},
                {"tables": ["public.b"], "topic": "shop.all"},
                {"tables": ["public.c"], "topic": "shop.public.a"},
            ]
        )
    )
    errors, warnings = split.problems(tables)
    assert errors == []
    assert len(warnings) == 1
    assert "tables public.a, public.b share topic shop.all" in warnings[0]
    assert "key_table_field" in warnings[0]
    # One rule merging them puts the table in the key: no warning; nor for distinct topics.
    merged = Transforms(connector(routes=[{"tables": ["public.*"], "topic": "shop.all"}]))
    assert merged.problems(tables) == ([], [])
    assert Transforms(connector(routes=[{"topic": "x.{table}"}])).problems(tables) == ([], [])
    onto = Transforms(connector(routes=[{"tables": ["public.c"], "topic": "shop.public.a"}]))
    (warning,) = onto.problems(tables)[1]
    assert "tables public.a, public.c share topic shop.public.a" in warning


def test_a_merged_topics_key_is_encoded_like_the_rest_of_the_record() -> None:
    """The key field is added to the encoded key: a bytea key is base64 there as in ``after``
    (it was once the decoders' hex digits), and the sink reads the key back exactly."""
    keyed = Change(
        "c", "public", "blobs", {"id": "deadbeef"}, None, {"id": "deadbeef"}, 500, 0, 400, 7,
        1000, types=(("id", "bytea"),),
    )  # fmt: skip
    (record,) = route(topic="{topic_prefix}.all").records(keyed, SOURCE, 1, True)
    assert orjson.loads(record.key or b"") == {
        "id": "3q2+7w==",
        KEY_TABLE_FIELD: "src.public.blobs",
    }
    assert orjson.loads(record.value or b"")["after"] == {"id": "3q2+7w=="}
    event = parse_record(record.topic, 0, 0, record.key, record.value, record.headers)
    assert event is not None and event.key == {"id": "deadbeef"} == event.after
