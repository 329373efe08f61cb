"""The chart, docs/benchmarks.md's tables and README.md's summary, from the newest results.

    .venv/bin/python -m bench.report [--results DIR] [--docs FILE] [--readme FILE]

``bench.run`` calls it at the end of a run. For each measurement (``oltp``, ``bulk``,
``wide``, ``latency``) the newest ``<date>-<name>.json`` in bench/results is used. The chart is
written to ``<date>-bench.png`` and copied to ``latest-bench.png``, which docs/benchmarks.md shows;
the tables replace what is between docs/benchmarks.md's ``<!-- bench:begin -->`` and
``<!-- bench:end -->``, a three-line summary what is between README.md's
``<!-- bench-summary:begin -->`` and ``<!-- bench-summary:end -->``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WORKLOADS = ("oltp", "bulk", "wide")
NAMES = (*WORKLOADS, "latency")
TITLES = {"oltp": "OLTP", "bulk": "bulk COPY", "wide": "wide rows"}
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
SUMMARY_BEGIN, SUMMARY_END = "<!-- bench-summary:begin -->", "<!-- bench-summary:end -->"
# The tables' links are relative to docs/benchmarks.md, where they are written.
DOCS_TO_ROOT = "../"
CHART = "latest-bench.png"

Result = dict[str, Any]


def latest(results: Path) -> dict[str, tuple[str, Result]]:
    """name -> (date, data) of the newest results file of each measurement."""
    found: dict[str, tuple[str, Result]] = {}
    for name in NAMES:
        files = sorted(results.glob(f"[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]-{name}.json"))
        if files:
            found[name] = (files[-1].name[:10], json.loads(files[-1].read_text()))
    return found


# -- numbers ----------------------------------------------------------------------------------


def num(x: float | None) -> str:
    """12 345 (a space between thousands, as the README writes them)."""
    return "—" if x is None else f"{x:,.0f}".replace(",", " ")


def ratio(x: float | None) -> str:
    if x is None:
        return "—"
    return f"{x:.3f}" if x < 0.1 else f"{x:.2f}"


def rate_cell(run: Result | None, rate_key: str, ratio_key: str, aside: str = "") -> str:
    """``6 776 (0.13), 73 MB``; ``aside`` goes in the brackets after the ratio."""
    if not run:
        return "—"
    rss = f", {run['peak_rss_mb']:.0f} MB" if "peak_rss_mb" in run else ""
    return f"{num(run[rate_key])} ({ratio(run[ratio_key])}{aside}){rss}"


def pairs_cell(run: Result | None) -> str:
    """cdc on pgoutput: ``84 022 (0.97; 0.78-0.99 in 3 pairs), 72 MB``, the pair of median
    ratio and the range of all (:data:`bench.run.PGOUTPUT_PAIRS`); as :func:`rate_cell` for
    results from before the pairs."""
    ratios = [p["ratio_to_read_limit"] for p in (run or {}).get("pairs", [])]
    aside = f"; {ratio(min(ratios))}-{ratio(max(ratios))} in {len(ratios)} pairs" if ratios else ""
    return rate_cell(run, "changes_per_s", "ratio_to_read_limit", aside)


def ms(s: Result | None) -> str:
    if not s:
        return "—"
    text = " / ".join(f"{s[k]:.0f}" for k in ("p50_ms", "p99_ms", "max_ms"))
    slices = s.get("p99_by_slice_ms")
    if slices:
        text += f" ({min(slices):.0f}-{max(slices):.0f})"
    return text


# -- the table --------------------------------------------------------------------------------


def head(*columns: str) -> list[str]:
    """A markdown table's header row and its separator, one cell per column."""
    return ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]


