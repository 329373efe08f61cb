"""Values as Debezium's PostgreSQL connector writes them, back to cdc's internal form.

The internal form is what cdc's decoders make (PostgreSQL's text output with ``TimeZone=UTC``,
``DateStyle=ISO``, ``IntervalStyle=postgres``; numbers as JSON numbers, ``bytea`` as bare hex):
the rest of every sink works on it. A column's decoder is chosen once, either from the column's
Kafka Connect schema (:func:`schema_decoder`, records written with ``schemas.enable=true``) or,
without one, from the target column's PostgreSQL type and the Debezium options the topic was
written with (:func:`type_decoder`); a row is then one loop over its columns' decoders
(:func:`decode_into`). No I/O.

What Debezium itself loses cannot come back; a decoder gives the nearest value:

- ``money``: the currency symbol (``"9.99"`` for ``$9.99``: the same money once stored);
- ``timetz``: the offset (moved to UTC: ``01:04:05.123456+00`` for ``03:04:05.123456+02``);
- ``numeric`` ``NaN`` with ``decimal.handling.mode=precise`` (null); every ``numeric`` digit a
  double does not hold with ``double``;
- ``time`` ``24:00:00`` with ``time.precision.mode=isostring`` (``00:00:00``); microseconds
  with ``connect``;
- ``interval`` with ``interval.handling.mode=numeric``: its months (a month is 30.4375 days
  there), and any interval past 292,000 years (``-9223372036854775808``). Days and time come
  back as ``N days HH:MM:SS``.

Debezium's overflowed stand-ins for ``infinity`` (a ``date`` of year -5877611, a ``timestamp``
of year 294247) are no date PostgreSQL has: they come back as ``infinity``/``-infinity``, and
``24:00:00`` in every numeric time mode.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_OPTIONS",
    "Decoder",
    "Options",
    "decode_into",
    "decoders_for",
    "schema_decoder",
    "type_decoder",
]

import base64
import binascii
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from cdc.values.types import UNAVAILABLE

Decoder = Callable[[Any], Any]
"""One column's value (never None) in Debezium's encoding -> its internal form."""

DECIMAL_MODES = ("precise", "string", "double")
TIME_MODES = ("adaptive", "adaptive_time_microseconds", "connect", "isostring")
BINARY_MODES = ("bytes", "base64", "base64-url-safe", "hex")
INTERVAL_MODES = ("numeric", "string")


@dataclass(frozen=True, slots=True)
class Options:
    """The Debezium connector options a topic was written with (its ``*.handling.mode`` and
    ``time.precision.mode``), which a record without schema needs to be read."""

    decimal: str = "precise"
    time: str = "adaptive"
    binary: str = "bytes"
    interval: str = "numeric"

    def __post_init__(self) -> None:
        for name, allowed in (
            ("decimal", DECIMAL_MODES),
            ("time", TIME_MODES),
            ("binary", BINARY_MODES),
            ("interval", INTERVAL_MODES),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"{name} mode {getattr(self, name)!r}: expected one of {', '.join(allowed)}"
                )

    @classmethod
    def from_header(cls, text: str) -> Options:
        """The options a ``cdc-values`` header gives: ``debezium;decimal=...;time=...;...``
        (names left out keep Debezium's defaults)."""
        kind, *pairs = text.split(";")
        if kind.strip() != "debezium":
            raise ValueError(f"not Debezium values: {text!r}")
        found: dict[str, str] = {}
        for pair in pairs:
            name, eq, value = pair.partition("=")
            if not eq or name.strip() not in ("decimal", "time", "binary", "interval"):
                raise ValueError(f"bad option {pair!r} in {text!r}")
            found[name.strip()] = value.strip()
        return cls(**found)


DEFAULT_OPTIONS = Options()


def decoders_for(
    types: Mapping[str, str], options: Options = DEFAULT_OPTIONS
) -> tuple[tuple[str, Decoder], ...]:
    """The decoders of the columns of ``types`` (column -> PostgreSQL type, as a ``cdc-types``
    header gives them) that need one, for :func:`decode_into`. Make them once per distinct
    header: a table has few."""
    pairs = ((c, type_decoder(t, options)) for c, t in types.items())
    return tuple((c, d) for c, d in pairs if d is not None)


def decode_into(row: dict[str, Any], decoders: Iterable[tuple[str, Decoder]]) -> None:
    """Decode ``row``'s values in place: ``decoders`` holds only the columns that need it."""
    for column, decode in decoders:
        value = row.get(column)
        if value is not None:
            row[column] = decode(value)


# -- from a Kafka Connect schema -------------------------------------------------------------

_PLAIN_TYPES = {
    "int8": "smallint",
    "int16": "smallint",
    "int32": "integer",
    "int64": "bigint",
    "float": "real",
    "float32": "real",
    "double": "double precision",
    "float64": "double precision",
    "boolean": "boolean",
    "string": "",  # text, json, inet, ranges, enums...: the target's type says which
}
_NAMED_TYPES = {
    "io.debezium.data.Json": "json",
    "io.debezium.data.Uuid": "uuid",
    "io.debezium.data.Xml": "xml",
    "io.debezium.data.Ltree": "ltree",
    "io.debezium.data.Tsvector": "tsvector",
    "io.debezium.data.Enum": "text",
    "io.debezium.data.EnumSet": "text",
}


def schema_decoder(schema: Mapping[str, Any]) -> tuple[Decoder | None, str]:
    """A column's decoder (None: its values are internal already) and PostgreSQL type, from its
    JsonConverter schema (``{"type", "name", "parameters", "items", ...}``). The type is empty
    where the schema does not tell (a plain ``string`` is text, an ``inet``, a range, or
    ``bytea``/``numeric`` written as text by ``binary.handling.mode``/``decimal.handling.mode``):
    the target's own type decides there."""
    kind = schema.get("type")
    name = schema.get("name")
    params = schema.get("parameters") or {}
    if name is None:
        if kind == "bytes":
            return _base64_hex, "bytea"
        if kind == "array":
            items = schema.get("items") or {}
            element, element_type = schema_decoder(items)
            return _array(element), (element_type or "text") + "[]"
        return None, _PLAIN_TYPES.get(str(kind), "")
    if name == "org.apache.kafka.connect.data.Decimal":
        scale = int(params.get("scale", 0))
        precision = params.get("connect.decimal.precision")
        pg = f"numeric({precision},{scale})" if precision is not None else "numeric"
        return _scaled(scale), pg
    if name == "io.debezium.data.VariableScaleDecimal":
        return _variable_scale, "numeric"
    found = _TIME_SCHEMAS.get(name)
    if found is not None:
        return found
    if name == "io.debezium.data.geometry.Point":
        return _point, "point"
    if name == "io.debezium.data.Bits":
        return None, "bit varying"
    return None, _NAMED_TYPES.get(name, _PLAIN_TYPES.get(str(kind), ""))


# -- from a PostgreSQL type and the connector's options --------------------------------------

_TYPMOD = re.compile(r"\((\d+)(?:,(\d+))?\)")
_ALIASES = {
    "timestamp": "timestamp without time zone",
    "timestamptz": "timestamp with time zone",
    "time": "time without time zone",
    "timetz": "time with time zone",
    "decimal": "numeric",
    "int2": "smallint",
    "int4": "integer",
    "int8": "bigint",
}


def type_decoder(pg_type: str, options: Options = DEFAULT_OPTIONS) -> Decoder | None:
    """A column's decoder (None: Debezium writes its values as cdc does) for a column of
    PostgreSQL type ``pg_type`` (as ``format_type`` prints it: ``numeric(10,2)``,
    ``timestamp(3) without time zone``, ``integer[]``) written with ``options``."""
    if pg_type.endswith("[]"):
        return _array(type_decoder(pg_type[:-2], options))
    typmod = _TYPMOD.search(pg_type)
    base = _TYPMOD.sub("", pg_type).strip().lower()
    base = _ALIASES.get(base, base)
    if base == "numeric":
        scale = int(typmod[2] or 0) if typmod else None
        return _numeric(options.decimal, scale)
    if base == "money":
        return _numeric(options.decimal, 2)  # Debezium's money.fraction.digits default
    if base == "bytea":
        return _BINARY[options.binary]
    if base == "date":
        return _date
    if base in ("time without time zone", "timestamp without time zone"):
        return _time_decoder(base, options.time, int(typmod[1]) if typmod else 6)
    if base == "timestamp with time zone":
        return _zoned_timestamp
    if base == "time with time zone":
        return _zoned_time
    if base == "interval":
        return _interval_micros if options.interval == "numeric" else _iso_interval
    if base == "point":
        return _point
    return None


def _time_decoder(base: str, mode: str, precision: int) -> Decoder:
    """``time``/``timestamp`` (PostgreSQL's default ``precision`` is microseconds): ``adaptive``
    modes write milliseconds up to ``(3)``, except ``adaptive_time_microseconds``'s times."""
    if mode == "isostring":
        return _iso_time if base == "time without time zone" else _iso_timestamp
    if base == "time without time zone":
        millis = mode == "connect" or (mode == "adaptive" and precision <= 3)
        return _time_millis if millis else _time_micros
    return _timestamp_millis if mode == "connect" or precision <= 3 else _timestamp_micros


# -- numbers ----------------------------------------------------------------------------------


def _decimal_text(unscaled: int, scale: int) -> str:
    if scale <= 0:
        return str(unscaled * 10**-scale)
    digits = str(abs(unscaled)).rjust(scale + 1, "0")
    return f"{'-' if unscaled < 0 else ''}{digits[:-scale]}.{digits[-scale:]}"


def _unscaled(value: str) -> int:
    return int.from_bytes(base64.b64decode(value), "big", signed=True)


def _scaled(scale: int) -> Decoder:
    """``org.apache.kafka.connect.data.Decimal``: the unscaled two's complement, base64."""

    def decode(value: Any) -> Any:
        if type(value) is not str:
            return _number_text(value)
        return _decimal_text(_unscaled(value), scale)

    return decode


def _variable_scale(value: Any) -> Any:
    """``io.debezium.data.VariableScaleDecimal``: ``{"scale": s, "value": base64}``."""
    if type(value) is not dict:
        return _number_text(value)
    return _decimal_text(_unscaled(value["value"]), int(value["scale"]))


def _number_text(value: Any) -> Any:
    """A numeric written as a double (``decimal.handling.mode=double``) or as text."""
    if type(value) is float:
        text = repr(value)
        return format(Decimal(text), "f") if "e" in text else text
    if type(value) is int:
        return str(value)
    if value == "NAN":  # decimal.handling.mode=string writes BigDecimal's spelling
        return "NaN"
    return value


def _numeric(mode: str, scale: int | None) -> Decoder:
    if mode == "precise":
        # Without a typmod Debezium writes a VariableScaleDecimal, with one a Decimal.
        return _variable_scale if scale is None else _scaled(scale)
    return _number_text


def _float_text(value: float | int) -> str:
    """A float as PostgreSQL prints it (shortest exact, no ``.0`` on integral values)."""
    if type(value) is int:
        return str(value)
    text = repr(value)
    if text.endswith(".0"):
        return text[:-2]
    return {"inf": "Infinity", "-inf": "-Infinity", "nan": "NaN"}.get(text, text)


# -- bytea ------------------------------------------------------------------------------------

# An unchanged TOASTed bytea: Debezium writes its placeholder's bytes in the binary mode.
_UNAVAILABLE_B64 = base64.b64encode(UNAVAILABLE.encode()).decode()
_UNAVAILABLE_HEX = UNAVAILABLE.encode().hex()


def _base64_hex(value: Any) -> Any:
    if value == _UNAVAILABLE_B64:
        return UNAVAILABLE
    try:
        return base64.b64decode(value, validate=True).hex()
    except (binascii.Error, TypeError, ValueError):
        return value  # no Debezium mode writes it: the target refuses it, naming why


def _base64_url_hex(value: Any) -> Any:
    if value in (UNAVAILABLE, _UNAVAILABLE_B64):  # no "+" or "/" in it: the same text
        return UNAVAILABLE
    try:
        return base64.urlsafe_b64decode(value).hex()
    except (binascii.Error, TypeError, ValueError):
        return value


def _hex(value: Any) -> Any:
    text = str(value).lower()
    return UNAVAILABLE if text in (_UNAVAILABLE_HEX, UNAVAILABLE) else text


_BINARY: dict[str, Decoder] = {
    "bytes": _base64_hex,
    "base64": _base64_hex,
    "base64-url-safe": _base64_url_hex,
    "hex": _hex,
}


# -- dates and times --------------------------------------------------------------------------

_DAY_US = 86_400_000_000
# Debezium's values for date/timestamp infinity: PostgreSQL's int32 day numbers past the end,
# moved to 1970 with a Java int overflow, and pgjdbc's DATE_POSITIVE/NEGATIVE_INFINITY.
_DATE_INFINITY = {-2147472692: "infinity", -2147472691: "-infinity"}
_TIMESTAMP_INFINITY = {9223372036825200000: "infinity", -9223372036832400000: "-infinity"}


def _civil(days: int) -> tuple[int, int, int]:
    """(astronomical year, month, day) of a day number from 1970-01-01, any year (H. Hinnant's
    days_from_civil inverse: Python's date stops at year 1)."""
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (month <= 2), month, day


def _date_text(year: int, month: int, day: int) -> tuple[str, str]:
    """The date as PostgreSQL prints it, and the `` BC`` that goes at the very end."""
    if year <= 0:
        return f"{1 - year:04d}-{month:02d}-{day:02d}", " BC"
    return f"{year:04d}-{month:02d}-{day:02d}", ""


def _time_text(micros: int) -> str:
    hours, rest = divmod(micros, 3_600_000_000)
    minutes, rest = divmod(rest, 60_000_000)
    seconds, fraction = divmod(rest, 1_000_000)
    text = f"{hours:02d}:{minutes:02d}:{seconds:02d}"
    return f"{text}.{fraction:06d}".rstrip("0") if fraction else text


def _date(value: Any) -> Any:
    if type(value) is str:
        return _iso_date(value)
    special = _DATE_INFINITY.get(value)
    if special is not None:
        return special
    text, bc = _date_text(*_civil(value))
    return text + bc


def _timestamp_micros(value: Any) -> Any:
    if type(value) is str:
        return _iso_timestamp(value)
    special = _TIMESTAMP_INFINITY.get(value)
    if special is not None:
        return special
    days, micros = divmod(value, _DAY_US)
    text, bc = _date_text(*_civil(days))
    return f"{text} {_time_text(micros)}{bc}"


def _timestamp_millis(value: Any) -> Any:
    if type(value) is not int or value in _TIMESTAMP_INFINITY:
        return _timestamp_micros(value)
    return _timestamp_micros(value * 1000)


def _time_micros(value: Any) -> Any:
    if type(value) is str:
        return _iso_time(value)
    return _time_text(value)  # 86400000000 is 24:00:00, as PostgreSQL prints it


def _time_millis(value: Any) -> Any:
    return _time_micros(value * 1000 if type(value) is int else value)


def _time_nanos(value: Any) -> Any:
    return _time_micros(value // 1000 if type(value) is int else value)


def _timestamp_nanos(value: Any) -> Any:
    return _timestamp_micros(value // 1000 if type(value) is int else value)


_ISO_DATE = re.compile(r"([+-]?\d{4,})-(\d\d)-(\d\d)")
_ISO_TIME = re.compile(r"(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d(?::?\d\d)?)?")
_ISO_TIMESTAMP = re.compile(_ISO_DATE.pattern + "T" + _ISO_TIME.pattern)


def _fraction(digits: str | None) -> str:
    digits = (digits or "")[:6].rstrip("0")
    return "." + digits if digits else ""


def _offset(zone: str | None) -> str:
    """An ISO zone as PostgreSQL prints an offset: ``Z`` is ``+00``, ``+05:30`` ``+05:30``."""
    if not zone or zone == "Z":
        return "+00"
    hours, minutes = zone[:3], zone[3:].lstrip(":")
    return hours if minutes in ("", "00") else f"{hours}:{minutes}"


def _iso_date(value: str) -> Any:
    """``io.debezium.time.IsoDate`` (``2024-01-02Z``; astronomical years)."""
    found = _ISO_DATE.match(value)
    if found is None:
        return value  # infinity, or what the target will refuse
    year, month, day = int(found[1]), int(found[2]), int(found[3])
    if (year, month, day) == (-5877611, 6, 21):
        return "infinity"
    if (year, month, day) == (-5877611, 6, 22):
        return "-infinity"
    text, bc = _date_text(year, month, day)
    return text + bc


def _iso_timestamp(value: Any) -> Any:
    """``io.debezium.time.IsoTimestamp`` (``2024-01-02T03:04:05.123456Z``, the ``Z`` on a
    zoneless value)."""
    if type(value) is not str:
        return _timestamp_micros(value)
    if value.startswith(("+294247-01-10T04:00:25.2", "-290308-12-21T19:59:27.6")):
        return "infinity" if value[0] == "+" else "-infinity"
    found = _ISO_TIMESTAMP.fullmatch(value)
    if found is None:
        return value
    date, bc = _date_text(int(found[1]), int(found[2]), int(found[3]))
    return f"{date} {found[4]}:{found[5]}:{found[6]}{_fraction(found[7])}{bc}"


def _zoned_timestamp(value: Any) -> Any:
    """``io.debezium.time.ZonedTimestamp``: ISO in UTC, ``infinity`` kept."""
    if type(value) is not str:
        return value
    found = _ISO_TIMESTAMP.fullmatch(value)
    if found is None:
        return value  # infinity, -infinity
    date, bc = _date_text(int(found[1]), int(found[2]), int(found[3]))
    time = f"{found[4]}:{found[5]}:{found[6]}{_fraction(found[7])}"
    return f"{date} {time}{_offset(found[8])}{bc}"


def _iso_time(value: Any) -> Any:
    """``io.debezium.time.IsoTime`` (``03:04:05.123456Z``)."""
    if type(value) is not str:
        return _time_micros(value)
    found = _ISO_TIME.fullmatch(value)
    if found is None:
        return value
    return f"{found[1]}:{found[2]}:{found[3]}{_fraction(found[4])}"


def _zoned_time(value: Any) -> Any:
    """``io.debezium.time.ZonedTime``: moved to UTC by Debezium (the offset is lost)."""
    if type(value) is not str:
        return value
    found = _ISO_TIME.fullmatch(value)
    if found is None:
        return value
    return f"{found[1]}:{found[2]}:{found[3]}{_fraction(found[4])}{_offset(found[5])}"


# -- intervals --------------------------------------------------------------------------------


def _interval_text(months: int, days: int, micros: int) -> str:
    """An interval as PostgreSQL prints it with ``IntervalStyle=postgres``."""
    parts: list[str] = []
    before = False  # the field printed last was negative: a positive one then says "+"
    years = abs(months) // 12 * (1 if months >= 0 else -1)
    for value, unit in ((years, "year"), (months - years * 12, "mon"), (days, "day")):
        if value:
            sign = "+" if before and value > 0 else ""
            parts.append(f"{sign}{value} {unit}{'' if value == 1 else 's'}")
            before = value < 0
    if not parts or micros:
        sign = "-" if micros < 0 else "+" if before else ""
        parts.append(sign + _time_text(abs(micros)))
    return " ".join(parts)


def _interval_micros(value: Any) -> Any:
    """``io.debezium.time.MicroDuration``: days and time come back, months cannot."""
    if type(value) is not int:
        return _iso_interval(value)
    days = abs(value) // _DAY_US * (1 if value >= 0 else -1)
    return _interval_text(0, days, value - days * _DAY_US)


_ISO_INTERVAL = re.compile(
    r"P(?:(-?\d+)Y)?(?:(-?\d+)M)?(?:(-?\d+)D)?"
    r"(?:T(?:(-?\d+)H)?(?:(-?\d+)M)?(?:(-?)(\d+)(?:\.(\d{1,9}))?S)?)?"
)


def _iso_interval(value: Any) -> Any:
    """``io.debezium.time.Interval``: ``P1Y2M3DT4H5M6.789S``, each field signed."""
    if type(value) is not str:
        return value
    found = _ISO_INTERVAL.fullmatch(value)
    if found is None:
        return value
    y, mo, d, h, mi, neg, s, f = found.groups()
    seconds = int(s or 0) * 1_000_000 + int((f or "")[:6].ljust(6, "0"))
    micros = (int(h or 0) * 60 + int(mi or 0)) * 60_000_000 + (-seconds if neg else seconds)
    return _interval_text(int(y or 0) * 12 + int(mo or 0), int(d or 0), micros)


# -- geometry and arrays ----------------------------------------------------------------------


def _point(value: Any) -> Any:
    """``io.debezium.data.geometry.Point`` (``{"x", "y", "wkb", "srid"}``) as ``(x,y)``."""
    if type(value) is not dict:
        return value
    return f"({_float_text(value['x'])},{_float_text(value['y'])})"


_NEEDS_QUOTES = re.compile(r'[{}",\\\s]')


def _element_text(value: Any) -> str:
    if value is None:
        return "NULL"
    if type(value) is bool:
        return "t" if value else "f"
    if type(value) is int or type(value) is float:
        return _float_text(value)
    if type(value) is list:
        return _literal(value, None)
    text = str(value)
    if not text or text.upper() == "NULL" or _NEEDS_QUOTES.search(text):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def _literal(items: list[Any], element: Decoder | None) -> str:
    if element is not None:
        items = [v if v is None or type(v) is list else element(v) for v in items]
    return "{" + ",".join(map(_element_text, items)) + "}"


def _array(element: Decoder | None) -> Decoder:
    """A JSON array (one-dimensional arrays) as PostgreSQL's array literal."""

    def decode(value: Any) -> Any:
        if type(value) is not list:
            return value  # a literal already, or the placeholder of an unchanged value
        return _literal(value, element)

    return decode


# Kafka Connect names of Debezium's time types -> (decoder, PostgreSQL type).
_TIME_SCHEMAS: dict[str, tuple[Decoder | None, str]] = {
    "io.debezium.time.Date": (_date, "date"),
    "org.apache.kafka.connect.data.Date": (_date, "date"),
    "io.debezium.time.IsoDate": (_iso_date, "date"),
    "io.debezium.time.Time": (_time_millis, "time"),
    "org.apache.kafka.connect.data.Time": (_time_millis, "time"),
    "io.debezium.time.MicroTime": (_time_micros, "time"),
    "io.debezium.time.NanoTime": (
        lambda v: _time_micros(v // 1000 if type(v) is int else v),
        "time",
    ),
    "io.debezium.time.IsoTime": (_iso_time, "time"),
    "io.debezium.time.Timestamp": (_timestamp_millis, "timestamp"),
    "org.apache.kafka.connect.data.Timestamp": (_timestamp_millis, "timestamp"),
    "io.debezium.time.MicroTimestamp": (_timestamp_micros, "timestamp"),
    "io.debezium.time.NanoTimestamp": (_timestamp_nanos, "timestamp"),
    "io.debezium.time.IsoTimestamp": (_iso_timestamp, "timestamp"),
    "io.debezium.time.ZonedTimestamp": (_zoned_timestamp, "timestamp with time zone"),
    "io.debezium.time.ZonedTime": (_zoned_time, "time with time zone"),
    "io.debezium.time.MicroDuration": (_interval_micros, "interval"),
    "io.debezium.time.Interval": (_iso_interval, "interval"),
}
