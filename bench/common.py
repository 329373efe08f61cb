"""What every benchmark needs: the stack, scratch databases and slots, the processes measured,
Kafka topics read back, the machine's description and the results files.

Positions are WAL LSNs as integers; times are wall-clock seconds (``time.time()``) wherever
they are compared with PostgreSQL's commit times or Kafka's LogAppendTime, all on this machine.
"""

from __future__ import annotations

__all__ = [
    "CLOCK_TICKS",
    "RESULTS",
    "ROOT",
    "CdcProcess",
    "CpuMeter",
    "Kafka",
    "KafkaRecord",
    "Stack",
    "alive",
    "busy_cpu_s",
    "cdc_config",
    "confirmed_lsn",
    "create_pgoutput_slot",
    "create_wal2json_slot",
    "format_lsn",
    "machine",
    "peak_rss_mb",
    "recvlogical",
    "scratch_database",
    "wait_until",
    "write_result",
]

import bisect
import contextlib
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import psycopg
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaError
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
CDC = Path(sys.executable).parent / "cdc"

Conn = psycopg.Connection[Any]


@dataclass(frozen=True, slots=True)
class Stack:
    """The services measured on: the devstack's, from ``scripts/devstack env``."""

    dsn: str
    """An administrative DSN (database ``postgres``); scratch databases are made beside it."""
    kafka: str
    pg_bin: Path
    """Where ``pg_recvlogical`` is."""

    @classmethod
    def from_env(cls) -> Stack:
        try:
            dsn, kafka = os.environ["CDC_TEST_PG_DSN"], os.environ["CDC_TEST_KAFKA"]
        except KeyError as e:
            raise SystemExit(f'{e} is not set: eval "$(scripts/devstack env)" first') from None
        return cls(dsn, kafka, Path(os.environ.get("CDC_DEV_PG_BIN", "/usr/lib/postgresql/15/bin")))


# -- PostgreSQL -------------------------------------------------------------------------------


@contextlib.contextmanager
def scratch_database(stack: Stack, name: str) -> Iterator[str]:
    """A new database; its DSN. Dropped afterwards (FORCE), with every slot made in it."""
    with psycopg.connect(stack.dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_conninfo(stack.dsn, dbname=name)
    finally:
        _drop_database(stack, name)


def _drop_database(stack: Stack, name: str) -> None:
    with psycopg.connect(stack.dsn, autocommit=True) as admin:
        # A slot still in use by a reader that is shutting down cannot be dropped yet.
        deadline = time.monotonic() + 30
        while True:
            admin.execute(
                "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots"
                " WHERE database = %s AND active_pid IS NOT NULL",
                (name,),
            )
            try:
                admin.execute(
                    "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
                    " WHERE database = %s",
                    (name,),
                )
                break
            except psycopg.errors.ObjectInUse:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def create_wal2json_slot(conn: Conn, slot: str) -> None:
    conn.execute("SELECT pg_create_logical_replication_slot(%s, 'wal2json')", (slot,))


def create_pgoutput_slot(conn: Conn, slot: str, publication: str, tables: Sequence[str]) -> None:
    """A pgoutput slot and a publication ``FOR TABLE tables``, for Debezium."""
    conn.execute(
        sql.SQL("CREATE PUBLICATION {} FOR TABLE {}").format(
            sql.Identifier(publication), sql.SQL(", ").join(map(sql.Identifier, tables))
        )
    )
    conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,))