def source_table(found: dict[str, tuple[str, Result]]) -> list[str]:
    lines = [
        "Source → Kafka: changes/s from the first record on Kafka until the slot confirms the"
        " workload's end (every change acked, `acks=all`); in brackets the ratio to the read"
        " limit of the run's plugin (`pg_recvlogical` with the same plugin options, same WAL, to"
        " /dev/null); peak RSS. Debezium decodes pgoutput. The Kafka write limit is cdc's own"
        " producer sending the records cdc published again, read back beforehand, to the same"
        " broker: as fast as this Kafka takes them from Python; in brackets the ratio of cdc on"
        " pgoutput to it. cdc on pgoutput and its read limit are measured in pairs, alternately"
        " (read limit, cdc, read limit, cdc, ...), each on a slot of its own: shown is the pair"
        " of median ratio, then the lowest and highest ratio of all pairs; the read limit,"
        " pgoutput column is that pair's.",
        "",
        *head(
            "workload",
            "changes",
            "read limit, wal2json",
            "read limit, pgoutput",
            "Kafka write limit",
            "cdc, wal2json, kafka-python",
            "cdc, wal2json, confluent-kafka",
            "cdc, pgoutput, confluent-kafka",
            "Debezium (pgoutput)",
            "cdc (pgoutput) / Debezium",
        ),
    ]
    for name in WORKLOADS:
        if name not in found:
            continue
        r = found[name][1]
        pgo, dbz = r.get("cdc_pgo"), r.get("debezium")
        versus = ratio(pgo["changes_per_s"] / dbz["changes_per_s"]) if pgo and dbz else "—"
        limit_pgo = r.get("read_limit_pgoutput", {}).get("changes_per_s")
        kafka = r.get("kafka_write_limit")
        kafka_cell = (
            f"{num(kafka['changes_per_s'])} ({ratio(pgo['ratio_to_kafka_write_limit'])})"
            if kafka and pgo and "ratio_to_kafka_write_limit" in pgo
            else "—"
        )
        lines.append(
            f"| {TITLES[name]} | {num(r['workload']['changes'])}"
            f" | {num(r['read_limit']['changes_per_s'])} | {num(limit_pgo)} | {kafka_cell}"
            f" | {rate_cell(r.get('cdc_kp'), 'changes_per_s', 'ratio_to_read_limit')}"
            f" | {rate_cell(r.get('cdc_ck'), 'changes_per_s', 'ratio_to_read_limit')}"
            f" | {pairs_cell(pgo)}"
            f" | {rate_cell(dbz, 'changes_per_s', 'ratio_to_read_limit')} | {versus} |"
        )
    return lines


def metrics_table(found: dict[str, tuple[str, Result]]) -> list[str]:
    lines = [
        "What `/metrics` and column transforms cost: cdc on pgoutput with confluent-kafka, each"
        " run with `cdc run --metrics-listen` and `/metrics` scraped every second, and each run"
        " with a `[[connectors.columns]]` rule (`note` excluded, `customer_id` hashed with a"
        " salt), beside runs without either, on the same WAL (each on a slot of its own; the"
        " order of the three turns by one each time);"
        " the medians of the runs, and each run; the cdc process's own CPU time per change (user"
        " and system, every thread), median.",
        "",
        *head(
            "workload",
            "without",
            "with",
            "with / without",
            "cdc's CPU µs a change, without / with",
            "peak RSS",
        ),
    ]
    for name, key in (
        (n, k)
        for n in WORKLOADS
        for k in (
            "metrics_cost",
            "transforms_cost",
            "debezium_values_cost",
            "schemas_cost",
            "debezium_schemas_cost",
        )
    ):
        cost = found[name][1].get(key) if name in found else None
        if not cost:
            continue
        off = ", ".join(num(x) for x in cost["off_changes_per_s"])
        on = ", ".join(num(x) for x in cost["on_changes_per_s"])
        lines.append(
            f"| {TITLES[name]}, {cost.get('what', 'with /metrics')}"
            f" | {num(cost['median_off'])} ({off})"
            f" | {num(cost['median_on'])} ({on}) | {cost['ratio_on_to_off']:.3f}"
            f" | {cost.get('cpu_us_per_change_off', 0):.1f}"
            f" / {cost.get('cpu_us_per_change_on', 0):.1f}"
            f" | {cost['peak_rss_mb_off']:.0f} / {cost['peak_rss_mb_on']:.0f} MB |"
        )
    return lines


