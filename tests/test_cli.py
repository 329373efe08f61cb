"""``cdc run`` itself: a worker that fails with a bug stops the process with exit 1 and leaves
the traceback in the log (a CdcError is a plain one-line message; a bug needs its where)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from cdc import cli as cli_module
from cdc.cli import cli
from cdc.errors import CdcError


class _Failing:
    def __init__(self, error: BaseException) -> None:
        self.error = error

    def run(self, stop: threading.Event) -> None:
        raise self.error


@pytest.mark.parametrize(
    ("error", "message", "traceback"),
    [
        (RuntimeError("boom"), "cdc: error: unexpected RuntimeError: boom", True),
        (CdcError("the target said no"), "cdc: error: the target said no", False),
    ],
)
def test_a_failing_worker_stops_cdc_with_exit_1(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    error: BaseException,
    message: str,
    traceback: bool,
) -> None:
    monkeypatch.setattr(cli_module, "sink_for", lambda config, kafka: _Failing(error))
    monkeypatch.setattr(cli_module, "_tune_gc", lambda: None)  # not in the test process
    path = tmp_path / "cdc.toml"
    path.write_text(
        '[kafka]\nbootstrap_servers = "127.0.0.1:9"\n'
        f'[[sinks]]\nname = "lite"\ntype = "sqlite"\npath = "{tmp_path / "x.db"}"\n'
        'topics = ["t"]\n'
    )
    caplog.set_level(logging.ERROR, logger="cdc.cli")
    result = CliRunner().invoke(cli, ["run", "-c", str(path)])
    assert result.exit_code == 1, result.output
    assert message in result.stderr
    logged = [r for r in caplog.records if r.exc_info is not None]
    assert bool(logged) == traceback
    if traceback:
        assert logged[0].exc_info is not None and logged[0].exc_info[1] is error


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
