"""``values = "debezium"``: each type as Debezium 3.6's PostgreSQL connector writes it, under its
four options (``decimal.handling.mode``, ``time.precision.mode``, ``binary.handling.mode``,
``interval.handling.mode``), from cdc's internal form (PostgreSQL's text). Checked value for value
against what Debezium 3.6.1 wrote for the same rows (tests/fixtures/debezium); its losses
(infinite dates as far-off days, ``24:00:00`` as midnight, numeric ``NaN`` as null, ``timetz`` in
UTC, ``money`` without its symbol) are its own, reproduced.
"""

from __future__ import annotations

__all__ = ["OPTIONS", "check", "encoder", "epoch_days", "wkb_point"]

import base64
import re
import struct
from collections.abc import Callable
from decimal import ROUND_DOWN, Decimal
from typing import TYPE_CHECKING, Any

from cdc.values import exact
from cdc.values.types import base_type

if TYPE_CHECKING:
    from cdc.values import ValueMode

OPTIONS = {
    "decimal": ("precise", "string", "double"),
    "time": ("adaptive", "adaptive_time_microseconds", "connect", "isostring"),
    "binary": ("bytes", "base64", "base64-url-safe", "hex"),
    "interval": ("numeric", "string"),
}


def check(mode: ValueMode) -> None:
    for option, allowed in OPTIONS.items():
        if getattr(mode, option) not in allowed:
            raise ValueError(
                f"{option} handling mode {getattr(mode, option)!r} is none of {allowed}"
            )


# Days and microseconds since 1970-01-01 of PostgreSQL's texts (proleptic Gregorian, any year).


def epoch_days(year: int, month: int, day: int) -> int:
    """Days from 1970-01-01 to a date of the astronomical ``year`` (Hinnant's days_from_civil)."""
    year -= month <= 2
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def civil(days: int) -> tuple[int, int, int]:
    """The inverse of :func:`epoch_days`."""
    days += 719468
    era = days // 146097
    doe = days - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + (3 if mp < 10 else -9)
    return yoe + era * 400 + (month <= 2), month, day


def _date_parts(text: str) -> tuple[int, int, int]:
    """Astronomical year, month, day of PostgreSQL's ``2024-01-02`` / ``0001-01-01 BC``."""
    bc = text.endswith(" BC")
    body = text[:-3] if bc else text
    year, month, day = int(body[:-6]), int(body[-5:-3]), int(body[-2:])
    return (1 - year if bc else year), month, day


def _clock_micros(clock: str) -> int:
    hours, minutes, seconds = clock.split(":")
    whole, _, frac = seconds.partition(".")
    return ((int(hours) * 60 + int(minutes)) * 60 + int(whole)) * 1_000_000 + int(
        frac.ljust(6, "0") or 0
    )


# PostgreSQL's infinite dates as Debezium writes them: the server's sentinels (INT_MAX, INT_MIN
# days since 2000, which overflow a Java int on the way to 1970) and pgjdbc's infinite timestamps.
_DATE_INFINITY = {"infinity": -2147472692, "-infinity": -2147472691}
_TS_INFINITY = {"infinity": 9223372036825200000, "-infinity": -9223372036832400000}


def _days(text: str) -> int:
    if text in _DATE_INFINITY:
        return _DATE_INFINITY[text]
    return epoch_days(*_date_parts(text))


def _iso_day(days: int) -> str:
    year, month, day = civil(days)
    if year > 9999:
        return f"+{year}-{month:02d}-{day:02d}"
    if year < 0:
        return f"-{-year:04d}-{month:02d}-{day:02d}"
    return f"{year:04d}-{month:02d}-{day:02d}"


def _iso_clock(micros: int) -> str:
    seconds, frac = divmod(micros, 1_000_000)
    minutes, second = divmod(seconds, 60)
    hour, minute = divmod(minutes, 60)
    text = f"{hour:02d}:{minute:02d}:{second:02d}"
    return text + f".{frac:06d}".rstrip("0") if frac else text


def _ts_micros(text: str) -> int:
    if text in _TS_INFINITY:
        return _TS_INFINITY[text]
    bc = text.endswith(" BC")
    body = text[:-3] if bc else text
    day, _, clock = body.partition(" ")
    days = _days(day + (" BC" if bc else ""))
    return days * 86_400_000_000 + _clock_micros(clock)


def _iso_from_micros(micros: int) -> str:
    days, rest = divmod(micros, 86_400_000_000)
    return f"{_iso_day(days)}T{_iso_clock(rest)}Z"


def _date(time: str) -> Callable[[str], Any]:
    if time == "isostring":
        return lambda text: _iso_day(_days(text)) + "Z"
    return _days


