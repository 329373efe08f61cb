"""The connector on every PostgreSQL major it supports (14 to 18), and its refusal of older ones.

Integration tests. ``CDC_TEST_PG_VERSIONS`` lists the majors (``make test``: a few;
``make test-pg-matrix``: 13 to 18; unset: the default server's alone). A major equal to the
default server's (``CDC_TEST_PG_DSN``) runs there; any other on the server
``CDC_DEV_PG_VERSION=NN scripts/devstack up`` starts (the Makefile does), found through
``CDC_DEV_PG_VERSION=NN scripts/devstack env``. Majors below 14 only get the refusal test.
pgoutput runs on every major, wal2json where its package is installed (Debian has it for 15).
Size knobs: ``CDC_TEST_PG_MATRIX_ROWS`` (rows written, default 1 000) and
``CDC_TEST_PG_MATRIX_KILLS`` (SIGKILLs, default 2).

The truth is the source itself: the workload knows every change it committed, in commit order,
and the tables' final contents; no wal2json reference slot (absent on most majors).
"""

from __future__ import annotations

import functools
import os
import random
import shlex
import subprocess
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from cdc.cli import cli
from tests.support import ROOT
from tests.support.harness import (
    CDC,
    CdcProcess,
    Event,
    current_wal_lsn,
    read_topics,
    slot_confirmed_lsn,
    wait_for,
    write_config,
)
from tests.support.services import fresh_database

VERSIONS = sorted({int(v) for v in os.environ.get("CDC_TEST_PG_VERSIONS", "").split()})
SUPPORTED = [v for v in VERSIONS if v >= 14] or [0]
"""0: none listed, the default server's major (so a plain ``pytest`` needs no other server)."""
REFUSED = [v for v in VERSIONS if v < 14]
ROWS = int(os.environ.get("CDC_TEST_PG_MATRIX_ROWS", "1000"))
KILLS = int(os.environ.get("CDC_TEST_PG_MATRIX_KILLS", "2"))


def _plugins(version: int) -> list[str]:
    # Debian's postgresql-NN-wal2json is the only wal2json build here (NN = 15); the default
    # server has wal2json (the devstack's).
    has_wal2json = Path(f"/usr/lib/postgresql/{version}/lib/wal2json.so").exists()
    return ["pgoutput", "wal2json"] if has_wal2json or not version else ["pgoutput"]


def _id(version: int) -> str:
    return f"pg{version}" if version else "pg-default"


PLUGIN_MATRIX = [pytest.param(v, p, id=f"{_id(v)}-{p}") for v in SUPPORTED for p in _plugins(v)]
MAJORS = [pytest.param(v, id=_id(v)) for v in SUPPORTED]


@functools.cache
def _major(dsn: str) -> int:
    with psycopg.connect(dsn, connect_timeout=5) as conn:
        return conn.info.server_version // 10000


