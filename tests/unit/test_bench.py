"""The benchmark package's own arithmetic and bookkeeping, without services: docs/benchmarks.md's
tables and README's summary are what the committed results say, percentiles are nearest-rank, a
sampled offset dates a record's visibility, and the configurations the bench writes are ones cdc
accepts."""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from bench import report
from bench.common import CLOCK_TICKS, CpuMeter, busy_cpu_s, cdc_config, process_cpu_s
from bench.run import OffsetPoller, median_pair, stats, window_stats
from cdc.config import parse_config
from tests.support import ROOT


def test_the_docs_tables_and_readme_summary_are_the_committed_results() -> None:
    found = report.latest(ROOT / "bench" / "results")
    assert set(found) == set(report.NAMES)
    docs = (ROOT / "docs" / "benchmarks.md").read_text()
    block = docs.split(report.BEGIN, 1)[1].split(report.END, 1)[0]
    # A result edited, or a table written by hand, shows here: run `python -m bench.report`.
    assert block.strip("\n") == report.table(found)
    readme = (ROOT / "README.md").read_text()
    block = readme.split(report.SUMMARY_BEGIN, 1)[1].split(report.SUMMARY_END, 1)[0]
    assert block.strip("\n") == report.summary(found)
    assert len(report.summary(found).splitlines()) == 3


def test_the_tables_links_resolve_from_the_docs_page() -> None:
    # The tables are written into docs/: their chart and bench/README.md links go up one level.
    found = report.latest(ROOT / "bench" / "results")
    for target in re.findall(r"\]\(([^)#]+)\)", report.table(found)):
        assert (ROOT / "docs" / target).resolve().exists(), target


