"""Which source type changes the PostgreSQL sink follows (no services needed)."""

from __future__ import annotations

import pytest

from sinks.postgres_ddl import widened


@pytest.mark.parametrize(
    ("target", "source", "expected"),
    [
        ("integer", "integer", None),
        ("integer", "bigint", "bigint"),
        ("smallint", "integer", "integer"),
        ("integer", "numeric", "numeric"),
        ("integer", "numeric(20,2)", "numeric(20,2)"),
        ("bigint", "numeric(12,0)", "numeric"),  # too few digits for a bigint
        ("real", "double precision", "double precision"),
        ("character varying(5)", "text", "text"),
        ("character varying(5)", "character varying(20)", "character varying(20)"),
        ("character varying(5)", "character varying", "character varying"),
        ("character(3)", "character varying(10)", "character varying(10)"),
        ("numeric(6,2)", "numeric(12,4)", "numeric(12,4)"),
        ("numeric(6,2)", "numeric", "numeric"),
        ("numeric(10,2)", "numeric(12,1)", "numeric"),  # neither holds the other
        ("integer[]", "bigint[]", "bigint[]"),
        (
            "timestamp(3) without time zone",
            "timestamp without time zone",
            "timestamp without time zone",
        ),
        # Never narrowed, never converted: older events still carry the old type.
        ("bigint", "integer", None),
        ("text", "character varying(5)", None),
        ("numeric(12,4)", "numeric(6,2)", None),
        ("numeric", "numeric(6,2)", None),
        ("character varying", "character varying(5)", None),
        ("double precision", "real", None),
        ("integer", "text", None),
        ("text", "integer", None),
        ("date", "timestamp without time zone", None),
    ],
)
def test_only_type_changes_that_hold_every_value_are_followed(
    target: str, source: str, expected: str | None
) -> None:
    assert widened(target, source) == expected
