"""Row filters (``[[connectors.filters]]``).

A filter is a small, safe language that is also valid PostgreSQL ``WHERE`` text: column names
(plain, or ``"quoted"`` with ``""`` for a quote), literals (``'text'`` with ``''`` for a quote,
integers, decimals, ``true``, ``false``, ``null``), the comparisons ``= <> != < <= > >=`` between
a column and a literal, ``IN (literal, ...)``, ``NOT IN``, ``IS [NOT] NULL``, ``AND``, ``OR``,
``NOT`` and parentheses. Nothing else (no functions, no casts, no column compared with a column):
anything else is a ValueError saying where.

Evaluation follows SQL's three-valued logic: a comparison with NULL is unknown, and a row whose
filter is unknown is not published. Numbers compare as numbers (numeric values arrive as decimal
strings: they are compared as :class:`~decimal.Decimal`), a text literal with a number column as
the number it spells, booleans as booleans (``'t'``, ``'yes'``, ... as PostgreSQL reads them),
and text by code point: PostgreSQL's collation may order text differently, so a filter that
orders text (``name < 'm'``) is never pushed into the publication.

What each change becomes (every rule matching a table must hold: they are ANDed):

- insert, snapshot read: published when the new row matches.
- delete: published unless its old row (REPLICA IDENTITY FULL, or a filter on key columns only)
  shows that it did not match; with only the key known it cannot be told, so the delete is
  published (sinks treat a delete of a row they do not hold as done).
- update: the new row matches: published, as an insert (``c``) when the old row is known not to
  have matched, else as the update. The new row does not match: a delete (``d``, of the old key
  or row, with the update's event id), unless the old row is known not to have matched (then
  nothing). A filter column whose unchanged TOASTed value was not sent is taken from the old row
  when it holds it; else the new row counts as matching (logged once per table).
- truncate: published.
"""

from __future__ import annotations

__all__ = ["Filter", "RowFilter", "Token", "parse_filter"]

import contextlib
import dataclasses
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from cdc.events import UNAVAILABLE, Change, Row

if TYPE_CHECKING:
    from cdc.config.models import FilterRule
    from cdc.transforms import TableInfo

log = logging.getLogger(__name__)

