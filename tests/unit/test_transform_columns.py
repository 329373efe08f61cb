"""[[connectors.columns]]: include, exclude, mask and hash applied to every part of an event
(after, before, the types, missing and unavailable headers), and the key checks at start and
while streaming."""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import orjson
import pytest

from cdc.config.models import ColumnsRule, ConnectorConfig
from cdc.errors import CdcError
from cdc.events import UNAVAILABLE, Change, SourceInfo, encode
from cdc.transforms import Transforms
from cdc.transforms.columns import ColumnShaper, _Hasher, hash_value
from connectors.postgres.decoding import TableInfo

SALT = b"pepper"
TYPES = (("id", "integer"), ("email", "text"), ("age", "integer"), ("note", "text"))
INFO = TableInfo(columns=("id", "email", "age", "note"), key=("id",), identity="default")


def shaper(**rule: Any) -> ColumnShaper:
    return ColumnShaper.of([ColumnsRule(tables=("public.t",), **rule)], SALT)


def change(op: str = "u", **fields: Any) -> Change:
    base: dict[str, Any] = {
        "op": op,
        "schema": "public",
        "table": "t",
        "key": {"id": 1},
        "before": None,
        "after": {"id": 1, "email": "a@b.c", "age": 42, "note": "hi"},
        "commit_lsn": 100,
        "index": 3,
        "lsn": 90,
        "xid": 7,
        "commit_ts_ms": 1,
        "types": TYPES,
    }
    base.update(fields)
    return Change(**base)


def sha(value: bytes) -> str:
    return hashlib.sha256(SALT + value).hexdigest()


def test_mask_and_hash_after_before_and_types() -> None:
    full_old = {"id": 1, "email": "old@b.c", "age": None, "note": "x"}
    out = shaper(mask={"note": "***"}, hash=("email", "age"))(change(before=full_old))
    assert out.after == {"id": 1, "email": sha(b"a@b.c"), "age": sha(b"42"), "note": "***"}
    # NULL stays NULL; the old row (REPLICA IDENTITY FULL) is masked too.
    assert out.before == {"id": 1, "email": sha(b"old@b.c"), "age": None, "note": "***"}
    assert dict(out.types) == {"id": "integer", "email": "text", "age": "text", "note": "text"}
    assert (out.commit_lsn, out.index, out.key) == (100, 3, {"id": 1})


def test_hash_of_json_values_is_of_their_json_text() -> None:
    s = shaper(hash=("note",))
    out = s(change(after={"id": 1, "email": "", "age": 1, "note": {"b": [1, True]}}))
    assert out.after is not None
    assert out.after["note"] == sha(orjson.dumps({"b": [1, True]}))


def test_exclude_and_include() -> None:
    old = {"id": 1, "email": "o", "age": 1, "note": "n"}
    out = shaper(exclude=("email", "note"))(change(before=old))
    assert out.after == {"id": 1, "age": 42}
    assert out.before == {"id": 1, "age": 1}
    assert out.types == (("id", "integer"), ("age", "integer"))
    out = shaper(include=("id", "note"))(change(before=old))
    assert out.after == {"id": 1, "note": "hi"}
    assert out.before == {"id": 1, "note": "n"}
    assert out.types == (("id", "integer"), ("note", "text"))


def test_rules_merge() -> None:
    s = ColumnShaper.of(
        [
            ColumnsRule(tables=("public.*",), include=("id", "email", "age")),
            ColumnsRule(tables=("public.t",), exclude=("age",)),
            ColumnsRule(tables=("*.*",), mask={"email": "x"}),
        ],
        SALT,
    )
    assert s(change()).after == {"id": 1, "email": "x"}


def test_unavailable_placeholder_stays_and_headers_follow() -> None:
    after = {"id": 1, "email": UNAVAILABLE, "age": 42, "note": UNAVAILABLE}
    out = shaper(hash=("email",), exclude=("note",))(
        change(after=after, unavailable=("email", "note"))
    )
    assert out.after == {"id": 1, "email": UNAVAILABLE, "age": 42}
    assert out.unavailable == ("email",)


def test_missing_values_masked_or_dropped() -> None:
    missing = (("email", "nobody"), ("age", "0"), ("note", "n/a"))
    out = shaper(hash=("email",), mask={"age": "?"}, exclude=("note",))(change(missing=missing))
    assert out.missing == (("email", sha(b"nobody")), ("age", "?"))


def test_derived_tuples_are_cached_by_identity() -> None:
    s = shaper(mask={"note": "***"})
    first, second = s(change()), s(change())
    assert first.types is second.types
    # A tuple equal but not the same is shaped on its own (and cached too).
    assert s(change(types=tuple(TYPES))).types == first.types


def test_nothing_masked_reaches_the_record() -> None:
    out = shaper(hash=("email",), mask={"note": "***"})(
        change(before={"id": 1, "email": "old@b.c", "age": 1, "note": "secret-old"})
    )
    record = encode(out, SourceInfo("c", "db", "c"), 0)
    raw = b"".join([record.key or b"", record.value or b"", *(v for _, v in record.headers)])
    for secret in (b"a@b.c", b"old@b.c", b"secret-old", b'"hi"'):
        assert secret not in raw