def sink_table(found: dict[str, tuple[str, Result]]) -> list[str]:
    lines = [
        "Sinks: changes/s applied from a backlog on Kafka (the workload's events as cdc"
        " published them), from the sink's first commit to its last; in brackets the ratio to a"
        " `COPY` of the table's rows into the same PostgreSQL; peak RSS. The upsert is what"
        " PostgreSQL itself takes to apply those rows as an idempotent sink must, with no Python"
        " and no Kafka: `COPY` into a temporary table, then one `INSERT ... ON CONFLICT DO UPDATE"
        " ... WHERE` the stored version is older, into a fresh table; in brackets its ratio to"
        " `COPY`, a ceiling for every sink.",
        "",
        *head(
            "backlog",
            "changes (records)",
            "`COPY` of the rows, rows/s",
            "version-guarded upsert of the rows, rows/s",
            "PostgreSQL sink, kafka-python",
            "PostgreSQL sink, confluent-kafka",
            "SQLite sink, kafka-python",
            "SQLite sink, confluent-kafka",
        ),
    ]
    for name in WORKLOADS:
        if name not in found or "sinks" not in found[name][1]:
            continue
        r = found[name][1]
        s = r["sinks"]
        cells = [
            rate_cell(s.get(key), "changes_per_s", "ratio_to_copy")
            for key in ("postgres", "postgres_ck", "sqlite", "sqlite_ck")
        ]
        copy = s["copy"]
        upsert = (
            f"{num(copy['upsert_rows_per_s'])} ({ratio(copy['upsert_ratio_to_copy'])})"
            if "upsert_rows_per_s" in copy
            else "—"
        )
        lines.append(
            f"| {TITLES[name]} | {num(r['workload']['changes'])} ({num(s['records'])})"
            f" | {num(copy['rows_per_s'])} ({num(copy['rows'])} rows) | {upsert}"
            f" | {' | '.join(cells)} |"
        )
    snap = found.get("bulk", ("", {}))[1].get("snapshot")
    if snap:
        lines += [
            "",
            'Initial snapshot of the bulk table → Kafka (`snapshot = "initial_only"`, start to'
            " exit); in brackets the ratio to `COPY (SELECT * FROM orders) TO STDOUT`.",
            "",
            *head(
                "rows", "`COPY ... TO STDOUT`, rows/s", "cdc, kafka-python", "cdc, confluent-kafka"
            ),
            f"| {num(snap['rows'])} | {num(snap['copy_out_rows_per_s'])}"
            f" | {rate_cell(snap.get('cdc_kp'), 'rows_per_s', 'ratio_to_copy_out')}"
            f" | {rate_cell(snap.get('cdc_ck'), 'rows_per_s', 'ratio_to_copy_out')} |",
        ]
    return lines


def cpu_cell(run: Result | None) -> str:
    """``21 (0.98)``: CPU-µs per change of the whole machine, and cores busy."""
    cpu = (run or {}).get("cpu")
    if not cpu:
        return "—"
    return f"{num(cpu['cpu_us_per_change'])} ({cpu['cores_busy']:.2f})"


def cpu_table(found: dict[str, tuple[str, Result]]) -> list[str]:
    cpus = next(iter(found.values()))[1]["machine"]["cpus"]
    lines = [
        "CPU of the whole machine (every process: PostgreSQL, Kafka, the reader or sink, the"
        " kernel) per change while each run above is timed, in µs (per row for `COPY` and the"
        f" upsert); in brackets the cores busy on average, of {cpus}. A run whose cores are all"
        " busy goes faster only by taking less CPU per change: the machine's cores divided by"
        " cdc's CPU per change is the most cdc can do on this machine as it is.",
        "",
        *head(
            "workload",
            "read limit, pgoutput",
            "cdc, pgoutput, confluent-kafka",
            f"{cpus} cores / cdc's CPU per change, changes/s",
            "Kafka write limit",
            "Debezium (pgoutput)",
            "`COPY`",
            "version-guarded upsert",
            "PostgreSQL sink, confluent-kafka",
        ),
    ]
    for name in WORKLOADS:
        if name not in found:
            continue
        r = found[name][1]
        pgo = r.get("cdc_pgo")
        if not (pgo and "cpu" in pgo):
            continue
        sinks = r.get("sinks", {})
        copy = sinks.get("copy", {})
        upsert = {"cpu": copy["upsert_cpu"]} if "upsert_cpu" in copy else None
        lines.append(
            f"| {TITLES[name]} | {cpu_cell(r.get('read_limit_pgoutput'))} | {cpu_cell(pgo)}"
            f" | {num(cpus * 1e6 / pgo['cpu']['cpu_us_per_change'])}"
            f" | {cpu_cell(r.get('kafka_write_limit'))} | {cpu_cell(r.get('debezium'))}"
            f" | {cpu_cell(copy)} | {cpu_cell(upsert)} | {cpu_cell(sinks.get('postgres_ck'))} |"
        )
    return lines


