"""``/metrics``, ``/healthz`` and ``/readyz`` without services: the server on a loopback port with
fake workers, the readiness rules of connectors and sinks, and the ``[metrics]`` setting."""

from __future__ import annotations

import json
import math
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from cdc.cli import cli
from cdc.config import parse_config
from cdc.errors import (
    CdcError,
    ConfigError,
    KafkaUnavailable,
    SourceUnavailable,
    TargetUnavailable,
)
from cdc.metrics import KAFKA_STALE_S, LOOP_STALE_S, Families, Health, KafkaProbe, MetricsServer
from cdc.sink.stats import SinkStats
from connectors.postgres.progress import Progress
from connectors.postgres.stats import SourceStats

KAFKA = (
    '[kafka]\nbootstrap_servers = "127.0.0.1:1"\n'
    '[[sinks]]\nname = "lite"\ntype = "sqlite"\ntopics = ["x.*"]\npath = "x.db"\n'
)


class FakeWorker:
    def __init__(self, name: str, value: float, why: str | None = None) -> None:
        self.name, self.value, self.why = name, value, why

    def collect(self, out: Families) -> None:
        out.counter("cdc_fake_things", "Things.", {"worker": self.name}, self.value)
        out.gauge("cdc_fake_level", "A level.", {"worker": self.name}, self.value / 2)

    def readiness(self) -> str | None:
        return self.why


def samples_of(
    stats: SourceStats | SinkStats,
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    families = Families()
    stats.collect(families)
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310
            return int(r.status), str(r.headers["Content-Type"]), bytes(r.read())
    except urllib.error.HTTPError as e:
        return int(e.code), str(e.headers["Content-Type"]), bytes(e.read())


@pytest.fixture
def served() -> Iterator[tuple[str, list[FakeWorker], Health, Clock]]:
    workers = [FakeWorker("a", 4), FakeWorker("b", 10)]
    clock = Clock()
    health = Health([(w.name, w) for w in workers], None, clock)
    server = MetricsServer("127.0.0.1:0", [(w.name, w) for w in workers], health, lambda: {"a": 2})
    server.start()
    try:
        yield f"http://127.0.0.1:{server.port}", workers, health, clock
    finally:
        server.close()


def test_metrics_merge_the_workers_samples_into_one_family_each(
    served: tuple[str, list[FakeWorker], Health, Clock],
) -> None:
    base, *_ = served
    status, kind, body = get(base + "/metrics")
    assert status == 200 and kind.startswith("text/plain")
    text = body.decode()
    assert text.count("# TYPE cdc_fake_things_total counter") == 1
    assert text.count("# TYPE cdc_fake_level gauge") == 1
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }
    assert samples[("cdc_fake_things_total", (("worker", "a"),))] == 4
    assert samples[("cdc_fake_things_total", (("worker", "b"),))] == 10
    assert samples[("cdc_fake_level", (("worker", "b"),))] == 5
    assert samples[("cdc_worker_failures_total", (("worker", "a"),))] == 2
    assert samples[("process_resident_memory_bytes", ())] > 0
    assert not any(name.endswith("_created") for name, _ in samples)


def test_readyz_names_every_worker_not_ready_and_healthz_the_stalled_loop(
    served: tuple[str, list[FakeWorker], Health, Clock],
) -> None:
    base, workers, health, clock = served
    status, kind, body = get(base + "/readyz")
    assert (status, kind) == (200, "application/json")
    assert json.loads(body) == {"status": "ready", "checks": {"a": "ready", "b": "ready"}}
    workers[1].why = "reconnecting: the server is away"
    status, _, body = get(base + "/readyz")
    assert status == 503
    assert json.loads(body) == {
        "status": "not ready",
        "reason": "b: reconnecting: the server is away",
        "checks": {"a": "ready", "b": "reconnecting: the server is away"},
    }
    assert get(base + "/healthz")[0] == 200
    clock.now += LOOP_STALE_S + 1
    status, _, body = get(base + "/healthz")
    assert status == 503 and "main loop stalled" in json.loads(body)["reason"]
    health.beat()
    assert get(base + "/healthz")[0] == 200
    status, _, body = get(base + "/elsewhere")
    assert status == 404 and "/readyz" in json.loads(body)["error"]


def test_a_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        health = Health([], None)
        with pytest.raises(CdcError, match=rf"metrics: cannot listen on 127.0.0.1:{port}: "):
            MetricsServer(f"127.0.0.1:{port}", [], health)
    # The failed one left nothing registered: another serves.
    server = MetricsServer("127.0.0.1:0", [], health)
    server.close()


def test_kafka_probe_is_ready_only_while_kafka_answered_lately() -> None:
    clock = Clock()
    probe = KafkaProbe(parse_config(KAFKA).kafka, clock)
    assert probe.problem() == "not reached yet (for 0 s)"
    probe.ok_at = clock.now
    clock.now += KAFKA_STALE_S
    assert probe.problem() is None
    probe.error = "Kafka did not list its topics: NoBrokersAvailable"
    clock.now += 1
    assert probe.problem() == (
        f"no answer for {KAFKA_STALE_S + 1:.0f} s: Kafka did not list its topics:"
        " NoBrokersAvailable"
    )
    health = Health([], probe, clock)
    ok, body = health.ready()
    assert not ok and str(body["reason"]).startswith("kafka: no answer for 16 s")


