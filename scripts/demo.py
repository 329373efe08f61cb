"""`make demo`: the whole pipeline on sample data, end to end, on the devstack.

Creates a sample shop database, starts ``cdc run`` with examples/demo.toml (one connector, a
PostgreSQL sink and a SQLite sink), writes orders for a few seconds, waits for the sinks to catch
up, then shows the three copies side by side and ``cdc status``. Exit 0 when all three agree.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo

ROOT = Path(__file__).resolve().parent.parent
CDC = str(Path(sys.executable).parent / "cdc")
TABLES = ("customers", "orders")


def reset(admin_dsn: str) -> None:
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
            " WHERE slot_name = 'cdc_demo'"
        )
        for db in ("demo_shop", "demo_replica"):
            admin.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
            admin.execute(f"CREATE DATABASE {db}")


def summary_pg(dsn: str, table: str) -> tuple[int, str]:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            f"SELECT count(*), coalesce(sum(hashtext(t::text)), 0)::text FROM"
            f" (SELECT id, name FROM public.{table}) t"
            if table == "customers"
            else "SELECT count(*), coalesce(sum(total), 0)::text FROM public.orders"
        ).fetchone()
    assert row is not None
    return int(row[0]), str(row[1])


def write_orders(shop: str, seconds: float) -> None:
    rng = random.Random(7)
    with psycopg.connect(shop, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO customers (name) SELECT 'customer ' || g FROM generate_series(1, 50) g"
        )
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            with conn.transaction():
                conn.execute(
                    "INSERT INTO orders (customer_id, total, status) VALUES (%s, %s, 'new')",
                    (rng.randrange(1, 51), round(rng.uniform(1, 500), 2)),
                )
                conn.execute(
                    "UPDATE orders SET status = 'paid', total = total + 1 WHERE id = %s",
                    (rng.randrange(1, 400),),
                )
                if rng.random() < 0.1:
                    conn.execute("DELETE FROM orders WHERE id = %s", (rng.randrange(1, 400),))
            time.sleep(0.01)


def compare(shop: str) -> bool:
    """Print the three copies side by side; True when they agree."""
    print(f"== {'table':<10} {'source':>22} {'postgres sink':>22} {'sqlite sink':>22}")
    agree = True
    lite = sqlite3.connect(os.environ["CDC_DEMO_SQLITE"])
    for table in TABLES:
        source = summary_pg(shop, table)
        replica = summary_pg(os.environ["CDC_DEMO_REPLICA"], table)
        count = lite.execute(f"SELECT count(*) FROM public_{table}").fetchone()
        lite_summary = (int(count[0]) if count else 0, "")
        if table == "orders":
            total = lite.execute(
                "SELECT printf('%.2f', coalesce(sum(CAST(total AS REAL)), 0)) FROM public_orders"
            ).fetchone()
            lite_summary = (lite_summary[0], str(total[0]) if total else "")
        print(f"   {table:<10} {source!s:>22} {replica!s:>22} {lite_summary!s:>22}")
        agree &= source == replica and source[0] == lite_summary[0]
        if table == "orders":
            agree &= f"{float(source[1]):.2f}" == lite_summary[1]
    print("== the three copies agree" if agree else "== MISMATCH")
    return agree


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
    with psycopg.connect(shop, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL);"
            "CREATE TABLE orders (id bigserial PRIMARY KEY, customer_id int NOT NULL,"
            " total numeric(12, 2) NOT NULL, status text NOT NULL, placed_at timestamptz"
            " DEFAULT now())"
        )
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
    return 0 if compare(shop) else 1


if __name__ == "__main__":
    sys.exit(main())
