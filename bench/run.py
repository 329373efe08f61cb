"""``make bench``: every benchmark in one run, on the devstack, with Debezium side by side.

    eval "$(scripts/devstack env)"
    .venv/bin/python -m bench.run [--scale 0.05] [--only oltp,bulk,wide,latency] [--no-debezium]

**Throughput**, for each workload of ``workloads.py`` (OLTP, bulk, wide), in a scratch database
of its own: the slots of every reader are created first, at the same WAL position, then the
workload is written, then each reader drains that same WAL alone, in turn:

1. read limit: ``pg_recvlogical`` with the connector's wal2json options, into /dev/null;
2. cdc -> Kafka with kafka-python, then with confluent-kafka (each its own slot and topic):
   changes/s from the first record on Kafka until the slot confirms the workload's end (every
   change acked by Kafka), and peak RSS;
3. Debezium (pgoutput, embedded engine, acks=all) -> Kafka, timed the same way.

Then the sinks: the PostgreSQL and SQLite sinks drain the workload's own events (the topic of the
confluent-kafka run), next to a ``COPY`` of the source table's rows into the same PostgreSQL;
and, for the bulk table, cdc's initial snapshot of it next to ``COPY ... TO STDOUT``.

**Latency**, at offered loads of 1 000 and 5 000 changes/s held for 60 s, into a fresh table:
cdc (connector with confluent-kafka, and the PostgreSQL sink, in two processes), then Debezium,
in separate windows so that neither takes CPU from the other. Commit times are the events' own
``source.ts_ms``; "on Kafka" is the broker's LogAppendTime of the record; "in the sink" is when a
poll of the sink's ``cdc.offsets`` (committed with the rows) first shows the record applied.

Sizes scale with ``--scale`` (``BENCH_SCALE``; 1.0 is the sizes above). Results go to
``bench/results/<date>-<oltp|bulk|wide|latency>.json``; then ``report.py`` draws the chart and
rewrites docs/benchmarks.md's tables and README.md's summary.
"""

from __future__ import annotations

import argparse
import bisect
import math
import os
import socket
import sqlite3
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import confluent_kafka
import orjson
import psycopg
from kafka.errors import KafkaError
from psycopg import sql

from bench import report
from bench.common import (
    RESULTS,
    ROOT,
    CdcProcess,
    CpuMeter,
    Kafka,
    Stack,
    cdc_config,
    confirmed_lsn,
    create_pgoutput_slot,
    create_wal2json_slot,
    machine,
    peak_rss_mb,
    process_cpu_s,
    recvlogical,
    scratch_database,
    wait_until,
    write_result,
)
from bench.debezium_engine import DebeziumEngine, build
from bench.workloads import DOCS_DDL, OLTP_PROCEDURE, ORDERS_DDL, Written, bulk, oltp, wide
from cdc.config import LINGER_MS, KafkaConfig, parse_config
from cdc.events import Record
from cdc.kafka import ConfluentPublisher
from connectors.postgres.decoders import decoder_plugin

CLIENTS = {"kafka-python": "kp", "confluent-kafka": "ck"}
"""Producer client -> the short name in its slot, topic and connector names."""
LATENCY_CLIENT = "confluent-kafka"
LATENCY_PLUGIN = "pgoutput"
"""cdc's fastest configuration (see the source runs) is the one whose latency is measured."""
PGOUTPUT = "pgo"
"""The short name of cdc's pgoutput run (its slot, publication, topics)."""
PGOUTPUT_PAIRS = 3
"""cdc on pgoutput and its read limit are measured this many times, alternately (read limit,
cdc, read limit, cdc, ...; the first read limit is :func:`read_limits`'s, so cdc's wal2json runs
come between it and its cdc run), each on a slot of its own: the pair with the median ratio is
the one reported, with the others beside it. Two cores shared by PostgreSQL, Kafka and the reader
move a single run's ratio by a tenth or more."""


def nth(short: str, i: int) -> str:
    """The short name of the ``i``-th of the pgoutput pairs' runs named ``short`` (``pgo``,
    cdc's; ``recvpgo``, the read limit's): ``short``, ``short2``, ..."""
    return short if i == 0 else f"{short}{i + 1}"


PGOUTPUT_CLIENT = "confluent-kafka"
METRICS = "pgm"
"""The short name of cdc's pgoutput runs with ``/metrics`` served and scraped (OLTP only), beside
runs without on the same WAL, so that the two medians show what metrics cost."""
METRICS_WORKLOAD = "oltp"
TRANSFORMS = "pgx"
"""The short name of cdc's pgoutput runs with column transforms on (OLTP only): ``note``
excluded and ``customer_id`` hashed with a salt, beside runs without on the same WAL."""
DEBEZIUM_VALUES = "pgd"
"""The short name of cdc's pgoutput runs with ``values = "debezium"`` (Debezium's defaults)."""
SCHEMAS = "pgs"
"""... with ``schemas = true`` (exact values in JsonConverter's layout)."""
DEBEZIUM_SCHEMAS = "pgds"
"""... with ``values = "debezium"`` and ``schemas = true``."""
TRANSFORM_RULES = [{"tables": ["public.orders"], "exclude": ["note"], "hash": ["customer_id"]}]
VARIANTS: dict[str, tuple[str, str, bool, dict[str, Any]]] = {
    METRICS: ("metrics_cost", "with /metrics scraped every 1 s", True, {}),
    TRANSFORMS: (
        "transforms_cost",
        "with `note` excluded and `customer_id` hashed",
        False,
        {"columns": TRANSFORM_RULES, "mask_salt": "bench-salt"},
    ),
    DEBEZIUM_VALUES: (
        "debezium_values_cost",
        'with values = "debezium" (Debezium\'s default encodings and envelope)',
        False,
        {"values": "debezium"},
    ),
    SCHEMAS: ("schemas_cost", "with schemas = true", False, {"schemas": True}),
    DEBEZIUM_SCHEMAS: (
        "debezium_schemas_cost",
        'with values = "debezium" and schemas = true',
        False,
        {"values": "debezium", "schemas": True},
    ),
}
"""The OLTP runs with a feature on, beside the runs without it (the default: exact values,
no schemas) on the same WAL, in an order that turns each pair: short name -> (result key,
label, /metrics served and scraped, connector keys)."""
SCRAPE_EVERY_S = 1.0
"""Prometheus scrapes every 15 s or so by default: once a second is the harder case."""
LOADS = (1000, 5000)
"""Offered loads of the latency runs, changes/s."""
WARM_UP_S = 5
"""Seconds of the offered load written and delivered before each latency window, so that the
window measures neither start-up nor a JIT compiler's first seconds."""
DEBEZIUM_POLL_MS = LINGER_MS
"""Debezium's ``poll.interval.ms`` in the latency runs (its default, 500, holds a batch that
long unless 2 048 records fill it first): as long as cdc's producer lingers (``linger_ms``)."""