def latency_table(found: dict[str, tuple[str, Result]]) -> list[str]:
    if "latency" not in found:
        return []
    r = found["latency"][1]
    polls = {
        runs["debezium"]["settings"].get("poll.interval.ms", "500")
        for runs in r["loads"].values()
        if "debezium" in runs
    }
    debezium = (
        f" Debezium (`poll.interval.ms` {', '.join(sorted(polls))}, its default being 500) runs"
        " alone, in a window of its own."
        if polls
        else ""
    )
    plugin = next(iter(r["loads"].values()))["cdc"].get("plugin", "wal2json")
    lines = [
        f"Latency at a fixed offered load held for {r['window_s']:.0f} s (small transactions of"
        " the OLTP mix), ms p50 / p99 / max, from the source commit (`source.ts_ms`) to the"
        " record on Kafka (its LogAppendTime) and to the row visible in the PostgreSQL sink"
        " (its `cdc.offsets`, committed with the rows); in parentheses the lowest and highest"
        f" p99 of the window's 10 s slices. cdc with {plugin} and confluent-kafka."
        f"{debezium}",
        "",
        *head(
            "offered load",
            "run",
            "achieved load",
            "commit → Kafka",
            "commit → sink row",
            "peak RSS",
        ),
    ]
    for rate, runs in r["loads"].items():
        cdc, dbz = runs["cdc"], runs.get("debezium")
        rss = cdc["peak_rss_mb"]
        lines.append(
            f"| {num(float(rate))}/s | cdc | {achieved(cdc)} | {ms(cdc['commit_to_kafka'])}"
            f" | {ms(cdc['commit_to_sink'])}"
            f" | connector {rss['connector']:.0f} MB, sink {rss['sink']:.0f} MB |"
        )
        if dbz:
            ours, theirs = cdc["commit_to_kafka"], dbz["commit_to_kafka"]
            versus = " / ".join(
                ratio(ours[k] / theirs[k]) if theirs[k] else "—"
                for k in ("p50_ms", "p99_ms", "max_ms")
            )
            lines += [
                f"| | Debezium | {achieved(dbz)} | {ms(theirs)}"
                f" | — | {dbz['peak_rss_mb']:.0f} MB |",
                f"| | cdc / Debezium | | {versus} | | |",
            ]
    return lines


def achieved(run: Result) -> str:
    load = run["load"]
    held = "" if load["held"] else " (not held)"
    return f"{num(load['achieved_changes_per_s'])}/s{held}"


def java(version: str | None) -> str:
    """``openjdk version "17.0.15" 2025-04-15`` -> ``Java 17.0.15``."""
    parts = (version or "").split('"')
    return f"Java {parts[1]}" if len(parts) > 2 else f"Java {version}"


def machine_line(found: dict[str, tuple[str, Result]]) -> str:
    dates = sorted({date for date, _ in found.values()})
    data = found[max(found, key=lambda n: found[n][0])][1]
    m = data["machine"]
    scales = sorted({d.get("scale", 1.0) for _, d in found.values()})
    scale = "" if scales == [1.0] else f", at `BENCH_SCALE={'/'.join(map(str, scales))}`"
    return (
        f"Measured {' and '.join(dates)} by `make bench`{scale}, on {m['cpus']} CPUs"
        f" ({m['cpu_model']}), {m['ram_gib']} GiB RAM, PostgreSQL {m['postgresql']},"
        f" Kafka {m['kafka']}, Python {m['python']}, {java(m['java'])}; PostgreSQL, Kafka and the"
        f" programs measured share the machine. Results in `bench/results/`, how they are made in"
        f" [bench/README.md]({DOCS_TO_ROOT}bench/README.md)."
    )


def table(found: dict[str, tuple[str, Result]]) -> str:
    parts = [
        source_table(found),
        metrics_table(found),
        sink_table(found),
        cpu_table(found),
        latency_table(found),
    ]
    lines: list[str] = []
    for part in parts:
        if len(part) > 4:  # a header and no row: leave it out
            lines += [*part, ""]
    lines += [
        f"![Throughput and latency]({DOCS_TO_ROOT}bench/results/{CHART})",
        "",
        machine_line(found),
    ]
    # Prose wrapped as the rest of the docs is; table rows and the image left whole.
    return "\n".join(
        line
        if line.startswith(("|", "!"))
        else textwrap.fill(line, 100, break_long_words=False, break_on_hyphens=False)
        for line in lines
    )


