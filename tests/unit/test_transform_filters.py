"""[[connectors.filters]]: the language (good and bad text), SQL's three-valued evaluation, and
what inserts, updates moving a row in and out, and deletes become."""

from __future__ import annotations

from typing import Any

import pytest

from cdc.config.models import FilterRule
from cdc.events import UNAVAILABLE, Change
from cdc.transforms.filters import RowFilter, parse_filter
from connectors.postgres.decoding import TableInfo


def truth(text: str, row: dict[str, Any]) -> bool | None:
    return parse_filter(text).test(row)


@pytest.mark.parametrize(
    ("text", "row", "expected"),
    [
        ("status = 'paid'", {"status": "paid"}, True),
        ("status = 'it''s'", {"status": "it's"}, True),
        ("status <> 'paid'", {"status": "paid"}, False),
        ("status != 'paid'", {"status": None}, None),
        ("status = null", {"status": None}, None),
        ("status IS NULL", {"status": None}, True),
        ("status is not null", {"status": None}, False),
        # Numbers as numbers: numeric values arrive as decimal strings.
        ("amount >= 10.5", {"amount": "10.50"}, True),
        ("amount > 9", {"amount": "10"}, True),
        ("amount < -1", {"amount": -2}, True),
        ("amount = 1.5", {"amount": 1.5}, True),
        ("10 < amount", {"amount": 11}, True),
        ("id = '42'", {"id": 42}, True),
        ("amount > 1", {"amount": "NaN"}, None),
        # Booleans, as PostgreSQL reads their text too.
        ("active = true", {"active": True}, True),
        ("active = 't'", {"active": True}, True),
        ("active = false", {"active": True}, False),
        # Text by code point.
        ("name < 'b'", {"name": "a"}, True),
        ("name < 'b'", {"name": "B"}, True),
        # IN, NOT IN with NULLs: SQL's unknowns.
        ("id IN (1, 2, 3)", {"id": 2}, True),
        ("id in (1, 2)", {"id": 5}, False),
        ("id NOT IN (1, 2)", {"id": 5}, True),
        ("id NOT IN (1, null)", {"id": 5}, None),
        ("id IN (1, null)", {"id": 1}, True),
        # AND, OR, NOT over unknowns.
        ("a = 1 OR b = 1", {"a": None, "b": 1}, True),
        ("a = 1 OR b = 1", {"a": None, "b": 2}, None),
        ("a = 1 AND b = 1", {"a": None, "b": 2}, False),
        ("a = 1 AND b = 1", {"a": None, "b": 1}, None),
        ("NOT a = 1", {"a": None}, None),
        ("NOT (a = 1 OR b = 2)", {"a": 3, "b": 3}, True),
        ("a = 1 OR b = 2 AND c = 3", {"a": 1, "b": 0, "c": 0}, True),
        ("(a = 1 OR b = 2) AND c = 3", {"a": 1, "b": 0, "c": 0}, False),
        # Unquoted names fold to lower case; quoted ones keep theirs.
        ("\"Tenant Id\" = 7 and Region = 'eu'", {"Tenant Id": 7, "region": "eu"}, True),
        ("a = 1", {}, None),
    ],
)
def test_evaluation(text: str, row: dict[str, Any], expected: bool | None) -> None:
    assert truth(text, row) is expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "filter: empty"),
        ("a = ", "expected a column or a literal"),
        ("lower(a) = 'x'", "expected a comparison (= <> != < <= > >=, IN, IS NULL) at position 6"),
        ("a::int = 1", "unexpected ':' at position 2"),
        ("a = b", "compare a column with a literal at position 3"),
        ("1 = 1", "compare a column with a literal at position 3"),
        ("a = 1 -- x", "expected AND, OR or the end at position 7"),
        ("a = 1; DROP TABLE t", "unexpected ';' at position 6"),
        ("a IN (b)", "expected a column or a literal"),
        ("(a = 1", "expected ')' at position 7, found the end"),
        ("a NOT = 1", "expected IN at position 7"),
        ("a IS 1", "expected NULL or NOT NULL at position 6"),
        ("a = E'x'", "compare a column with a literal at position 3"),
        ("a LIKE 'x%'", "expected a comparison"),
    ],
)
def test_bad_filters(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=r"^filter: ") as raised:
        parse_filter(text)
    assert message in str(raised.value)


