"""Debezium's PostgreSQL connector (pgoutput) in the embedded engine, for benchmarks beside cdc.

The Java side is ``bench/debezium`` (Debezium 3.6.1.Final, its own KafkaProducer, at least
once); this module builds it with Maven when needed and runs it as a child process::

    with DebeziumEngine(dsn, "127.0.0.1:19092", slot="s", publication="p",
                        topic_prefix="dbz", tables=["public.orders"], workdir=tmp) as dbz:
        dbz.wait_streaming(60)
        ...  # read /proc/{dbz.pid}/status while it drains the slot

The slot (``pgoutput``) and the publication must exist before the workload is written: the
engine neither creates nor drops them. It streams only (``snapshot.mode=no_data``).

Smoke check (needs the devstack; creates and drops database ``dbz_smoke``, its slot and topic)::

    eval "$(scripts/devstack env)"; .venv/bin/python bench/debezium_engine.py [--changes N]
"""

from __future__ import annotations

import argparse
import fcntl
import getpass
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

ROOT = Path(__file__).resolve().parent.parent
PROJECT = ROOT / "bench" / "debezium"
TARGET = PROJECT / "target"
JAR = TARGET / "debezium-bench.jar"
CLASSPATH = TARGET / "classpath.txt"  # lib/NAME.jar entries, written by the build
MAIN_CLASS = "cdc.bench.DebeziumBench"
DEFAULT_HEAP = "1g"
STOP_TIMEOUT = 20.0


class BuildError(RuntimeError):
    """Maven could not build bench/debezium."""


def cache_dir() -> Path:
    """The devstack cache; its ``m2`` is the private Maven repository (as scripts/devstack)."""
    return Path(os.environ.get("CDC_DEV_CACHE") or Path.home() / ".cache" / "cdc-devstack")


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _classpath() -> list[Path]:
    listed = CLASSPATH.read_text().strip().split(os.pathsep)
    return [JAR, *(TARGET / name for name in listed if name)]


def _stale() -> bool:
    if not JAR.is_file() or not CLASSPATH.is_file():
        return True
    sources = [PROJECT / "pom.xml", *(PROJECT / "src").rglob("*.java")]
    built = JAR.stat().st_mtime
    return any(s.stat().st_mtime > built for s in sources)


def build(*, force: bool = False) -> list[Path]:
    """Build bench/debezium if its jars are missing or older than its sources; the classpath.

    ``mvn package`` into a private local repository under the devstack cache, so a fresh
    machine fetches everything it needs from Maven Central (about 80 MB, once: 40 s here).
    Builds are serialised by a lock file (a second caller waits, then finds the jars fresh) and
    never ``clean``, so an engine that is running keeps its jars.
    """
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / "debezium-bench.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if force or _stale():
            mvn_package(PROJECT, JAR, CLASSPATH, cache, "mvn-debezium-bench.log")
        return _classpath()


def mvn_package(project: Path, jar: Path, classpath: Path, cache: Path, log_name: str) -> None:
    """``mvn package`` of ``project`` with the devstack cache's ``m2`` as local repository;
    BuildError naming the project, with the log's tail, unless it made ``jar`` and
    ``classpath`` (shared by the bench's engine and tests/support's JVM consumers)."""
    name = project.relative_to(ROOT) if project.is_relative_to(ROOT) else project
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BuildError(f"mvn (Maven) is needed to build {name} (apt-get install maven)")
    log = cache / log_name
    cmd = [
        mvn, "-q", "-B", "-f", str(project / "pom.xml"),
        f"-Dmaven.repo.local={cache / 'm2'}", "package",
    ]  # fmt: skip
    with log.open("wb") as out:
        rc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, check=False)
    if rc.returncode != 0 or not jar.is_file() or not classpath.is_file():
        raise BuildError(
            f"building {name} failed (mvn exit {rc.returncode}, log {log}):\n{_tail(log)}"
        )
    os.utime(jar)  # the jar plugin leaves an up-to-date jar as it was: mark this build


