"""The encodings table of docs/encodings.md, made by the encoders themselves:
``python -m cdc.values.table`` rewrites it; tests/unit/test_values.py checks that it is current."""

from __future__ import annotations

__all__ = ["SAMPLES", "internal", "render", "rewrite"]

import json
import sys
from pathlib import Path
from typing import Any

from cdc.values import EXACT, ValueMode, encoder
from cdc.values.debezium import OPTIONS

SAMPLES: list[tuple[str, str]] = [
    ("smallint", "-32768"),
    ("bigint", "-9223372036854775808"),
    ("oid", "4000000000"),
    ("real", "1.5"),
    ("double precision", "NaN"),
    ("numeric", "12345678901234567890.123456789012345678"),
    ("numeric", "NaN"),
    ("numeric(10,2)", "12.34"),
    ("money", "$9.99"),
    ("boolean", "t"),
    ("bytea", "\\xdeadbeef"),
    ("json", '{"b": 1,  "a": [1, 2]}'),
    ("jsonb", '{"a": [1, 2], "b": 1}'),
    ("integer[]", "{1,NULL,3}"),
    ("text[]", '{"a b","c,d",NULL}'),
    ("bytea[]", '{"\\\\xdeadbeef"}'),
    ("integer[]", "{{1,2},{3,4}}"),
    ("timestamp without time zone", "2024-01-02 03:04:05.123456"),
    ("timestamp without time zone", "infinity"),
    ("timestamp(3) without time zone", "2024-01-02 03:04:05.123"),
    ("timestamp with time zone", "2024-01-02 01:04:05.123456+00"),
    ("timestamp with time zone", "4713-01-01 00:00:00+00 BC"),
    ("date", "2024-01-02"),
    ("date", "0001-01-01 BC"),
    ("date", "infinity"),
    ("time without time zone", "03:04:05.123456"),
    ("time without time zone", "24:00:00"),
    ("time(3) without time zone", "03:04:05.123"),
    ("time with time zone", "03:04:05.123456+02"),
    ("interval", "1 year 2 mons 3 days 04:05:06.789"),
    ("interval", "-1 days -00:00:00.000001"),
    ("uuid", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
    ("inet", "192.168.0.1/24"),
    ("macaddr", "08:00:2b:01:02:03"),
    ("int4range", "[1,10)"),
    ("point", "(1.5,2.5)"),
    ("tsvector", "'a' 'cat' 'fat'"),
    ("mood (an enum)", "happy"),
    ("character(5)", "ab   "),
    ("character varying(10)", "varchar"),
    ("posint (a domain over integer)", "7"),
]

DEFAULTS = ValueMode("debezium")
BEGIN, END = "<!-- encodings:begin -->", "<!-- encodings:end -->"


def _cell(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return "`" + text.replace("|", "\\|") + "`"


def internal(type_name: str, text: str) -> Any:
    """A value's text as cdc's decoders give it (numbers, booleans, bytea's hex digits)."""
    if type_name in ("smallint", "integer", "bigint", "oid"):
        return int(text)
    if type_name in ("real", "double precision"):
        return text if text in ("NaN", "Infinity", "-Infinity") else float(text)
    if type_name == "boolean":
        return text == "t"
    if type_name == "bytea":
        return text[2:]
    return text


def _encoded(type_name: str, text: str, mode: ValueMode) -> Any:
    name = type_name.split(" (", maxsplit=1)[0]
    value = internal(name, text)
    codec = encoder(((name, name),), mode)
    return value if codec is None or (row := codec({name: value})) is None else row[name]


def render() -> str:
    """The table: each sample's text as PostgreSQL prints it (cdc's internal form), its value in
    the exact mode, in the debezium mode with Debezium's defaults, and under each other option
    that changes it."""
    lines = [
        "| type | as PostgreSQL prints it | `exact` | `debezium` (defaults)"
        " | other Debezium options |",
        "|---|---|---|---|---|",
    ]
    for type_name, text in SAMPLES:
        default = _encoded(type_name, text, DEFAULTS)
        others = []
        for option, allowed in OPTIONS.items():
            for choice in allowed[1:]:
                mode = ValueMode("debezium", **{option: choice})
                value = _encoded(type_name, text, mode)
                if value != default:
                    others.append(f"`{option}={choice}`: {_cell(value)}")
        printed = text.replace("|", "\\|")
        ours = _cell(_encoded(type_name, text, EXACT))
        lines.append(
            f"| `{type_name}` | `{printed}` | {ours} | {_cell(default)} | {'<br>'.join(others)} |"
        )
    return "\n".join(lines)


def rewrite(path: Path) -> bool:
    """Put :func:`render`'s table between the markers of ``path``; True if it changed."""
    doc = path.read_text()
    head, _, rest = doc.partition(BEGIN)
    _, _, tail = rest.partition(END)
    new = f"{head}{BEGIN}\n{render()}\n{END}{tail}"
    if new == doc:
        return False
    path.write_text(new)
    return True


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/encodings.md")
    print(f"{target}: {'rewritten' if rewrite(target) else 'current'}")