Truth = bool | None
"""SQL's three values: True, False, None (unknown)."""
Test = Callable[[Row], Truth]

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<number>\d+(?:\.\d*)?|\.\d+)
    | (?P<text>'(?:[^']|'')*')
    | (?P<quoted>"(?:[^"]|"")+")
    | (?P<word>[A-Za-z_][A-Za-z0-9_$]*)
    | (?P<op><>|!=|<=|>=|=|<|>)
    | (?P<punct>[(),])
    | (?P<minus>-)
    )""",
    re.VERBOSE,
)
_KEYWORDS = {"and", "or", "not", "in", "is", "null", "true", "false"}
_ORDERING = {"<", "<=", ">", ">="}
_TRUE = {"t", "true", "y", "yes", "on", "1"}
_FALSE = {"f", "false", "n", "no", "off", "0"}


@dataclass(frozen=True, slots=True)
class Token:
    """One word of a filter: ``kind`` ``column`` (``value`` its name), ``text`` (``value`` the
    text), ``number`` (``value`` a Decimal), a keyword (``and``, ``null``, ...), ``op``,
    ``minus``, ``(``, ``)``, ``,``."""

    kind: str
    text: str
    pos: int
    value: Any = None


def _tokens(text: str) -> list[Token]:
    out: list[Token] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            start = len(text) - len(text[pos:].lstrip())
            raise ValueError(f"filter: unexpected {text[start]!r} at position {start + 1}")
        kind = m.lastgroup or ""
        raw = m.group(kind)
        start = m.start(kind)
        value: Any = None
        if kind == "number":
            value = Decimal(raw)
        elif kind == "text":
            value = raw[1:-1].replace("''", "'")
        elif kind == "quoted":
            kind, value = "column", raw[1:-1].replace('""', '"')
        elif kind == "punct":
            kind = raw
        elif kind == "word":
            if raw.lower() in _KEYWORDS:
                kind = raw.lower()
            else:
                kind, value = "column", raw.lower()
        out.append(Token(kind, raw, start, value))
        pos = m.end()
    out.append(Token("end", "", len(text)))
    return out


@dataclass(frozen=True)
class Filter:
    """A parsed filter: its test of a row, and what the publication pushdown needs to know."""

    text: str
    test: Test
    columns: frozenset[str]
    """The columns it names."""
    orders_text: bool
    """It orders text (``<`` etc. with a text literal): PostgreSQL's collation may differ."""
    tokens: tuple[Token, ...] = ()
    """Its words, from which the publication's row filter is written (identifiers and
    literals quoted by psycopg, never the text as the user wrote it)."""


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.at = 0
        self.columns: set[str] = set()
        self.orders_text = False

    def peek(self) -> Token:
        return self.tokens[self.at]

    def take(self, *kinds: str) -> Token | None:
        token = self.tokens[self.at]
        if token.kind in kinds:
            self.at += 1
            return token
        return None

    def fail(self, expected: str) -> ValueError:
        token = self.peek()
        found = "the end" if token.kind == "end" else repr(token.text)
        return ValueError(f"filter: expected {expected} at position {token.pos + 1}, found {found}")

    def parse(self) -> Filter:
        test = self.disjunction()
        if self.peek().kind != "end":
            raise self.fail("AND, OR or the end")
        return Filter(
            self.text, test, frozenset(self.columns), self.orders_text, tuple(self.tokens[:-1])
        )

    def disjunction(self) -> Test:
        parts = [self.conjunction()]
        while self.take("or"):
            parts.append(self.conjunction())
        return parts[0] if len(parts) == 1 else _or(parts)

    def conjunction(self) -> Test:
        parts = [self.negation()]
        while self.take("and"):
            parts.append(self.negation())
        return parts[0] if len(parts) == 1 else _and(parts)

    def negation(self) -> Test:
        if self.take("not"):
            return _not(self.negation())
        return self.predicate()

    def predicate(self) -> Test:
        if self.take("("):
            inner = self.disjunction()
            if not self.take(")"):
                raise self.fail("')'")
            return inner
        left = self.operand()
        if self.take("is"):
            negated = bool(self.take("not"))
            if not self.take("null"):
                raise self.fail("NULL or NOT NULL")
            column = self.column_of(left, "IS NULL")
            return _is_null(column, negated)
        negated = bool(self.take("not"))
        if self.take("in"):
            column = self.column_of(left, "IN")
            if not self.take("("):
                raise self.fail("'('")
            values = [self.literal()]
            while self.take(","):
                values.append(self.literal())
            if not self.take(")"):
                raise self.fail("',' or ')'")
            return _in(column, values, negated)
        if negated:
            raise self.fail("IN")
        return self.comparison(left)

    def comparison(self, left: tuple[str, Any]) -> Test:
        op = self.take("op")
        if op is None:
            raise self.fail("a comparison (= <> != < <= > >=, IN, IS NULL)")
        right = self.operand()
        if (left[0] == "column") == (right[0] == "column"):
            raise ValueError(
                f"filter: compare a column with a literal at position {op.pos + 1}"
                f" ({op.text!r} has {'two columns' if left[0] == 'column' else 'no column'})"
            )
        operator = op.text if op.text != "!=" else "<>"
        if left[0] == "column":
            column, value = left[1], right[1]
        else:
            column, value = right[1], left[1]
            operator = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}.get(operator, operator)
        if operator in _ORDERING and isinstance(value, str):
            self.orders_text = True
        return _compare(column, operator, value)

    def column_of(self, operand: tuple[str, Any], what: str) -> str:
        if operand[0] != "column":
            raise ValueError(f"filter: {what} needs a column on its left ({self.text!r})")
        return str(operand[1])

    def operand(self) -> tuple[str, Any]:
        token = self.take("column")
        if token is not None:
            self.columns.add(token.value)
            return ("column", token.value)
        return ("literal", self.literal())

    def literal(self) -> Any:
        minus = self.take("minus")
        token = self.take("number")
        if token is not None:
            return -token.value if minus else token.value
        if minus:
            raise self.fail("a number")
        token = self.take("text", "true", "false", "null")
        if token is None:
            raise self.fail("a column or a literal ('text', a number, true, false, null)")
        if token.kind == "text":
            return token.value
        return {"true": True, "false": False, "null": None}[token.kind]


def parse_filter(text: str) -> Filter:
    """The parsed filter; ValueError naming what is wrong, and where."""
    if not text.strip():
        raise ValueError("filter: empty")
    return _Parser(text).parse()


def _or(parts: list[Test]) -> Test:
    def test(row: Row) -> Truth:
        result: Truth = False
        for part in parts:
            value = part(row)
            if value:
                return True
            if value is None:
                result = None
        return result

    return test


def _and(parts: list[Test]) -> Test:
    def test(row: Row) -> Truth:
        result: Truth = True
        for part in parts:
            value = part(row)
            if value is False:
                return False
            if value is None:
                result = None
        return result

    return test