def test_connector_readiness_follows_its_state() -> None:
    stats = SourceStats("src")
    assert stats.readiness() == "starting"
    stats.state = "snapshotting"
    assert stats.readiness() is None
    stats.streaming()
    assert stats.readiness() is None
    stats.kafka_out_since = time.monotonic() - 12
    assert stats.readiness() == "Kafka has acknowledged nothing for 12 s while records wait"
    stats.kafka_out_since = None
    stats.turned -= 31
    assert stats.readiness() == "the stream loop has not turned for 31 s"
    stats.failed(SourceUnavailable("connector src: the server is away"), "the server is away")
    assert stats.readiness() == "reconnecting: the server is away"
    assert stats.errors == {"SourceUnavailable": 1}


def test_connector_samples() -> None:
    stats = SourceStats("src")
    families = Families()
    stats.collect(families)
    values = {
        (s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples
    }
    # Nothing known yet: NaN, not a made-up 0.
    assert math.isnan(values[("cdc_connector_replication_lag_seconds", (("connector", "src"),))])
    assert math.isnan(values[("cdc_connector_lag_bytes", (("connector", "src"),))])
    stats.by_table["public", "t", "c"] = 3
    stats.confirmed, stats.wal_end = 1000, 1500
    stats.acked_ts_ms = int((time.time() - 60) * 1000)
    progress = Progress("connector src", "public.t", 100, 40)
    stats.snapshot("incremental", progress)
    families = Families()
    stats.collect(families)
    values = {
        (s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples
    }
    c = ("connector", "src")
    assert (
        values[("cdc_connector_events_published_total", (c, ("op", "c"), ("table", "public.t")))]
        == 3
    )
    assert values[("cdc_connector_lag_bytes", (c,))] == 500
    assert 59 < values[("cdc_connector_replication_lag_seconds", (c,))] < 70
    snapshot = (c, ("kind", "incremental"), ("table", "public.t"))
    assert values[("cdc_connector_snapshot_rows_read", snapshot)] == 40
    assert values[("cdc_connector_snapshot_rows_estimated", snapshot)] == 100
    assert (
        values[("cdc_connector_snapshot_state", tuple(sorted((*snapshot, ("state", "running")))))]
        == 1
    )
    stats.caught_up = True
    families = Families()
    stats.collect(families)
    values = {
        (s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples
    }
    assert values[("cdc_connector_replication_lag_seconds", (c,))] == 0


class Ranges:
    def __init__(self, ranges: dict[tuple[str, int], tuple[int, int]]) -> None:
        self.ranges = ranges


def test_sink_lag_and_readiness() -> None:
    stats = SinkStats("pg")
    assert stats.readiness() == "starting"
    stats.unreachable(TargetUnavailable("sink pg: the database is away"))
    assert stats.readiness() == "starting: sink pg: the database is away"
    stats.consuming()
    assert stats.readiness() is None
    stats.watch = Ranges({("t", 0): (0, 10), ("t", 1): (5, 5), ("u", 0): (0, 3)})
    stats.positions = {("t", 0): 4, ("t", 1): 0}  # u is another member's
    assert stats.lag() == {("t", 0): 6, ("t", 1): 0}
    stats.newest_ts_ms = int((time.time() - 30) * 1000)
    families = Families()
    stats.collect(families)
    values = {
        (s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples
    }
    assert 29 < values[("cdc_sink_lag_seconds", (("sink", "pg"),))] < 40
    key = (("partition", "0"), ("sink", "pg"), ("topic", "t"))
    assert values[("cdc_sink_consumer_lag_records", key)] == 6
    stats.positions[("t", 0)] = 10
    families = Families()
    stats.collect(families)
    values = {
        (s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples
    }
    assert values[("cdc_sink_lag_seconds", (("sink", "pg"),))] == 0
    stats.problem = "the target is away"
    assert stats.readiness() == "target unreachable: the target is away"
    stats.problem = None
    stats.applying_since = time.monotonic() - 61
    assert stats.readiness() == "a batch has been applying for 61 s: the target is slow or held"
    stats.failed(KafkaUnavailable("gone"), "gone")
    assert stats.readiness() == "reconnecting: gone"


@pytest.mark.parametrize("listen", ["localhost", "127.0.0.1:", ":9187", "127.0.0.1:99999", "a b:1"])
def test_a_bad_listen_address_is_refused(listen: str) -> None:
    with pytest.raises(ConfigError, match=r"metrics\.listen"):
        parse_config(f'{KAFKA}[metrics]\nlisten = "{listen}"\n')


@pytest.mark.parametrize("listen", ["127.0.0.1:9187", "0.0.0.0:9187", "[::1]:9187", "cdc:9187"])
def test_listen_addresses(listen: str) -> None:
    assert parse_config(f'{KAFKA}[metrics]\nlisten = "{listen}"\n').metrics.listen == listen
    assert parse_config(KAFKA).metrics.listen is None


def test_metrics_listen_option_is_checked(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(KAFKA)
    result = CliRunner().invoke(cli, ["run", "-c", str(config), "--metrics-listen", "nowhere"])
    assert result.exit_code == 2
    assert "--metrics-listen" in result.output and "host:port" in result.output
