"""``cdc run``'s Prometheus metrics and health endpoints: ``/metrics``, ``/healthz``, ``/readyz``.

The event path keeps plain counters (an integer added to, a dict entry bumped): nothing of
Prometheus runs per event. Each connector and sink says what it has when scraped
(:meth:`Observed.collect` into :class:`Families`), and ``prometheus_client`` writes the
exposition. Only the sinks' batch apply time is a ``prometheus_client`` histogram, observed once
per batch.

Readiness (``/readyz``): every worker says whether it is doing its job (:meth:`Observed.readiness`:
a connector streaming or snapshotting, a sink consuming with its target reachable), and Kafka
answered a metadata request within :data:`KAFKA_STALE_S` (:class:`KafkaProbe`: a connector with
nothing to send would not notice Kafka gone). Liveness (``/healthz``): the main loop of ``cdc
run`` turned within :data:`LOOP_STALE_S`.
"""

from __future__ import annotations

__all__ = [
    "BATCH_SECONDS",
    "Families",
    "Health",
    "KafkaProbe",
    "MetricsServer",
    "Observed",
    "age",
    "observe",
    "parse_listen",
]

import json
import logging
import math
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from http.server import ThreadingHTTPServer
from typing import Protocol
from urllib.parse import urlparse

from prometheus_client import (
    CollectorRegistry,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import MetricsHandler
from prometheus_client.registry import Collector

from cdc import __version__
from cdc.config import KafkaConfig
from cdc.errors import CdcError, describe

log = logging.getLogger(__name__)

LOOP_STALE_S = 10.0
"""``/healthz`` fails when ``cdc run``'s main loop (it turns every 0.5 s) has not for this long."""
KAFKA_LOOK_S = 5.0
KAFKA_STALE_S = 15.0
"""``/readyz`` fails when Kafka has not answered a metadata request for this long."""

# The *_created series say when each series began: noise for a process's own metrics.
disable_created_metrics()  # type: ignore[no-untyped-call]
REGISTRY = CollectorRegistry(auto_describe=False)
"""cdc's own registry: what ``/metrics`` shows, and nothing an embedding program registered."""
ProcessCollector(registry=REGISTRY)  # process_resident_memory_bytes, _cpu_seconds_total, fds
PlatformCollector(registry=REGISTRY)  # python_info

BATCH_SECONDS = Histogram(
    "cdc_sink_batch_apply_seconds",
    "Time to apply one batch to the target, offsets included (one transaction).",
    ["sink"],
    registry=REGISTRY,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


class Families:
    """Metric families built at scrape time: the same name from several workers is one family,
    each worker adding its samples (label names fixed by the first)."""

    def __init__(self) -> None:
        self._families: dict[str, Metric] = {}

    def counter(self, name: str, doc: str, labels: dict[str, str], value: float) -> None:
        """``name`` without ``_total`` (prometheus_client adds it)."""
        self._add(CounterMetricFamily, name, doc, labels, value)

    def gauge(self, name: str, doc: str, labels: dict[str, str], value: float) -> None:
        self._add(GaugeMetricFamily, name, doc, labels, value)

    def states(
        self, name: str, doc: str, labels: dict[str, str], states: tuple[str, ...], now: str
    ) -> None:
        """A gauge per state in label ``state``: 1 for ``now``, 0 for the others."""
        for state in states:
            self.gauge(name, doc, {**labels, "state": state}, 1 if state == now else 0)

    def _add(
        self,
        kind: type[CounterMetricFamily] | type[GaugeMetricFamily],
        name: str,
        doc: str,
        labels: dict[str, str],
        value: float,
    ) -> None:
        family = self._families.get(name)
        if family is None:
            family = self._families[name] = kind(name, doc, labels=list(labels))
        family.add_metric(list(labels.values()), value)  # type: ignore[attr-defined]

    def __iter__(self) -> Iterator[Metric]:
        return iter(self._families.values())


class Observed(Protocol):
    """What a connector or sink of ``cdc run`` shows to ``/metrics`` and ``/readyz``."""

    def collect(self, out: Families) -> None:
        """Add its samples (called on the HTTP server's thread: read, never block)."""
        ...

    def readiness(self) -> str | None:
        """None when doing its job; else why not, in a few words."""
        ...


class _Unobserved:
    """A plugin written before ``/metrics``: no samples, and ready while it runs."""

    def collect(self, out: Families) -> None:
        pass

    def readiness(self) -> str | None:
        return None


def observe(worker: object) -> Observed:
    """``worker`` as ``/metrics`` and ``/readyz`` see it."""
    if callable(getattr(worker, "collect", None)) and callable(getattr(worker, "readiness", None)):
        return worker  # type: ignore[return-value]
    return _Unobserved()


class _Workers(Collector):
    def __init__(
        self, workers: Sequence[tuple[str, Observed]], failures: Callable[[], dict[str, int]]
    ) -> None:
        self.workers = workers
        self.failures = failures

    def collect(self) -> Iterable[Metric]:
        out = Families()
        out.gauge("cdc_build_info", "cdc's version.", {"version": __version__}, 1)
        for name, count in self.failures().items():
            out.counter(
                "cdc_worker_failures",
                "Failures of a connector or sink that reached the supervisor (it restarts them"
                " with backoff).",
                {"worker": name},
                count,
            )
        for name, worker in self.workers:
            try:
                worker.collect(out)
            except Exception:  # a scrape must not fail because one worker's numbers did
                log.exception("%s: collecting metrics failed", name)
        return out


class Health:
    """What ``/healthz`` and ``/readyz`` answer, from the workers and the main loop's beat."""

    def __init__(
        self,
        workers: Sequence[tuple[str, Observed]],
        kafka: KafkaProbe | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.workers = workers
        self.kafka = kafka
        self.clock = clock
        self.beat_at = clock()

    def beat(self) -> None:
        """The main loop turned."""
        self.beat_at = self.clock()

    def live(self) -> tuple[bool, dict[str, object]]:
        quiet = self.clock() - self.beat_at
        if quiet > LOOP_STALE_S:
            return False, {"status": "down", "reason": f"main loop stalled for {quiet:.0f} s"}
        return True, {"status": "ok"}

    def ready(self) -> tuple[bool, dict[str, object]]:
        states: dict[str, str] = {}
        reasons = []
        for name, worker in self.workers:
            try:
                why = worker.readiness()
            except Exception as e:  # an unanswerable worker is not ready
                why = f"readiness unknown: {describe(e)}"
            states[name] = why or "ready"
            if why:
                reasons.append(f"{name}: {why}")
        if self.kafka is not None:
            why = self.kafka.problem()
            states["kafka"] = why or "ready"
            if why:
                reasons.append(f"kafka: {why}")
        body: dict[str, object] = {"status": "not ready" if reasons else "ready"}
        if reasons:
            body["reason"] = "; ".join(reasons)
        body["checks"] = states
        return not reasons, body


class KafkaProbe:
    """Asks Kafka for its topics every :data:`KAFKA_LOOK_S` on a thread of its own, with a
    client of its own; :meth:`problem` says when it last answered."""

    def __init__(self, kafka: KafkaConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.kafka = kafka
        self.clock = clock
        self.started = clock()
        self.ok_at: float | None = None
        self.error = "not reached yet"
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cdc-kafka-probe", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def problem(self) -> str | None:
        now = self.clock()
        if self.ok_at is not None and now - self.ok_at <= KAFKA_STALE_S:
            return None
        if self.ok_at is None:
            return f"{self.error} (for {now - self.started:.0f} s)"
        return f"no answer for {now - self.ok_at:.0f} s: {self.error}"

    def _run(self) -> None:
        from cdc.kafka import open_admin  # noqa: PLC0415  (only cdc run with metrics needs it)

        admin = None
        while not self._closed.is_set():
            try:
                if admin is None:
                    admin = open_admin(self.kafka, client="kafka-python", request_timeout_ms=5000)
                admin.topics()
                self.ok_at = self.clock()
            except CdcError as e:
                self.error = describe(e)
            except Exception as e:  # a client bug must not end the probe: it would say not ready
                self.error = f"unexpected {type(e).__name__}: {describe(e)}"
            self._closed.wait(KAFKA_LOOK_S)
        if admin is not None:
            admin.close()

    def close(self) -> None:
        self._closed.set()


def parse_listen(listen: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:port`` for IPv6) as (host, port)."""
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


class MetricsServer:
    """Serves ``/metrics``, ``/healthz`` and ``/readyz`` on ``listen`` from a daemon thread."""

    def __init__(
        self,
        listen: str,
        workers: Sequence[tuple[str, Observed]],
        health: Health,
        failures: Callable[[], dict[str, int]] = dict,
    ) -> None:
        host, port = parse_listen(listen)
        collector = _Workers(workers, failures)
        REGISTRY.register(collector)
        self._collector = collector

        class Handler(MetricsHandler):
            registry = REGISTRY

            def do_GET(self) -> None:
                path = urlparse(self.path).path
                if path == "/metrics":
                    super().do_GET()
                elif path in ("/healthz", "/readyz"):
                    ok, body = health.live() if path == "/healthz" else health.ready()
                    self._json(200 if ok else 503, body)
                else:
                    known = "/metrics, /healthz, /readyz"
                    self._json(404, {"error": f"no such path {path}: try {known}"})

            def _json(self, status: int, body: dict[str, object]) -> None:
                data = json.dumps(body).encode() + b"\n"
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        server_class = ThreadingHTTPServer
        if ":" in host:  # an IPv6 address

            class V6(ThreadingHTTPServer):
                address_family = socket.AF_INET6

            server_class = V6
        try:
            self.server = server_class((host, port), Handler)
        except OSError as e:
            REGISTRY.unregister(collector)
            raise CdcError(f"metrics: cannot listen on {listen}: {e.strerror or e}") from None
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="cdc-metrics", daemon=True
        )

    def start(self) -> None:
        self._thread.start()
        log.info("metrics and health on http://%s/metrics, /healthz, /readyz", self.address)

    @property
    def address(self) -> str:
        host = str(self.server.server_address[0])
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"

    def close(self) -> None:
        if self._thread.is_alive():
            self.server.shutdown()  # waits for serve_forever: never when it was not started
        self.server.server_close()
        REGISTRY.unregister(self._collector)


def age(now: float, then: float | None) -> float:
    """Seconds from ``then`` to ``now``; NaN when it never happened."""
    return math.nan if not then else max(0.0, now - then)