def _not(part: Test) -> Test:
    def test(row: Row) -> Truth:
        value = part(row)
        return None if value is None else not value

    return test


def _is_null(column: str, negated: bool) -> Test:
    if negated:
        return lambda row: row.get(column) is not None
    return lambda row: row.get(column) is None


def _coerce(value: Any, literal: Any) -> Any:
    """``value`` (a JSON value of the event) in the literal's kind, None when it has none."""
    if isinstance(literal, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str):
            lowered = value.strip().lower()
            return True if lowered in _TRUE else False if lowered in _FALSE else None
        return None
    if isinstance(literal, Decimal):
        if isinstance(value, bool):
            return None
        if isinstance(value, Decimal):
            return value
        if isinstance(value, int):
            return Decimal(value)
        if isinstance(value, float):
            return Decimal(repr(value))
        if isinstance(value, str):
            try:
                return Decimal(value)
            except InvalidOperation:
                return None
        return None
    # A text literal.
    if isinstance(value, str):
        return value
    return None


def _literal_for(value: Any, literal: Any) -> Any:
    """The literal as the column's value reads it: PostgreSQL reads ``'42'`` for a number
    column as 42, and ``'t'`` for a boolean as true."""
    if isinstance(literal, str) and not isinstance(value, str):
        if isinstance(value, bool):
            lowered = literal.strip().lower()
            return True if lowered in _TRUE else False if lowered in _FALSE else None
        if isinstance(value, int | float | Decimal):
            try:
                return Decimal(literal)
            except InvalidOperation:
                return None
    return literal


def _compare(column: str, operator: str, literal: Any) -> Test:
    if literal is None:
        return lambda row: None
    check: Callable[[Any, Any], bool] = {
        "=": lambda a, b: a == b,
        "<>": lambda a, b: a != b,
        "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b,
        ">": lambda a, b: a > b,
        ">=": lambda a, b: a >= b,
    }[operator]
    ordered = operator in _ORDERING
    # The common case, checked first: a text column against a text literal, an integer
    # column against an integer literal.
    fast_type: type = str
    fast = literal
    if isinstance(literal, Decimal):
        fast_type, fast = (
            (int, int(literal))
            if literal == literal.to_integral_value()
            else (
                type(None),
                None,
            )
        )
    elif isinstance(literal, bool):
        fast_type = bool

    def test(row: Row) -> Truth:
        value = row.get(column)
        if value is None:
            return None
        if type(value) is fast_type:
            return check(value, fast)
        wanted = _literal_for(value, literal)
        if wanted is None:
            return None
        got = _coerce(value, wanted)
        if got is None:
            return None
        if ordered and isinstance(got, bool):
            return check(int(got), int(wanted))
        try:
            return check(got, wanted)
        except InvalidOperation:  # NaN ordered: unknown
            return None

    return test


def _in(column: str, literals: list[Any], negated: bool) -> Test:
    tests = [_compare(column, "=", literal) for literal in literals]
    found = _or(tests)
    return _not(found) if negated else found


