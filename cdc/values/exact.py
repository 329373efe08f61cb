"""The exact encodings: each PostgreSQL type's text output (cdc's internal form of a value) to the
value an event carries in ``values = "exact"``, and back.

Each is what Debezium writes with ``decimal.handling.mode=string``, ``time.precision.mode=
isostring``, ``binary.handling.mode=base64`` and ``interval.handling.mode=string``, except where
those lose the value: ``infinity``, ``24:00:00`` and ``NaN`` stay as PostgreSQL writes them, a
``timetz`` keeps its own offset (Debezium moves it to UTC), and a zoneless ``date``, ``time`` or
``timestamp`` gets no ``Z`` (which Flink's ISO parsers refuse). Every decoder is the inverse of
its encoder: ``decode(encode(text)) == text`` for any text PostgreSQL prints (the tests check it
against the server).
"""

from __future__ import annotations

__all__ = [
    "array_decoder",
    "array_encoder",
    "b64_to_hex",
    "hex_to_b64",
    "interval_from_iso",
    "interval_parts",
    "interval_text",
    "interval_to_iso",
    "iso_date",
    "iso_timestamp",
    "iso_timestamptz",
    "iso_timetz",
    "pg_date",
    "pg_float",
    "pg_timestamp",
    "pg_timestamptz",
    "pg_timetz",
    "trunc_div",
]

import binascii
import datetime as dt
import math
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from cdc.values.types import base_type

INFINITIES = frozenset({"infinity", "-infinity"})
_USEC_HOUR = 3_600_000_000
_USEC_MINUTE = 60_000_000
_USEC_SECOND = 1_000_000


def hex_to_b64(hexdigits: str) -> str:
    return binascii.b2a_base64(bytes.fromhex(hexdigits), newline=False).decode()


def b64_to_hex(text: str) -> str:
    return binascii.a2b_base64(text, strict_mode=True).hex()


# Dates: PostgreSQL writes "2024-01-02", "10000-01-01", "0001-01-01 BC"; ISO 8601 (and Java's
# ISO parsers) want the astronomical year (1 BC is year 0) and a sign past four digits.


def _iso_year(year: int, bc: bool) -> str:
    if bc:
        year = 1 - year
    if year < 0:
        return f"-{-year:04d}"
    return f"{year:04d}" if year <= 9999 else f"+{year}"


def iso_date(text: str) -> str:
    if text[4:5] == "-" and len(text) == 10:  # 0001-9999 AD: already ISO
        return text
    if text in INFINITIES:
        return text
    bc = text.endswith(" BC")
    body = text[:-3] if bc else text
    year, rest = body[:-6], body[-6:]
    return _iso_year(int(year), bc) + rest


def _pg_year(iso_year: str) -> tuple[str, bool]:
    year = int(iso_year)
    if year <= 0:
        return f"{1 - year:04d}", True
    return f"{year:04d}", False


def pg_date(text: str) -> str:
    if text[4:5] == "-" and len(text) == 10 and text[0] != "-" and text[:4] != "0000":
        return text
    if text in INFINITIES:
        return text
    year, bc = _pg_year(text[:-6])
    return year + text[-6:] + (" BC" if bc else "")


def iso_timestamp(text: str) -> str:
    if text[10:11] == " " and text[4:5] == "-" and not text.endswith(" BC"):
        return text[:10] + "T" + text[11:]
    if text in INFINITIES:
        return text
    bc = text.endswith(" BC")
    body = text[:-3] if bc else text
    day, _, clock = body.partition(" ")
    return iso_date(day + (" BC" if bc else "")) + "T" + clock


def pg_timestamp(text: str) -> str:
    if text[10:11] == "T" and text[4:5] == "-" and text[0] not in "-+" and text[:4] != "0000":
        return text[:10] + " " + text[10 + 1 :]
    if text in INFINITIES:
        return text
    day, _, clock = text.partition("T")
    year, bc = _pg_year(day[:-6])
    return year + day[-6:] + " " + clock + (" BC" if bc else "")


_OFFSET = re.compile(r"([+-])(\d\d)(?::(\d\d))?(?::(\d\d))?$")


