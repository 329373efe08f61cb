"""`make demo`: the whole pipeline on sample data, end to end, on the devstack.

Creates a sample shop database, starts ``cdc run`` with examples/demo.toml (one connector, a
PostgreSQL sink and a SQLite sink), writes orders for a few seconds, waits for the sinks to catch
up, then shows the three copies side by side and ``cdc status``. Exit 0 when all three agree.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo
from shop import compare, create_schema, write_orders

ROOT = Path(__file__).resolve().parent.parent
CDC = str(Path(sys.executable).parent / "cdc")


def reset(admin_dsn: str) -> None:
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
            " WHERE slot_name = 'cdc_demo'"
        )
        for db in ("demo_shop", "demo_replica"):
            admin.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
            admin.execute(f"CREATE DATABASE {db}")


def main() -> int:
    base = os.environ["CDC_TEST_PG_DSN"]
    os.environ["CDC_DEMO_SHOP"] = make_conninfo(base, dbname="demo_shop")
    os.environ["CDC_DEMO_REPLICA"] = make_conninfo(base, dbname="demo_replica")
    os.environ["CDC_DEMO_SQLITE"] = str(ROOT / ".devstack" / "demo.db")
    os.environ["CDC_DEMO_RUN"] = str(int(time.time()))
    for suffix in ("", "-wal", "-shm"):
        Path(os.environ["CDC_DEMO_SQLITE"] + suffix).unlink(missing_ok=True)
    reset(base)
    shop = os.environ["CDC_DEMO_SHOP"]
    create_schema(shop)
    config = ROOT / "examples" / "demo.toml"
    print(f"== starting: cdc run -c {config.relative_to(ROOT)}")
    cdc = subprocess.Popen([CDC, "run", "-c", str(config)])
    try:
        # snapshot = "never": what is written before the slot exists is not captured, and on a
        # busy server creating the slot takes longer than any fixed wait.
        for _ in range(120):
            with psycopg.connect(base, autocommit=True) as conn:
                if conn.execute(
                    "SELECT 1 FROM pg_replication_slots WHERE slot_name = 'cdc_demo' AND active"
                    " AND confirmed_flush_lsn IS NOT NULL"
                ).fetchone():
                    break
            time.sleep(0.5)
        print("== writing customers and orders for 8 seconds")
        write_orders(shop, seconds=8)
        print("== waiting for the sinks to catch up")
        for _ in range(60):
            time.sleep(1)
            status = subprocess.run(
                [CDC, "status", "-c", str(config)], capture_output=True, text=True, check=False
            )
            if status.stdout.count("lag 0 record(s)") == 2 and " lag 0 bytes" in status.stdout:
                break
        print(status.stdout, end="")
    finally:
        cdc.send_signal(signal.SIGTERM)
        cdc.wait(15)
    agree = compare(shop, os.environ["CDC_DEMO_REPLICA"], os.environ["CDC_DEMO_SQLITE"])
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