def summary(found: dict[str, tuple[str, Result]]) -> str:
    """Three lines for README.md: cdc's source and PostgreSQL sink rates, and its latency."""
    names = [n for n in WORKLOADS if n in found]
    source = []
    for n in names:
        r = found[n][1]
        pgo, dbz = r.get("cdc_pgo"), r.get("debezium")
        if not pgo:
            continue
        versus = f", {ratio(pgo['changes_per_s'] / dbz['changes_per_s'])} x Debezium" if dbz else ""
        source.append(
            f"{TITLES[n]} {num(pgo['changes_per_s'])}"
            f" ({ratio(pgo['ratio_to_read_limit'])} of the read limit{versus})"
        )
    sink = [
        f"{TITLES[n]} {num(found[n][1]['sinks']['postgres_ck']['changes_per_s'])}"
        for n in names
        if "postgres_ck" in found[n][1].get("sinks", {})
    ]
    latency = []
    for rate, runs in found.get("latency", ("", {"loads": {}}))[1]["loads"].items():
        cdc, dbz = runs["cdc"], runs.get("debezium")
        theirs = f" (Debezium {dbz['commit_to_kafka']['p99_ms']:.0f} ms)" if dbz else ""
        to_kafka, to_sink = cdc["commit_to_kafka"]["p99_ms"], cdc["commit_to_sink"]["p99_ms"]
        latency.append(
            f"at {num(float(rate))} changes/s, commit → Kafka {to_kafka:.0f} ms{theirs},"
            f" commit → sink row {to_sink:.0f} ms"
        )
    return "\n".join(
        [
            "- Source → Kafka, changes/s (pgoutput, confluent-kafka): "
            + ("; ".join(source) or "not measured"),
            "- PostgreSQL sink from a Kafka backlog, changes/s (confluent-kafka): "
            + ("; ".join(sink) or "not measured"),
            "- Latency p99: " + ("; ".join(latency) or "not measured"),
        ]
    )


def update_between(path: Path, block: str, begin: str = BEGIN, end: str = END) -> None:
    """Replace what is between the ``begin`` and ``end`` markers of ``path`` with ``block``."""
    text = path.read_text()
    if begin not in text or end not in text:
        raise SystemExit(f"{path}: no {begin} ... {end} markers to write between")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    path.write_text(f"{head}{begin}\n{block}\n{end}{tail}")


# -- the chart --------------------------------------------------------------------------------