def server_dsn(pg_dsn: str, version: int) -> str:
    """A superuser DSN (database ``postgres``) of a running PostgreSQL ``version``."""
    if _major(pg_dsn) == version:
        return pg_dsn
    env = subprocess.run(
        [str(ROOT / "scripts" / "devstack"), "env"],
        env={**os.environ, "CDC_DEV_PG_VERSION": str(version)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    prefix = "export CDC_TEST_PG_DSN="
    dsn = next(
        shlex.split(line[len(prefix) :])[0] for line in env.splitlines() if line.startswith(prefix)
    )
    try:
        found = _major(dsn)
    except psycopg.OperationalError as e:
        pytest.fail(
            f"no PostgreSQL {version} at {dsn} ({e}): start it with"
            f" `CDC_DEV_PG_VERSION={version} scripts/devstack up` (make test starts each major"
            " of CDC_TEST_PG_VERSIONS)"
        )
    assert found == version, f"{dsn} runs PostgreSQL {found}, not {version}"
    return dsn


@pytest.fixture
def version(request: pytest.FixtureRequest, pg_dsn: str) -> int:
    """The major a test runs on: its parameter (0: the default server's major)."""
    return int(request.param) or _major(pg_dsn)


@pytest.fixture
def versioned_db(pg_dsn: str, version: int, unique: str) -> Iterator[str]:
    """A fresh database of this test's own on PostgreSQL ``version``."""
    with fresh_database(server_dsn(pg_dsn, version), f"cdct_{unique}") as dsn:
        yield dsn


class Writer(threading.Thread):
    """Transactions of inserts, updates and deletes on ``w``; remembers each committed change
    as ``(op, id, v)`` in commit order (one connection: commit order is call order)."""

    def __init__(self, dsn: str, seed: int, rows: int, pause_s: float = 0.0) -> None:
        super().__init__(daemon=True)
        self.dsn, self.rows, self.pause_s = dsn, rows, pause_s
        self.rng = random.Random(seed)
        self.changes: list[tuple[str, int, int | None]] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as e:
            self.error = e

    def _run(self) -> None:
        live: dict[int, int] = {}
        next_id = 1_000_000
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while next_id - 1_000_000 < self.rows:
                done: list[tuple[str, int, int | None]] = []
                with conn.transaction():
                    for _ in range(self.rng.randint(1, 20)):
                        roll = self.rng.random()
                        if roll < 0.6 or len(live) < 10:
                            next_id += 1
                            v = self.rng.randrange(1 << 40)
                            conn.execute("INSERT INTO w VALUES (%s, %s, %s)", (next_id, v, "x"))
                            live[next_id] = v
                            done.append(("c", next_id, v))
                        elif roll < 0.85:
                            key = self.rng.choice(list(live))
                            live[key] += 1
                            conn.execute("UPDATE w SET v = v + 1 WHERE id = %s", (key,))
                            done.append(("u", key, live[key]))
                        else:
                            key = self.rng.choice(list(live))
                            del live[key]
                            conn.execute("DELETE FROM w WHERE id = %s", (key,))
                            done.append(("d", key, None))
                self.changes.extend(done)
                if self.pause_s:
                    time.sleep(self.pause_s)


def delivered(events: list[Event]) -> list[tuple[str, int, int | None]]:
    """Each change on Kafka once (by event id, first copy), as ``(op, id, v)``; re-published
    copies must be the same change."""
    first: dict[str, Event] = {}
    out = []
    for e in events:
        if e.value is None:
            continue  # a tombstone
        assert e.event_id is not None
        seen = first.setdefault(e.event_id, e)
        if seen is not e:
            # A copy re-published after a crash: the same change (ts_ms is when it was sent).
            assert seen.value is not None
            for part in ("op", "before", "after"):
                assert seen.value[part] == e.value[part], (e.event_id, part)
            assert seen.value["source"]["lsn"] == e.value["source"]["lsn"], e.event_id
            continue
        row = e.value["before"] if e.op == "d" else e.value["after"]
        out.append((str(e.op), int(row["id"]), None if e.op == "d" else int(row["v"])))
    return out


def settle(dsn: str, slot: str, cdc: CdcProcess) -> None:
    """Wait for the connector to confirm everything written so far, then stop it cleanly."""
    end = current_wal_lsn(dsn)
    try:
        wait_for(lambda: slot_confirmed_lsn(dsn, slot) >= end, 120, "the connector to catch up")
    finally:
        assert cdc.stop() == 0, cdc.output()[-3000:]


def source_rows(dsn: str) -> dict[int, int]:
    with psycopg.connect(dsn) as conn:
        return {int(i): int(v) for i, v in conn.execute("SELECT id, v FROM w")}


def final_state(changes: list[tuple[str, int, int | None]]) -> dict[int, int]:
    rows: dict[int, int] = {}
    for op, key, v in changes:
        if op == "d":
            rows.pop(key, None)
        else:
            assert v is not None
            rows[key] = v
    return rows


def by_key(changes: list[tuple[str, int, int | None]]) -> dict[int, list[tuple[str, int | None]]]:
    out: dict[int, list[tuple[str, int | None]]] = defaultdict(list)
    for op, key, v in changes:
        out[key].append((op, v))
    return dict(out)


def start(tmp_path: Path, dsn: str, kafka: str, prefix: str, **connector: Any) -> CdcProcess:
    config = write_config(tmp_path / "cdc.toml", dsn, kafka, name=prefix, **connector)
    cdc = CdcProcess(config, tmp_path / "cdc.log")
    wait_for(lambda: slot_confirmed_lsn(dsn, f"cdc_{prefix}"), 60, "the connector's slot")
    return cdc


SCHEMA = "CREATE TABLE w (id bigint PRIMARY KEY, v bigint NOT NULL, note text)"


@pytest.mark.parametrize(("version", "plugin"), PLUGIN_MATRIX, indirect=["version"])
def test_streaming_is_exact(
    tmp_path: Path, versioned_db: str, kafka_bootstrap: str, unique: str, version: int, plugin: str
) -> None:
    """Inserts, updates and deletes arrive on Kafka exactly once each, in commit order."""
    with psycopg.connect(versioned_db, autocommit=True) as conn:
        conn.execute(SCHEMA)
    prefix = f"v{version}{plugin[:3]}{unique}"
    cdc = start(tmp_path, versioned_db, kafka_bootstrap, prefix, plugin=plugin)
    writer = Writer(versioned_db, version, ROWS)
    writer.run()
    assert writer.error is None, writer.error
    settle(versioned_db, f"cdc_{prefix}", cdc)
    got = delivered(read_topics(kafka_bootstrap, [f"{prefix}.public.w"]))
    assert got == writer.changes  # one connection, one table: Kafka order is commit order
    assert final_state(got) == source_rows(versioned_db)
    counts = Counter(op for op, _, _ in got)
    print(f"PostgreSQL {version} {plugin}: {dict(counts)} exact")


@pytest.mark.parametrize("version", MAJORS, indirect=True)
def test_sigkills_lose_nothing(
    tmp_path: Path, versioned_db: str, kafka_bootstrap: str, unique: str, version: int
) -> None:
    """pgoutput, the connector SIGKILLed while transactions commit: every committed change is on
    Kafka, each key's changes first appear in commit order, and no change is invented."""
    with psycopg.connect(versioned_db, autocommit=True) as conn:
        conn.execute(SCHEMA)
    prefix = f"k{version}{unique}"
    cdc = start(tmp_path, versioned_db, kafka_bootstrap, prefix, plugin="pgoutput")
    writer = Writer(versioned_db, version, ROWS * 4, pause_s=0.005)
    writer.start()
    rng = random.Random(unique)
    for _ in range(KILLS):
        time.sleep(rng.uniform(0.5, 2.0))
        assert cdc.alive(), cdc.output()[-3000:]
        cdc.kill()
        cdc = CdcProcess(tmp_path / "cdc.toml", tmp_path / "cdc.log")
    writer.join(300)
    assert writer.error is None, writer.error
    assert not writer.is_alive()
    settle(versioned_db, f"cdc_{prefix}", cdc)
    events = read_topics(kafka_bootstrap, [f"{prefix}.public.w"])
    got = delivered(events)
    assert by_key(got) == by_key(writer.changes)
    assert Counter(got) == Counter(writer.changes)
    assert final_state(got) == source_rows(versioned_db)
    copies = sum(e.value is not None for e in events) - len(got)
    print(
        f"PostgreSQL {version}: {KILLS} SIGKILLs, {len(writer.changes)} changes, none lost,"
        f" {copies} re-published"
    )


@pytest.mark.parametrize("version", MAJORS, indirect=True)
def test_initial_snapshot_then_stream(
    tmp_path: Path, versioned_db: str, kafka_bootstrap: str, unique: str, version: int
) -> None:
    """Rows present before the first start arrive as reads from the slot's exported snapshot;
    changes written while it runs follow; the topic replays to the source's contents."""
    with psycopg.connect(versioned_db, autocommit=True) as conn:
        conn.execute(SCHEMA)
        conn.execute(
            "INSERT INTO w SELECT g, g * 7, repeat('s', 50) FROM generate_series(1, %s) g",
            (ROWS * 5,),
        )
    prefix = f"s{version}{unique}"
    writer = Writer(versioned_db, version, ROWS)
    cdc = start(
        tmp_path, versioned_db, kafka_bootstrap, prefix, plugin="pgoutput", snapshot="initial"
    )
    writer.run()
    assert writer.error is None, writer.error
    wait_for(lambda: snapshot_done(versioned_db), 120, "the snapshot")
    settle(versioned_db, f"cdc_{prefix}", cdc)
    assert "(the slot's exported snapshot)" in cdc.output()
    got = delivered(read_topics(kafka_bootstrap, [f"{prefix}.public.w"]))
    reads = [c for c in got if c[0] == "r"]
    assert len(reads) == ROWS * 5
    assert sorted(reads) == [("r", g, g * 7) for g in range(1, ROWS * 5 + 1)]
    replayed: dict[int, int] = {}
    for op, key, v in got:
        if op == "d":
            replayed.pop(key, None)
        else:
            assert v is not None
            replayed[key] = v
    assert replayed == source_rows(versioned_db)
    print(
        f"PostgreSQL {version}: snapshot of {len(reads)} rows, then {len(got) - len(reads)} changes"
    )


def snapshot_done(dsn: str) -> bool:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT state FROM cdc.snapshots WHERE kind = 'initial' AND table_name = '*'"
        ).fetchone()
    return row is not None and row[0] == "done"


def check_config(tmp_path: Path, dsn: str, kafka: str, plugin: str, **extra: Any) -> Path:
    return write_config(tmp_path / "check.toml", dsn, kafka, name="shop", plugin=plugin, **extra)


@pytest.mark.parametrize(("version", "plugin"), PLUGIN_MATRIX, indirect=["version"])
def test_cdc_check_passes(
    tmp_path: Path, versioned_db: str, kafka_bootstrap: str, unique: str, version: int, plugin: str
) -> None:
    with psycopg.connect(versioned_db, autocommit=True) as conn:
        conn.execute(SCHEMA)
    config = check_config(tmp_path, versioned_db, kafka_bootstrap, plugin, slot=f"cdct_chk{unique}")
    result = CliRunner().invoke(cli, ["check", "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert f"(PostgreSQL {version}." in result.output
    assert f"plugin {plugin} loads and decodes" in result.output
    assert " 0 failed" in result.output


@pytest.mark.parametrize("version", MAJORS, indirect=True)
def test_failover_slot(
    tmp_path: Path, versioned_db: str, kafka_bootstrap: str, unique: str, version: int
) -> None:
    """``failover_slot = true``: on 17 and later the slot is made a failover slot, whether the
    connector creates it or finds it made without; before 17, ``cdc check`` and ``cdc run``
    refuse with a message that says why."""
    with psycopg.connect(versioned_db, autocommit=True) as conn:
        conn.execute(SCHEMA)
    prefix = f"f{version}{unique}"
    config = write_config(
        tmp_path / "cdc.toml",
        versioned_db,
        kafka_bootstrap,
        name=prefix,
        plugin="pgoutput",
        failover_slot=True,
    )
    check = CliRunner().invoke(cli, ["check", "-c", str(config)])
    if version < 17:
        assert check.exit_code == 1, check.output
        message = (
            "failover_slot = true needs PostgreSQL 17 or later (failover slots), but this"
            f" server is PostgreSQL {version}."
        )
        assert message in check.output
        run = subprocess.run(
            [CDC, "run", "-c", str(config)], check=False, capture_output=True, text=True, timeout=60
        )
        assert run.returncode == 1, run.stdout + run.stderr
        assert message in run.stderr
        with psycopg.connect(versioned_db) as conn:
            assert conn.execute(
                "SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s", (f"cdc_{prefix}",)
            ).fetchone() == (0,)
        return
    assert check.exit_code == 0, check.output
    assert (
        f"failover_slot = true: slot cdc_{prefix} will be created as a failover slot"
        in check.output
    )
    cdc = CdcProcess(config, tmp_path / "cdc.log")
    wait_for(lambda: slot_confirmed_lsn(versioned_db, f"cdc_{prefix}"), 60, "the slot")
    assert cdc.stop() == 0, cdc.output()[-3000:]
    assert failover(versioned_db, f"cdc_{prefix}") is True
    # A slot made without the option, then the option turned on: the connector turns it on.
    plain = f"p{version}{unique}"
    config = write_config(
        tmp_path / "plain.toml", versioned_db, kafka_bootstrap, name=plain, plugin="pgoutput"
    )
    cdc = CdcProcess(config, tmp_path / "plain.log")
    wait_for(lambda: slot_confirmed_lsn(versioned_db, f"cdc_{plain}"), 60, "the slot")
    assert cdc.stop() == 0, cdc.output()[-3000:]
    assert failover(versioned_db, f"cdc_{plain}") is False
    config = write_config(
        tmp_path / "plain.toml",
        versioned_db,
        kafka_bootstrap,
        name=plain,
        plugin="pgoutput",
        failover_slot=True,
    )
    check = CliRunner().invoke(cli, ["check", "-c", str(config)])
    assert f"slot cdc_{plain} is not a failover slot yet" in check.output, check.output
    cdc = CdcProcess(config, tmp_path / "plain.log")
    wait_for(
        lambda: failover(versioned_db, f"cdc_{plain}"), 60, "the slot to become a failover slot"
    )
    with psycopg.connect(versioned_db, autocommit=True) as conn:
        conn.execute("INSERT INTO w VALUES (1, 1, 'after')")
    settle(versioned_db, f"cdc_{plain}", cdc)
    assert delivered(read_topics(kafka_bootstrap, [f"{plain}.public.w"])) == [("c", 1, 1)]
    assert f"slot cdc_{plain} is now a failover slot" in cdc.output()


def failover(dsn: str, slot: str) -> bool | None:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT failover FROM pg_replication_slots WHERE slot_name = %s", (slot,)
        ).fetchone()
    return None if row is None else bool(row[0])


# Defined only when CDC_TEST_PG_VERSIONS lists such a major: an empty parameter list would be a
# skip, which CI=true turns into a failure. The unit tests (test_pg_versions_unit.py) fake one.
if REFUSED:

    @pytest.mark.parametrize(
        "version", [pytest.param(v, id=_id(v)) for v in REFUSED], indirect=True
    )
    def test_older_server_is_refused(
        tmp_path: Path, versioned_db: str, kafka_bootstrap: str, unique: str, version: int
    ) -> None:
        """A real server older than 14: ``cdc check`` fails on it, ``cdc run`` exits 1 at once
        (no retrying) with the same message, and neither leaves a slot or a table behind."""
        message = f"PostgreSQL {version}."
        refusal = "the oldest version cdc supports; upgrade the server to PostgreSQL 14 or later"
        config = check_config(
            tmp_path, versioned_db, kafka_bootstrap, "pgoutput", slot=f"cdct_old{unique}"
        )
        check = CliRunner().invoke(cli, ["check", "-c", str(config)])
        assert check.exit_code == 1, check.output
        assert (
            message in check.output
            and "is older than 14," in check.output
            and refusal in check.output
        )
        started = time.monotonic()
        run = subprocess.run(
            [CDC, "run", "-c", str(config)], check=False, capture_output=True, text=True, timeout=60
        )
        assert run.returncode == 1, run.stdout + run.stderr
        assert refusal in run.stderr and message in run.stderr
        assert "retrying" not in run.stderr
        assert time.monotonic() - started < 30
        with psycopg.connect(versioned_db) as conn:
            assert conn.execute("SELECT count(*) FROM pg_replication_slots").fetchone() == (0,)
            assert conn.execute("SELECT to_regclass('cdc.signal')").fetchone() == (None,)
