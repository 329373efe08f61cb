"""``cdc run`` itself: a worker that fails is restarted alone while the others go on; only a
permanent failure before it ever started stops the process, with exit 1 and the fix."""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from cdc import cli as cli_module
from cdc import supervise
from cdc.cli import cli
from cdc.errors import CdcError, Refused
from tests.support import ROOT


class _Scripted:
    """Raises the next error of ``errors`` at each start (having started, with ``starts``);
    with none left, sends cdc SIGTERM."""

    def __init__(self, *errors: BaseException, starts: bool = True) -> None:
        self.errors = list(errors)
        self.starts = starts
        self.runs = 0

    def run(self, stop: threading.Event, started: threading.Event | None = None) -> None:
        self.runs += 1
        if self.starts and started is not None:
            started.set()
        if self.errors:
            raise self.errors.pop(0)
        os.kill(os.getpid(), signal.SIGTERM)  # what an operator does: a clean stop
        stop.wait(10)


class _Steady:
    """A worker that runs well until stopped."""

    def __init__(self) -> None:
        self.stopped = False

    def run(self, stop: threading.Event, started: threading.Event | None = None) -> None:
        assert started is not None
        started.set()
        stop.wait(30)
        self.stopped = stop.is_set()


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(cli_module, "_tune_gc", lambda: None)  # not in the test process
    quick = supervise.Backoff
    monkeypatch.setattr(supervise, "Backoff", lambda: quick(0.01, 0.02, 60))
    path = tmp_path / "cdc.toml"
    path.write_text(
        '[kafka]\nbootstrap_servers = "127.0.0.1:9"\n'
        '[[connectors]]\nname = "shop"\ndsn = "host=127.0.0.1 port=9 dbname=x"\n'
        f'[[sinks]]\nname = "lite"\ntype = "sqlite"\npath = "{tmp_path / "x.db"}"\n'
        'topics = ["t"]\n'
    )
    return path


def test_a_failing_worker_is_restarted_and_the_others_go_on(
    config: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    bug = RuntimeError("boom")
    sink = _Scripted(bug, CdcError("the target said no"), bug)
    connector = _Steady()
    monkeypatch.setattr(cli_module, "sink_for", lambda config, kafka: sink)
    monkeypatch.setattr(cli_module, "connector_for", lambda config, kafka: connector)
    caplog.set_level(logging.ERROR, logger="cdc.supervise")
    result = CliRunner().invoke(cli, ["run", "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert sink.runs == 4
    assert connector.stopped  # ran through the sink's failures until told to stop
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "sink lite failed: unexpected RuntimeError: boom; restarting it in 0 s (failure 1)",
        "sink lite failed: the target said no; restarting it in 0 s (failure 2)",
        "sink lite failed: unexpected RuntimeError: boom; restarting it in 0 s (failure 3)",
    ]
    assert caplog.records[0].exc_info is not None  # a bug's traceback is in the log


def test_a_permanent_failure_before_the_first_start_exits_1_with_the_fix(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    refused = Refused("sink lite: password authentication failed", "set the right password")
    monkeypatch.setattr(
        cli_module, "sink_for", lambda config, kafka: _Scripted(refused, starts=False)
    )
    monkeypatch.setattr(cli_module, "connector_for", lambda config, kafka: _Steady())
    result = CliRunner().invoke(cli, ["run", "-c", str(config)])
    assert result.exit_code == 1, result.output
    assert result.stderr == (
        "cdc: error: sink lite cannot start: password authentication failed"
        " (fix: set the right password)\n"
    )


class _Raising:
    def check(self) -> list[object]:
        raise RuntimeError("check blew up")

    def status(self) -> list[object]:
        raise RuntimeError("status blew up")


@pytest.mark.parametrize("command", ["check", "status"])
def test_a_probe_that_raises_is_a_fail_line_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    """Issue 18, item 5: whatever a sink's (or connector's) probe raises, `cdc check` and
    `cdc status` print a FAIL line for it, go on with the others and exit 1."""
    monkeypatch.setattr(cli_module, "sink_for", lambda config, kafka: _Raising())
    monkeypatch.setattr(cli_module, "check_kafka", lambda kafka: [])
    path = tmp_path / "cdc.toml"
    path.write_text(
        '[kafka]\nbootstrap_servers = "127.0.0.1:9"\n'
        f'[[sinks]]\nname = "lite"\ntype = "sqlite"\npath = "{tmp_path / "x.db"}"\n'
        'topics = ["t"]\n'
    )
    result = CliRunner().invoke(cli, [command, "-c", str(path)])
    assert isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 1, result.output
    assert f"FAIL  sink lite: the probe failed (RuntimeError: {command} blew up)" in result.output


def test_one_version_string() -> None:
    """pyproject.toml takes it from cdc.__version__; the events and --version say the same."""
    from importlib.metadata import version  # noqa: PLC0415

    from cdc import __version__  # noqa: PLC0415
    from cdc.events import VERSION  # noqa: PLC0415

    assert version("cdc") == __version__
    assert f"cdc-{__version__}" == VERSION
    assert CliRunner().invoke(cli, ["--version"]).output == f"cdc, version {__version__}\n"
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject and "\nversion =" not in pyproject.split("[tool")[0]
