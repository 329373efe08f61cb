"""A throwaway PostgreSQL server with settings of a test's choosing (``wal_level=replica``, say).

Made with the machine's ``initdb`` and ``pg_ctl`` (``CDC_DEV_PG_BIN``, else the newest
``/usr/lib/postgresql/*/bin``); as root it runs as the ``postgres`` OS user, as PostgreSQL demands.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def pg_bindir() -> Path:
    configured = os.environ.get("CDC_DEV_PG_BIN")
    if configured:
        return Path(configured)
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_major)
    if not found:
        raise RuntimeError("no PostgreSQL server binaries: run scripts/devstack up first")
    return Path(found[-1]).parent


def _major(path: str) -> int:
    return int(Path(path).parent.parent.name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_owner(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@contextmanager
def scratch_postgres(**settings: str) -> Iterator[str]:
    """Run a fresh server with ``settings`` in postgresql.conf; yield a superuser DSN."""
    bindir = pg_bindir()
    top = Path(tempfile.mkdtemp(prefix="cdc-scratch-pg-"))
    data = top / "data"
    port = free_port()
    top.chmod(0o755)
    if os.geteuid() == 0:
        shutil.chown(top, "postgres", "postgres")
    try:
        subprocess.run(
            _as_owner([str(bindir / "initdb"), "-U", "postgres", "--auth=trust", "-D", str(data)]),
            check=True,
            capture_output=True,
        )
        conf = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(port),
            "unix_socket_directories": f"'{top}'",
            "fsync": "off",
            **settings,
        }
        with (data / "postgresql.conf").open("a") as f:
            f.writelines(f"{k} = {v}\n" for k, v in conf.items())
        subprocess.run(
            _as_owner(
                [str(bindir / "pg_ctl"), "-D", str(data), "-w", "-l", str(top / "log"), "start"]
            ),
            check=True,
            capture_output=True,
        )
        try:
            yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
        finally:
            subprocess.run(
                _as_owner([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
                check=False,
                capture_output=True,
            )
    finally:
        shutil.rmtree(top, ignore_errors=True)
