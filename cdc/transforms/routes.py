"""Routing (``[[connectors.routes]]``): the topic of a table's events, by a template, by a regex
rewrite of the default topic (Debezium's ByLogicalTableRouter), or by the value of a key column.

A routed record is the plain record (:func:`cdc.events.encode`) on another topic, with the
``cdc-table`` header (``schema.table``) and, when the route can put several tables on one topic,
the source table in the key (``__dbz__physicalTableIdentifier`` by default, its value the default
topic, as Debezium does) so that keys of different tables differ; the ``cdc-key-field`` header
names that field, which sinks drop from the key (:func:`cdc.records.parse_record`). A row's
events all have the same key bytes and so the same partition of the same topic: per-key order
is kept. Topics are computed once per table (and per value, for ``by_column``).
"""

from __future__ import annotations

__all__ = ["KEY_TABLE_FIELD", "Router", "check_route"]

import dataclasses
import re
import string
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson

from cdc.errors import CdcError
from cdc.events import (
    KEY_FIELD_HEADER,
    TABLE_HEADER,
    TOPIC_UNSAFE,
    Change,
    Record,
    SourceInfo,
    encode,
    topic_for,
)
from cdc.globs import is_plain

if TYPE_CHECKING:
    from cdc.config.models import RouteRule
    from cdc.transforms import TableInfo

KEY_TABLE_FIELD = "__dbz__physicalTableIdentifier"
"""The key field naming the source table, by default (Debezium's name)."""

TABLE_FIELDS = frozenset({"topic_prefix", "db", "schema", "table"})
VALUE_FIELDS = TABLE_FIELDS | {"value"}
MAX_VALUES = 10_000
"""Topics remembered per table for ``by_column`` (one per value): the cache is emptied when full."""

MAX_TOPIC_CHARS = 249
"""The longest topic name Kafka takes."""


def safe_topic(name: str, made_for: str = "") -> str:
    """``name`` with the characters Kafka forbids in topic names as ``_`` (as
    :func:`cdc.events.topic_for` does). A name Kafka would still refuse (over 249 characters,
    ``.`` or ``..``), made from a value in a row, stops the connector with an error saying
    which (``made_for``) rather than retrying a record Kafka never takes."""
    topic = TOPIC_UNSAFE.sub("_", name)
    if len(topic) > MAX_TOPIC_CHARS or topic in (".", ".."):
        shown = topic if len(topic) <= 80 else f"{topic[:60]}...{topic[-12:]}"
        raise CdcError(
            f"{made_for or 'a template'} makes the topic {shown!r} ({len(topic)} characters),"
            f" which Kafka refuses (at most {MAX_TOPIC_CHARS} characters, not '.' or '..'):"
            " change the topic template"
        )
    return topic