def terminate(proc: subprocess.Popen[bytes], timeout: float) -> int:
    """SIGTERM (a JVM runs its shutdown hooks), SIGKILL after ``timeout``; the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def _escape(value: str) -> str:
    """A value for a Java .properties file, in ASCII (anything else as \\u escapes)."""
    out = []
    for i, ch in enumerate(value):
        if ch in "\\=:#!" or (ch == " " and i == 0):
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) > 0x7E:
            out.append("".join(f"\\u{u:04x}" for u in _utf16(ch)))
        else:
            out.append(ch)
    return "".join(out)


def _utf16(ch: str) -> list[int]:
    data = ch.encode("utf-16-be")
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]


class DebeziumEngine:
    """One run of the Debezium embedded engine (a JVM) draining an existing slot into Kafka.

    Status lines of the Java program go to ``workdir/debezium.out``, its log (Debezium, Kafka
    client) to ``workdir/debezium.log``; offsets to ``workdir/offsets.dat``. A workdir that
    already has offsets resumes from them (else from the slot's confirmed LSN).

    ``heap`` is the JVM's -Xmx (1 GiB by default); ``extra`` adds or overrides properties:
    engine keys as Debezium names them, ``bench.kafka.*`` for the producer (e.g.
    ``bench.kafka.compression.type``), see DebeziumBench.java.
    """

    def __init__(
        self,
        dsn: str,
        kafka: str,
        slot: str,
        publication: str,
        topic_prefix: str,
        tables: list[str],
        workdir: Path,
        *,
        heap: str = DEFAULT_HEAP,
        extra: Mapping[str, str] | None = None,
        java: str = "java",
    ) -> None:
        self.dsn = dsn
        self.kafka = kafka
        self.slot = slot
        self.publication = publication
        self.topic_prefix = topic_prefix
        self.tables = list(tables)
        self.workdir = Path(workdir)
        self.heap = heap
        self.extra = dict(extra or {})
        self.java = java
        self.out_path = self.workdir / "debezium.out"
        self.log_path = self.workdir / "debezium.log"
        self.props_path = self.workdir / "debezium.properties"
        self._proc: subprocess.Popen[bytes] | None = None

    def properties(self) -> dict[str, str]:
        """What the Java program gets: engine settings, and ``bench.*`` ones of its own."""
        info = conninfo_to_dict(self.dsn)

        def get(key: str, default: str) -> str:
            value = info.get(key)
            return str(value) if value not in (None, "") else default

        user = get("user", os.environ.get("PGUSER") or getpass.getuser())
        host = get("hostaddr", get("host", os.environ.get("PGHOST") or "localhost"))
        if host.startswith("/"):
            host = "localhost"  # a unix socket dir: Debezium (pgjdbc) needs TCP
        props = {
            "name": f"debezium-bench-{self.slot}",
            "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
            "plugin.name": "pgoutput",
            "database.hostname": host,
            "database.port": get("port", os.environ.get("PGPORT") or "5432"),
            "database.user": user,
            "database.dbname": get("dbname", os.environ.get("PGDATABASE") or user),
            "topic.prefix": self.topic_prefix,
            "table.include.list": ",".join(self.tables),
            "slot.name": self.slot,
            "slot.drop.on.stop": "false",
            "publication.name": self.publication,
            "publication.autocreate.mode": "disabled",
            "snapshot.mode": "no_data",
            "tombstones.on.delete": "false",
            "decimal.handling.mode": "string",
            "converter.schemas.enable": "false",
            "offset.storage": "org.apache.kafka.connect.storage.FileOffsetBackingStore",
            "offset.storage.file.filename": str(self.workdir / "offsets.dat"),
            # Offsets (and with them the slot's confirmed LSN) flushed every 100 ms: cdc confirms
            # within 0.1 s once everything is acked, and the throughput runs end when the slot
            # is confirmed, so neither reader's end is rounded up by a slower cadence.
            "offset.flush.interval.ms": "100",
            # Debezium records a transaction's commit LSN in its offsets only with the next
            # record: without heartbeats the slot's confirmed LSN stays one transaction behind
            # until more changes come. A heartbeat (a record to __debezium-heartbeat.<prefix>,
            # published like the others) carries it within 0.1 s of idling.
            "heartbeat.interval.ms": "100",
            # Fail, don't retry for ever (Debezium's default): a benchmark wants the error.
            "errors.max.retries": "0",
            "bench.kafka.bootstrap.servers": self.kafka,
            "bench.kafka.client.id": f"debezium-bench-{self.slot}",
        }
        password = info.get("password") or os.environ.get("PGPASSWORD")
        if password:
            props["database.password"] = str(password)
        props.update(self.extra)
        return props

    def start(self) -> None:
        if self._proc is not None:
            raise RuntimeError("already started")
        classpath = build()
        self.workdir.mkdir(parents=True, exist_ok=True)
        lines = [f"{k}={_escape(v)}" for k, v in self.properties().items()]
        self.props_path.write_text("\n".join(lines) + "\n", encoding="ascii")
        cmd = [
            self.java, f"-Xmx{self.heap}", "-XX:+ExitOnOutOfMemoryError",
            "-Dorg.slf4j.simpleLogger.showDateTime=true",
            "-cp", os.pathsep.join(str(p) for p in classpath), MAIN_CLASS, str(self.props_path),
        ]  # fmt: skip
        with self.out_path.open("wb") as out, self.log_path.open("wb") as log:
            self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=log)

    @property
    def heartbeat_topic(self) -> str:
        """Where Debezium's heartbeats go (``topic.heartbeat.prefix`` + topic prefix)."""
        prefix = self.extra.get("topic.heartbeat.prefix", "__debezium-heartbeat")
        return f"{prefix}.{self.topic_prefix}"

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("not started")
        return self._proc.pid

    def _lines(self) -> list[str]:
        try:
            return self.out_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return []

    def _died(self) -> RuntimeError:
        rc = self._proc.returncode if self._proc else None
        return RuntimeError(
            f"Debezium exited (code {rc}); {self.log_path}:\n{_tail(self.log_path)}\n"
            f"{self.out_path}:\n{_tail(self.out_path, 10)}"
        )

    def _slot_active(self) -> bool:
        with psycopg.connect(self.dsn, autocommit=True, connect_timeout=10) as conn:
            row = conn.execute(
                "SELECT active FROM pg_replication_slots WHERE slot_name = %s", (self.slot,)
            ).fetchone()
        return bool(row and row[0])

    def wait_streaming(self, timeout: float = 60.0) -> float:
        """Wait until the connector streams from the slot; the seconds it took from now.

        Debezium's streaming metrics say "connected" just before it opens the replication
        stream (the Java side's "streaming" line), so this also waits for the slot to be active.
        """
        if self._proc is None:
            raise RuntimeError("not started")
        start = time.monotonic()
        said = False
        while not (said and self._slot_active()):
            if self._proc.poll() is not None:
                raise self._died()
            if time.monotonic() - start > timeout:
                raise TimeoutError(f"Debezium not streaming after {timeout:.0f} s; {self.log_path}")
            time.sleep(0.05)
            said = said or "streaming" in self._lines()
        return time.monotonic() - start

    def published(self) -> int:
        """Records acked by Kafka (heartbeats included), as of the last report line.

        The Java side reports every ``bench.report.interval.ms`` (10 s) and at exit.
        """
        for line in reversed(self._lines()):
            words = line.replace(",", " ").split()
            if "published" in words:
                return int(words[words.index("published") + 1])
        return 0

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM (the engine commits its offsets, the producer flushes), SIGKILL after timeout.

        The exit code: 143 is the JVM's after a SIGTERM handled by its shutdown hooks.
        """
        proc = self._proc
        return None if proc is None else terminate(proc, timeout)

    def __enter__(self) -> DebeziumEngine:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# --------------------------------------------------------------------------- smoke check


def _smoke_workload(conn: psycopg.Connection[tuple[Any, ...]], changes: int) -> int:
    """60 % inserts, 30 % updates, 10 % deletes in transactions of 1 000; the WAL end after."""
    inserts, updates = int(changes * 0.6), int(changes * 0.3)
    steps = [
        ("INSERT INTO orders SELECT g, g %% 1000, 'new', g * 0.01 + 0.005, 'order ' || g"
         " FROM generate_series(%s::bigint, %s::bigint) g", inserts),
        ("UPDATE orders SET status = 'paid', total = total + 1 WHERE id BETWEEN %s AND %s",
         updates),
        ("DELETE FROM orders WHERE id BETWEEN %s AND %s", changes - inserts - updates),
    ]  # fmt: skip
    for query, count in steps:
        for lo in range(0, count, 1000):
            conn.execute(query, (lo, min(lo + 999, count - 1)))
    row = conn.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()
    assert row is not None
    return int(row[0])


def _smoke_confirmed(conn: psycopg.Connection[tuple[Any, ...]], slot: str) -> int:
    row = conn.execute(
        "SELECT confirmed_flush_lsn - '0/0'::pg_lsn FROM pg_replication_slots WHERE slot_name = %s",
        (slot,),
    ).fetchone()
    return int(row[0]) if row is not None and row[0] is not None else 0


def _smoke_read(kafka: str, topic: str) -> tuple[dict[str, int], float, float, dict[str, str]]:
    """Counts by op, the first and last record's timestamps (s), one record of each op."""
    from kafka import KafkaConsumer, TopicPartition  # noqa: PLC0415

    tp = TopicPartition(topic, 0)
    consumer = KafkaConsumer(bootstrap_servers=kafka, enable_auto_commit=False)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    end = consumer.end_offsets([tp])[tp]
    ops: dict[str, int] = {}
    examples: dict[str, str] = {}
    stamps: list[int] = []
    while consumer.position(tp) < end:
        for batch in consumer.poll(timeout_ms=1000, max_records=5000).values():
            for rec in batch:
                op = json.loads(rec.value)["op"]
                ops[op] = ops.get(op, 0) + 1
                stamps.append(rec.timestamp)
                examples.setdefault(op, f"key={rec.key.decode()}\n   value={rec.value.decode()}")
    consumer.close()
    return ops, min(stamps) / 1000, max(stamps) / 1000, examples


def _smoke(changes: int) -> None:
    """Workload first, then the engine drains it; checks counts and the slot's confirmed LSN."""
    base, kafka = os.environ["CDC_TEST_PG_DSN"], os.environ["CDC_TEST_KAFKA"]
    db, slot, pub, prefix = "dbz_smoke", "dbz_smoke", "dbz_pub", "dbzsmoke"
    topic = f"{prefix}.public.orders"
    dsn = make_conninfo(base, dbname=db)
    t = time.monotonic()
    build()
    print(f"build: {time.monotonic() - t:.1f} s")
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {db}")
    workdir = Path(tempfile.mkdtemp(prefix="dbz-smoke-"))
    engine = DebeziumEngine(dsn, kafka, slot, pub, prefix, ["public.orders"], workdir)
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                "CREATE TABLE orders (id bigint PRIMARY KEY, customer_id int, status text,"
                " total numeric(12, 2), note text)"
            )
            conn.execute(f"CREATE PUBLICATION {pub} FOR TABLE orders")
            conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,))
            end_lsn = _smoke_workload(conn, changes)
            print(f"workload: {changes} changes, WAL end {end_lsn}")
            launched = time.time()
            with engine:
                print(f"streaming {engine.wait_streaming(120):.2f} s after launch")
                deadline = time.monotonic() + 300
                while _smoke_confirmed(conn, slot) < end_lsn:
                    if time.monotonic() > deadline:
                        behind = end_lsn - _smoke_confirmed(conn, slot)
                        raise RuntimeError(f"slot still {behind} bytes behind the workload's end")
                    time.sleep(0.02)
                confirmed_at = time.time()
                status = Path(f"/proc/{engine.pid}/status").read_text().splitlines()
                hwm = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
                t = time.monotonic()
                code = engine.stop()
            print(
                f"stopped in {time.monotonic() - t:.2f} s, exit code {code}; published"
                f" {engine.published()} records (with heartbeats to {engine.heartbeat_topic})"
            )
        ops, first, last, examples = _smoke_read(kafka, topic)
        total = sum(ops.values())
        print(f"{topic}: {total} records (expected {changes}), by op {ops}")
        print(
            f"first record {first - launched:.2f} s after launch, last {last - launched:.2f} s:"
            f" {total / (last - launched):.0f} records/s launch to last record,"
            f" {total / max(last - first, 1e-3):.0f} records/s first to last record"
        )
        print(
            f"slot confirmed the workload's end {confirmed_at - last:.2f} s after the last record"
        )
        print(f"peak RSS (VmHWM) {hwm / 1024:.0f} MiB")
        for op, example in sorted(examples.items()):
            print(f"{op}: {example}")
        if total != changes:
            raise SystemExit(f"FAIL: {total} records in {topic}, expected {changes}")
    finally:
        engine.stop()
        _smoke_cleanup(base, kafka, db, slot, [topic, engine.heartbeat_topic])
        shutil.rmtree(workdir, ignore_errors=True)


def _smoke_cleanup(base: str, kafka: str, db: str, slot: str, topics: list[str]) -> None:
    from kafka.admin import KafkaAdminClient  # noqa: PLC0415

    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
            " WHERE slot_name = %s",
            (slot,),
        )
        conn.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
    admin = KafkaAdminClient(bootstrap_servers=kafka)
    existing = set(admin.list_topics())
    if mine := [t for t in topics if t in existing]:
        admin.delete_topics(mine)
    admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--changes", type=int, default=20_000)
    parser.add_argument("--build-only", action="store_true", help="only build; print the classpath")
    args = parser.parse_args()
    if args.build_only:
        print(os.pathsep.join(str(p) for p in build()))
    else:
        _smoke(args.changes)


if __name__ == "__main__":
    main()
