"""``--log-format json``: one JSON object a line with time, level, logger, message and the worker's
name; which of the command line, its environment variables and FILE's [logging] wins (no
services)."""

from __future__ import annotations

import io
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from cdc import cli as cli_module
from cdc.cli import cli
from cdc.logs import JsonFormatter, WorkerFilter, adopt_worker, current_worker
from cdc.supervise import Supervised
from connectors.postgres.progress import Progress

log = logging.getLogger("cdc.test")


def _record(msg: str, exc_info: bool = False) -> logging.LogRecord:
    info = None
    if exc_info:
        try:
            raise ValueError("bad value")
        except ValueError:
            info = sys.exc_info()
    return logging.LogRecord("cdc.test", logging.WARNING, __file__, 1, msg, ("x",), info)


def test_a_json_line_has_time_level_logger_and_message() -> None:
    line = JsonFormatter().format(_record("connector %s: slow"))
    assert "\n" not in line
    fields = orjson.loads(line)
    assert set(fields) == {"time", "level", "logger", "message"}
    assert fields["level"] == "WARNING"
    assert fields["logger"] == "cdc.test"
    assert fields["message"] == "connector x: slow"
    when = datetime.fromisoformat(fields["time"])
    assert when.utcoffset() == timedelta(0)  # ISO-8601, UTC
    assert abs(when.timestamp() - time.time()) < 5


def test_a_traceback_is_a_field_of_the_same_line() -> None:
    line = JsonFormatter().format(_record("%s failed", exc_info=True))
    assert "\n" not in line
    fields = orjson.loads(line)
    assert fields["exc_info"].startswith("Traceback (most recent call last):")
    assert fields["exc_info"].endswith("ValueError: bad value")


class _Keep(logging.Handler):
    def __init__(self, records: list[logging.LogRecord]) -> None:
        super().__init__()
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _logged_by(subject: str, also_on_a_helper_thread: bool = False) -> list[logging.LogRecord]:
    """The records a worker supervised as ``subject`` logs, through a handler with the filter."""
    records: list[logging.LogRecord] = []
    handler = _Keep(records)
    handler.addFilter(WorkerFilter())
    stop = threading.Event()

    def work(stop: threading.Event, started: threading.Event) -> None:
        log.warning("%s: working", subject)
        if also_on_a_helper_thread:

            def helping(worker: tuple[str, str] | None) -> None:
                adopt_worker(worker)
                log.warning("helping")

            helper = threading.Thread(target=helping, args=(current_worker(),))
            helper.start()
            helper.join()
        stop.set()

    log.addHandler(handler)
    try:
        thread = threading.Thread(target=Supervised(subject, work, stop, lambda e: None))
        thread.start()
        thread.join(10)
        log.warning("not a worker's")
    finally:
        log.removeHandler(handler)
    return records


def test_a_workers_records_carry_its_name() -> None:
    first, outside = _logged_by("connector shop")
    assert getattr(first, "connector", None) == "shop"
    assert not hasattr(first, "sink")
    assert not hasattr(outside, "connector")  # the main thread is no worker
    fields = orjson.loads(JsonFormatter().format(first))
    assert fields["connector"] == "shop"
    sink, _ = _logged_by("sink lite")
    assert orjson.loads(JsonFormatter().format(sink))["sink"] == "lite"


def test_a_workers_helper_thread_logs_as_the_worker() -> None:
    _, helper, _ = _logged_by("sink lite", also_on_a_helper_thread=True)
    assert helper.getMessage() == "helping"
    assert getattr(helper, "sink", None) == "lite"


# ---------------------------------------------------------------------------------------------
# The command line


class _Logging:
    """A worker that logs a line and stops ``cdc run`` (an operator's SIGTERM)."""

    def run(self, stop: threading.Event, started: threading.Event | None = None) -> None:
        if started is not None:
            started.set()
        logging.getLogger("cdc.test").warning("connector shop: a warning")
        logging.getLogger("cdc.test").info("connector shop: some news")
        os.kill(os.getpid(), signal.SIGTERM)
        stop.wait(10)


@pytest.fixture
def bare_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A worker that logs, and the logging state ``cdc`` changes, put back afterwards."""
    root = logging.getLogger()
    monkeypatch.setattr(cli_module, "_STDERR_LOG", None)
    monkeypatch.setattr(cli_module, "_tune_gc", lambda: None)  # not in the test process
    monkeypatch.setattr(cli_module, "connector_for", lambda config, kafka: _Logging())
    for name in ("CDC_LOG_LEVEL", "CDC_LOG_FORMAT"):
        monkeypatch.delenv(name, raising=False)
    level, kafka_level = root.level, logging.getLogger("kafka").level
    yield
    root.setLevel(level)
    logging.getLogger("kafka").setLevel(kafka_level)


def _config(tmp_path: Path, logging_table: str = "") -> Path:
    path = tmp_path / "cdc.toml"
    path.write_text(
        '[kafka]\nbootstrap_servers = "127.0.0.1:9"\n'
        '[[connectors]]\nname = "shop"\ndsn = "host=127.0.0.1 port=9 dbname=x"\n' + logging_table
    )
    return path


@contextmanager
def _as_a_fresh_process() -> Iterator[None]:
    """Without pytest's handlers (added just before each test runs): cdc leaves a root logger
    that has handlers alone, as an embedding application's."""
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers.clear()
    try:
        yield
    finally:
        root.handlers[:] = saved