def _time(time: str, precision: int | None) -> Callable[[str], Any]:
    if time == "isostring":
        return lambda text: _iso_clock(_clock_micros(text) % 86_400_000_000) + "Z"
    millis = time == "connect" or (time == "adaptive" and precision is not None and precision <= 3)
    if millis:
        return lambda text: _clock_micros(text) // 1000
    return _clock_micros


def _timestamp(time: str, precision: int | None) -> Callable[[str], Any]:
    if time == "isostring":
        return lambda text: _iso_from_micros(_ts_micros(text))
    if time == "connect" or (precision is not None and precision <= 3):
        # infinities too: Debezium takes the milliseconds of pgjdbc's far-off instants
        return lambda text: _ts_micros(text) // 1000
    return _ts_micros


def _timestamptz(precision: int | None) -> Callable[[str], str]:
    """``io.debezium.time.ZonedTimestamp``: ISO in UTC with exactly the column's scale of
    fraction digits (pgjdbc's scale of a timestamptz without one is 6; 0 means as many as the
    value needs), as Debezium formats it (``-4712-01-01T00:00:00.000000Z``)."""
    width = 6 if precision is None else precision
    if not 0 < width <= 9:
        return exact.iso_timestamptz

    def encode(text: str) -> str:
        if text in exact.INFINITIES:
            return text
        iso = exact.iso_timestamptz(text)
        whole, _, fraction = iso[:-1].partition(".")
        return f"{whole}.{fraction.ljust(width, '0')[:width]}Z"

    return encode


_TZ = re.compile(r"([+-])(\d\d)(?::(\d\d))?(?::(\d\d))?$")


def _timetz(text: str) -> str:
    """``io.debezium.time.ZonedTime``: the time moved to UTC (the offset is lost)."""
    match = _TZ.search(text)
    if match is None:
        raise ValueError(f"not a timetz: {text!r}")
    sign, hours, minutes, seconds = match.groups()
    offset = (int(hours) * 3600 + int(minutes or 0) * 60 + int(seconds or 0)) * 1_000_000
    local = _clock_micros(text[: match.start()])
    utc = (local - offset if sign == "+" else local + offset) % 86_400_000_000
    return _iso_clock(utc) + "Z"


_DAYS_PER_MONTH = 30.4375  # 365.25 / 12, io.debezium.time.MicroDuration.DAYS_PER_MONTH_AVG
_LONG = (-(2**63), 2**63 - 1)


def _interval_micros(text: str) -> int:
    """``io.debezium.time.MicroDuration``: Debezium's ``durationMicros`` of pgjdbc's
    ``PGInterval`` fields, in doubles as it computes them (``00:00:00.000249`` is 248), the
    Java cast to long saturating."""
    months, days, micros = exact.interval_parts(text)
    hours, rest = exact.trunc_div(micros, 3_600_000_000)
    minutes, rest = exact.trunc_div(rest, 60_000_000)
    whole, fraction = exact.trunc_div(rest, 1_000_000)
    seconds = whole + fraction / 1_000_000
    total = (((months * _DAYS_PER_MONTH + days) * 24 + hours) * 60 + minutes) * 60 + seconds
    return max(_LONG[0], min(_LONG[1], int(total * 1e6)))


def _interval_iso(text: str) -> str:
    """``interval.handling.mode=string``: Debezium's ``Interval.toIsoString`` of pgjdbc's
    ``PGInterval`` fields, the seconds as ``BigDecimal.valueOf`` their double (cut to 9
    decimals), so ``-00:00:01.003691`` is ``-1.003690999S`` as in Debezium."""
    months, days, micros = exact.interval_parts(text)
    years, months = exact.trunc_div(months, 12)
    hours, rest = exact.trunc_div(micros, 3_600_000_000)
    minutes, rest = exact.trunc_div(rest, 60_000_000)
    whole, fraction = exact.trunc_div(rest, 1_000_000)
    seconds = Decimal(repr(whole + fraction / 1_000_000))  # Double.toString's digits
    exponent = seconds.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -9:
        seconds = seconds.quantize(_NANO, rounding=ROUND_DOWN)
    plain = format(seconds.normalize(), "f")
    return f"P{years}Y{months}M{days}DT{hours}H{minutes}M{plain}S"


_NANO = Decimal("1e-9")