@dataclass(frozen=True, slots=True)
class Workload:
    name: str
    table: str
    ddl: tuple[str, ...]
    write: Callable[[str, float], Written]
    """(dsn, scale) -> what was written."""
    description: str


def sized(n: int, scale: float) -> int:
    return max(1, round(n * scale))


WORKLOADS = {
    w.name: w
    for w in (
        Workload(
            "oltp",
            "orders",
            (ORDERS_DDL, OLTP_PROCEDURE),
            lambda dsn, s: oltp(dsn, sized(1_000_000, s)),
            "row changes in transactions of 1-10 rows, 60/30/10 % insert/update/delete,"
            " a 10-column table",
        ),
        Workload(
            "bulk",
            "orders",
            (ORDERS_DDL,),
            lambda dsn, s: bulk(dsn, sized(1_000_000, s)),
            "one COPY into a 10-column table",
        ),
        Workload(
            "wide",
            "docs",
            (DOCS_DDL,),
            lambda dsn, s: wide(dsn, sized(90_000, s), sized(30_000, s)),
            "rows of 8-16 kB incompressible text (TOASTed), 100 a transaction, then updates"
            " leaving it unchanged",
        ),
    )
}


@dataclass
class Bench:
    """One run: the services, its size, and the names it gives what it creates."""

    stack: Stack
    kafka: Kafka
    scale: float
    latency_s: float
    debezium: bool
    workdir: Path
    cpu: CpuMeter
    id: str = field(default_factory=lambda: f"bench{int(time.time())}")

    def name(self, *parts: str) -> str:
        """Database, slot and publication names: ``bench<time>_<parts>``."""
        return "_".join((self.id, *parts))

    def prefix(self, *parts: str) -> str:
        """Topic prefixes and consumer groups: ``bench<time>-<parts>``."""
        return "-".join((self.id, *parts))

    def timeout(self, changes: int) -> float:
        """Generous: no reader measured here is slower than 200 changes/s."""
        return 120 + changes / 200


def say(text: str) -> None:
    print(text, flush=True)


# -- throughput -------------------------------------------------------------------------------


def run_workload(b: Bench, w: Workload) -> dict[str, Any]:
    """Write ``w`` once; drain its WAL with each reader in turn; then the sinks."""
    with scratch_database(b.stack, b.name(w.name)) as dsn:
        with psycopg.connect(dsn, autocommit=True) as conn:
            for ddl in w.ddl:
                conn.execute(ddl)
            # Every slot before the first change: all readers decode the same WAL.
            create_wal2json_slot(conn, b.name(w.name, "recv"))
            for short in CLIENTS.values():
                create_wal2json_slot(conn, b.name(w.name, short))
            # cdc on pgoutput and its read limits share a publication of the one table, as
            # Debezium has its own.
            pgo = b.name(w.name, PGOUTPUT)
            create_pgoutput_slot(conn, pgo, pgo, [w.table])
            for slot in [
                *(nth(PGOUTPUT, i) for i in range(1, PGOUTPUT_PAIRS)),
                *(nth("recvpgo", i) for i in range(PGOUTPUT_PAIRS)),
                *(metric_runs(w)),
            ]:
                conn.execute(
                    "SELECT pg_create_logical_replication_slot(%s, 'pgoutput')",
                    (b.name(w.name, slot),),
                )
            if b.debezium:
                dbz = b.name(w.name, "dbz")
                create_pgoutput_slot(conn, dbz, dbz, [w.table])
        readers = [
            *CLIENTS.values(),
            *(nth(PGOUTPUT, i) for i in range(PGOUTPUT_PAIRS)),
            *metric_runs(w),
            *(["dbz"] if b.debezium else []),
        ]
        b.kafka.create_topics([f"{b.prefix(w.name, r)}.public.{w.table}" for r in readers])

        written = w.write(dsn, b.scale)
        say(
            f"{w.name}: {written.changes:,} changes written in {written.seconds:.1f} s"
            f" ({written.changes / written.seconds:,.0f}/s)"
        )
        result: dict[str, Any] = {
            "workload": {"name": w.name, "description": w.description, **written.detail},
            "write_seconds": written.seconds,
        }
        result.update(read_limits(b, w, dsn, written))
        result.update(run_sources(b, w, dsn, written, result))
        result["kafka_write_limit"] = kafka_write_limit(
            b, w, f"{b.prefix(w.name, PGOUTPUT)}.public.{w.table}", written
        )
        pgo = result["cdc_pgo"]
        pgo["ratio_to_kafka_write_limit"] = result["kafka_write_limit"]["seconds"] / pgo["seconds"]
        topic = f"{b.prefix(w.name, CLIENTS[LATENCY_CLIENT])}.public.{w.table}"
        result["sinks"] = run_sinks(b, w, dsn, topic, written)
        if w.name == "bulk":
            result["snapshot"] = run_snapshots(b, w, dsn)
    b.kafka.delete_topics(b.prefix(w.name, ""))  # a run's topics add up to gigabytes
    return result


def read_limits(b: Bench, w: Workload, dsn: str, written: Written) -> dict[str, Any]:
    """``pg_recvlogical`` draining the workload's WAL, with each plugin, to /dev/null."""
    config = parse_config(connector_config(b, w, dsn, "kafka-python"))
    pgo = config.connectors[0].model_copy(update={"publication": b.name(w.name, PGOUTPUT)})
    plugins = {
        "read_limit": (
            "recv",
            decoder_plugin("wal2json").options(config.connectors[0]),
        ),
        "read_limit_pgoutput": ("recvpgo", decoder_plugin("pgoutput").options(pgo)),
    }
    result = {}
    for key, (slot, options) in plugins.items():
        result[key] = read_limit(b, dsn, b.name(w.name, slot), written, options)
        say(f"{w.name}: {key.replace('_', ' ')} {result[key]['changes_per_s']:,.0f} changes/s")
    return result