def confirmed_lsn(conn: Conn, slot: str) -> int:
    row = conn.execute(
        "SELECT confirmed_flush_lsn - '0/0'::pg_lsn FROM pg_replication_slots WHERE slot_name = %s",
        (slot,),
    ).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def format_lsn(lsn: int) -> str:
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def recvlogical(
    stack: Stack, dsn: str, slot: str, end_lsn: int, options: Mapping[str, str]
) -> float:
    """Seconds ``pg_recvlogical`` takes to decode its slot up to ``end_lsn`` into /dev/null."""
    params = conninfo_to_dict(dsn)
    started = time.monotonic()
    subprocess.run(
        [
            str(stack.pg_bin / "pg_recvlogical"),
            *("-h", str(params.get("host", "127.0.0.1")), "-p", str(params.get("port", 5432))),
            *("-U", str(params.get("user", "postgres")), "-d", str(params["dbname"])),
            *("--slot", slot, "--start", "-E", format_lsn(end_lsn), "-f", "/dev/null"),
            *(x for k, v in options.items() for x in ("-o", f"{k}={v}")),
        ],
        check=True,
    )
    return time.monotonic() - started


# -- the machine's CPU -------------------------------------------------------------------------


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def busy_cpu_s(stat: str) -> float:
    """CPU-seconds the machine has been busy since boot, every core and process (PostgreSQL's,
    Kafka's, the reader's, the kernel's), from ``/proc/stat``'s first line: all but idle and
    iowait (guest time is within user time already)."""
    fields = stat.split("\n", 1)[0].split()
    if fields[0] != "cpu":
        raise ValueError(f"not /proc/stat: {stat[:40]!r}")
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


class CpuMeter:
    """The machine's busy CPU time, sampled on a thread every ``period_s``, so that a run's
    figures can be asked for afterwards over the very interval its rate is timed on: the
    readers are timed from their first record on Kafka, known only once they are done.

    On a machine whose every core is busy, a pipeline can only go faster by taking less CPU
    per change: cores busy (of ``os.cpu_count()``) and CPU-µs per change tell that apart from
    one that waits."""

    def __init__(self, period_s: float = 0.05, stat: Path = Path("/proc/stat")) -> None:
        self.period_s = period_s
        self._stat = stat
        self._samples: list[tuple[float, float]] = []  # (time.time(), busy CPU-seconds)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-meter", daemon=True)

    def __enter__(self) -> CpuMeter:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            self.sample()

    def sample(self, at: float | None = None, busy: float | None = None) -> None:
        """Record the busy CPU-seconds now (or ``busy`` at ``at``, for tests)."""
        at = time.time() if at is None else at
        busy = busy_cpu_s(self._stat.read_text()) if busy is None else busy
        self._samples.append((at, busy))  # one append: the sampling thread's are atomic

    def _at(self, t: float) -> float:
        """Busy CPU-seconds at wall-clock time ``t``, interpolated between the samples around
        it (held at the first or last sample outside them)."""
        samples = self._samples[:]  # the thread may append meanwhile
        i = bisect.bisect_left(samples, t, key=lambda sample: sample[0])
        if i == 0:
            return samples[0][1]
        if i == len(samples):
            return samples[-1][1]
        (t0, busy0), (t1, busy1) = samples[i - 1], samples[i]
        return busy0 + (busy1 - busy0) * (t - t0) / (t1 - t0)

    def use(self, start: float, end: float, changes: int) -> dict[str, float]:
        """From wall-clock ``start`` to ``end``: cores busy on average, and CPU-µs per change."""
        if not self._samples or end <= start:
            raise ValueError(f"no CPU samples for {start:.3f}..{end:.3f}")
        busy = self._at(end) - self._at(start)
        return {"cores_busy": busy / (end - start), "cpu_us_per_change": busy / changes * 1e6}


# -- processes --------------------------------------------------------------------------------


def _status(pid: int) -> dict[str, str]:
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except FileNotFoundError:
        return {}
    return dict(line.split(":\t", 1) for line in lines if ":\t" in line)


