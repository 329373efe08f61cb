"""Which tables a connector captures, and which of its globs wal2json can apply itself."""

from __future__ import annotations

import pytest

from cdc.config import parse_config
from cdc.globs import TableSelector
from connectors.postgres.wal2json import wal2json_table_options


def options(
    tables: list[str],
    exclude: list[str] | None = None,
    partitions: str = "leaf",
    partition_schemas: frozenset[str] = frozenset(),
) -> dict[str, str]:
    text = (
        '[kafka]\nbootstrap_servers = "k:1"\n[[connectors]]\nname = "x"\ndsn = "host=h"\n'
        f'partitions = "{partitions}"\n'
        f"tables = {tables!r}\n".replace("'", '"')
        + (f"exclude_tables = {exclude!r}\n".replace("'", '"') if exclude else "")
    )
    return wal2json_table_options(parse_config(text).connectors[0], partition_schemas)


@pytest.mark.parametrize(
    ("tables", "exclude", "expected"),
    [
        (["*.*"], None, {}),
        (["public.*"], None, {"add-tables": "public.*,cdc.signal"}),
        (["public.orders", "*.audit"], None, {"add-tables": "public.orders,*.audit,cdc.signal"}),
        # A glob wal2json cannot express: the connector filters after decoding instead.
        (["public.order_*"], None, {}),
        (
            ["public.*"],
            ["public.tmp_*", "public.log"],
            {"add-tables": "public.*,cdc.signal", "filter-tables": "public.log"},
        ),
        # The signal table stays decoded, whatever is excluded.
        (["*.*"], ["cdc.*", "*.signal", "x.y"], {"filter-tables": "x.y"}),
        # Special characters are escaped for wal2json.
        (["my schema.a,b"], None, {"add-tables": "my\\ schema.a\\,b,cdc.signal"}),
    ],
)
def test_pushdown(tables: list[str], exclude: list[str] | None, expected: dict[str, str]) -> None:
    assert options(tables, exclude) == expected


@pytest.mark.parametrize(
    ("tables", "exclude", "partition_schemas", "expected"),
    [
        (["public.*"], None, frozenset(), {"add-tables": "public.*,cdc.signal"}),
        (["public.*"], None, frozenset({"public"}), {"add-tables": "public.*,cdc.signal"}),
        # A partition in a schema wal2json would skip: the connector filters.
        (["public.*"], None, frozenset({"parts"}), {}),
        # wal2json names partitions, which "public.orders" or "*.orders" would not match.
        (["public.orders"], None, frozenset(), {}),
        (["public.*", "*.audit"], None, frozenset(), {}),
        # An exclusion could name a partition of a captured partitioned table.
        (["public.*"], ["public.log"], frozenset(), {"add-tables": "public.*,cdc.signal"}),
    ],
)
def test_pushdown_with_partitions_published_by_root(
    tables: list[str],
    exclude: list[str] | None,
    partition_schemas: frozenset[str],
    expected: dict[str, str],
) -> None:
    assert options(tables, exclude, "root", partition_schemas) == expected


def test_selector_applies_includes_then_excludes() -> None:
    select = TableSelector(["public.*", "sales.order_*"], ["public.tmp_*"])
    assert select("public", "orders")
    assert select("sales", "order_lines")
    assert not select("sales", "customers")
    assert not select("public", "tmp_x")
    assert not select("Public", "orders")  # case-sensitive, like PostgreSQL's quoted names