def test_update_between_replaces_only_the_block(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(f"before\n{report.BEGIN}\nold\n{report.END}\nafter\n")
    report.update_between(page, "new")
    assert page.read_text() == f"before\n{report.BEGIN}\nnew\n{report.END}\nafter\n"
    page.write_text(f"a\n{report.SUMMARY_BEGIN}\nold\n{report.SUMMARY_END}\nb\n")
    report.update_between(page, "new", report.SUMMARY_BEGIN, report.SUMMARY_END)
    assert page.read_text() == f"a\n{report.SUMMARY_BEGIN}\nnew\n{report.SUMMARY_END}\nb\n"
    page.write_text("no markers\n")
    with pytest.raises(SystemExit, match="no <!-- bench:begin -->"):
        report.update_between(page, "new")


def test_report_writes_the_tables_to_docs_and_the_summary_to_readme(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(report, "chart", lambda found, out: out.write_bytes(b"png"))
    results = tmp_path / "results"
    shutil.copytree(ROOT / "bench" / "results", results, ignore=shutil.ignore_patterns("*.png"))
    docs, readme = tmp_path / "benchmarks.md", tmp_path / "README.md"
    docs.write_text(f"# B\n{report.BEGIN}\n{report.END}\n")
    readme.write_text(f"# R\n{report.SUMMARY_BEGIN}\n{report.SUMMARY_END}\n")
    report.report(results, readme, docs)
    found = report.latest(results)
    assert docs.read_text() == f"# B\n{report.BEGIN}\n{report.table(found)}\n{report.END}\n"
    assert readme.read_text() == (
        f"# R\n{report.SUMMARY_BEGIN}\n{report.summary(found)}\n{report.SUMMARY_END}\n"
    )


def test_stats_are_nearest_rank() -> None:
    s = stats([float(v) for v in reversed(range(1, 101))])
    assert (s["count"], s["p50_ms"], s["p99_ms"], s["max_ms"], s["mean_ms"]) == (
        100,
        50.0,
        99.0,
        100.0,
        50.5,
    )
    assert stats([7.0])["p99_ms"] == 7.0


def test_the_window_has_a_p99_per_10_s_slice() -> None:
    # 25 s of commits, one per 100 ms: latency 5 ms, but 500 ms for the records of second 12;
    # the 3 records at 30 s are too few for a slice of their own and join the last one.
    pairs = [(1_000 + i * 100, 500.0 if 12_000 <= i * 100 < 13_000 else 5.0) for i in range(250)]
    pairs += [(31_000 + i, 900.0) for i in range(3)]
    s = window_stats(pairs)
    assert (s["count"], s["p99_ms"], s["max_ms"]) == (253, 900.0, 900.0)
    assert (s["slice_s"], s["p99_by_slice_ms"]) == (10, [5.0, 500.0, 900.0])


def test_a_record_is_visible_at_the_first_sample_past_its_offset() -> None:
    poller = OffsetPoller("", "g", "t")  # never started: samples set by hand
    poller.times, poller.offsets = [10.0, 11.0, 12.0], [0, 5, 12]
    # next_offset 5 means records 0..4 are applied; record 5 first shows in the 12.
    assert [poller.visible_at(o) for o in (0, 4, 5, 11)] == [11.0, 11.0, 12.0, 12.0]
    assert poller.seen() == 12


def test_the_bench_configuration_is_one_cdc_accepts() -> None:
    text = cdc_config(
        "127.0.0.1:9092",
        client="confluent-kafka",
        consumer="confluent-kafka",
        connectors=[
            {
                "name": "oltp",
                "dsn": "host=x dbname=y",
                "slot": "bench_oltp",
                "tables": ["public.orders"],
                "topic_prefix": "bench.oltp",
                "snapshot": "never",
            }
        ],
        sinks=[
            {"name": "pg", "type": "postgres", "topics": ["bench.oltp.*"], "dsn": "host=x",
             "group_id": "g"},
            {"name": "lite", "type": "sqlite", "topics": ["bench.oltp.*"], "path": "x.db"},
        ],
    )  # fmt: skip
    config = parse_config(text)
    assert config.kafka.producer.client == config.kafka.consumer.client == "confluent-kafka"
    assert [c.slot for c in config.connectors] == ["bench_oltp"]
    assert [s.name for s in config.sinks] == ["pg", "lite"]


def test_the_source_table_gives_the_kafka_write_limit_and_cdcs_ratio_to_it() -> None:
    run = {"changes_per_s": 50_000.0, "ratio_to_read_limit": 0.5, "peak_rss_mb": 90.0}
    result = {
        "workload": {"changes": 100_000},
        "read_limit": {"changes_per_s": 60_000.0},
        "read_limit_pgoutput": {"changes_per_s": 100_000.0},
        "kafka_write_limit": {"changes_per_s": 62_500.0},
        "cdc_pgo": {**run, "ratio_to_kafka_write_limit": 0.8},
    }
    row = report.source_table({"wide": ("2026-12-06", result)})[-1]
    assert row.startswith("| wide rows | 100 000 | 60 000 | 100 000 | 62 500 (0.80) | — | — |")
    del result["kafka_write_limit"]  # results of runs before it was measured
    row = report.source_table({"wide": ("2026-12-06", result)})[-1]
    assert row.startswith("| wide rows | 100 000 | 60 000 | 100 000 | — | — | — |")


def test_the_sink_table_gives_the_upsert_baseline_beside_copy() -> None:
    copy = {"rows": 1000, "rows_per_s": 400_000.0}
    sinks = {"records": 1100, "copy": copy}
    result = {"workload": {"changes": 1000}, "sinks": sinks}
    assert report.sink_table({"oltp": ("2026-12-06", result)})[-1].startswith(
        "| OLTP | 1 000 (1 100) | 400 000 (1 000 rows) | — |"
    )  # results of runs before it was measured
    copy.update(upsert_rows_per_s=220_000.0, upsert_ratio_to_copy=0.55)
    assert report.sink_table({"oltp": ("2026-12-06", result)})[-1].startswith(
        "| OLTP | 1 000 (1 100) | 400 000 (1 000 rows) | 220 000 (0.55) |"
    )


def test_busy_cpu_counts_all_but_idle_and_iowait() -> None:
    stat = "cpu  100 20 30 5000 400 6 7 8 90 0\ncpu0 1 2 3 4 5 6 7 8 9 0\n"
    assert busy_cpu_s(stat) == (100 + 20 + 30 + 6 + 7 + 8) / CLOCK_TICKS
    with pytest.raises(ValueError, match="not /proc/stat"):
        busy_cpu_s("intr 1 2 3")


def test_the_cpu_meter_interpolates_between_samples(tmp_path: Path) -> None:
    meter = CpuMeter(stat=tmp_path / "unused")
    for at, busy in ((100.0, 10.0), (101.0, 12.0), (103.0, 12.0)):
        meter.sample(at, busy)
    # 100.5 -> 11.0 and 101.0 -> 12.0: 1 CPU-second in 0.5 s, for 4 changes.
    assert meter.use(100.5, 101.0, 4) == {"cores_busy": 2.0, "cpu_us_per_change": 250_000.0}
    # Nothing more after 101.0; outside the samples the ends hold.
    assert meter.use(101.0, 104.0, 1)["cores_busy"] == 0.0
    assert meter.use(99.0, 100.5, 1)["cpu_us_per_change"] == 1e6
    with pytest.raises(ValueError, match="no CPU samples"):
        meter.use(101.0, 101.0, 1)


def test_the_cpu_meter_samples_this_machine() -> None:
    with CpuMeter(period_s=0.01) as meter:
        start = time.time()
        deadline = time.process_time() + 0.2
        while time.process_time() < deadline:  # keep one core busy
            pass
        end = time.time()
    assert meter.use(start, end, 1)["cores_busy"] > 0.5


def test_the_cpu_table_gives_cdcs_ceiling_on_the_machines_cores() -> None:
    def cpu(us: float, cores: float) -> dict[str, Any]:
        return {"cpu": {"cpu_us_per_change": us, "cores_busy": cores}}

    result = {
        "machine": {"cpus": 2},
        "read_limit_pgoutput": cpu(20.0, 1.0),
        "cdc_pgo": cpu(80.0, 1.96),
        "kafka_write_limit": cpu(50.0, 1.5),
        "sinks": {"copy": {**cpu(3.0, 1.1), "upsert_cpu": cpu(6.0, 1.0)["cpu"]}},
    }
    row = report.cpu_table({"wide": ("2026-12-06", result)})[-1]
    assert row == (
        "| wide rows | 20 (1.00) | 80 (1.96) | 25 000 | 50 (1.50) | — | 3 (1.10) | 6 (1.00) | — |"
    )
    del result["cdc_pgo"]["cpu"]  # results of runs before it was measured: no row
    assert report.cpu_table({"wide": ("2026-12-06", result)})[-1].startswith("|---")


def test_the_pgoutput_pair_reported_is_the_median_one() -> None:
    def pair(limit: float, ratio: float) -> tuple[dict[str, Any], dict[str, Any]]:
        return {"changes_per_s": limit}, {"ratio_to_read_limit": ratio}

    pairs = [pair(90_000, 0.97), pair(110_000, 0.78), pair(100_000, 0.91)]
    assert median_pair(pairs) == pair(100_000, 0.91)
    assert median_pair(pairs[:2]) == pair(110_000, 0.78)  # an even count: the lower middle
    assert median_pair(pairs[:1]) == pair(90_000, 0.97)


def test_the_pgoutput_cell_gives_the_range_of_the_pairs() -> None:
    run: dict[str, Any] = {
        "changes_per_s": 84_022.0,
        "ratio_to_read_limit": 0.97,
        "peak_rss_mb": 72.0,
    }
    assert report.pairs_cell(run) == "84 022 (0.97), 72 MB"  # results from before the pairs
    run["pairs"] = [{"ratio_to_read_limit": r} for r in (0.97, 0.78, 0.99)]
    assert report.pairs_cell(run) == "84 022 (0.97; 0.78-0.99 in 3 pairs), 72 MB"
    assert report.pairs_cell(None) == "—"


def test_the_metrics_table_gives_both_medians_and_their_ratio() -> None:
    cost = {
        "off_changes_per_s": [40_000.0, 42_000.0, 41_000.0],
        "on_changes_per_s": [40_500.0, 39_000.0, 41_500.0],
        "median_off": 41_000.0,
        "median_on": 40_500.0,
        "ratio_on_to_off": 40_500 / 41_000,
        "cpu_us_per_change_off": 21.04,
        "cpu_us_per_change_on": 21.31,
        "peak_rss_mb_off": 73.2,
        "peak_rss_mb_on": 75.9,
    }
    shaped = {**cost, "what": "with a column hashed", "median_on": 20_500.0}
    shaped["ratio_on_to_off"] = 20_500 / 41_000
    lines = report.metrics_table(
        {"oltp": ("2026-12-06", {"metrics_cost": cost, "transforms_cost": shaped})}
    )
    assert lines[-2:] == [  # results from before transforms had a label: "with /metrics"
        "| OLTP, with /metrics | 41 000 (40 000, 42 000, 41 000) | 40 500 (40 500, 39 000,"
        " 41 500) | 0.988 | 21.0 / 21.3 | 73 / 76 MB |",
        "| OLTP, with a column hashed | 41 000 (40 000, 42 000, 41 000) | 20 500 (40 500, 39 000,"
        " 41 500) | 0.500 | 21.0 / 21.3 | 73 / 76 MB |",
    ]
    assert len(report.metrics_table({"oltp": ("2026-12-06", {})})) == 4  # header only: left out


def test_process_cpu_counts_this_process() -> None:
    before = process_cpu_s(os.getpid())
    deadline = time.process_time() + 0.05
    while time.process_time() < deadline:
        pass
    assert process_cpu_s(os.getpid()) >= before + 0.03