def bars(
    ax: Any, groups: Sequence[str], series: dict[str, Sequence[float | None]], ylabel: str
) -> None:
    """Grouped bars on a log scale, each labelled with its value; series without any value are
    left out, and a chart without any says so."""
    series = {label: values for label, values in series.items() if any(values)}
    if not series:
        ax.text(0.5, 0.5, "not measured in the newest results", ha="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    width = 0.8 / len(series)
    for i, (label, values) in enumerate(series.items()):
        xs = [g + (i - (len(series) - 1) / 2) * width for g in range(len(groups))]
        heights = [v or 0.0 for v in values]
        drawn = ax.bar(xs, heights, width, label=label)
        ax.bar_label(drawn, labels=[num(v) if v else "" for v in values], fontsize=7, rotation=90)
    ax.set_xticks(range(len(groups)), groups)
    ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    ax.margins(y=0.3)
    ax.legend(fontsize=8)


def chart(found: dict[str, tuple[str, Result]], out: Path) -> None:
    # Imported here: matplotlib is the bench extra's, and the table needs none of it.
    from matplotlib.figure import Figure  # noqa: PLC0415

    fig = Figure(figsize=(13, 9), layout="constrained")
    (source, sinks), (lat1, lat2) = fig.subplots(2, 2)
    names = [n for n in WORKLOADS if n in found]
    runs = [found[n][1] for n in names]

    def get(r: Result, *path: str) -> float | None:
        node: Any = r
        for key in path:
            if not isinstance(node, dict) or key not in node:
                return None
            node = node[key]
        return float(node)

    groups = [TITLES[n] for n in names]
    bars(
        source,
        groups,
        {
            "read limit, wal2json": [get(r, "read_limit", "changes_per_s") for r in runs],
            "read limit, pgoutput": [get(r, "read_limit_pgoutput", "changes_per_s") for r in runs],
            "cdc, wal2json, kafka-python": [get(r, "cdc_kp", "changes_per_s") for r in runs],
            "cdc, wal2json, confluent-kafka": [get(r, "cdc_ck", "changes_per_s") for r in runs],
            "cdc, pgoutput, confluent-kafka": [get(r, "cdc_pgo", "changes_per_s") for r in runs],
            "Debezium (pgoutput)": [get(r, "debezium", "changes_per_s") for r in runs],
        },
        "changes/s",
    )
    source.set_title("Source → Kafka (until the slot confirms the end)")
    bars(
        sinks,
        groups,
        {
            "COPY of the rows": [get(r, "sinks", "copy", "rows_per_s") for r in runs],
            "PostgreSQL sink, kafka-python": [
                get(r, "sinks", "postgres", "changes_per_s") for r in runs
            ],
            "PostgreSQL sink, confluent-kafka": [
                get(r, "sinks", "postgres_ck", "changes_per_s") for r in runs
            ],
            "SQLite sink, kafka-python": [get(r, "sinks", "sqlite", "changes_per_s") for r in runs],
            "SQLite sink, confluent-kafka": [
                get(r, "sinks", "sqlite_ck", "changes_per_s") for r in runs
            ],
        },
        "changes/s (COPY: rows/s)",
    )
    sinks.set_title("Sink apply from a backlog on Kafka")
    loads = found.get("latency", ("", {"loads": {}}))[1]["loads"]
    for ax, rate in zip((lat1, lat2), ("1000", "5000"), strict=True):
        runs_at = loads.get(rate, {})
        stats = ("p50_ms", "p99_ms", "max_ms")
        cdc, dbz = runs_at.get("cdc", {}), runs_at.get("debezium", {})
        bars(
            ax,
            ["p50", "p99", "max"],
            {
                "cdc: commit → Kafka": [get(cdc, "commit_to_kafka", s) for s in stats],
                "cdc: commit → sink row": [get(cdc, "commit_to_sink", s) for s in stats],
                "Debezium: commit → Kafka": [get(dbz, "commit_to_kafka", s) for s in stats],
            },
            "ms",
        )
        held = ", ".join(
            f"{who} {achieved(run)}" for who, run in (("cdc", cdc), ("Debezium", dbz)) if run
        )
        ax.set_title(
            f"Latency at {num(float(rate))} changes/s offered"
            + (f"\n(achieved: {held})" if held else "")
        )
    fig.suptitle(chart_title(found))
    fig.savefig(out, dpi=100)


def chart_title(found: dict[str, tuple[str, Result]]) -> str:
    dates = sorted({date for date, _ in found.values()})
    m = found[max(found, key=lambda n: found[n][0])][1]["machine"]
    scales = sorted({d.get("scale", 1.0) for _, d in found.values()})
    scale = "" if scales == [1.0] else f", BENCH_SCALE={'/'.join(map(str, scales))}"
    return (
        f"make bench, {' and '.join(dates)}{scale}: {m['cpus']} CPUs ({m['cpu_model']}),"
        f" PostgreSQL {str(m['postgresql']).split()[0]}, Kafka {m['kafka']}, Python"
        f" {m['python']}, {java(m['java'])}"
    )


def report(results: Path, readme: Path | None, docs: Path | None = None) -> list[str]:
    """Draw the chart, rewrite ``docs``' tables and ``readme``'s summary from the newest
    results; what was written."""
    found = latest(results)
    if not found:
        return [f"no results in {results}"]
    date = max(d for d, _ in found.values())
    out = results / f"{date}-bench.png"
    chart(found, out)
    shutil.copyfile(out, results / CHART)
    written = [f"wrote {out} and {results / CHART}"]
    if docs is not None:
        update_between(docs, table(found))
        written.append(f"rewrote the benchmark tables in {docs}")
    if readme is not None:
        update_between(readme, summary(found), SUMMARY_BEGIN, SUMMARY_END)
        written.append(f"rewrote the benchmark summary in {readme}")
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    parser.add_argument(
        "--no-readme", action="store_true", help="only the chart; print the tables and summary"
    )
    args = parser.parse_args()
    if args.no_readme:
        lines = report(args.results, None, None)
    else:
        lines = report(args.results, args.readme, args.docs)
    for line in lines:
        print(line)
    if args.no_readme:
        found = latest(args.results)
        print(table(found), summary(found), sep="\n\n")


if __name__ == "__main__":
    main()
