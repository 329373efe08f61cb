"""The ``cdc`` command line: ``run``, ``check``, ``status``, ``snapshot`` and ``tail``.

Exit codes: 0 clean stop, 1 runtime failure, 2 bad usage or bad configuration. This is
the only module that configures logging handlers or writes to the terminal.
"""

from __future__ import annotations

__all__ = ["cli", "main"]

import gc
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from types import FrameType

import click
from pydantic import ValidationError

from cdc import __version__, logs
from cdc._entry import EARLY_SIGNALS
from cdc.config import (
    Config,
    ConnectorConfig,
    MetricsConfig,
    PostgresSinkConfig,
    SqliteSinkConfig,
    load_config,
)
from cdc.errors import CdcError, ConfigError, describe
from cdc.findings import Finding
from cdc.kafka import check_kafka
from cdc.kafka.options import LIBRDKAFKA_LOGGER
from cdc.metrics import Health, KafkaProbe, MetricsServer, Observed, observe
from cdc.plugins import Connector, Sink, connector_for, sink_for
from cdc.runstate import RunState
from cdc.runstate import findings as run_findings
from cdc.supervise import Supervised
from cdc.tail import (
    Filter,
    Start,
    Tailed,
    TopicMatch,
    parse_event_id,
    parse_key,
    parse_since,
    render,
    render_json,
    tail,
)

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG = 0, 1, 2
STOP_GRACE_S = 10.0
GC_THRESHOLD = 50_000
"""Allocations between young-generation collections (CPython's default: 700); see _tune_gc."""

log = logging.getLogger(__name__)

config_option = click.option(
    "-c",
    "--config",
    "config_path",
    required=True,
    metavar="FILE",
    help="The TOML configuration file.",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="cdc")
@click.option(
    "--log-level",
    envvar="CDC_LOG_LEVEL",
    show_default="$CDC_LOG_LEVEL, [logging] level or INFO",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    help="How much to log (to stderr).",
)
@click.option(
    "--log-format",
    envvar="CDC_LOG_FORMAT",
    show_default="$CDC_LOG_FORMAT, [logging] format or text",
    type=click.Choice(["text", "json"], case_sensitive=False),
    help="Log lines as text, or as one JSON object a line (time, level, logger, message and"
    " the connector or sink).",
)
@click.pass_context
def cli(ctx: click.Context, log_level: str | None, log_format: str | None) -> None:
    """Change data capture from PostgreSQL to Kafka, and sinks that apply it idempotently.

    Connectors read a database's logical replication stream and publish every committed row
    change to one Kafka topic per table; sinks read those topics and apply the events to
    another database. Both are declared in a TOML file (see docs/configuration.md).

    Exit codes: 0 clean stop, 1 runtime failure, 2 bad usage or bad configuration.
    """
    ctx.obj = _LogChoice(log_level, log_format)
    _log_to_stderr(log_level or "INFO", log_format or "text")  # until FILE is read (_load)


@dataclass(frozen=True)
class _LogChoice:
    """What the command line (or its environment variables) said about logging: it wins over
    FILE's [logging] table."""

    level: str | None
    format: str | None


_STDERR_LOG: logging.Handler | None = None
"""The handler cdc installed: set up again, not added twice, once FILE's [logging] is read."""


def _log_to_stderr(level: str, log_format: str) -> None:
    global _STDERR_LOG  # noqa: PLW0603  (the process has one stderr)
    root = logging.getLogger()
    if _STDERR_LOG is None or _STDERR_LOG not in root.handlers:
        if root.handlers:
            return  # configured by whoever embeds cdc (a test runner): theirs stays
        _STDERR_LOG = logging.StreamHandler(sys.stderr)
        _STDERR_LOG.addFilter(logs.WorkerFilter())
        root.addHandler(_STDERR_LOG)
    _STDERR_LOG.setFormatter(
        logs.JsonFormatter()
        if log_format.lower() == "json"
        else logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    )
    root.setLevel(level.upper())
    # kafka-python logs every failed connection attempt as an error; cdc's own lines say what
    # matters, so its chatter shows only when debugging.
    debug = level.upper() == "DEBUG"
    for chatty in ("kafka", LIBRDKAFKA_LOGGER):
        logging.getLogger(chatty).setLevel(logging.NOTSET if debug else logging.CRITICAL)


