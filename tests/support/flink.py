"""Flink SQL as a consumer of cdc's topics: build, run, parse, materialise.

The Java side is ``tests/consumers/flink`` (Flink 2.2 in local mode, its Kafka connector and
``debezium-json``). It reads one topic from the earliest to the latest offset into a table of
the given columns and prints every changelog row; :func:`run` returns them and
:func:`materialise` applies them, as a Flink sink would, to a multiset of rows::

    changes = run(kafka, "prefix.public.t", [("id", "BIGINT"), ("d", "DATE")])
    rows = materialise(changes)  # Counter of row tuples

Values come as the Java side prints them (see FlinkChangelog.java): numbers, DECIMAL as a
decimal string, BYTES in base64, DATE/TIME/TIMESTAMP as ISO text (TIMESTAMP_LTZ in UTC with a
``Z``), arrays as lists. :func:`pg_text` writes one back in PostgreSQL's text output.

Smoke check (needs Kafka; reads any topic of Debezium-shaped JSON)::

    .venv/bin/python -m tests.support.flink HOST:PORT TOPIC 'id BIGINT, t STRING'
"""

from __future__ import annotations

import base64
import fcntl
import os
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bench.debezium_engine import BuildError, mvn_package

ROOT = Path(__file__).resolve().parents[2]
PROJECT = ROOT / "tests" / "consumers" / "flink"
TARGET = PROJECT / "target"
JAR = TARGET / "flink-changelog.jar"
CLASSPATH = TARGET / "classpath.txt"  # absolute paths into the cache's m2, written by the build
MAIN_CLASS = "cdc.consumers.FlinkChangelog"

# C1 only and the serial collector: a short job on 2 cores starts faster without C2 compiling
# in the background (measured 8 s against 12 s a run).
JVM_OPTIONS = ("-Xmx768m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC")
RUN_TIMEOUT = 240.0

ISO_TIMESTAMPS = {"debezium-json.timestamp-format.standard": "ISO-8601"}
"""The format option for cdc's ISO timestamps (Flink's default, SQL, wants a space, no T)."""


class FlinkError(RuntimeError):
    """Building or running the Flink consumer failed."""


def cache_dir() -> Path:
    """The devstack cache; its ``m2`` is the private Maven repository (as scripts/devstack)."""
    return Path(os.environ.get("CDC_DEV_CACHE") or Path.home() / ".cache" / "cdc-devstack")


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _stale() -> bool:
    if not JAR.is_file() or not CLASSPATH.is_file():
        return True
    built = JAR.stat().st_mtime
    sources = [PROJECT / "pom.xml", *(PROJECT / "src").rglob("*.java")]
    if any(s.stat().st_mtime > built for s in sources):
        return True
    # A cache emptied since (another CDC_DEV_CACHE, a purge) needs its jars fetched again.
    return not all(Path(p).is_file() for p in _listed())


def _listed() -> list[str]:
    return [p for p in CLASSPATH.read_text().strip().split(os.pathsep) if p]


def build(*, force: bool = False) -> list[Path]:
    """Build tests/consumers/flink if its jar is missing or older than its sources; the classpath.

    ``mvn package`` with the devstack cache's ``m2`` as local repository: a fresh machine
    fetches Flink, its Kafka connector and their dependencies (about 145 MB) from Maven Central
    once. Builds are serialised by a lock file, as concurrent tests may ask at once.
    """
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / "flink-consumer.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if force or _stale():
            _mvn_package(cache)
        return [JAR, *(Path(p) for p in _listed())]


def _mvn_package(cache: Path) -> None:
    try:
        mvn_package(PROJECT, JAR, CLASSPATH, cache, "mvn-flink-consumer.log")
    except BuildError as e:
        raise FlinkError(str(e)) from None


@dataclass(frozen=True)
class Change:
    """One changelog row: Flink's RowKind (``+I``, ``-U``, ``+U``, ``-D``) and the values."""

    kind: str
    row: tuple[Any, ...]


@dataclass
class Run:
    """What one run printed: the changes, its phases (ms since JVM start), its wall time (s)."""

    changes: list[Change]
    phases: dict[str, int]
    seconds: float
    stderr: str


def quote(name: str) -> str:
    """A Flink SQL identifier (backquoted: ``by``, ``at``, ``t`` ... are reserved words)."""
    return "`" + name.replace("`", "``") + "`"