def test_config_refuses_a_bad_filter() -> None:
    with pytest.raises(ValueError, match="position"):
        FilterRule(tables=("public.t",), where="a = = 1")


def test_pushdown_facts() -> None:
    f = parse_filter("\"Kind\" = 'x' AND n > 3 AND name >= 'm'")
    assert f.columns == {"Kind", "n", "name"}
    assert f.orders_text
    assert not parse_filter("kind IN ('a', 'b') AND n > 3").orders_text


def flt(where: str) -> RowFilter:
    return RowFilter.of([FilterRule(tables=("public.t",), where=where)])


def change(op: str, after: Any = None, before: Any = None, **fields: Any) -> Change:
    base = {
        "op": op,
        "schema": "public",
        "table": "t",
        "key": {"id": 1},
        "before": before,
        "after": after,
        "commit_lsn": 100,
        "index": 3,
        "lsn": 90,
        "xid": 7,
        "commit_ts_ms": 1,
    }
    base.update(fields)
    return Change(**base)


IN = {"id": 1, "region": "eu", "v": "x"}
OUT = {"id": 1, "region": "us", "v": "x"}
KEY = {"id": 1}
F = flt("region = 'eu'")


def test_inserts_and_reads() -> None:
    assert F(change("c", IN)) is not None
    assert F(change("r", IN)) is not None
    assert F(change("c", OUT)) is None
    assert F(change("c", {**IN, "region": None})) is None


def test_deletes() -> None:
    # Only the key known: published (a sink deletes nothing if it holds nothing).
    assert F(change("d", before=KEY)) is not None
    # The whole old row (REPLICA IDENTITY FULL): published only if it matched.
    assert F(change("d", before=IN)) is not None
    assert F(change("d", before=OUT)) is None
    # A filter on the key alone knows from the key.
    assert flt("id > 5")(change("d", before=KEY)) is None


def test_truncates_pass() -> None:
    assert F(change("t", key=None)) is not None


def test_update_staying_in() -> None:
    for before in (None, KEY, IN):
        out = F(change("u", IN, before))
        assert out is not None and out.op == "u" and out.after == IN


def test_update_moving_in_from_a_known_old_row_is_an_insert() -> None:
    out = F(change("u", IN, OUT))
    assert out is not None
    assert (out.op, out.before, out.after, out.event_id) == ("c", None, IN, "100:3")


def test_update_moving_in_with_only_the_key_known_stays_an_update() -> None:
    out = F(change("u", IN, None))
    assert out is not None and out.op == "u"


def test_update_moving_out_is_a_delete_with_the_same_event_id() -> None:
    out = F(change("u", OUT, IN))
    assert out is not None
    assert (out.op, out.key, out.before, out.after) == ("d", KEY, IN, None)
    assert out.event_id == "100:3"
    # The old row unknown (it may have been in): a delete of the key.
    out = F(change("u", OUT, None))
    assert out is not None
    assert (out.op, out.key, out.before, out.after) == ("d", KEY, KEY, None)


def test_update_staying_out_publishes_nothing() -> None:
    assert F(change("u", OUT, {**OUT, "v": "y"})) is None


def test_unavailable_filter_column_comes_from_the_old_row() -> None:
    f = flt("v = 'big'")
    after = {"id": 1, "region": "eu", "v": UNAVAILABLE}
    old = {"id": 1, "region": "us", "v": "big"}
    out = f(change("u", after, old, unavailable=("v",)))
    # v is 'big' in both: it stays in (as an update).
    assert out is not None and out.op == "u"
    old_small = {**old, "v": "small"}
    assert f(change("u", after, old_small, unavailable=("v",))) is None


def test_unavailable_filter_column_unknown_counts_as_matching(
    caplog: pytest.LogCaptureFixture,
) -> None:
    f = flt("v = 'big'")
    after = {"id": 1, "region": "eu", "v": UNAVAILABLE}
    for _ in range(2):
        out = f(change("u", after, None, unavailable=("v",)))
        assert out is not None and out.op == "u"
    assert len([r for r in caplog.records if "TOASTed" in r.message]) == 1