def template_fields(template: str, known: frozenset[str], what: str) -> set[str]:
    """The placeholders of ``template``; ValueError naming it when one is unknown, has a format
    spec or a conversion, or a brace is unbalanced."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as e:
        raise ValueError(f"{what} {template!r}: {e}") from None
    fields: set[str] = set()
    for _literal, name, spec, conversion in parsed:
        if name is None:
            continue
        if name not in known:
            raise ValueError(
                f"{what} {template!r}: unknown placeholder {{{name}}}"
                f" (known: {', '.join('{' + k + '}' for k in sorted(known))})"
            )
        if spec or conversion:
            raise ValueError(f"{what} {template!r}: {{{name}}} takes no format spec or conversion")
        fields.add(name)
    if not template.strip():
        raise ValueError(f"{what} must not be empty")
    return fields


def check_route(rule: RouteRule) -> None:
    """ValueError when the rule is not one of the three ways, or its template or regex is bad."""
    if rule.regex is not None or rule.replacement is not None:
        if rule.regex is None or rule.replacement is None:
            raise ValueError("a regex route needs both regex and replacement")
        if rule.topic is not None or rule.by_column is not None:
            raise ValueError("a route is one of topic, regex + replacement, or by_column + topic")
        _replacement(_compile(rule.regex), rule.replacement)
        if not rule.replacement:
            raise ValueError("replacement must not be empty")
        return
    if rule.topic is None:
        raise ValueError(
            "a route needs topic (a template), regex + replacement, or by_column + topic"
        )
    if rule.by_column is not None:
        fields = template_fields(rule.topic, VALUE_FIELDS, "by_column topic template")
        if "value" not in fields:
            raise ValueError(f"by_column topic template {rule.topic!r} must use {{value}}")
    else:
        template_fields(rule.topic, TABLE_FIELDS, "topic template")


def _compile(regex: str) -> re.Pattern[str]:
    try:
        return re.compile(regex)
    except re.error as e:
        raise ValueError(f"regex {regex!r}: {e}") from None


Replacement = tuple[str | int, ...]
"""Literal texts and group numbers, in order."""


_REFERENCE = re.compile(
    r"\$\{(?P<name>[^}]*)\}|\\g<(?P<gname>[^>]*)>|[$\\](?P<digits>\d+)|\\(?P<escaped>.)|(?P<bad>[$\\])",
    re.DOTALL,
)


def _replacement(regex: re.Pattern[str], text: str) -> Replacement:
    """``text`` parsed once: ``$1``, ``${name}`` (as in Debezium, Java's syntax) or ``\\1``,
    ``\\g<name>`` (Python's) name groups; ``\\`` escapes the next character (``\\$``)."""

    def bad(why: str) -> ValueError:
        return ValueError(f"replacement {text!r}: {why}")

    def group(ref: str) -> int:
        if ref.isdigit():
            if int(ref) > regex.groups:
                raise bad(f"no group {ref} in regex {regex.pattern!r}")
            return int(ref)
        if ref not in regex.groupindex:
            raise bad(f"no group named {ref!r} in regex {regex.pattern!r}")
        return regex.groupindex[ref]

    parts: list[str | int] = []
    literal: list[str] = []
    at = 0
    for m in _REFERENCE.finditer(text):
        literal.append(text[at : m.start()])
        at = m.end()
        if m["escaped"] is not None:
            literal.append(m["escaped"])
            continue
        if m["bad"] is not None:
            raise bad("'$' needs a group number or {name} after it (\\$ for '$'), '\\' a character")
        if (digits := m["digits"]) is not None:
            # As Java does: the longest run of digits that names a group; the rest is text.
            n = 1
            while n < len(digits) and int(digits[: n + 1]) <= regex.groups:
                n += 1
            ref = group(digits[:n])
            tail = digits[n:]
        else:
            ref = group(m["name"] if m["name"] is not None else m["gname"])
            tail = ""
        if any(literal):
            parts.append("".join(literal))
        literal = [tail]
        parts.append(ref)
    literal.append(text[at:])
    if any(literal):
        parts.append("".join(literal))
    return tuple(parts)


def _expand(match: re.Match[str], replacement: Replacement) -> str:
    return "".join(
        part if type(part) is str else (match.group(part) or "")  # unmatched group: nothing
        for part in replacement
    )


def can_merge(rule: RouteRule) -> bool:
    """Whether the rule can put several tables on one topic: it names more than one table, and
    is a regex, or a template without ``{table}``, or without ``{schema}`` while its globs can
    match tables of several schemas."""
    if len(set(rule.tables)) == 1 and is_plain(rule.tables[0]):
        return False  # one table
    if rule.regex is not None or rule.topic is None:
        return True
    fields = template_fields(rule.topic, VALUE_FIELDS, "topic template")
    if "table" not in fields:
        return True
    if "schema" in fields:
        return False
    schemas = {glob.split(".", 1)[0] for glob in rule.tables}
    return len(schemas) != 1 or not is_plain(next(iter(schemas)))


def key_field(rule: RouteRule) -> str | None:
    """The key field naming the table, or None (see :attr:`RouteRule.key_table_field`)."""
    if rule.key_table_field is not None:
        return rule.key_table_field or None
    return KEY_TABLE_FIELD if can_merge(rule) else None


def value_text(value: object) -> str:
    """A column's value in a topic name: a text as it is, others as their JSON (``null`` for
    NULL, ``true``, ``42``)."""
    return value if type(value) is str else orjson.dumps(value).decode()


@dataclasses.dataclass(slots=True)
class _TableRoute:
    """One table's route, computed on its first event."""

    topic: str
    """The routed topic (by_column: the topic of truncates, the default one)."""
    default: str
    """``{topic_prefix}.{schema}.{table}``: the key field's value."""
    headers: tuple[tuple[str, bytes], ...]
    values: dict[str, str] = dataclasses.field(default_factory=dict)
    """by_column: value -> topic."""


class Router:
    """A route rule, applied to the events of the tables it is the first match of."""

    def __init__(self, rule: RouteRule) -> None:
        self.rule = rule
        self._regex = None if rule.regex is None else _compile(rule.regex)
        self._replacement: Replacement = (
            () if self._regex is None else _replacement(self._regex, rule.replacement or "")
        )
        self._column = rule.by_column
        self._field = key_field(rule)
        self._tables: dict[tuple[str, str], _TableRoute] = {}

    def _route(self, schema: str, table: str, source: SourceInfo) -> _TableRoute:
        default = topic_for(source.topic_prefix, schema, table)
        if self._regex is not None:
            match = self._regex.fullmatch(default)
            made_for = f"table {schema}.{table}'s route"
            topic = (
                default
                if match is None
                else safe_topic(_expand(match, self._replacement), made_for)
            )
        elif self._column is not None:
            topic = default  # a truncate has no row, so no value
        else:
            topic = self._render(schema, table, source, None)
        headers = [(TABLE_HEADER, f"{schema}.{table}".encode())]
        if self._field is not None:
            headers.append((KEY_FIELD_HEADER, self._field.encode()))
        route = _TableRoute(topic, default, tuple(headers))
        self._tables[(schema, table)] = route
        return route

    def _render(self, schema: str, table: str, source: SourceInfo, value: str | None) -> str:
        assert self.rule.topic is not None
        made_for = f"table {schema}.{table}'s route" + (
            "" if value is None else f" ({self._column} = {value[:40]!r})"
        )
        return safe_topic(
            self.rule.topic.format(
                topic_prefix=source.topic_prefix,
                db=source.db,
                schema=schema,
                table=table,
                value=value,
            ),
            made_for,
        )

    def _by_value(
        self, route: _TableRoute, change: Change, row: dict[str, Any] | None, source: SourceInfo
    ) -> str:
        text = value_text(None if row is None else row.get(self._column or ""))
        topic = route.values.get(text)
        if topic is None:
            if len(route.values) >= MAX_VALUES:
                route.values.clear()
            topic = route.values[text] = self._render(change.schema, change.table, source, text)
        return topic

    def topic_of(self, schema: str, table: str, source: SourceInfo) -> str:
        """The table's topic (for ``by_column``, that of its truncates)."""
        return self._route(schema, table, source).topic

    @property
    def names_table(self) -> bool:
        """The keys of the records carry their table (``key_table_field``)."""
        return self._field is not None

    def records(
        self, change: Change, source: SourceInfo, now_ms: int | None, tombstones: bool
    ) -> list[Record]:
        """The change's records on its routed topic (with its tombstone after a delete)."""
        route = self._tables.get((change.schema, change.table))
        if route is None:
            route = self._route(change.schema, change.table, source)
        topic = route.topic
        if self._column is not None and change.op != "t":
            column = self._column
            row = change.key if change.key is not None and column in change.key else None
            if row is None:
                row = change.after if change.after is not None else change.before
            topic = self._by_value(route, change, row, source)
            before = change.before
            if change.op == "u" and before is not None and column in before:
                old = self._by_value(route, change, before, source)
                if old != topic:
                    return self._moved(change, source, now_ms, tombstones, route, old, topic)
        return self._routed(change, source, now_ms, tombstones, route, topic)

    def _routed(
        self,
        change: Change,
        source: SourceInfo,
        now_ms: int | None,
        tombstones: bool,
        route: _TableRoute,
        topic: str,
    ) -> list[Record]:
        field = None if self._field is None else (self._field, route.default)
        record = encode(change, source, now_ms, field)
        record.topic = topic
        headers = route.headers
        if field is None or change.key is None:
            headers = headers[:1]  # no key field: nothing for a sink to drop
        record.headers.extend(headers)
        if tombstones and change.op == "d":
            return [record, Record(topic, record.key, None, [record.headers[0], *headers])]
        return [record]

    def _moved(
        self,
        change: Change,
        source: SourceInfo,
        now_ms: int | None,
        tombstones: bool,
        route: _TableRoute,
        old: str,
        new: str,
    ) -> list[Record]:
        """An update that moves the row to another topic: a delete of the old key on the old
        topic and a create on the new one, both with the change's event id, as Debezium
        publishes a key change. (The decoders already publish a key change as a delete and a
        create, each routed by its own key; this covers an update whose old image shows another
        value all the same.)"""
        before = change.before or {}
        old_key = None if change.key is None else {k: before.get(k) for k in change.key}
        gone = dataclasses.replace(change, op="d", key=old_key, after=None)
        made = dataclasses.replace(change, op="c", before=None)
        return [
            *self._routed(gone, source, now_ms, tombstones, route, old),
            *self._routed(made, source, now_ms, tombstones, route, new),
        ]

    @staticmethod
    def problems(rule: RouteRule, name: str, info: TableInfo) -> list[str]:
        """Errors of the rule for table ``name``: a ``by_column`` column that is not in the
        table's key (a delete carries only the key, so its topic could not be known), a key
        field that is already a key column."""
        errors: list[str] = []
        column = rule.by_column
        if column is not None:
            if column not in info.columns:
                errors.append(f"route of table {name}: by_column {column!r}: no such column")
            elif column not in info.key:
                errors.append(
                    f"route of table {name}: by_column {column!r} is not in the table's key"
                    f" ({_names(info.key)}): a delete carries only the key, so its topic would"
                    " be unknown"
                )
        field = key_field(rule)
        if field is not None and field in info.key:
            errors.append(
                f"route of table {name}: key_table_field {field!r} is a column of its key:"
                " choose another name"
            )
        return errors


def _names(columns: Sequence[str]) -> str:
    return ", ".join(columns) if columns else "none"