class RowFilter:
    """One table's filters (every matching rule must hold)."""

    def __init__(self, filters: list[Filter]) -> None:
        self.filters = filters
        tests = [f.test for f in filters]
        self.test: Test = tests[0] if len(tests) == 1 else _and(tests)
        self.columns = frozenset().union(*(f.columns for f in filters))
        self.orders_text = any(f.orders_text for f in filters)
        self._logged = False
        self._said_gone = False
        self._numeric: tuple[tuple[tuple[str, str], ...], frozenset[str]] = ((), frozenset())
        """The filter's columns of type numeric, per ``types`` tuple (one per table layout)."""

    @classmethod
    def of(cls, rules: list[FilterRule]) -> RowFilter:
        return cls([parse_filter(rule.where) for rule in rules])

    def where(self) -> str:
        """The filters as one ``WHERE`` expression (the publication's row filter)."""
        if len(self.filters) == 1:
            return self.filters[0].text
        return " AND ".join(f"({f.text})" for f in self.filters)

    def matches(self, row: Row, numeric: frozenset[str] = frozenset()) -> bool:
        """``numeric``: columns whose values (decimal strings) are read as numbers, as
        PostgreSQL reads them (``amount = '10'`` holds for 10.00)."""
        if numeric:
            row = dict(row)
            for column in numeric:
                value = row.get(column)
                if type(value) is str:
                    with contextlib.suppress(InvalidOperation):
                        row[column] = Decimal(value)
        return self.test(row) is True

    def _numbers(self, change: Change) -> frozenset[str]:
        """The filter's numeric columns, by the change's types (cached by their identity: a
        decoder gives every change of a table layout the same tuple)."""
        types = change.types
        cached = self._numeric
        if cached[0] is types:
            return cached[1]
        found = frozenset(
            name
            for name, kind in types
            if name in self.columns and kind.startswith("numeric") and not kind.endswith("]")
        )
        self._numeric = (types, found)
        return found

    def _known(self, row: Row | None) -> bool:
        """Whether ``row`` holds every column the filter names (an old row: the whole row with
        REPLICA IDENTITY FULL, else the key)."""
        return row is not None and all(c in row for c in self.columns)

    def __call__(self, change: Change) -> Change | None:  # noqa: PLR0912  (one table of cases)
        """The change to publish (an update may become an insert or a delete), or None."""
        op = change.op
        numeric = self._numbers(change) if change.types else frozenset()
        if op in ("c", "r"):
            after = change.after
            kept = after is not None and self.matches(after, numeric)
            if not kept and not self._said_gone:
                self._gone(change, after)
            return change if kept else None
        if op == "d":
            before = change.before
            if self._known(before) and not self.matches(before, numeric):  # type: ignore[arg-type]
                return None
            return change
        if op != "u":
            return change  # a truncate
        after = change.after
        if after is None:
            return change
        before = change.before
        # An update's key is its old key too (the decoders make a key change a delete and an
        # insert): a filter on key columns knows the old row from it.
        old = before if before is not None else change.key
        old_known = self._known(old)
        old_matched = old_known and self.matches(old, numeric)  # type: ignore[arg-type]
        new_matches = self._new_matches(change, after, before, numeric)
        if new_matches:
            if old_known and not old_matched:
                # It moves in: the target does not hold it. The old row (FULL) holds the
                # unchanged TOASTed values the new one lacks.
                unavailable = change.unavailable
                if unavailable and before is not None:
                    after = dict(after)
                    for c in unavailable:
                        if c in before and before[c] != UNAVAILABLE:
                            after[c] = before[c]
                    unavailable = tuple(c for c in unavailable if after[c] == UNAVAILABLE)
                return dataclasses.replace(
                    change, op="c", before=None, after=after, unavailable=unavailable
                )
            return change
        if old_known and not old_matched:
            return None
        # It moves out (or may have been in): delete the old row, under the update's event id.
        key = change.key
        if key is not None and before is not None and all(k in before for k in key):
            key = {k: before[k] for k in key}
        return dataclasses.replace(
            change,
            op="d",
            key=key,
            before=before if before is not None else key,
            after=None,
            unavailable=(),
        )

    def _gone(self, change: Change, after: Row | None) -> None:
        """Say once when a filter column is missing from a whole new row (dropped or renamed
        since the start): the filter is then unknown for every row, and nothing is published.
        Looked at only for rows the filter drops."""
        if after is None or self.columns <= after.keys():  # the common case: a subset test
            return
        gone = sorted(c for c in self.columns if c not in after)
        if gone:
            self._said_gone = True
            log.warning(
                "%s.%s: filter column(s) %s not in its rows (dropped or renamed?): no row"
                " matches, nothing but deletes is published; change [[connectors.filters]]",
                change.schema,
                change.table,
                ", ".join(gone),
            )

    def _new_matches(
        self, change: Change, after: Row, before: Row | None, numeric: frozenset[str]
    ) -> bool:
        unavailable = change.unavailable
        missing = [c for c in unavailable if c in self.columns] if unavailable else []
        if not missing:
            return self.matches(after, numeric)
        row = dict(after)
        for column in missing:
            if before is not None and column in before and before[column] != UNAVAILABLE:
                row[column] = before[column]
            else:
                if not self._logged:
                    self._logged = True
                    log.warning(
                        "%s.%s: an update left filter column %s's unchanged TOASTed value"
                        " out and the old row does not hold it: such updates are published"
                        " as matching (REPLICA IDENTITY FULL sends the old value)",
                        change.schema,
                        change.table,
                        column,
                    )
                return True
        return self.matches(row, numeric)

    def problems(self, name: str, info: TableInfo) -> list[str]:
        known = set(info.columns)
        generated = set(getattr(info, "generated", ()))
        errors = []
        for f in self.filters:
            for column in sorted(f.columns - known):
                why = (
                    "is generated: events never carry it"
                    if column in generated
                    else "does not exist"
                )
                errors.append(f"{name}: column {column} (in filter {f.text!r}) {why}")
        return errors
