"""Helpers for the integration tests: run ``cdc`` as a real process, read topics, know the truth.

The truth about what was committed comes from a *reference slot*: a second wal2json slot created
next to the connector's, read with ``pg_logical_slot_get_changes`` after the workload, and
decoded like the connector decodes. Every change it lists must be on Kafka.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import psycopg
from kafka import KafkaConsumer, TopicPartition
from psycopg.conninfo import conninfo_to_dict

from cdc.events import Change
from cdc.globs import TableSelector
from cdc.kafka.kafka_python import list_offsets
from connectors.postgres.catalog import PostgresCatalog
from connectors.postgres.wal2json import WAL2JSON_OPTIONS, Wal2JsonDecoder

CDC = str(Path(sys.executable).parent / "cdc")


def write_config(
    path: Path,
    dsn: str,
    kafka: str,
    name: str = "src",
    kafka_client: str = "kafka-python",
    **connector: Any,
) -> Path:
    lines = [
        f'[kafka]\nbootstrap_servers = "{kafka}"\n',
        f'[kafka.producer]\nclient = "{kafka_client}"\n',
        f'[[connectors]]\nname = "{name}"\ndsn = "{dsn}"\n',
    ]
    for key, value in {"snapshot": "never", **connector}.items():
        lines.append(f"{key} = {orjson.dumps(value).decode()}\n")
    path.write_text("".join(lines))
    return path


class CdcProcess:
    """``cdc run`` in its own process, so tests can SIGKILL it like an operator's bad day."""

    def __init__(self, config: Path, log: Path, *args: str, options: Sequence[str] = ()) -> None:
        """``args`` go after ``run``; ``options`` before it (``--log-format json``)."""
        self.log_path = log
        self._log = log.open("ab")
        env = {**os.environ, "CDC_LOG_LEVEL": "INFO"}
        self.proc = subprocess.Popen(
            [CDC, *options, "run", "-c", str(config), *args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def peak_rss_mb(self) -> float:
        """High-water mark of resident memory (VmHWM), in MiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmHWM")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._log.close()

    def stop(self, timeout_s: float = 10) -> int:  # cdc exits within 10 s of SIGTERM
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout_s)
        self._log.close()
        return code

    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


@dataclass(frozen=True)
class Event:
    """A record read back from Kafka."""

    topic: str
    partition: int
    offset: int
    key: Any
    value: dict[str, Any] | None
    event_id: str | None
    headers: dict[str, bytes] = field(default_factory=dict)

    @property
    def op(self) -> str | None:
        return None if self.value is None else str(self.value["op"])


def read_topics(kafka: str, topics: Iterable[str], timeout_s: float = 60) -> list[Event]:
    """Every record now in ``topics`` (all partitions), in partition-offset order."""
    consumer = KafkaConsumer(bootstrap_servers=kafka, enable_auto_commit=False)
    try:
        partitions = [
            TopicPartition(t, p)
            for t in topics
            for p in sorted(consumer.partitions_for_topic(t) or ())
        ]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        end = consumer.end_offsets(partitions)
        events: list[Event] = []
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < end[tp] for tp in partitions):
            if time.monotonic() > deadline:
                raise TimeoutError("topics not read to their end in time")
            for tp, records in consumer.poll(timeout_ms=500, max_records=10_000).items():
                for r in records:
                    headers = dict(r.headers)
                    events.append(
                        Event(
                            tp.topic,
                            tp.partition,
                            r.offset,
                            None if r.key is None else orjson.loads(r.key),
                            None if r.value is None else orjson.loads(r.value),
                            headers.get("cdc-event-id", b"").decode() or None,
                            headers,
                        )
                    )
        return events
    finally:
        consumer.close()


def topic_ends(kafka: str, select: Callable[[str], bool]) -> dict[tuple[str, int], int]:
    """The next offset to be written of every partition of the topics ``select`` takes; raises
    cdc.kafka.LeaderUnknown for a topic created moments ago."""
    consumer = KafkaConsumer(bootstrap_servers=kafka)
    try:
        parts = [
            TopicPartition(t, p)
            for t in consumer.topics()
            if select(t)
            for p in consumer.partitions_for_topic(t) or ()
        ]
        listed = list_offsets(consumer, parts, end=True)
    finally:
        consumer.close()
    return {(tp.topic, tp.partition): o for tp, o in listed.items()}


def wait_for(predicate: Any, timeout_s: float, what: str, interval_s: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(interval_s)


def waiting_on(dsn: str, table: str | None = None) -> bool:
    """Whether a session waits for a lock (on ``table``, when it is given)."""
    query = "SELECT count(*) FROM pg_locks WHERE NOT granted"
    params: tuple[str, ...] = ()
    if table is not None:
        query += " AND relation = %s::regclass"
        params = (table,)
    with psycopg.connect(dsn) as conn:
        row = conn.execute(query, params).fetchone()
    return bool(row and row[0])


def create_reference_slot(dsn: str, slot: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_create_logical_replication_slot(%s, 'wal2json')", (slot,))


def reference_changes(
    dsn: str, slot: str, tables: Iterable[str] = ("*.*",), upto_lsn: str | None = None
) -> list[Change]:
    """Every change the reference slot holds, decoded as the connector decodes them."""
    options = [x for kv in WAL2JSON_OPTIONS.items() for x in kv]
    changes: list[Change] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        decoder = Wal2JsonDecoder(PostgresCatalog(conn), TableSelector(tables))
        with conn.transaction(), conn.cursor(name="ref") as cur:
            cur.itersize = 10_000
            cur.execute(
                "SELECT data FROM pg_logical_slot_peek_changes(%s, %s, NULL, "
                + ", ".join(["%s"] * len(options))
                + ")",
                [slot, upto_lsn, *options],
            )
            for (data,) in cur:
                item = decoder.decode(data.encode())
                if isinstance(item, tuple):
                    changes.extend(item)
                elif isinstance(item, Change):
                    changes.append(item)
    return changes


def slot_confirmed_lsn(dsn: str, slot: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT confirmed_flush_lsn - '0/0'::pg_lsn FROM pg_replication_slots"
            " WHERE slot_name = %s",
            (slot,),
        ).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def current_wal_lsn(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()
    assert row is not None
    return int(row[0])


def as_url(dsn: str) -> str:
    """The same connection as a postgresql:// URL (how users usually write it)."""
    p = {k: str(v) for k, v in conninfo_to_dict(dsn).items()}
    auth = p["user"] + (f":{p['password']}" if p.get("password") else "")
    return f"postgresql://{auth}@{p['host']}:{p['port']}/{p['dbname']}"