@cli.command()
@config_option
@click.option(
    "--connector", "connectors", multiple=True, metavar="NAME", help="Run only this connector."
)
@click.option("--sink", "sinks", multiple=True, metavar="NAME", help="Run only this sink.")
@click.option(
    "--metrics-listen",
    metavar="HOST:PORT",
    help="Serve /metrics (Prometheus), /healthz and /readyz there (wins over [metrics] listen).",
)
def run(
    config_path: str,
    connectors: Sequence[str],
    sinks: Sequence[str],
    metrics_listen: str | None,
) -> None:
    """Run the connectors and sinks of FILE until SIGTERM or SIGINT.

    Without --connector or --sink, everything in FILE runs. With them, only the named ones.
    Each runs supervised: when one fails it is restarted with backoff (1 s doubling to 60 s)
    and the others go on. A permanent failure (a wrong password, a missing privilege) of one
    that never started exits 1 with the fix. On SIGTERM/SIGINT reading stops, in-flight work
    is delivered or dropped without being acknowledged, and cdc exits 0 within 10 seconds.
    With --metrics-listen or [metrics] listen, /metrics, /healthz and /readyz are served.
    """
    config = _load(config_path)
    listen = _metrics_listen(metrics_listen, config)
    selected_connectors, selected_sinks = _select(config, connectors, sinks)
    workers: list[tuple[str, Connector | Sink]] = [
        (f"connector {c.name}", connector_for(c, config.kafka)) for c in selected_connectors
    ]
    workers += [(f"sink {s.name}", sink_for(s, config.kafka)) for s in selected_sinks]

    stop = threading.Event()
    errors: list[str] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("%s received; stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if EARLY_SIGNALS:  # arrived while starting up (see cdc._entry)
        log.info("%s received while starting; stopping", signal.Signals(EARLY_SIGNALS[0]).name)
        stop.set()

    def fatal(name: str) -> Callable[[BaseException], None]:
        def give_up(e: BaseException) -> None:
            # Permanent before it ever ran: nothing to wait for until a person acts.
            text = str(e)
            errors.append(f"{name} cannot start: {text.removeprefix(name + ': ')}")
            stop.set()

        return give_up

    _tune_gc()
    supervised: list[Supervised] = []
    observed = [(name, observe(worker)) for name, worker in workers]
    health = Health(observed, KafkaProbe(config.kafka) if listen else None)
    # Before the state file: a port in use exits here, leaving nothing behind.
    server = _serve_metrics(listen, observed, health, supervised)
    state = RunState(config_path, [name for name, _ in workers])
    supervised += [
        Supervised(name, worker.run, stop, fatal(name), on_failure=state.failed)
        for name, worker in workers
    ]
    threads = [threading.Thread(target=s, name=s.name, daemon=True) for s in supervised]
    try:
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads) and not stop.wait(0.5):
            health.beat()
        for t in threads:
            t.join(STOP_GRACE_S)
    finally:
        state.close()
        if server is not None:
            server.close()
        if health.kafka is not None:
            health.kafka.close()
    if errors:
        for e in errors:
            _error(e)
        sys.exit(EXIT_FAILURE)


def _metrics_listen(option: str | None, config: Config) -> str | None:
    if option is None:
        return config.metrics.listen
    try:
        return MetricsConfig(listen=option).listen
    except ValidationError:
        raise click.BadParameter(
            f"{option!r} is not of the form host:port", param_hint="--metrics-listen"
        ) from None


def _serve_metrics(
    listen: str | None,
    workers: Sequence[tuple[str, Observed]],
    health: Health,
    supervised: Sequence[Supervised],
) -> MetricsServer | None:
    if listen is None:
        return None
    try:
        server = MetricsServer(
            listen, workers, health, lambda: {s.name: s.failures for s in supervised}
        )
    except CdcError as e:
        _error(str(e))
        sys.exit(EXIT_FAILURE)
    assert health.kafka is not None
    health.kafka.start()
    server.start()
    return server