def test_moving_in_fills_unavailable_values_from_the_old_row() -> None:
    after = {"id": 1, "region": "eu", "v": UNAVAILABLE}
    out = F(change("u", after, {"id": 1, "region": "us", "v": "long"}, unavailable=("v",)))
    assert out is not None
    assert (out.op, out.after, out.unavailable) == ("c", {**IN, "v": "long"}, ())


def test_rules_are_anded() -> None:
    f = RowFilter.of(
        [
            FilterRule(tables=("public.*",), where="region = 'eu'"),
            FilterRule(tables=("public.t",), where="v = 'x'"),
        ]
    )
    assert f(change("c", IN)) is not None
    assert f(change("c", {**IN, "v": "y"})) is None
    assert f.where() == "(region = 'eu') AND (v = 'x')"


def test_problems_name_unknown_columns() -> None:
    info = TableInfo(columns=("id", "region"), key=("id",), identity="default")
    assert flt("regoin = 'eu'").problems("public.t", info) == [
        "public.t: column regoin (in filter \"regoin = 'eu'\") does not exist"
    ]
    assert F.problems("public.t", TableInfo(("id", "region", "v"), ("id",), "default")) == []


def test_a_generated_column_cannot_be_filtered_on() -> None:
    # Events never carry generated columns: such a filter would drop every row.
    info = TableInfo(columns=("id", "region"), key=("id",), identity="default", generated=("g",))
    assert flt("g = 1").problems("public.t", info) == [
        "public.t: column g (in filter 'g = 1') is generated: events never carry it"
    ]


def test_update_filtered_on_the_key_alone_knows_the_old_row() -> None:
    # The key did not change (the decoders split key changes): out before, out after.
    assert flt("id > 5")(change("u", IN, None)) is None
    out = flt("id < 5")(change("u", IN, None))
    assert out is not None and out.op == "u"


@pytest.mark.parametrize(
    ("where", "amount", "kept"),
    [
        ("amount = '10'", "10.00", True),
        ("amount >= '9'", "10.00", True),
        ("amount IN ('10', '11')", "11.0", True),
        ("amount < '9.5'", "10.00", False),
        ("amount = 10", "10.00", True),
        ("code = '10'", "10.00", False),  # a text column: its text
        ("code >= '9'", "10.00", False),
    ],
)
def test_a_quoted_number_against_a_numeric_column_compares_as_numbers(
    where: str, amount: str, kept: bool
) -> None:
    # numeric values arrive as decimal strings: '10' against 10.00 compared as text (unequal,
    # and '10.00' < '9'), where PostgreSQL (and the pushed-down row filter) reads 10.
    types = (("id", "integer"), ("amount", "numeric(10,2)"), ("code", "text"))
    row = {"id": 1, "amount": amount, "code": amount}
    change = Change("c", "public", "t", {"id": 1}, None, row, 1, 0, 1, 7, 0, (), types)
    rows = RowFilter.of([FilterRule(tables=("public.t",), where=where)])
    assert (rows(change) is not None) is kept


def test_a_filter_column_gone_from_the_rows_is_said_once(caplog: pytest.LogCaptureFixture) -> None:
    # A filter column dropped or renamed while streaming makes the filter unknown for every
    # row: nothing was published any more, and nothing said why.
    rows = RowFilter.of([FilterRule(tables=("public.t",), where="region = 'eu'")])
    types = (("id", "integer"), ("area", "text"))
    for n in (1, 2):
        row = {"id": n, "area": "eu"}
        change = Change("c", "public", "t", {"id": n}, None, row, 1, n, 1, 7, 0, (), types)
        assert rows(change) is None
    said = [r.getMessage() for r in caplog.records if "region" in r.getMessage()]
    assert len(said) == 1, said
    assert "public.t" in said[0] and "not in its rows" in said[0], said
    caplog.clear()
    kept = Change("c", "public", "t", {"id": 3}, None, {"id": 3, "region": "us"}, 1, 3, 1, 7, 0)
    assert rows(kept) is None and not caplog.records  # a row that does not match: no word