@pytest.mark.parametrize(
    ("rule", "error"),
    [
        ({"exclude": ("id",)}, "public.t: key column id is excluded"),
        ({"include": ("email",)}, "public.t: key column id is not in include"),
        ({"mask": {"id": "x"}}, "public.t: key column id is masked"),
        ({"hash": ("id",)}, "public.t: key column id is masked"),
        ({"mask": {"emial": "x"}}, "public.t: column emial ([[connectors.columns]] mask)"),
        ({"exclude": ("nope",)}, "public.t: column nope ([[connectors.columns]] exclude)"),
    ],
)
def test_problems(rule: dict[str, Any], error: str) -> None:
    problems = shaper(**rule).problems("public.t", INFO)
    assert len(problems) == 1 and problems[0].startswith(error), problems


def test_whole_row_key_table_cannot_lose_columns() -> None:
    info = TableInfo(columns=("a", "b"), key=("a", "b"), identity="full", has_primary_key=False)
    problems = shaper(mask={"b": "x"}).problems("public.t", info)
    assert any("whole row" in p and "b" in p for p in problems), problems
    assert shaper(mask={"b": "x"}).problems("public.t", TableInfo(("a", "b"), ("a",), "full")) == []


def test_no_problems_for_a_good_rule() -> None:
    assert shaper(include=("id", "email"), hash=("email",)).problems("public.t", INFO) == []


def test_a_key_that_changed_since_the_start_stops_the_stream() -> None:
    s = shaper(mask={"email": "x"})
    s(change())
    with pytest.raises(CdcError, match=r"public\.t: key column email is masked"):
        s(change(key={"email": "a@b.c"}))


def test_change_fields_are_what_the_shaper_copies() -> None:
    # ColumnShaper builds a Change positionally, for speed: a field added to Change must be
    # added there too.
    assert [f.name for f in dataclasses.fields(Change)] == [
        "op",
        "schema",
        "table",
        "key",
        "before",
        "after",
        "commit_lsn",
        "index",
        "lsn",
        "xid",
        "commit_ts_ms",
        "unavailable",
        "types",
        "whole_row_key",
        "snapshot",
        "last_commit_lsn",
        "total_order",
        "data_collection_order",
        "missing",
    ]
    c = change(whole_row_key=True, snapshot="last", last_commit_lsn=5, total_order=9)
    out = shaper(mask={"note": "x"})(dataclasses.replace(c, data_collection_order=4))
    assert (out.whole_row_key, out.snapshot, out.last_commit_lsn) == (True, "last", 5)
    assert (out.total_order, out.data_collection_order) == (9, 4)


def test_generated_columns_may_be_named() -> None:
    # Never published anyway: excluding one is no typo.
    info = TableInfo(("id", "email"), ("id",), "default", generated=("upper_email",))
    assert shaper(exclude=("upper_email",)).problems("public.t", info) == []


def test_remembered_hashes_never_mix_values_python_calls_equal() -> None:
    # 1, 1.0 and True are equal (and hash alike) in Python, not in JSON: each has its own text.
    hasher = _Hasher(b"salt")
    for _ in range(2):  # the second round is served from memory
        assert hasher(1) == hash_value(b"salt", 1)
        assert hasher(True) == hash_value(b"salt", True)
        assert hasher(1.0) == hash_value(b"salt", 1.0)
        assert hasher("1") == hash_value(b"salt", "1")
    # 1 and "1" have the same text, so the same hash (a join of an int and a text column holds).
    assert len({hasher(1), hasher(True), hasher(1.0), hasher("1")}) == 3


def test_a_glob_rule_names_columns_some_of_its_tables_lack() -> None:
    # "Hash email and drop password wherever they are in public": the tables without them
    # were each an error at start, so a rule over a schema could not be written. A column
    # none of the rule's tables has is still an error (a typo), in each table.
    config = ConnectorConfig.model_validate(
        {
            "name": "a",
            "dsn": "dbname=x",
            "mask_salt": "s",
            "columns": [
                {"tables": ["public.*"], "exclude": ["password"], "hash": ["email"]},
                {"tables": ["public.orders"], "mask": {"emial": "x"}},
                {"tables": ["public.*"], "include": ["id", "email", "total", "tenant"]},
                {"tables": ["public.*"], "exclude": ["pasword"]},
            ],
        }
    )
    users = TableInfo(("id", "email", "password", "tenant"), ("id",), "default")
    orders = TableInfo(("id", "total", "tenant"), ("id",), "default")
    errors, _ = Transforms(config).problems(
        {("public", "users"): users, ("public", "orders"): orders}
    )
    assert sorted(errors) == [
        "public.orders: column emial ([[connectors.columns]] mask) does not exist",
        "public.orders: column pasword ([[connectors.columns]] exclude) does not exist",
        "public.users: column pasword ([[connectors.columns]] exclude) does not exist",
    ], errors