def run(
    kafka: str,
    topic: str,
    columns: Sequence[tuple[str, str]],
    options: Mapping[str, str] | None = None,
    *,
    timeout: float = RUN_TIMEOUT,
) -> Run:
    """Read ``topic`` to its current end with Flink SQL into a table of ``columns``.

    ``columns`` are (name, Flink type); ``options`` go into the table's WITH clause (after
    the defaults: kafka, debezium-json, earliest to latest offset). Raises FlinkError with the
    JVM's stderr when the job fails.
    """
    classpath = build()
    cmd = [
        "java", *JVM_OPTIONS, "-cp", os.pathsep.join(map(str, classpath)), MAIN_CLASS,
        "--bootstrap", kafka, "--topic", topic,
        "--columns", ", ".join(f"{quote(name)} {kind}" for name, kind in columns),
    ]  # fmt: skip
    for key, value in (options or {}).items():
        cmd += ["--option", f"{key}={value}"]
    start = time.monotonic()
    try:
        done = subprocess.run(
            cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as e:
        err = (e.stderr or b"").decode(errors="replace")
        raise FlinkError(f"Flink did not finish in {timeout:.0f} s:\n{_tail(err)}") from e
    seconds = time.monotonic() - start
    stderr = done.stderr.decode(errors="replace")
    if done.returncode != 0:
        raise FlinkError(f"Flink exited {done.returncode}:\n{_cause(stderr)}")
    changes = [parse(line) for line in done.stdout.splitlines() if line.strip()]
    phases = {
        m.group(2): int(m.group(1))
        for m in re.finditer(r"^flink-changelog: (\d+) ms: (.*)$", stderr, re.M)
    }
    return Run(changes, phases, seconds, stderr)


def _cause(stderr: str) -> str:
    """The exception lines of a Java stack trace (no frames), which name what Flink refused."""
    lines = [ln for ln in stderr.splitlines() if not ln.lstrip().startswith(("at ", "..."))]
    return _tail("\n".join(ln for ln in lines if not ln.startswith("SLF4J")), 30)


def parse(line: bytes | str) -> Change:
    """One line the Java side printed."""
    data = orjson.loads(line)
    return Change(str(data["op"]), tuple(data["row"]))


def _hashable(value: Any) -> Any:
    return tuple(_hashable(v) for v in value) if isinstance(value, list) else value


def materialise(changes: Iterable[Change]) -> Counter[tuple[Any, ...]]:
    """Apply the changelog to a multiset of rows, as a Flink sink without a key would.

    ``-U`` and ``-D`` retract a row equal to their values in every column: a before image that
    is incomplete or differs from what was inserted retracts nothing, which raises here.
    """
    rows: Counter[tuple[Any, ...]] = Counter()
    for n, change in enumerate(changes):
        row = tuple(_hashable(v) for v in change.row)
        if change.kind in ("+I", "+U"):
            rows[row] += 1
        elif change.kind in ("-U", "-D"):
            if rows[row] == 0:
                raise AssertionError(f"change {n} ({change.kind}) retracts a row not there: {row}")
            rows[row] -= 1
            if rows[row] == 0:
                del rows[row]
        else:
            raise AssertionError(f"change {n}: unknown row kind {change.kind}")
    return rows


# --------------------------------------------------------------------------- values


def _pg_date(iso: str) -> tuple[str, str]:
    """ISO ``[+-]YYYY-MM-DD`` (astronomical years) as PostgreSQL's date text and era suffix."""
    m = re.fullmatch(r"([+-]?)(\d{4,})-(\d\d)-(\d\d)", iso)
    if m is None:
        raise ValueError(f"not an ISO date: {iso!r}")
    year = int(m.group(1) + m.group(2))
    if year <= 0:
        return f"{1 - year:04d}-{m.group(3)}-{m.group(4)}", " BC"
    return f"{year:04d}-{m.group(3)}-{m.group(4)}", ""


def _pg_time(iso: str) -> str:
    """``HH:MM:SS.ffffff`` with PostgreSQL's trimming of the fraction's trailing zeros."""
    whole, _, fraction = iso.partition(".")
    fraction = fraction.rstrip("0")
    return f"{whole}.{fraction}" if fraction else whole


def _pg_array_element(value: str) -> str:
    if value == "" or value.upper() == "NULL" or re.search(r'[{}," \\\s]', value):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return value


def pg_text(flink_type: str, value: Any) -> str | None:
    """A value as the Java side printed it for ``flink_type``, in PostgreSQL's text output
    (session TimeZone UTC, DateStyle ISO), for comparison with the source's rows."""
    if value is None:
        return None
    kind = flink_type.upper()
    if kind == "BOOLEAN":
        return "t" if value else "f"
    if kind == "BYTES":
        return "\\x" + base64.b64decode(value, validate=True).hex()
    if kind == "DATE":
        date, era = _pg_date(value)
        return date + era
    if kind.startswith(("TIMESTAMP_LTZ", "TIMESTAMP")):
        local = value.removesuffix("Z")
        day, _, clock = local.partition("T")
        date, era = _pg_date(day)
        zone = "+00" if kind.startswith("TIMESTAMP_LTZ") else ""
        return f"{date} {_pg_time(clock)}{zone}{era}"
    if kind.startswith("TIME"):
        return _pg_time(value)
    if kind.startswith("ARRAY"):
        items = ("NULL" if v is None else _pg_array_element(str(v)) for v in value)
        return "{" + ",".join(items) + "}"
    return str(value)


def _main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    kafka, topic, spec = argv
    # Commas inside parentheses belong to a type: DECIMAL(38, 18).
    names_types = [c.strip().split(None, 1) for c in re.split(r",(?![^(]*\))", spec)]
    result = run(kafka, topic, [(n, t) for n, t in names_types], ISO_TIMESTAMPS)
    for change in result.changes:
        print(change.kind, list(change.row))
    print(f"{len(result.changes)} changes in {result.seconds:.1f} s; phases {result.phases}")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