def iso_timestamptz(text: str) -> str:
    """In UTC with ``Z``: the sessions that read values are in UTC (connectors.postgres.session),
    so PostgreSQL writes ``+00``; another offset is moved to UTC."""
    if text.endswith("+00") and text[10:11] == " " and text[4:5] == "-":
        return text[:10] + "T" + text[11:-3] + "Z"
    if text in INFINITIES:
        return text
    bc = text.endswith(" BC")
    body = text[:-3] if bc else text
    match = _OFFSET.search(body)
    if match is None:
        raise ValueError(f"not a timestamptz: {text!r}")
    stamp = body[: match.start()]
    if match.group(0) != "+00":
        return _to_utc(stamp, match, bc)
    return iso_timestamp(stamp + (" BC" if bc else "")) + "Z"


def _to_utc(stamp: str, offset: re.Match[str], bc: bool) -> str:
    if bc:
        raise ValueError(f"a BC timestamptz outside UTC: {stamp}{offset.group(0)}")
    sign = -1 if offset.group(1) == "-" else 1
    shift = dt.timedelta(
        hours=int(offset.group(2)),
        minutes=int(offset.group(3) or 0),
        seconds=int(offset.group(4) or 0),
    )
    local = dt.datetime.fromisoformat(stamp)
    utc = local - sign * shift
    text = utc.isoformat(sep=" ")
    if "." in text:
        text = text.rstrip("0")
    return iso_timestamp(text) + "Z"


def pg_timestamptz(text: str) -> str:
    if text in INFINITIES:
        return text
    if not text.endswith("Z"):
        raise ValueError(f"not a UTC timestamp: {text!r}")
    pg = pg_timestamp(text[:-1])
    if pg.endswith(" BC"):
        return pg[:-3] + "+00 BC"
    return pg + "+00"


def iso_timetz(text: str) -> str:
    """PostgreSQL's ``03:04:05+02`` as ISO's ``03:04:05+02:00`` (``Z`` for ``+00``)."""
    match = _OFFSET.search(text)
    if match is None:
        raise ValueError(f"not a timetz: {text!r}")
    clock = text[: match.start()]
    if match.group(0) == "+00":
        return clock + "Z"
    sign, hours, minutes, seconds = match.groups()
    offset = f"{sign}{hours}:{minutes or '00'}" + (f":{seconds}" if seconds else "")
    return clock + offset


def pg_timetz(text: str) -> str:
    if text.endswith("Z"):
        return text[:-1] + "+00"
    match = _OFFSET.search(text)
    if match is None:
        raise ValueError(f"not an ISO time with offset: {text!r}")
    sign, hours, minutes, seconds = match.groups()
    offset = sign + hours
    if (minutes and minutes != "00") or seconds:
        offset += ":" + (minutes or "00")
    if seconds:
        offset += ":" + seconds
    return text[: match.start()] + offset


# Intervals: PostgreSQL's output (IntervalStyle postgres) is a function of the three numbers an
# interval holds (months, days, microseconds); both texts are made from and read into them.

_INTERVAL_UNITS = {"year": 12, "years": 12, "mon": 1, "mons": 1}
_CLOCK = re.compile(r"([+-]?)(\d+):(\d\d):(\d\d)(?:\.(\d{1,6}))?$")


def interval_parts(text: str) -> tuple[int, int, int]:
    """``(months, days, microseconds)`` of PostgreSQL's text of an interval."""
    months = days = micros = 0
    words = text.split()
    i = 0
    while i < len(words):
        word = words[i]
        clock = _CLOCK.match(word)
        if clock is not None:
            sign, h, m, s, frac = clock.groups()
            value = (int(h) * 3600 + int(m) * 60 + int(s)) * _USEC_SECOND
            value += int((frac or "").ljust(6, "0") or 0)
            micros += -value if sign == "-" else value
            i += 1
            continue
        number, unit = int(word), words[i + 1]
        if unit in ("day", "days"):
            days += number
        else:
            months += number * _INTERVAL_UNITS[unit]
        i += 2
    return months, days, micros


def trunc_div(a: int, b: int) -> tuple[int, int]:
    """C's division: the quotient rounded toward zero, the remainder with ``a``'s sign."""
    q = abs(a) // b
    q = -q if a < 0 else q
    return q, a - q * b


def _seconds(micros: int) -> str:
    whole, frac = trunc_div(micros, _USEC_SECOND)
    if not frac:
        return str(whole)
    digits = f"{abs(whole)}.{abs(frac):06d}".rstrip("0")
    return "-" + digits if micros < 0 else digits