def read_limit(
    b: Bench, dsn: str, slot: str, written: Written, options: dict[str, str]
) -> dict[str, Any]:
    started = time.time()
    seconds = recvlogical(b.stack, dsn, slot, written.end_lsn, options)
    return {
        "seconds": seconds,
        "changes_per_s": written.changes / seconds,
        "cpu": b.cpu.use(started, started + seconds, written.changes),
        "options": options,
    }


def run_sources(
    b: Bench, w: Workload, dsn: str, written: Written, limits: dict[str, Any]
) -> dict[str, Any]:
    """cdc with each client on wal2json, cdc on pgoutput (:data:`PGOUTPUT_PAIRS` times, each
    after a read limit of its own), then Debezium: each drains its slot. A run's ratio is to
    its own plugin's read limit."""
    recv_s = limits["read_limit"]["seconds"]
    result: dict[str, Any] = {}

    def cdc_run(
        client: str,
        plugin: str,
        short: str,
        recv: float,
        metrics: bool = False,
        keys: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        topic = f"{b.prefix(w.name, short)}.public.{w.table}"
        config = connector_config(b, w, dsn, client, plugin, short, keys or {})
        port = free_port() if metrics else 0
        args = ["--metrics-listen", f"127.0.0.1:{port}"] if metrics else []
        with CdcProcess(f"{w.name}-{short}", config, b.workdir, args) as cdc, Scraper(port) as s:
            done, rss, cpu_s = wait_confirmed(b, dsn, b.name(w.name, short), written, [cdc])
            run = source_result(b, topic, cdc.started, done, rss, written, recv, cpu_s)
        if metrics:
            run["scrapes"] = s.scrapes
            if not s.scrapes:
                raise RuntimeError(f"{w.name}: /metrics of {short} never answered")
        with_metrics = f", /metrics scraped {s.scrapes} times" if metrics else ""
        with_metrics += "".join(f", {k} = {v!r}" for k, v in (keys or {}).items() if k != "columns")
        say(f"{w.name}: cdc -> Kafka ({plugin}, {client}{with_metrics}) {summary(run)}")
        check_records(run, written.cdc_records)
        return {"client": client, "plugin": plugin, **run}

    for client, short in CLIENTS.items():
        result[f"cdc_{short}"] = cdc_run(client, "wal2json", short, recv_s)
    pairs = []
    variants = VARIANTS if w.name == METRICS_WORKLOAD else {}
    flags: dict[str, tuple[bool, dict[str, Any]]] = {
        PGOUTPUT: (False, {}),
        **{short: (v[2], v[3]) for short, v in variants.items()},
    }
    variant_runs: dict[str, list[dict[str, Any]]] = {short: [] for short in flags}
    options = limits["read_limit_pgoutput"]["options"]
    for i in range(PGOUTPUT_PAIRS):
        if i == 0:
            limit = limits["read_limit_pgoutput"]
        else:
            limit = read_limit(b, dsn, b.name(w.name, nth("recvpgo", i)), written, options)
            say(f"{w.name}: read limit pgoutput {limit['changes_per_s']:,.0f} changes/s")
        # The run without and the variants' runs, in an order turned by one each pair: a run
        # late in the sequence was measured slower whatever it ran (Kafka's log grows).
        order = [PGOUTPUT, *variants]
        for short in order[i % len(order) :] + order[: i % len(order)]:
            run = cdc_run(
                PGOUTPUT_CLIENT, "pgoutput", nth(short, i), limit["seconds"], *flags[short]
            )
            variant_runs[short].append(run)
        pairs.append((limit, variant_runs[PGOUTPUT][-1]))
    for short, (key, label, _, _) in variants.items():
        result[key] = variant_cost(w, label, [r for _, r in pairs], variant_runs[short])
    limit, run = median_pair(pairs)
    result["read_limit_pgoutput"] = limit
    result["cdc_pgo"] = {
        **run,
        "pairs": [
            {
                "read_limit_changes_per_s": lim["changes_per_s"],
                "changes_per_s": r["changes_per_s"],
                "ratio_to_read_limit": r["ratio_to_read_limit"],
            }
            for lim, r in pairs
        ],
    }
    recv_pgo_s = limit["seconds"]

    if b.debezium:
        topic = f"{b.prefix(w.name, 'dbz')}.public.{w.table}"
        dbz = b.name(w.name, "dbz")
        engine = DebeziumEngine(
            dsn, b.stack.kafka, dbz, dbz, b.prefix(w.name, "dbz"), [f"public.{w.table}"],
            b.workdir / f"{w.name}-dbz",
        )  # fmt: skip
        launched = time.time()
        with engine:
            done, rss, cpu_s = wait_confirmed(b, dsn, dbz, written, [engine.pid])
            run = source_result(b, topic, launched, done, rss, written, recv_pgo_s, cpu_s)
        result["debezium"] = run
        say(f"{w.name}: Debezium -> Kafka {summary(run)}")
        check_records(run, written.changes)
    return result


def metric_runs(w: Workload) -> list[str]:
    """The short names of the runs with metrics on, then with transforms on (OLTP only)."""
    if w.name != METRICS_WORKLOAD:
        return []
    return [nth(short, i) for short in VARIANTS for i in range(PGOUTPUT_PAIRS)]


def variant_cost(
    w: Workload, label: str, off: Sequence[dict[str, Any]], on: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """Throughput with a feature on against off (runs beside each other, on the same WAL)."""
    off_rates = sorted(r["changes_per_s"] for r in off)
    on_rates = sorted(r["changes_per_s"] for r in on)
    median_off = off_rates[(len(off_rates) - 1) // 2]
    median_on = on_rates[(len(on_rates) - 1) // 2]
    # The cdc process's own CPU per change: what metrics add, without the machine's noise that
    # moves a 2-core run's throughput by a tenth.
    cpu_off = sorted(r["process_cpu_us_per_change"] for r in off)[(len(off) - 1) // 2]
    cpu_on = sorted(r["process_cpu_us_per_change"] for r in on)[(len(on) - 1) // 2]
    say(
        f"{w.name}: cdc (pgoutput) {label}:"
        f" {median_on:,.0f} changes/s against {median_off:,.0f} without (medians of"
        f" {len(on)}; on/off {median_on / median_off:.3f}); its CPU {cpu_on:.1f} µs a change"
        f" against {cpu_off:.1f} (on/off {cpu_on / cpu_off:.3f})"
    )
    return {
        "cpu_us_per_change_off": cpu_off,
        "cpu_us_per_change_on": cpu_on,
        "cpu_ratio_on_to_off": cpu_on / cpu_off,
        "off_changes_per_s": [r["changes_per_s"] for r in off],
        "on_changes_per_s": [r["changes_per_s"] for r in on],
        "median_off": median_off,
        "median_on": median_on,
        "ratio_on_to_off": median_on / median_off,
        "what": label,
        "peak_rss_mb_off": max(r["peak_rss_mb"] for r in off),
        "peak_rss_mb_on": max(r["peak_rss_mb"] for r in on),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Scraper:
    """GETs ``/metrics`` every :data:`SCRAPE_EVERY_S` on a thread while a run lasts (port 0:
    nothing)."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/metrics"
        self.port = port
        self.scrapes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(SCRAPE_EVERY_S):
            try:
                with urllib.request.urlopen(self.url, timeout=5) as r:  # noqa: S310
                    r.read()
                self.scrapes += 1
            except OSError:
                pass  # not listening yet

    def __enter__(self) -> Scraper:
        if self.port:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self.port:
            self._thread.join(10)


def median_pair(
    pairs: Sequence[tuple[dict[str, Any], dict[str, Any]]],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The (read limit, cdc run) pair whose ratio is the median (the lower middle of an even
    count)."""
    ranked = sorted(pairs, key=lambda pair: pair[1]["ratio_to_read_limit"])
    return ranked[(len(ranked) - 1) // 2]


def connector_config(
    b: Bench,
    w: Workload,
    dsn: str,
    client: str,
    plugin: str = "wal2json",
    short: str = "",
    keys: dict[str, Any] | None = None,
) -> str:
    short = short or (CLIENTS[client] if plugin == "wal2json" else PGOUTPUT)
    extra: dict[str, Any] = (
        {"plugin": plugin, "publication": b.name(w.name, PGOUTPUT)} if plugin != "wal2json" else {}
    )
    extra.update(keys or {})
    return cdc_config(
        b.stack.kafka,
        client=client,
        connectors=[
            {
                "name": f"{w.name}-{short}",
                "dsn": dsn,
                "slot": b.name(w.name, short),
                "tables": [f"public.{w.table}"],
                "topic_prefix": b.prefix(w.name, short),
                "snapshot": "never",
                **extra,
            }
        ],
    )


def wait_confirmed(
    b: Bench, dsn: str, slot: str, written: Written, watch: Sequence[CdcProcess | int]
) -> tuple[float, float, float]:
    """When the slot confirmed the workload's end; the reader's peak RSS (MiB) and the CPU
    seconds it used (start-up included) by then."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        done = wait_until(
            lambda: confirmed_lsn(conn, slot) >= written.end_lsn,
            b.timeout(written.changes),
            f"confirmation of the workload's end by slot {slot}",
            watch,
        )
    pid = watch[0].pid if isinstance(watch[0], CdcProcess) else watch[0]
    return done, peak_rss_mb(pid), process_cpu_s(pid)


def source_result(
    b: Bench,
    topic: str,
    launched: float,
    done: float,
    rss: float,
    written: Written,
    recv: float,
    cpu_s: float,
) -> dict[str, Any]:
    """Timed from the first record on Kafka, so that start-up (a JVM's, a Python's) is not."""
    end = b.kafka.end_offset(topic)
    first = b.kafka.timestamp_s(topic, 0)
    seconds = done - first
    return {
        "seconds": seconds,
        "changes_per_s": written.changes / seconds,
        "ratio_to_read_limit": recv / seconds,
        "peak_rss_mb": rss,
        "cpu": b.cpu.use(first, done, written.changes),
        "process_cpu_us_per_change": cpu_s * 1e6 / written.changes,
        "startup_s": first - launched,
        "first_to_last_record_s": b.kafka.timestamp_s(topic, end - 1) - first,
        "records": end,
    }


def kafka_write_limit(b: Bench, w: Workload, source: str, written: Written) -> dict[str, Any]:
    """cdc's own producer (:class:`~cdc.kafka.ConfluentPublisher`, cdc's settings) sending the
    records cdc published on ``source`` again, keys, values and headers, to a new topic of the
    same broker: read back first, so only the sending is timed, from the first record sent to
    the last acked. As fast as this Kafka takes these records from Python: where it is below the
    read limit, Kafka is the ceiling, not PostgreSQL."""
    topic = f"{b.prefix(w.name, 'kw')}.public.{w.table}"
    records = read_back(b.stack.kafka, source, topic)
    b.kafka.create_topics([topic])
    publisher = ConfluentPublisher(
        KafkaConfig.model_validate(
            {"bootstrap_servers": b.stack.kafka, "producer": {"client": "confluent-kafka"}}
        )
    )
    acked = 0
    errors: list[Exception] = []

    def on_ack() -> None:
        nonlocal acked
        acked += 1

    callback = publisher.callback(on_ack, errors.append)
    publisher.ensure_topic(topic)
    wall = time.time()
    started = time.monotonic()
    for i, record in enumerate(records):
        publisher.send_with(record, callback)
        if i % 1000 == 0:
            publisher.poll()
    while acked + len(errors) < len(records):
        publisher.poll(0.01)
    seconds = time.monotonic() - started
    publisher.close()
    if errors:
        raise RuntimeError(f"the Kafka write limit's producer failed: {errors[0]}")
    result = {
        "records": len(records),
        "seconds": seconds,
        "records_per_s": len(records) / seconds,
        "changes_per_s": written.changes / seconds,
        "megabytes_per_s": sum(len(r.value or b"") for r in records) / seconds / 1e6,
        "cpu": b.cpu.use(wall, wall + seconds, written.changes),
    }
    say(
        f"{w.name}: Kafka write limit {result['changes_per_s']:,.0f} changes/s"
        f" ({result['records_per_s']:,.0f} records/s, {result['megabytes_per_s']:.0f} MB/s)"
    )
    return result


def read_back(bootstrap: str, source: str, topic: str) -> list[Record]:
    """Every record of ``source`` (partition 0), addressed to ``topic``."""
    consumer = confluent_kafka.Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "bench-read-back", "enable.auto.commit": False}
    )
    try:
        end = consumer.get_watermark_offsets(confluent_kafka.TopicPartition(source, 0))[1]
        consumer.assign([confluent_kafka.TopicPartition(source, 0, 0)])
        records: list[Record] = []
        while len(records) < end:
            for m in consumer.consume(10_000, timeout=1.0):
                if m.error():
                    raise RuntimeError(f"reading {source} back: {m.error()}")
                headers: Any = m.headers() or []  # a list of (str, bytes), as cdc sent them
                records.append(Record(topic, m.key(), m.value(), headers))
        return records
    finally:
        consumer.close()


def summary(run: dict[str, Any]) -> str:
    return (
        f"{run['changes_per_s']:,.0f} changes/s ({run['ratio_to_read_limit']:.2f} of the read"
        f" limit), peak RSS {run['peak_rss_mb']:.0f} MB, start-up {run['startup_s']:.1f} s"
    )


def check_records(run: dict[str, Any], expected: int) -> None:
    run["expected_records"] = expected
    if run["records"] != expected:
        say(f"  warning: {run['records']:,} records on Kafka, {expected:,} expected")


# -- sinks ------------------------------------------------------------------------------------


def pg_stored(conn: psycopg.Connection[Any], group: str, topic: str) -> int:
    """The PostgreSQL sink's next offset for ``topic`` (0 before its first commit)."""
    try:
        row = conn.execute(
            "SELECT next_offset FROM cdc.offsets WHERE group_id = %s AND topic = %s",
            (group, topic),
        ).fetchone()
    except psycopg.errors.UndefinedTable:
        return 0
    return int(row[0]) if row else 0


def sqlite_stored(path: Path, group: str, topic: str) -> int:
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    except sqlite3.OperationalError:
        return 0
    try:
        row = db.execute(
            "SELECT next_offset FROM _cdc_offsets WHERE group_id = ? AND topic = ?", (group, topic)
        ).fetchone()
    except sqlite3.OperationalError:
        return 0
    finally:
        db.close()
    return int(row[0]) if row else 0


def run_sinks(b: Bench, w: Workload, dsn: str, topic: str, written: Written) -> dict[str, Any]:
    """Both sinks drain ``topic`` (the backlog cdc published); a COPY of the rows beside them."""
    end = b.kafka.end_offset(topic)
    with scratch_database(b.stack, b.name(w.name, "sink")) as target:
        copy = copy_baseline(b, w, dsn, target)
        say(
            f"{w.name}: COPY of the table's {copy['rows']:,} rows {copy['rows_per_s']:,.0f} rows/s;"
            f" version-guarded upsert of them {copy['upsert_rows_per_s']:,.0f} rows/s"
            f" ({copy['upsert_ratio_to_copy']:.2f} of COPY)"
        )
        result: dict[str, Any] = {"backlog_topic": topic, "records": end, "copy": copy}
        groups: list[str] = []
        with psycopg.connect(target, autocommit=True) as conn:
            for kind in ("postgres", "sqlite"):
                for client, short in CLIENTS.items():
                    # Each run starts from empty tables of its own (applying over another's
                    # rows would skip every event as already there).
                    group = b.prefix(w.name, kind, short)
                    lite_path = b.workdir / f"{w.name}-{short}.db"
                    options: dict[str, object]
                    if kind == "postgres":
                        options = {
                            "type": kind,
                            "dsn": target,
                            "table": "{schema}.{table}_" + short,
                        }
                    else:
                        options = {"type": kind, "path": str(lite_path)}
                    config = cdc_config(
                        b.stack.kafka,
                        consumer=client,
                        sinks=[{"name": kind, "topics": [topic], "group_id": group, **options}],
                    )

                    def stored(group: str = group, kind: str = kind, path: Path = lite_path) -> int:
                        if kind == "postgres":
                            return pg_stored(conn, group, topic)
                        return sqlite_stored(path, group, topic)

                    with CdcProcess(f"{w.name}-sink-{kind}-{short}", config, b.workdir) as sink:
                        run = drain_sink(b, sink, stored, end, written.changes)
                    run["ratio_to_copy"] = run["changes_per_s"] / copy["rows_per_s"]
                    run["client"] = client
                    result[kind if short == "kp" else f"{kind}_{short}"] = run
                    groups.append(group)
                    say(
                        f"{w.name}: {kind} sink ({client}) {run['changes_per_s']:,.0f} changes/s"
                        f" ({run['ratio_to_copy']:.3f} of COPY),"
                        f" peak RSS {run['peak_rss_mb']:.0f} MB"
                    )
        b.kafka.delete_groups(groups)
    return result


def copy_baseline(b: Bench, w: Workload, source: str, target: str) -> dict[str, Any]:
    """``COPY ... FROM STDIN`` of the source table's rows into a fresh table of the target
    database (the rows read beforehand, so only the load is timed)."""
    table = sql.Identifier(w.table)
    with psycopg.connect(source) as conn:
        with conn.cursor().copy(sql.SQL("COPY {} TO STDOUT").format(table)) as out:
            chunks = [bytes(chunk) for chunk in out]
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(table)).fetchone()
    with psycopg.connect(target) as conn:
        conn.execute("CREATE SCHEMA baseline")
        conn.execute("SET search_path = baseline")
        conn.execute(w.ddl[0])
        conn.commit()
        wall = time.time()
        started = time.monotonic()
        with conn.cursor().copy(sql.SQL("COPY {} FROM STDIN").format(table)) as into:
            for chunk in chunks:
                into.write(chunk)
        conn.commit()
        seconds = time.monotonic() - started
        upsert_wall = time.time()
        upsert_s = upsert_baseline(conn, w, chunks)
    rows = int(row[0]) if row else 0
    return {
        "rows": rows,
        "seconds": seconds,
        "rows_per_s": rows / seconds,
        "cpu": b.cpu.use(wall, wall + seconds, rows),
        "upsert_seconds": upsert_s,
        "upsert_rows_per_s": rows / upsert_s,
        "upsert_ratio_to_copy": seconds / upsert_s,
        "upsert_cpu": b.cpu.use(upsert_wall, upsert_wall + upsert_s, rows),
    }


def upsert_baseline(conn: psycopg.Connection[Any], w: Workload, chunks: list[bytes]) -> float:
    """Seconds to apply the same rows as an idempotent sink must, with no Python and no Kafka:
    ``COPY`` into a temporary table, then one ``INSERT ... ON CONFLICT DO UPDATE ... WHERE`` the
    stored version is older, into a fresh table with version columns. What PostgreSQL itself
    takes to apply them with the guarantees: a ceiling for every sink, below ``COPY``'s."""
    table = sql.Identifier(w.table)
    conn.execute("CREATE SCHEMA upsert")
    conn.execute("SET search_path = upsert")
    conn.execute(w.ddl[0])
    conn.execute(sql.SQL("ALTER TABLE {} ADD _cdc_lsn bigint, ADD _cdc_index int").format(table))
    conn.commit()
    relation = f"upsert.{w.table}"
    columns = [
        r[0]
        for r in conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0"
            " AND NOT attisdropped AND attname NOT IN ('_cdc_lsn', '_cdc_index') ORDER BY attnum",
            (relation,),
        )
    ]
    key = [
        r[0]
        for r in conn.execute(
            "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid"
            " AND a.attnum = ANY (i.indkey) WHERE i.indrelid = %s::regclass AND i.indisprimary",
            (relation,),
        )
    ]
    names = sql.SQL(", ").join(map(sql.Identifier, columns))
    updates = sql.SQL(", ").join(
        sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c))
        for c in [*columns, "_cdc_lsn", "_cdc_index"]
        if c not in key
    )
    started = time.monotonic()
    conn.execute(sql.SQL("CREATE TEMP TABLE stage (LIKE baseline.{}) ON COMMIT DROP").format(table))
    with conn.cursor().copy("COPY stage FROM STDIN") as into:
        for chunk in chunks:
            into.write(chunk)
    conn.execute(
        sql.SQL(
            "INSERT INTO {t} AS t ({names}, _cdc_lsn, _cdc_index) SELECT {names}, 1, 0 FROM stage"
            " ON CONFLICT ({key}) DO UPDATE SET {updates}"
            " WHERE (t._cdc_lsn, t._cdc_index) < (EXCLUDED._cdc_lsn, EXCLUDED._cdc_index)"
        ).format(
            t=table, names=names, key=sql.SQL(", ").join(map(sql.Identifier, key)), updates=updates
        )
    )
    conn.commit()
    return time.monotonic() - started


def drain_sink(
    b: Bench, sink: CdcProcess, stored: Callable[[], int], end: int, changes: int
) -> dict[str, Any]:
    """Timed from the sink's first commit (after its start-up and group join) to the last."""
    timeout = b.timeout(changes)
    first = wait_until(lambda: stored() > 0, timeout, "a first commit by the sink", [sink], 0.01)
    first_offset = stored()
    done = wait_until(lambda: stored() >= end, timeout, "the sink at the end", [sink], 0.05)
    rss = sink.peak_rss_mb()
    if first_offset >= end:  # one batch took it all: time it from the launch instead
        first, first_offset = sink.started, 0
    seconds = done - first
    timed = changes * (end - first_offset) / end
    return {
        "seconds": seconds,
        "changes_per_s": timed / seconds,
        "timed_records": end - first_offset,
        "peak_rss_mb": rss,
        "cpu": b.cpu.use(first, done, round(timed)),
        "startup_s": first - sink.started,
    }


def run_snapshots(b: Bench, w: Workload, dsn: str) -> dict[str, Any]:
    """cdc's initial snapshot of the table (``initial_only``, until the process exits, which
    it does once every row is acked), next to ``COPY (SELECT * FROM t) TO STDOUT``."""
    table = sql.Identifier(w.table)
    with psycopg.connect(dsn) as conn:
        rows_row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(table)).fetchone()
        started = time.monotonic()
        with conn.cursor().copy(sql.SQL("COPY (SELECT * FROM {}) TO STDOUT").format(table)) as out:
            for _ in out:
                pass
        copy_s = time.monotonic() - started
    rows = int(rows_row[0]) if rows_row else 0
    result: dict[str, Any] = {"rows": rows, "copy_out_rows_per_s": rows / copy_s}
    say(f"{w.name}: COPY TO STDOUT {rows / copy_s:,.0f} rows/s")
    for client, short in CLIENTS.items():
        config = cdc_config(
            b.stack.kafka,
            client=client,
            connectors=[
                {
                    "name": f"{w.name}-snap-{short}",
                    "dsn": dsn,
                    "slot": b.name(w.name, "snap", short),
                    "tables": [f"public.{w.table}"],
                    "topic_prefix": b.prefix(w.name, "snap", short),
                    "snapshot": "initial_only",
                }
            ],
        )
        with CdcProcess(f"{w.name}-snap-{short}", config, b.workdir) as cdc:
            rss = cdc.wait_exit(b.timeout(rows))
            seconds = time.time() - cdc.started
        run = {
            "client": client,
            "rows_per_s": rows / seconds,
            "ratio_to_copy_out": copy_s / seconds,
            "peak_rss_mb": rss,
        }
        result[f"cdc_{short}"] = run
        say(
            f"{w.name}: initial snapshot -> Kafka ({client}) {run['rows_per_s']:,.0f} rows/s,"
            f" peak RSS {rss:.0f} MB"
        )
    return result


# -- latency ----------------------------------------------------------------------------------


class OffsetPoller:
    """Samples the PostgreSQL sink's stored offset every few ms, from its own thread.

    The offset commits in the same transaction as the rows, so the first sample showing
    ``next_offset > o`` is when the row of record ``o`` became visible; a sample's time is taken
    before its query, so it is an upper bound, at most one poll late."""

    def __init__(self, dsn: str, group: str, topic: str, every_s: float = 0.005) -> None:
        self.times: list[float] = []
        self.offsets: list[int] = []
        self._args = (dsn, group, topic, every_s)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        dsn, group, topic, every_s = self._args
        with psycopg.connect(dsn, autocommit=True) as conn:
            while not self._stop.is_set():
                now = time.time()
                offset = pg_stored(conn, group, topic)
                if not self.offsets or offset > self.offsets[-1]:
                    self.times.append(now)
                    self.offsets.append(offset)
                time.sleep(every_s)

    def __enter__(self) -> OffsetPoller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def seen(self) -> int:
        """The highest stored offset sampled so far."""
        return self.offsets[-1] if self.offsets else 0

    def visible_at(self, offset: int) -> float:
        """When record ``offset`` was first seen applied."""
        return self.times[bisect.bisect_right(self.offsets, offset)]


def stats(values_ms: Sequence[float]) -> dict[str, float]:
    """p50, p99 (nearest rank), max and mean, in ms."""
    ranked = sorted(values_ms)
    n = len(ranked)

    def rank(q: float) -> float:
        return ranked[max(0, math.ceil(q * n) - 1)]

    return {
        "count": n,
        "p50_ms": rank(0.50),
        "p99_ms": rank(0.99),
        "max_ms": ranked[-1],
        "mean_ms": sum(ranked) / n,
    }


SLICE_S = 10
"""The latency window is also cut into slices this long, each with its own p99: one window's
p99 hides whether it came from one stall or from the whole window."""


def window_stats(pairs: Sequence[tuple[int, float]]) -> dict[str, Any]:
    """:func:`stats` of the latencies of ``(commit time ms, latency ms)`` pairs, and the p99 of
    each :data:`SLICE_S` slice of commit time (``p99_by_slice_ms``; a last slice of less than
    half a slice's records joins the one before)."""
    result: dict[str, Any] = stats([latency for _, latency in pairs])
    start = min(ts for ts, _ in pairs)
    slices: dict[int, list[float]] = {}
    for ts, latency in pairs:
        slices.setdefault(int((ts - start) / 1000 / SLICE_S), []).append(latency)
    ordered = [slices[k] for k in sorted(slices)]
    if len(ordered) > 1 and len(ordered[-1]) < len(ordered[-2]) / 2:
        last = ordered.pop()
        ordered[-1] = ordered[-1] + last
    result["slice_s"] = SLICE_S
    result["p99_by_slice_ms"] = [stats(values)["p99_ms"] for values in ordered]
    return result


def commit_times(records: Sequence[Any]) -> list[tuple[Any, int]]:
    """(record, source commit time in ms) of the records that are not tombstones."""
    return [(r, orjson.loads(r.value)["source"]["ts_ms"]) for r in records if r.value is not None]


def offered(rate: int, written: Written) -> dict[str, Any]:
    achieved = written.changes / written.seconds
    return {
        "offered_changes_per_s": rate,
        "achieved_changes_per_s": achieved,
        "held": achieved >= 0.98 * rate,
        "seconds": written.seconds,
        "changes": written.changes,
    }


def latency_cdc(b: Bench, rate: int) -> dict[str, Any]:
    """cdc's connector and PostgreSQL sink running; the writer at ``rate`` for the window."""
    name = f"lat{rate}"
    short = CLIENTS[LATENCY_CLIENT]
    topic = f"{b.prefix(name, short)}.public.orders"
    group = b.prefix(name, "pg")
    with (
        scratch_database(b.stack, b.name(name)) as dsn,
        scratch_database(b.stack, b.name(name, "sink")) as target,
    ):
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(ORDERS_DDL)
            conn.execute(OLTP_PROCEDURE)
            create_pgoutput_slot(conn, b.name(name, short), b.name(name, short), ["orders"])
        b.kafka.create_topics([topic])
        config = cdc_config(
            b.stack.kafka,
            client=LATENCY_CLIENT,
            consumer=LATENCY_CLIENT,
            connectors=[
                {
                    "name": name,
                    "dsn": dsn,
                    "slot": b.name(name, short),
                    "tables": ["public.orders"],
                    "topic_prefix": b.prefix(name, short),
                    "snapshot": "never",
                    "plugin": LATENCY_PLUGIN,
                    "publication": b.name(name, short),
                }
            ],
            sinks=[
                {"name": "pg", "type": "postgres", "topics": [topic], "dsn": target,
                 "group_id": group},
            ],
        )  # fmt: skip
        with (
            CdcProcess(f"{name}-connector", config, b.workdir, ["--connector", name]) as source,
            CdcProcess(f"{name}-sink", config, b.workdir, ["--sink", "pg"]) as sink,
            psycopg.connect(target, autocommit=True) as conn,
        ):
            warm = oltp(dsn, round(rate * WARM_UP_S), rate=rate).cdc_records
            wait_until(
                lambda: pg_stored(conn, group, topic) >= warm, 120, "the warm-up in the sink",
                [source, sink], 0.05,
            )  # fmt: skip
            start = b.kafka.end_offset(topic)
            with OffsetPoller(target, group, topic) as poller:
                written = oltp(dsn, round(rate * b.latency_s), rate=rate)
                end = start + written.cdc_records
                # Waits on the poller's own samples: every record's visibility is then known.
                wait_until(
                    lambda: poller.seen() >= end, b.timeout(written.changes),
                    "the window's last change in the sink", [source, sink], 0.01,
                )  # fmt: skip
            rss = {"connector": source.peak_rss_mb(), "sink": sink.peak_rss_mb()}
        b.kafka.delete_groups([group])
    events = commit_times(b.kafka.records(topic, start, end))
    return {
        "load": offered(rate, written),
        "client": LATENCY_CLIENT,
        "plugin": LATENCY_PLUGIN,
        "commit_to_kafka": window_stats([(ts, r.timestamp_ms - ts) for r, ts in events]),
        "commit_to_sink": window_stats(
            [(ts, poller.visible_at(r.offset) * 1000 - ts) for r, ts in events]
        ),
        "peak_rss_mb": rss,
    }


def latency_debezium(b: Bench, rate: int) -> dict[str, Any]:
    """Debezium running alone; the writer at ``rate`` for the window."""
    name = f"lat{rate}"
    slot = b.name(name, "dbz")
    topic = f"{b.prefix(name, 'dbz')}.public.orders"
    with scratch_database(b.stack, b.name(name, "d")) as dsn:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(ORDERS_DDL)
            conn.execute(OLTP_PROCEDURE)
            create_pgoutput_slot(conn, slot, slot, ["orders"])
        b.kafka.create_topics([topic])
        extra = {"poll.interval.ms": str(DEBEZIUM_POLL_MS)}
        with DebeziumEngine(
            dsn, b.stack.kafka, slot, slot, b.prefix(name, "dbz"), ["public.orders"],
            b.workdir / f"{name}-dbz", extra=extra,
        ) as engine:  # fmt: skip
            engine.wait_streaming(120)
            warm = oltp(dsn, round(rate * WARM_UP_S), rate=rate).changes
            wait_until(
                lambda: b.kafka.end_offset(topic) >= warm, 120, "the warm-up on Kafka",
                [engine.pid], 0.05,
            )  # fmt: skip
            start = b.kafka.end_offset(topic)
            written = oltp(dsn, round(rate * b.latency_s), rate=rate)
            end = start + written.changes
            wait_until(
                lambda: b.kafka.end_offset(topic) >= end, b.timeout(written.changes),
                "the window's last change on Kafka", [engine.pid], 0.05,
            )  # fmt: skip
            rss = peak_rss_mb(engine.pid)
    events = commit_times(b.kafka.records(topic, start, end))
    return {
        "load": offered(rate, written),
        "settings": extra,
        "commit_to_kafka": window_stats([(ts, r.timestamp_ms - ts) for r, ts in events]),
        "peak_rss_mb": rss,
    }


def run_latency(b: Bench) -> dict[str, Any]:
    result: dict[str, Any] = {"window_s": b.latency_s, "loads": {}}
    for rate in LOADS:
        runs: dict[str, Any] = {"cdc": latency_cdc(b, rate)}
        say(f"latency at {rate:,}/s: cdc {latency_summary(runs['cdc'])}")
        if b.debezium:
            runs["debezium"] = latency_debezium(b, rate)
            say(f"latency at {rate:,}/s: Debezium {latency_summary(runs['debezium'])}")
        result["loads"][str(rate)] = runs
        b.kafka.delete_topics(b.prefix(f"lat{rate}", ""))
    return result


def latency_summary(run: dict[str, Any]) -> str:
    load = run["load"]
    parts = [f"achieved {load['achieved_changes_per_s']:,.0f}/s"]
    for path in ("commit_to_kafka", "commit_to_sink"):
        if path in run:
            s = run[path]
            slices = s["p99_by_slice_ms"]  # every run's stats are window_stats
            parts.append(
                f"{path.replace('_', ' ')} p50/p99/max"
                f" {s['p50_ms']:.0f}/{s['p99_ms']:.0f}/{s['max_ms']:.0f} ms"
                f" (p99 by slice {min(slices):.0f}-{max(slices):.0f})"
            )
    return ", ".join(parts)


def cleanup_topics(stack: Stack, prefix: str) -> None:
    """Delete the run's topics, with a new client: the run's may be what failed."""
    try:
        kafka = Kafka(stack.kafka)
        try:
            kafka.delete_topics(prefix)
        finally:
            kafka.close()
    except KafkaError as e:
        say(f"warning: topics {prefix}-* not deleted: {e}")


# -- main -------------------------------------------------------------------------------------

MEASUREMENTS = (*WORKLOADS, "latency")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--scale",
        type=float,
        default=float(os.environ.get("BENCH_SCALE") or 1.0),
        help="size of every workload and latency window; 1.0 = full size (env BENCH_SCALE)",
    )
    parser.add_argument(
        "--only",
        default=",".join(MEASUREMENTS),
        help=f"comma-separated measurements to run, of {', '.join(MEASUREMENTS)}",
    )
    parser.add_argument(
        "--latency-seconds",
        type=float,
        help="length of each latency window (default: 60 s x scale, at least 10 s)",
    )
    parser.add_argument(
        "--no-debezium", action="store_true", help="leave Debezium out (it is in by default)"
    )
    parser.add_argument("--results", type=Path, default=RESULTS, help="where results go")
    parser.add_argument(
        "--readme",
        type=Path,
        default=ROOT / "README.md",
        help="README whose benchmark summary is rewritten from the newest results",
    )
    parser.add_argument(
        "--docs",
        type=Path,
        default=ROOT / "docs" / "benchmarks.md",
        help="page whose benchmark tables are rewritten from the newest results",
    )
    parser.add_argument("--no-report", action="store_true", help="no chart, no docs update")
    args = parser.parse_args()
    only = [m.strip() for m in args.only.split(",") if m.strip()]
    if unknown := set(only) - set(MEASUREMENTS):
        parser.error(f"unknown measurement(s) {', '.join(sorted(unknown))}")

    stack = Stack.from_env()
    if not args.no_debezium:
        started = time.monotonic()
        build()  # fails here, not an hour in, when Maven or Java is missing
        say(f"Debezium engine built ({time.monotonic() - started:.1f} s)")
    kafka = Kafka(stack.kafka)
    described = {"machine": machine(stack), "scale": args.scale}
    with tempfile.TemporaryDirectory(prefix="cdc-bench-") as tmp, CpuMeter() as cpu:
        b = Bench(
            stack=stack,
            kafka=kafka,
            scale=args.scale,
            latency_s=args.latency_seconds or max(10.0, 60 * args.scale),
            debezium=not args.no_debezium,
            workdir=Path(tmp),
            cpu=cpu,
        )
        say(f"run {b.id}: scale {args.scale}, {', '.join(only)}; work files in {tmp}")
        try:
            for m in only:
                started = time.monotonic()
                data = run_latency(b) if m == "latency" else run_workload(b, WORKLOADS[m])
                data = {**described, "measured_s": time.monotonic() - started, **data}
                say(f"wrote {write_result(args.results, m, data)}")
        finally:
            kafka.close()
            cleanup_topics(stack, b.id)
    if not args.no_report:
        for line in report.report(args.results, args.readme, args.docs):
            say(line)


if __name__ == "__main__":
    main()
