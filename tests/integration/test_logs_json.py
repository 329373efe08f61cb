"""``cdc --log-format json run`` against the real services: every line a JSON object, the
connector's and the sink's lines carrying their names."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson
import psycopg

from tests.support.harness import CdcProcess, as_url, wait_for


def _rows(path: Path) -> int:
    if not path.exists():
        return 0
    with sqlite3.connect(path) as conn:
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'public_t'").fetchall():
            return 0
        (n,) = conn.execute("SELECT count(*) FROM public_t").fetchone()
        return int(n)


def test_json_logs_of_a_running_pipeline(
    tmp_path: Path, database: str, kafka_bootstrap: str, unique: str
) -> None:
    prefix, lite = f"lj{unique}", tmp_path / "lite.db"
    config = tmp_path / "cdc.toml"
    config.write_text(
        f'[kafka]\nbootstrap_servers = "{kafka_bootstrap}"\n'
        f'[[connectors]]\nname = "{prefix}"\ndsn = "{as_url(database)}"\nsnapshot = "never"\n'
        f'[[sinks]]\nname = "lite"\ntype = "sqlite"\npath = "{lite}"\n'
        f'topics = ["{prefix}.public.*"]\ngroup_id = "g-{prefix}"\n'
    )
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
    cdc = CdcProcess(config, tmp_path / "cdc.log", options=("--log-format", "json"))
    try:
        wait_for(lambda: f"streaming slot cdc_{prefix}" in cdc.output(), 60, "the connector")
        with psycopg.connect(database, autocommit=True) as conn:
            conn.execute("INSERT INTO t SELECT i, 'a' FROM generate_series(1, 10) i")
        wait_for(lambda: _rows(lite) == 10, 90, "the sink's rows")
    finally:
        assert cdc.stop() == 0
    lines = cdc.output().splitlines()
    records = [orjson.loads(line) for line in lines]  # every line a JSON object
    assert records
    for r in records:
        assert {"time", "level", "logger", "message"} <= set(r), r
    streaming = [r for r in records if f"streaming slot cdc_{prefix}" in r["message"]]
    assert streaming
    assert streaming[0]["connector"] == prefix
    assert any(r.get("sink") == "lite" for r in records)
    (stopping,) = [r for r in records if r["message"] == "SIGTERM received; stopping"]
    assert "connector" not in stopping and "sink" not in stopping  # the process's own line
