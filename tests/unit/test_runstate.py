"""cdc.runstate: what a `cdc run` process tells `cdc status` of its workers (unit, no services)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from cdc.runstate import RunState, dlq_since, findings


@pytest.fixture(autouse=True)
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CDC_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "state"


def test_nothing_to_say_of_workers_that_never_failed(tmp_path: Path) -> None:
    state = RunState(str(tmp_path / "cdc.toml"), ["connector c", "sink s"])
    assert state.path is not None and state.path.exists()
    assert findings(str(tmp_path / "cdc.toml")) == []
    state.close()
    assert not state.path.exists()


def test_a_recent_failure_warns_and_a_failing_loop_fails(tmp_path: Path) -> None:
    config = str(tmp_path / "cdc.toml")
    state = RunState(config, ["sink s"])
    state.failed("sink s", "the target says no", 1.0)
    (line,) = findings(config)
    assert line.level == "warn" and line.subject == "sink s"
    assert line.message.startswith("failed 1 time(s) in cdc run (pid ")
    assert "the target says no; restarted with backoff" in line.message
    state.failed("sink s", "the target says no", 2.0)
    state.failed("sink s", "the target says no", 4.0)
    (line,) = findings(config)
    assert line.level == "fail" and "failing again and again, restarted every 4 s" in line.message
    # Long after its last failure it runs again: said, but OK.
    (line,) = findings(config, now=time.time() + 600)
    assert line.level == "ok" and line.message.startswith("running again; failed 3 time(s)")
    # Another configuration file's processes are not this one's.
    assert findings(str(tmp_path / "other.toml")) == []
    state.close()


def test_a_process_that_died_leaves_a_warning(tmp_path: Path, state_dir: Path) -> None:
    config = str(tmp_path / "cdc.toml")
    state = RunState(config, ["sink s"])
    assert state.path is not None
    doc = json.loads(state.path.read_text())
    doc["pid"] = 2**22 + 12345  # beyond pid_max: no such process
    state.path.write_text(json.dumps(doc))
    (line,) = findings(config)
    assert line.level == "warn" and line.subject == "cdc run"
    assert line.message.startswith(f"process {doc['pid']} of this file ended without stopping")


def test_an_unwritable_directory_is_not_fatal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("CDC_STATE_DIR", str(blocker / "sub"))
    state = RunState(str(tmp_path / "cdc.toml"), ["sink s"])
    state.failed("sink s", "x", 1.0)
    state.close()
    assert state.path is None


def test_dead_letters_since_the_last_status() -> None:
    assert dlq_since("k|sink a", {"t.dlq": 9}) == {}  # first look: nothing to compare with
    ((new, at),) = dlq_since("k|sink a", {"t.dlq": 12}).values()
    assert new == 3 and time.time() - at < 5
    assert dlq_since("k|sink a", {"t.dlq": 12})["t.dlq"][0] == 0
    assert dlq_since("k|sink b", {"t.dlq": 12}) == {}  # another sink has its own memory
    assert dlq_since("k|sink a", {"t.dlq": 2}) == {}  # the topic was made again: start over
