"""What ``cdc run`` says of its workers to ``cdc status``: one small JSON file per process.

``cdc status`` runs as a process of its own; a worker that fails and is restarted leaves no trace
it could see elsewhere (a failing sink's target may be the thing that is down). So each
``cdc run`` keeps, per worker, its failures and last error in
``$CDC_STATE_DIR`` (default: the system's temporary directory, ``cdc/``) under a name made of
its configuration file's path and its pid, rewritten (atomically) when something changes and
removed when it stops cleanly. A file whose process is gone means ``cdc run`` ended without
stopping cleanly.
"""

from __future__ import annotations

__all__ = ["RunState", "dlq_since", "findings"]

import hashlib
import json
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from cdc.findings import Finding

LOOPING = 3
"""Failures in a row, the last within its backoff, that make a worker's line FAIL."""
RECENT_S = 300.0
"""A failure this recent makes its worker's line WARN; an older one is history (still shown)."""


def _directory() -> Path:
    return Path(os.environ.get("CDC_STATE_DIR") or Path(tempfile.gettempdir()) / "cdc")


def _key(config_path: str) -> str:
    return hashlib.sha256(str(Path(config_path).resolve()).encode()).hexdigest()[:16]


class RunState:
    """The state file of this ``cdc run`` process (thread-safe: workers report from their
    threads)."""

    def __init__(self, config_path: str, workers: list[str]) -> None:
        self.path: Path | None = _directory() / f"run-{_key(config_path)}-{os.getpid()}.json"
        self._lock = threading.Lock()
        self._doc: dict[str, Any] = {
            "pid": os.getpid(),
            "config": str(Path(config_path).resolve()),
            "started": time.time(),
            "workers": {name: {"failures": 0} for name in workers},
        }
        try:
            _directory().mkdir(parents=True, exist_ok=True)
            self._write()
        except OSError:
            self.path = None  # nowhere to write: status sees less

    def failed(self, worker: str, error: str, retry_in_s: float) -> None:
        with self._lock:
            entry = self._doc["workers"].setdefault(worker, {"failures": 0})
            entry["failures"] += 1
            entry["error"] = error
            entry["at"] = time.time()
            entry["retry_in_s"] = retry_in_s
            self._write()

    def close(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)

    def _write(self) -> None:
        if self.path is None:
            return
        temporary = self.path.with_suffix(".tmp")
        try:
            temporary.write_text(json.dumps(self._doc))
            temporary.replace(self.path)
        except OSError:
            pass  # a full disk must not stop the pipeline; status sees less


def findings(config_path: str, now: float | None = None) -> list[Finding]:
    """One line per worker of every ``cdc run`` of this configuration file that reported
    failures, and one per such process that ended without stopping cleanly."""
    now = time.time() if now is None else now
    out: list[Finding] = []
    for path in sorted(_directory().glob(f"run-{_key(config_path)}-*.json")):
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        pid = int(doc.get("pid", 0))
        if not _alive(pid):
            out.append(
                Finding.warn(
                    "cdc run",
                    f"process {pid} of this file ended without stopping cleanly (started"
                    f" {_when(doc.get('started', 0))}); its workers are not running",
                )
            )
            continue
        for name, entry in sorted(doc.get("workers", {}).items()):
            failures = int(entry.get("failures", 0))
            if not failures:
                continue
            ago = now - float(entry.get("at", 0))
            text = (
                f"failed {failures} time(s) in cdc run (pid {pid}); the last {ago:.0f} s ago:"
                f" {entry.get('error', '?')}"
            )
            looping = failures >= LOOPING and ago < 2 * float(entry.get("retry_in_s", 0)) + 10
            if looping:
                out.append(
                    Finding.fail(
                        name,
                        f"{text}; failing again and again, restarted"
                        f" every {float(entry.get('retry_in_s', 0)):.0f} s",
                    )
                )
            elif ago < RECENT_S:
                out.append(Finding.warn(name, f"{text}; restarted with backoff"))
            else:
                out.append(Finding.ok(name, f"running again; {text}"))
    return out


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))


def dlq_since(key: str, ends: dict[str, int]) -> dict[str, tuple[int, float]]:
    """Per dead-letter topic of ``ends`` (its partitions' end offsets summed), how many records
    it gained since the last ``cdc status`` that looked at it, and when that was; remembered
    for the next one (``key``: the Kafka cluster, so that two clusters' topics stay apart)."""
    path = _directory() / "status-dlq.json"
    try:
        seen: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        seen = {}
    now = time.time()
    out: dict[str, tuple[int, float]] = {}
    for topic, end in ends.items():
        last = seen.get(f"{key}|{topic}")
        if isinstance(last, dict) and end >= int(last.get("end", 0)):
            out[topic] = (end - int(last["end"]), float(last.get("at", 0)))
        seen[f"{key}|{topic}"] = {"end": end, "at": now}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps(seen))
        temporary.replace(path)
    except OSError:
        pass  # nowhere to remember it: the next status just says less
    return out
