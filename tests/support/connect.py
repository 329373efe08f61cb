"""Kafka Connect standalone (Apache Kafka's ``connect-runtime``) with Debezium's JDBC sink, as a
consumer of cdc's topics in the tests.

The jars come from Maven Central through ``tests/consumers/connect/pom.xml`` into the devstack
cache (``${CDC_DEV_CACHE:-~/.cache/cdc-devstack}/connect-<pom digest>/libs``, fetched once,
about 60 MB); :class:`ConnectStandalone` runs ``ConnectStandalone`` from them in a JVM of its
own, with a worker and a connector properties file, and stops it::

    with ConnectStandalone(workdir, kafka, [{"name": "sink", ...}]) as connect:
        connect.wait_running(60)
        ...
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from psycopg.conninfo import conninfo_to_dict

from bench.debezium_engine import terminate
from tests.support import ROOT

POM = ROOT / "tests" / "consumers" / "connect" / "pom.xml"
ROUND_TRIP = POM.parent / "SchemaRoundTrip.java"
MAIN_CLASS = "org.apache.kafka.connect.cli.ConnectStandalone"
STOP_TIMEOUT = 20.0


def cache_dir() -> Path:
    """The devstack cache; its ``m2`` is the private Maven repository (as scripts/devstack)."""
    return Path(os.environ.get("CDC_DEV_CACHE") or Path.home() / ".cache" / "cdc-devstack")


def fetch() -> Path:
    """The directory of the jars (fetched with Maven when the pom changed or on first use).

    Keyed by the pom's digest, so a changed pom never mixes with old jars; a ``.complete`` file
    written last marks a finished fetch; a lock serialises concurrent callers."""
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(POM.read_bytes()).hexdigest()[:12]
    home = cache / f"connect-{digest}"
    libs = home / "libs"
    with (cache / "connect.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (home / ".complete").is_file():
            return libs
        mvn = shutil.which("mvn")
        if mvn is None:
            raise RuntimeError(
                "mvn (Maven) is needed to fetch Kafka Connect (apt-get install maven)"
            )
        shutil.rmtree(home, ignore_errors=True)
        log = cache / "mvn-connect.log"
        cmd = [
            mvn, "-q", "-B", "-f", str(POM), f"-Dmaven.repo.local={cache / 'm2'}",
            "dependency:copy-dependencies", f"-DoutputDirectory={libs}", "-DincludeScope=runtime",
        ]  # fmt: skip
        with log.open("wb") as out:
            rc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, check=False)
        if rc.returncode != 0 or not any(libs.glob("connect-runtime-*.jar")):
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
            raise RuntimeError(f"fetching Kafka Connect failed (mvn exit {rc.returncode}):\n{tail}")
        (home / ".complete").write_text(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        return libs


def json_converter_round_trip(records: list[bytes], workdir: Path, java: str = "java") -> list[str]:
    """Each record (``{"schema","payload"}`` JSON) read and written again by Kafka Connect's
    JsonConverter: ``same`` when the schema it writes is byte for byte the one it read, else
    ``diff N SCHEMA``; a payload it cannot read raises (its DataException in the message)."""
    libs = fetch()
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "records.jsonl"
    path.write_bytes(b"".join(r + b"\n" for r in records))
    done = subprocess.run(
        [java, "-cp", f"{libs}/*", str(ROUND_TRIP), str(path)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"JsonConverter refused a record:\n{done.stderr.decode()[-4000:]}")
    return done.stdout.decode().splitlines()


def jdbc_url(dsn: str) -> tuple[str, dict[str, str]]:
    """``(jdbc:postgresql://host:port/db, {connection.username, connection.password})`` of a
    libpq DSN, for the JDBC sink's ``connection.*`` properties."""
    info = conninfo_to_dict(dsn)
    host = str(info.get("host") or "127.0.0.1")
    if host.startswith("/"):
        host = "127.0.0.1"  # a unix socket directory: pgjdbc needs TCP
    port = str(info.get("port") or "5432")
    url = f"jdbc:postgresql://{host}:{port}/{info.get('dbname') or 'postgres'}"
    url += "?stringtype=unspecified"
    creds = {"connection.username": str(info.get("user") or "postgres")}
    if info.get("password"):
        creds["connection.password"] = str(info["password"])
    return url, creds


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _properties(values: Mapping[str, str]) -> str:
    def escape(text: str) -> str:
        return (
            text.replace("\\", "\\\\").replace("\n", "\\n").replace("=", "\\=").replace(":", "\\:")
        )

    return "".join(f"{escape(k)}={escape(v)}\n" for k, v in values.items())


class ConnectStandalone:
    """One Kafka Connect standalone worker (its own JVM) running ``connectors``.

    The worker converts keys and values with JsonConverter, ``schemas.enable=true`` (cdc's
    ``schemas = true``); ``worker`` adds or overrides worker properties. Its log goes to
    ``workdir/connect.log``; its REST API listens on a free local port (status of the
    connectors and their tasks)."""

    def __init__(
        self,
        workdir: Path,
        kafka: str,
        connectors: Sequence[Mapping[str, str]],
        *,
        worker: Mapping[str, str] | None = None,
        heap: str = "512m",
        java: str = "java",
    ) -> None:
        self.workdir = Path(workdir)
        self.kafka = kafka
        self.connectors = [dict(c) for c in connectors]
        self.port = _free_port()
        self.worker = {
            "bootstrap.servers": kafka,
            "key.converter": "org.apache.kafka.connect.json.JsonConverter",
            "value.converter": "org.apache.kafka.connect.json.JsonConverter",
            "key.converter.schemas.enable": "true",
            "value.converter.schemas.enable": "true",
            "offset.storage.file.filename": str(self.workdir / "offsets.dat"),
            "offset.flush.interval.ms": "1000",
            "listeners": f"http://127.0.0.1:{self.port}",
            "plugin.discovery": "only_scan",  # everything is on the classpath: no plugin.path
            **(worker or {}),
        }
        self.heap = heap
        self.java = java
        self.log_path = self.workdir / "connect.log"
        self.started_s = 0.0
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        libs = fetch()
        self.workdir.mkdir(parents=True, exist_ok=True)
        worker_props = self.workdir / "worker.properties"
        worker_props.write_text(_properties(self.worker))
        connector_props = []
        for i, connector in enumerate(self.connectors):
            path = self.workdir / f"connector-{i}.properties"
            path.write_text(_properties(connector))
            connector_props.append(str(path))
        cmd = [
            self.java, f"-Xmx{self.heap}", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
            "-Dorg.slf4j.simpleLogger.defaultLogLevel=info",
            "-cp", f"{libs}/*", MAIN_CLASS, str(worker_props), *connector_props,
        ]  # fmt: skip
        self.started_s = time.monotonic()
        with self.log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )

    def log(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def status(self, name: str) -> dict[str, Any] | None:
        """A connector's status from the REST API (None until the worker answers)."""
        url = f"http://127.0.0.1:{self.port}/connectors/{name}/status"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                found: dict[str, Any] = json.load(response)
                return found
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def _task_states(self) -> list[dict[str, Any]] | None:
        """Every connector's tasks; None while one of them has none yet."""
        tasks: list[dict[str, Any]] = []
        for connector in self.connectors:
            status = self.status(connector["name"])
            if status is None or not status.get("tasks"):
                return None
            tasks.extend(status["tasks"])
        return tasks

    def failed_task(self) -> str | None:
        """The stack trace of a failed task (None while every task runs)."""
        for task in self._task_states() or ():
            if task.get("state") == "FAILED":
                return str(task.get("trace") or "FAILED")
        return None

    def wait_running(self, timeout_s: float = 90.0) -> float:
        """Wait until every connector's tasks run; seconds since :meth:`start`."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                raise RuntimeError(f"Kafka Connect exited:\n{self.log()}")
            tasks = self._task_states()
            if tasks and all(t.get("state") == "RUNNING" for t in tasks):
                return time.monotonic() - self.started_s
            if (trace := self.failed_task()) is not None:
                raise RuntimeError(f"the connector's task failed:\n{trace}")
            time.sleep(0.25)
        raise TimeoutError(f"Kafka Connect: no running task after {timeout_s} s:\n{self.log()}")

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        proc, self._proc = self._proc, None
        return None if proc is None else terminate(proc, timeout)

    def __enter__(self) -> ConnectStandalone:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with contextlib.suppress(Exception):
            self.stop()