def _run(path: Path, *options: str, env: dict[str, str] | None = None) -> list[str]:
    with _as_a_fresh_process():
        result = CliRunner().invoke(cli, [*options, "run", "-c", str(path)], env=env)
    assert result.exit_code == 0, result.output
    return result.stderr.splitlines()


@pytest.mark.usefixtures("bare_logging")
def test_log_format_json_writes_json_lines(tmp_path: Path) -> None:
    lines = _run(_config(tmp_path), "--log-format", "json")
    records = [orjson.loads(line) for line in lines]  # every line is a JSON object
    assert [r["message"] for r in records] == [
        "connector shop: a warning",
        "connector shop: some news",
        "SIGTERM received; stopping",
    ]
    assert records[0]["connector"] == "shop"
    assert records[0]["logger"] == "cdc.test"
    assert "connector" not in records[2]  # the main thread's


@pytest.mark.usefixtures("bare_logging")
def test_text_stays_the_default(tmp_path: Path) -> None:
    (first, *_) = _run(_config(tmp_path))
    assert first.endswith(" WARNING cdc.test: connector shop: a warning")


@pytest.mark.usefixtures("bare_logging")
@pytest.mark.parametrize(
    ("options", "env", "table", "expect"),
    [
        # [logging] alone
        ((), {}, '[logging]\nformat = "json"\nlevel = "warning"\n', ("json", 1)),
        # the environment wins over [logging]
        ((), {"CDC_LOG_FORMAT": "text"}, '[logging]\nformat = "json"\n', ("text", 3)),
        ((), {"CDC_LOG_LEVEL": "info"}, '[logging]\nlevel = "error"\n', ("text", 3)),
        # the command line wins over both
        (
            ("--log-format", "json", "--log-level", "warning"),
            {"CDC_LOG_FORMAT": "text", "CDC_LOG_LEVEL": "info"},
            '[logging]\nformat = "text"\nlevel = "debug"\n',
            ("json", 1),
        ),
    ],
)
def test_the_command_line_wins_over_the_environment_over_the_file(
    tmp_path: Path,
    options: tuple[str, ...],
    env: dict[str, str],
    table: str,
    expect: tuple[str, int],
) -> None:
    lines = _run(_config(tmp_path, table), *options, env=env)
    log_format, count = expect
    assert len(lines) == count, lines
    assert all(line.startswith("{") == (log_format == "json") for line in lines), lines


@pytest.mark.usefixtures("bare_logging")
def test_an_error_of_cdc_is_a_json_line_too(tmp_path: Path) -> None:
    with _as_a_fresh_process():
        result = CliRunner().invoke(
            cli, ["--log-format", "json", "run", "-c", str(tmp_path / "missing.toml")]
        )
    assert result.exit_code == 2
    (line,) = result.stderr.splitlines()
    record = orjson.loads(line)
    assert record["level"] == "ERROR"
    assert "missing.toml: cannot read the file: No such file" in record["message"]


def test_a_bad_log_format_is_bad_usage() -> None:
    result = CliRunner().invoke(cli, ["--log-format", "xml", "run", "-c", "x.toml"])
    assert result.exit_code == 2
    assert "'xml' is not one of 'text', 'json'" in result.stderr


def test_a_connection_failure_logs_json_with_the_password_masked(tmp_path: Path) -> None:
    """The real process: every stderr line a JSON object, the connector's line carrying its
    name, and the DSN's password masked."""
    path = tmp_path / "cdc.toml"
    path.write_text(
        '[kafka]\nbootstrap_servers = "127.0.0.1:9"\n[[connectors]]\nname = "shop"\n'
        'dsn = "host=127.0.0.1 port=9 dbname=x user=app password=sekrit"\n'
    )
    cdc = Path(sys.executable).parent / "cdc"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDC_LOG")}
    proc = subprocess.Popen(
        [str(cdc), "--log-format", "json", "run", "-c", str(path)],
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stderr is not None
    first = proc.stderr.readline()  # the connector's first retry
    proc.send_signal(signal.SIGTERM)
    _, rest = proc.communicate(timeout=20)
    assert proc.returncode == 0
    records = [orjson.loads(line) for line in (first + rest).splitlines()]
    failed = records[0]
    assert failed["connector"] == "shop"
    assert "connection failed" in failed["message"]
    assert "password=***" in failed["message"]
    assert b"sekrit" not in first + rest
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)


def test_no_progress_bar_between_json_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    monkeypatch.setattr(logging.getLogger(), "handlers", [logging.StreamHandler(terminal)])
    text = Progress("connector shop", "public.t", 10)
    assert text.bar is not None  # text lines: a bar on a terminal
    text.close()
    logging.getLogger().handlers[0].setFormatter(JsonFormatter())
    assert Progress("connector shop", "public.t", 10).bar is None  # log lines instead


def test_an_unexpected_error_in_json_mode_is_one_json_line(tmp_path: Path) -> None:
    """A bug that escapes the command (here: loading the file raises) is logged as one JSON
    object with its traceback in exc_info, not as Python's multi-line traceback."""
    config = tmp_path / "c.toml"
    config.write_text("")
    script = (
        "import sys, cdc.cli as c\n"
        "def boom(path): raise RuntimeError('a bug')\n"
        "c.load_config = boom\n"
        f"sys.argv = ['cdc', '--log-format', 'json', 'check', '-c', {str(config)!r}]\n"
        "c.main()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    line = orjson.loads(lines[0])
    assert (line["level"], line["message"]) == ("CRITICAL", "unexpected RuntimeError: a bug")
    assert "Traceback" in line["exc_info"] and "RuntimeError: a bug" in line["exc_info"]