def alive(pid: int) -> bool:
    """Whether the process runs (a zombie, dead but not yet waited for, does not)."""
    return _status(pid).get("State", "Z").strip()[:1] not in ("Z", "X")


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set so far (VmHWM), in MiB: read it before stopping it."""
    return int(_status(pid).get("VmHWM", "0 kB").split()[0]) / 1024


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user and system, every thread) the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_until(
    done: Callable[[], bool],
    timeout_s: float,
    what: str,
    watch: Sequence[CdcProcess | int] = (),
    poll_s: float = 0.02,
) -> float:
    """Poll ``done`` until true; the wall-clock time it first was. Fails when a watched process
    (a :class:`CdcProcess`, or a pid) dies, or after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not done():
        for w in watch:
            if isinstance(w, CdcProcess):
                w.check()
            elif not alive(w):
                raise RuntimeError(f"process {w} died while waiting for {what}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} after {timeout_s:.0f} s")
        time.sleep(poll_s)
    return time.time()


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string for anything written here
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, Mapping):  # an inline table
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no TOML for {value!r}")


def cdc_config(
    kafka: str,
    *,
    client: str = "kafka-python",
    consumer: str = "kafka-python",
    connectors: Sequence[Mapping[str, object]] = (),
    sinks: Sequence[Mapping[str, object]] = (),
) -> str:
    """A cdc configuration file's text."""
    lines = [
        "[kafka]",
        f"bootstrap_servers = {_toml(kafka)}",
        "[kafka.producer]",
        f"client = {_toml(client)}",
        "[kafka.consumer]",
        f"client = {_toml(consumer)}",
    ]
    for section, tables in (("connectors", connectors), ("sinks", sinks)):
        for table in tables:
            lines.append(f"[[{section}]]")
            lines += [f"{k} = {_toml(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


class CdcProcess:
    """``cdc run -c FILE [ARGS]`` as a child process; its stderr kept in ``workdir/NAME.log``."""

    def __init__(self, name: str, config: str, workdir: Path, args: Sequence[str] = ()) -> None:
        self.name = name
        self.config_path = workdir / f"{name}.toml"
        self.log_path = workdir / f"{name}.log"
        self.config_path.write_text(config)
        self.args = list(args)
        self._proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        """Wall-clock time of the launch."""

    @property
    def pid(self) -> int:
        assert self._proc is not None, "not started"
        return self._proc.pid

    def start(self) -> CdcProcess:
        with self.log_path.open("wb") as log:
            self.started = time.time()
            self._proc = subprocess.Popen(
                [str(CDC), "run", "-c", str(self.config_path), *self.args],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        return self

    def _exited(self) -> RuntimeError:
        assert self._proc is not None
        tail = "\n".join(self.log_path.read_text(errors="replace").splitlines()[-30:])
        return RuntimeError(f"cdc run ({self.name}) exited {self._proc.returncode}:\n{tail}")

    def check(self) -> None:
        """Raise if the process has exited (it should run until stopped)."""
        assert self._proc is not None, "not started"
        if self._proc.poll() is not None:
            raise self._exited()

    def wait_exit(self, timeout_s: float) -> float:
        """Wait for a process that ends by itself (exit 0 expected); its peak RSS in MiB,
        sampled while it runs since it is gone once it has exited."""
        assert self._proc is not None, "not started"
        peak = 0.0
        deadline = time.monotonic() + timeout_s
        while self._proc.poll() is None:
            peak = max(peak, peak_rss_mb(self.pid))
            if time.monotonic() > deadline:
                raise TimeoutError(f"cdc run ({self.name}) still running after {timeout_s:.0f} s")
            time.sleep(0.1)
        if self._proc.returncode != 0:
            raise self._exited()
        return peak

    def peak_rss_mb(self) -> float:
        self.check()
        return peak_rss_mb(self.pid)

    def stop(self) -> None:
        if self._proc is None or self._proc.poll() is not None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(20)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()

    def __enter__(self) -> CdcProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# -- Kafka ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KafkaRecord:
    offset: int
    timestamp_ms: int
    """The broker's LogAppendTime on the benchmark's topics."""
    value: bytes | None


class Kafka:
    """Topics made for a run, and the records read back from them (partition 0)."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)

    def close(self) -> None:
        self.consumer.close()
        self.admin.close()

    def create_topics(self, topics: Sequence[str]) -> None:
        """One partition each, stamped by the broker (LogAppendTime): a record's timestamp is
        when Kafka took it, whichever client sent it, so nothing needs to tail the topic."""
        config = {"message.timestamp.type": "LogAppendTime"}
        self.admin.create_topics([NewTopic(t, 1, 1, topic_configs=config) for t in topics])

    def delete_topics(self, prefix: str) -> None:
        doomed = [t for t in self.admin.list_topics() if t.startswith(prefix)]
        if doomed:
            self.admin.delete_topics(doomed)

    def delete_groups(self, groups: Sequence[str]) -> None:
        with contextlib.suppress(KafkaError):
            self.admin.delete_groups(list(groups))

    def end_offset(self, topic: str) -> int:
        tp = TopicPartition(topic, 0)
        return int(self.consumer.end_offsets([tp])[tp])

    def records(self, topic: str, start: int = 0, end: int | None = None) -> list[KafkaRecord]:
        """Records ``[start, end)`` (``end``: the topic's end now)."""
        tp = TopicPartition(topic, 0)
        end = self.end_offset(topic) if end is None else end
        self.consumer.assign([tp])
        self.consumer.seek(tp, start)
        out: list[KafkaRecord] = []
        while len(out) < end - start:
            for batch in self.consumer.poll(timeout_ms=1000, max_records=10_000).values():
                for r in batch:
                    if r.offset < end:
                        if r.timestamp_type != 1:
                            raise RuntimeError(f"{topic} is not stamped with LogAppendTime")
                        out.append(KafkaRecord(r.offset, r.timestamp, r.value))
        return out

    def timestamp_s(self, topic: str, offset: int) -> float:
        """When the record at ``offset`` was appended, in seconds since the epoch."""
        return self.records(topic, offset, offset + 1)[0].timestamp_ms / 1000


# -- results ----------------------------------------------------------------------------------


def _first(path: str, pattern: str) -> str | None:
    with contextlib.suppress(OSError):
        for line in Path(path).read_text().splitlines():
            if found := re.match(pattern, line):
                return found.group(1).strip()
    return None


def _command(*args: str) -> str | None:
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        done = subprocess.run(args, capture_output=True, text=True, check=True, cwd=ROOT)
        return (done.stdout + done.stderr).strip()
    return None


def machine(stack: Stack) -> dict[str, Any]:
    """What the results were measured on."""
    mem_kb = _first("/proc/meminfo", r"MemTotal:\s+(\d+)")
    with psycopg.connect(stack.dsn) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    devstack = _command(str(ROOT / "scripts" / "devstack"), "status") or ""
    kafka = re.search(r"^kafka:.*\bversion=(\S+)", devstack, re.MULTILINE)
    java = _command("java", "-version")
    head = _command("git", "rev-parse", "--short", "HEAD")
    dirty = _command("git", "status", "--porcelain", "--untracked-files=no")
    return {
        "cpus": os.cpu_count(),
        "cpu_model": _first("/proc/cpuinfo", r"model name\s*:\s*(.*)"),
        "ram_gib": round(int(mem_kb) / 1024**2, 1) if mem_kb else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "postgresql": row[0] if row else None,
        "kafka": kafka.group(1) if kafka else None,
        "java": java.splitlines()[0] if java else None,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "git": f"{head}{' (modified)' if dirty else ''}" if head else None,
        "services": "PostgreSQL, Kafka, the programs measured and the benchmark share the machine",
    }


def write_result(results: Path, name: str, data: Mapping[str, Any]) -> Path:
    """``results/<date>-<name>.json``."""
    results.mkdir(parents=True, exist_ok=True)
    out = results / f"{datetime.date.today()}-{name}.json"
    out.write_text(json.dumps(data, indent=2) + "\n")
    return out