def _tune_gc() -> None:
    """Keep the cyclic garbage collector off the hot path.

    Every event allocates a few dozen dicts and lists, so CPython's default (a collection every
    700 allocations, and full ones over every object alive) kept walking objects that were
    never garbage: the modules loaded at start (frozen here, so never walked again) and the
    records in flight. Events hold no reference cycles; collections stay on, only rarer.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, 20, 100)


@cli.command()
@config_option
@click.option(
    "--full-identity",
    is_flag=True,
    help="Also warn about captured tables without REPLICA IDENTITY FULL, whose updates and"
    " deletes carry no whole before image (consumers such as Flink's debezium-json need it).",
)
def check(config_path: str, full_identity: bool) -> None:
    """Validate FILE, then check every connector's database, every sink's target and Kafka.

    For each connector: the server answers, wal_level is logical, the role may replicate, slots
    and WAL senders are free, the output plugin loads and decodes (probed with a temporary
    slot), and a replication connection is admitted. For Kafka: the brokers answer. One line a
    finding; exit 0 when all is well, 1 when the environment is wrong, 2 when FILE is.
    """
    config = _load(config_path)
    click.echo(f"OK    config: {config_path} is valid")
    findings: list[Finding] = []
    for c in config.connectors:
        connector = connector_for(c, config.kafka)
        probe: Callable[[], list[Finding]] = connector.check
        if full_identity:  # asked only with the flag: a connector plugin need not know it
            probe = partial(connector.check, full_identity=True)
        findings += _report(_guarded(f"connector {c.name}", probe))
    for s in config.sinks:
        findings += _report(_guarded(f"sink {s.name}", sink_for(s, config.kafka).check))
    findings += _report(_guarded("kafka", lambda: check_kafka(config.kafka)))
    failed = sum(f.level == "fail" for f in findings)
    warned = sum(f.level == "warn" for f in findings)
    click.echo(
        f"cdc check: {len(findings) - failed - warned} ok, {warned} warning(s), {failed} failed"
    )
    sys.exit(EXIT_FAILURE if failed else EXIT_OK)


@cli.command()
@config_option
def status(config_path: str) -> None:
    """Show, per connector, its slot, confirmed flush LSN and lag in bytes; per sink, its lag
    and its dead-letter records.

    A slot no process streams from is WARN, FAIL when it is more than status_lag_fail_mb
    behind; a streaming slot more than status_lag_warn_mb behind is WARN. A worker that a
    running `cdc run` of FILE restarted in the last 5 minutes is WARN, FAIL while it keeps
    failing; a `cdc run` of FILE that ended without a clean stop is WARN. Exit 1 when any line
    is FAIL (a source or Kafka that does not answer among them), 0 otherwise.
    """
    config = _load(config_path)
    findings: list[Finding] = []
    for c in config.connectors:
        findings += _report(_guarded(f"connector {c.name}", connector_for(c, config.kafka).status))
    for s in config.sinks:
        findings += _report(_guarded(f"sink {s.name}", sink_for(s, config.kafka).status))
    # Failures and restarts of the workers of running `cdc run` processes of this file.
    findings += _report(_guarded("cdc run", lambda: run_findings(config_path)))
    sys.exit(EXIT_FAILURE if any(f.level == "fail" for f in findings) else EXIT_OK)


@cli.command()
@config_option
@click.option("--connector", required=True, metavar="NAME", help="The connector to ask.")
@click.option(
    "--table",
    "tables",
    required=True,
    multiple=True,
    metavar="SCHEMA.TABLE",
    help="A table to snapshot; repeat for more.",
)
def snapshot(config_path: str, connector: str, tables: Sequence[str]) -> None:
    """Ask a running connector for an incremental snapshot of the given tables."""
    config = _load(config_path)
    (selected,), _ = _select(config, [connector], [])
    findings = _report(connector_for(selected, config.kafka).request_snapshot(tables))
    sys.exit(EXIT_FAILURE if any(f.level == "fail" for f in findings) else EXIT_OK)


def _parsed(parse: Callable[[str], object]) -> Callable[..., object]:
    """A click callback that checks an option with ``parse`` (its ValueError: a usage error)."""

    def callback(ctx: click.Context, param: click.Parameter, value: str | None) -> object:
        if value is None:
            return None
        try:
            return parse(value)
        except ValueError as e:
            raise click.BadParameter(str(e)) from None

    return callback


@cli.command(name="tail")
@config_option
@click.option(
    "--topic",
    "globs",
    multiple=True,
    metavar="GLOB",
    help="Read the topics matching GLOB; repeat for more. Default: every connector's"
    " topics ({topic_prefix}.*), else every sink's; *.dlq only when GLOB ends in .dlq.",
)
@click.option("--from-beginning", is_flag=True, help="Read each partition from its first record.")
@click.option(
    "--since",
    metavar="TIME",
    callback=_parsed(lambda v: parse_since(v, int(time.time() * 1000))),
    help="Read the records Kafka took at or after TIME: ISO 8601 (UTC when no zone is given)"
    " or a duration back from now (90s, 10m, 2h, 1d).",
)
@click.option(
    "--key", metavar="JSON", callback=_parsed(parse_key), help="Only this key: '{\"id\": 42}'."
)
@click.option(
    "--id",
    "event_id",
    metavar="EVENT_ID",
    callback=_parsed(parse_event_id),
    help="Find the event with this cdc-event-id (commit_lsn:index): search from the beginning"
    " (or --since) up to the end as of now, print it and exit 0; exit 1 when it is not there.",
)
@click.option("--json", "as_json", is_flag=True, help="Print each record as one line of JSON.")
def tail_command(
    config_path: str,
    globs: Sequence[str],
    from_beginning: bool,
    since: int | None,
    key: bytes | None,
    event_id: str | None,
    as_json: bool,
) -> None:
    """Print the events on Kafka as they arrive, or from a point in time.

    One line an event: commit time, op, table, key, event id, the values of an insert or the
    changed columns of an update (col: old -> new), and where it sits (topic:partition@offset);
    a record that is not cdc's event is printed as BAD with why. It reads without a consumer
    group and commits nothing, so no sink is disturbed. Ctrl-C or SIGTERM ends it (exit 0).
    """
    if from_beginning and since is not None:
        raise click.UsageError("--from-beginning and --since exclude each other")
    config = _load(config_path)
    if not globs:
        globs = [f"{c.topic_prefix}.*" for c in config.connectors] or [
            g for s in config.sinks for g in s.topics
        ]
    if since is not None:
        start = Start("since", since)
    elif from_beginning or event_id is not None:
        start = Start("beginning")  # an id names an event of the past
    else:
        start = Start("end")
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    line = render_json if as_json else render

    def emit(batch: list[Tailed]) -> None:
        try:
            sys.stdout.write("".join(line(t) + "\n" for t in batch))
            sys.stdout.flush()
        except BrokenPipeError:  # the reader went away (| head): a clean end
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            stop.set()

    try:
        found = tail(
            config.kafka,
            TopicMatch(globs or ["*"]),
            start,
            Filter(key, event_id),
            emit,
            stop,
            first_only=event_id is not None,
        )
    except CdcError as e:
        _error(describe(e))
        sys.exit(EXIT_FAILURE)
    if event_id is not None and not found and not stop.is_set():
        _error(f"no event {event_id} in {', '.join(globs or ['*'])}")
        sys.exit(EXIT_FAILURE)


def _load(path: str) -> Config:
    try:
        config = load_config(path)
    except ConfigError as e:
        _error(e)
        sys.exit(EXIT_CONFIG)
    said = click.get_current_context().find_object(_LogChoice) or _LogChoice(None, None)
    _log_to_stderr(said.level or config.logging.level, said.format or config.logging.format)
    return config


def _select(
    config: Config, connectors: Sequence[str], sinks: Sequence[str]
) -> tuple[list[ConnectorConfig], list[PostgresSinkConfig | SqliteSinkConfig]]:
    unknown = [f"connector {n!r}" for n in connectors if n not in config.connector_names] + [
        f"sink {n!r}" for n in sinks if n not in config.sink_names
    ]
    if unknown:
        _error(
            f"{config.source}: no {', no '.join(unknown)}; defined: connectors"
            f" {list(config.connector_names)}, sinks {list(config.sink_names)}"
        )
        sys.exit(EXIT_CONFIG)
    if not connectors and not sinks:
        return list(config.connectors), list(config.sinks)
    return (
        [c for c in config.connectors if c.name in connectors],
        [s for s in config.sinks if s.name in sinks],
    )


def _guarded(subject: str, probe: Callable[[], list[Finding]]) -> list[Finding]:
    """A check or status that raises is a FAIL line for its subject: the others still run, and
    `cdc check` never ends in a traceback."""
    try:
        return probe()
    except Exception as e:  # reported as a finding, with its text
        log.debug("%s: probe failed", subject, exc_info=True)
        return [Finding.fail(subject, f"the probe failed ({type(e).__name__}: {describe(e)})")]


def _report(findings: list[Finding]) -> list[Finding]:
    for f in findings:
        click.echo(f.render())
    return findings


def _error(e: BaseException | str) -> None:
    text = str(e)
    if logs.json_on_stderr():  # every stderr line stays a JSON object
        log.error("%s", text)
        return
    prefix = "cdc: error: "
    click.echo(prefix + text.replace("\n", "\n" + prefix), err=True)


def main() -> None:
    """Console-script entry point."""
    try:
        cli(prog_name="cdc")
    except Exception as e:
        if not logs.json_on_stderr():
            raise  # Python's own traceback, as ever
        # A bug: with --log-format json its traceback is one JSON line like every other.
        log.critical("unexpected %s: %s", type(e).__name__, describe(e), exc_info=e)
        sys.exit(EXIT_FAILURE)