def _unscaled(text: str, scale: int) -> str:
    """``org.apache.kafka.connect.data.Decimal``'s bytes of a decimal text at ``scale`` (two's
    complement, big-endian, fewest bytes), base64 as the JSON converter writes them. Made from the
    digits: a Decimal would round past its context's 28 digits."""
    whole, _, frac = text.partition(".")
    unscaled = int(whole + frac[:scale].ljust(scale, "0"))
    if whole.startswith("-") and unscaled == 0 and not whole.strip("-0"):
        unscaled = 0
    length = max(1, (unscaled + (unscaled < 0)).bit_length() // 8 + 1)
    return base64.b64encode(unscaled.to_bytes(length, "big", signed=True)).decode()


def _scale(text: str) -> int:
    """An unconstrained numeric's scale as Debezium writes it: without the fraction's trailing
    zeros (``1.10`` has scale 1)."""
    _, _, frac = text.partition(".")
    return len(frac.rstrip("0"))


_SPECIAL_NAMES = {"NaN": "NAN", "Infinity": "POSITIVE_INFINITY", "-Infinity": "NEGATIVE_INFINITY"}


def _numeric(decimal: str, scale: int | None) -> Callable[[str], Any]:
    if decimal == "string":  # SpecialValueDecimal's names for the special values
        return lambda text: _SPECIAL_NAMES.get(text, text)
    if decimal == "double":
        return lambda text: text if text in ("NaN", "Infinity", "-Infinity") else float(text)
    if scale is not None:
        return lambda text: None if not text[-1:].isdigit() else _unscaled(text, scale)
    return lambda text: (
        None
        if not text[-1:].isdigit()
        else {"scale": _scale(text), "value": _unscaled(text, _scale(text))}
    )


_MONEY_JUNK = re.compile(r"[^0-9.\-]")


def _money(decimal: str) -> Callable[[str], Any]:
    """Money is printed with the server's currency symbol and separators (lc_monetary); Debezium
    writes the number, with scale 2."""

    def number(text: str) -> Decimal:
        negative = text.startswith("-") or text.startswith("(")
        digits = _MONEY_JUNK.sub("", text).lstrip("-")
        return -Decimal(digits) if negative else Decimal(digits)

    if decimal == "string":
        return lambda text: str(number(text))
    if decimal == "double":
        return lambda text: float(number(text))
    return lambda text: _unscaled(f"{number(text):.2f}", 2)


def _binary(binary: str) -> Callable[[str], str]:
    if binary == "hex":
        return str
    if binary == "base64-url-safe":
        return lambda digits: base64.urlsafe_b64encode(bytes.fromhex(digits)).decode()
    return exact.hex_to_b64  # bytes: the JSON converter writes base64; base64: the same text


def wkb_point(x: float, y: float) -> str:
    """A point's well-known binary (little-endian), base64."""
    return base64.b64encode(struct.pack("<BIdd", 1, 1, x, y)).decode()


def _point(text: str) -> dict[str, Any]:
    x, y = (float(v) for v in text.strip("()").split(","))
    return {"x": x, "y": y, "wkb": wkb_point(x, y), "srid": None}


def _scalar(name: str, modifiers: tuple[int, ...], mode: ValueMode) -> Callable[[Any], Any] | None:
    precision = modifiers[0] if modifiers else None
    if name == "numeric":
        return _numeric(
            mode.decimal, modifiers[1] if len(modifiers) > 1 else (0 if modifiers else None)
        )
    if name == "money":
        return _money(mode.decimal)
    if name == "bytea":
        return _binary(mode.binary)
    if name == "date":
        return _date(mode.time)
    if name == "time without time zone":
        return _time(mode.time, precision)
    if name == "timestamp without time zone":
        return _timestamp(mode.time, precision)
    if name == "timestamp with time zone":
        return _timestamptz(precision)
    if name == "time with time zone":
        return _timetz
    if name == "interval":
        return _interval_iso if mode.interval == "string" else _interval_micros
    if name == "point":
        return _point
    return None


def _element(name: str, modifiers: tuple[int, ...], mode: ValueMode) -> Callable[[str], Any]:
    if name in ("smallint", "integer", "bigint", "oid"):
        return int
    if name in ("real", "double precision"):
        return lambda t: t if t in ("NaN", "Infinity", "-Infinity") else float(t)
    if name == "boolean":
        return lambda t: t == "t"
    if name == "bytea":
        binary = _binary(mode.binary)
        return lambda t: binary(t[2:])
    return _scalar(name, modifiers, mode) or str


def encoder(mode: ValueMode, type_name: str) -> Callable[[Any], Any] | None:
    """Debezium's encoder of a column of ``type_name`` under ``mode``'s options; None when the
    value travels as cdc's decoders give it."""
    name, modifiers, array = base_type(type_name)
    if array:
        if name == "box":
            return None
        return exact.array_encoder(_element(name, modifiers, mode))
    return _scalar(name, modifiers, mode)