def interval_to_iso(text: str) -> str:
    """Debezium's ``interval.handling.mode=string``: ``P{y}Y{m}M{d}DT{h}H{m}M{s}S``, every field."""
    months, days, micros = interval_parts(text)
    years, months = trunc_div(months, 12)
    hours, rest = trunc_div(micros, _USEC_HOUR)
    minutes, rest = trunc_div(rest, _USEC_MINUTE)
    return f"P{years}Y{months}M{days}DT{hours}H{minutes}M{_seconds(rest)}S"


_ISO_INTERVAL = re.compile(r"P(-?\d+)Y(-?\d+)M(-?\d+)DT(-?\d+)H(-?\d+)M(-?\d+(?:\.\d+)?)S$")


def interval_from_iso(text: str) -> str:
    match = _ISO_INTERVAL.match(text)
    if match is None:
        raise ValueError(f"not an ISO 8601 duration as cdc writes them: {text!r}")
    y, mo, d, h, mi, s = match.groups()
    micros = (int(h) * 60 + int(mi)) * _USEC_MINUTE + int(Decimal(s) * _USEC_SECOND)
    return interval_text(int(y) * 12 + int(mo), int(d), micros)


def interval_text(months: int, days: int, micros: int) -> str:
    """PostgreSQL's output of an interval (``EncodeInterval``, IntervalStyle postgres)."""
    year, mon = trunc_div(months, 12)
    parts: list[str] = []
    before = False
    for value, unit in ((year, "year"), (mon, "mon"), (days, "day")):
        if value == 0:
            continue
        plus = "+" if before and value > 0 else ""
        parts.append(f"{plus}{value} {unit}{'' if value == 1 else 's'}")
        before = value < 0
    if not parts or micros:
        hour, rest = trunc_div(micros, _USEC_HOUR)
        minute, rest = trunc_div(rest, _USEC_MINUTE)
        sec, frac = trunc_div(rest, _USEC_SECOND)
        sign = "-" if micros < 0 else ("+" if before else "")
        clock = f"{sign}{abs(hour):02d}:{abs(minute):02d}:{abs(sec):02d}"
        if frac:
            clock += f".{abs(frac):06d}".rstrip("0")
        parts.append(clock)
    return " ".join(parts)


# Floats inside arrays: JSON numbers in events, PostgreSQL's shortest exact text in the literal.


def pg_float(value: float, digits_before_exponent: int = 15) -> str:
    """PostgreSQL's text of a double (``float8out``, shortest exact digits): exponent notation
    below 1e-4 or from 1e15 on, as PostgreSQL writes it (``1e+15``, ``1.5e-05``). A ``real``
    (``float4out``) takes it from 1e6 on (``digits_before_exponent=6``: ``1e+06``); its shortest
    digits are the double's of the same text (at most 9 of them)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    digits, exponent = _shortest(value)
    sign = "-" if value < 0 else ""
    point = exponent + len(digits)  # the decimal point's position after the first digit
    if -4 < point <= digits_before_exponent:
        if point <= 0:
            return f"{sign}0.{'0' * -point}{digits}"
        if point >= len(digits):
            return sign + digits + "0" * (point - len(digits))
        return f"{sign}{digits[:point]}.{digits[point:]}"
    mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    e = point - 1
    return f"{sign}{mantissa}e{'-' if e < 0 else '+'}{abs(e):02d}"


def _shortest(value: float) -> tuple[str, int]:
    _, digits, exponent = Decimal(repr(abs(value))).normalize().as_tuple()
    assert isinstance(exponent, int)
    return "".join(map(str, digits)), exponent


# One-dimensional arrays: PostgreSQL's literal (array_out) <-> a JSON array.


def _split_array(text: str) -> list[str | None] | None:
    """The elements of a one-dimensional array literal with the default lower bound (None for
    any other: several dimensions, ``[0:1]={...}``)."""
    if not text.startswith("{") or text.startswith("{{") or not text.endswith("}"):
        return None
    body = text[1:-1]
    if not body:
        return []
    out: list[str | None] = []
    i, n = 0, len(body)
    while i <= n:
        if i < n and body[i] == '"':
            chars: list[str] = []
            i += 1
            while body[i] != '"':
                if body[i] == "\\":
                    i += 1
                chars.append(body[i])
                i += 1
            out.append("".join(chars))
            i += 2  # the closing quote and the comma
            continue
        end = body.find(",", i)
        end = n if end < 0 else end
        element = body[i:end]
        out.append(None if element == "NULL" else element)
        i = end + 1
    return out


_NEEDS_QUOTES = re.compile(r'[{},"\\ \t\n\r\v\f]')  # array_isspace's spaces, no others


def _quote(element: str) -> str:
    """An element as ``array_out`` writes it: quoted when empty, ``NULL`` (any case), or holding
    a brace, comma, quote, backslash or white space."""
    if element and not _NEEDS_QUOTES.search(element) and element.upper() != "NULL":
        return element
    return '"' + element.replace("\\", "\\\\").replace('"', '\\"') + '"'


def array_encoder(element: Callable[[str], Any]) -> Callable[[str], Any]:
    """An encoder of an array's literal: a JSON array of its elements as ``element`` encodes
    each one's text (the literal itself when not one-dimensional)."""

    def encode(text: str) -> Any:
        elements = _split_array(text)
        if elements is None:
            return text
        return [None if e is None else element(e) for e in elements]

    return encode


def array_decoder(element: Callable[[Any], str]) -> Callable[[Any], str]:
    """The inverse of :func:`array_encoder`: ``element`` turns each encoded element back into
    its text."""

    def decode(value: Any) -> str:
        if not isinstance(value, list):
            return str(value)  # kept as its literal
        return "{" + ",".join("NULL" if e is None else _quote(element(e)) for e in value) + "}"

    return decode


# The functions of each type (by its name without modifiers), both ways.

_SCALAR_ENCODERS: dict[str, Callable[[Any], Any]] = {
    "bytea": hex_to_b64,
    "timestamp with time zone": iso_timestamptz,
    "timestamp without time zone": iso_timestamp,
    "date": iso_date,
    "time with time zone": iso_timetz,
    "interval": interval_to_iso,
}
_SCALAR_DECODERS: dict[str, Callable[[Any], Any]] = {
    "bytea": b64_to_hex,
    "timestamp with time zone": pg_timestamptz,
    "timestamp without time zone": pg_timestamp,
    "date": pg_date,
    "time with time zone": pg_timetz,
    "interval": interval_from_iso,
}
_INTEGERS = frozenset({"smallint", "integer", "bigint", "oid"})
_FLOATS = frozenset({"real", "double precision"})
_NOT_NUMBERS = frozenset({"NaN", "Infinity", "-Infinity"})
_LITERAL_ONLY = frozenset({"box"})
"""Array element types whose literal separates elements with ``;``: their arrays stay literals."""


def _float_element(text: str) -> Any:
    return text if text in _NOT_NUMBERS else float(text)


def _element_encoder(name: str) -> Callable[[str], Any]:
    """An array element's text (bytea's is ``\\x...``) -> its value in an event."""
    if name in _INTEGERS:
        return int
    if name in _FLOATS:
        return _float_element
    if name == "boolean":
        return lambda text: text == "t"
    if name == "bytea":
        return lambda text: hex_to_b64(text[2:])
    return _SCALAR_ENCODERS.get(name, str)


def _element_decoder(name: str) -> Callable[[Any], str]:
    if name in _INTEGERS:
        return str
    if name == "real":
        return lambda v: v if isinstance(v, str) else pg_float(float(v), 6)
    if name == "double precision":
        return lambda v: v if isinstance(v, str) else pg_float(float(v))
    if name == "boolean":
        return lambda v: "t" if v is True else "f"
    if name == "bytea":
        return lambda v: "\\x" + b64_to_hex(v)
    return _SCALAR_DECODERS.get(name, str)


def encoder(type_name: str) -> Callable[[Any], Any] | None:
    """The exact encoder of a column of ``type_name`` (a ``format_type`` name); None when its
    value travels as the decoders give it."""
    name, _, array = base_type(type_name)
    if array:
        return None if name in _LITERAL_ONLY else array_encoder(_element_encoder(name))
    return _SCALAR_ENCODERS.get(name)


def decoder(type_name: str) -> Callable[[Any], Any] | None:
    name, _, array = base_type(type_name)
    if array:
        return None if name in _LITERAL_ONLY else array_decoder(_element_decoder(name))
    return _SCALAR_DECODERS.get(name)
