"""The sample shop that `make demo` and the compose stack run: its schema, its writer of orders,
and the comparison of the source with its two copies (the PostgreSQL and the SQLite sink).

Imported by scripts/demo.py; run by the compose stack's writer service (the cdc image's Python
has psycopg):

    python shop.py write      # SHOP_DSN; WRITER_ORDERS (0: forever), WRITER_RATE (per second),
                              # WRITER_WAIT_FOR_SLOT (a slot to wait for when half is written)
    python shop.py compare    # SHOP_DSN, REPLICA_DSN, SQLITE_PATH; exit 0 when the three agree

The writer touches ALIVE_FILE while it runs and makes DONE_FILE when its orders are written
(the compose healthcheck and `make compose-test` read them).
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import sqlite3
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import psycopg
from psycopg import sql

TABLES = ("customers", "orders")
# The columns compared: what the source writes (placed_at's text depends on the session's zone).
COLUMNS = {"customers": ("id", "name"), "orders": ("id", "customer_id", "total", "status")}
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS customers (id serial PRIMARY KEY, name text NOT NULL);"
    "CREATE TABLE IF NOT EXISTS orders (id bigserial PRIMARY KEY, customer_id int NOT NULL,"
    " total numeric(12, 2) NOT NULL, status text NOT NULL, placed_at timestamptz DEFAULT now())"
)
# In the writer container's own /tmp: no other user there.
ALIVE_FILE = Path("/tmp/shop-writer.alive")  # noqa: S108
DONE_FILE = Path("/tmp/shop-writer.done")  # noqa: S108
CUSTOMERS = 50


def create_schema(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(SCHEMA)


def write_orders(
    dsn: str,
    *,
    seconds: float | None = None,
    orders: int | None = None,
    rate: float | None = None,
    alive: Path | None = None,
    halfway: Callable[[], None] | None = None,
) -> int:
    """Customers, then one transaction per order (insert, pay another, now and then delete one)
    until `seconds` have passed or `orders` are written, at most `rate` a second; `halfway` is
    called once half of `orders` are written. Returns the number of orders written."""
    rng = random.Random(7)
    pause = 1 / rate if rate else 0.01
    written = 0
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO customers (name) SELECT 'customer ' || g FROM generate_series(1, %s) g",
            (CUSTOMERS,),
        )
        deadline = time.monotonic() + seconds if seconds is not None else None
        while (deadline is None or time.monotonic() < deadline) and (
            orders is None or written < orders
        ):
            with conn.transaction():
                conn.execute(
                    "INSERT INTO orders (customer_id, total, status) VALUES (%s, %s, 'new')",
                    (rng.randrange(1, CUSTOMERS + 1), round(rng.uniform(1, 500), 2)),
                )
                conn.execute(
                    "UPDATE orders SET status = 'paid', total = total + 1 WHERE id = %s",
                    (rng.randrange(1, written + 2),),
                )
                if rng.random() < 0.1:
                    conn.execute(
                        "DELETE FROM orders WHERE id = %s", (rng.randrange(1, written + 2),)
                    )
            written += 1
            if alive is not None:
                alive.touch()
            if halfway is not None and orders is not None and written == orders // 2:
                halfway()
            time.sleep(pause)
    return written


def wait_for_slot(dsn: str, slot: str, *, alive: Path, timeout: float = 300) -> bool:
    """Wait until a connector streams from `slot` (active, a position confirmed); True if it
    does within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(dsn, autocommit=True) as conn:
        while time.monotonic() < deadline:
            if conn.execute(
                "SELECT 1 FROM pg_replication_slots WHERE slot_name = %s AND active"
                " AND confirmed_flush_lsn IS NOT NULL",
                (slot,),
            ).fetchone():
                return True
            alive.touch()
            time.sleep(0.5)
    return False


def digest(rows: Iterable[Iterable[object]]) -> tuple[int, str]:
    """Row count and a hash of the rows' text, in the order given (by primary key)."""
    count, h = 0, hashlib.sha256()
    for row in rows:
        h.update("\x1f".join(str(v) for v in row).encode() + b"\n")
        count += 1
    return count, h.hexdigest()[:16]


def summary_pg(dsn: str, table: str) -> tuple[int, str]:
    """(count, hash) of a table in PostgreSQL: the source, or the PostgreSQL sink's copy."""
    cols = sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(c)) for c in COLUMNS[table])
    # t.id: the column, not the output column of the same name (its text)
    query = sql.SQL("SELECT {} FROM {} AS t ORDER BY t.id").format(
        cols, sql.Identifier("public", table)
    )
    with psycopg.connect(dsn) as conn:
        return digest(conn.execute(query))


def summary_sqlite(path: str, table: str) -> tuple[int, str]:
    """(count, hash) of the SQLite sink's copy (table public_<table>; numeric is kept as its
    decimal text, so the hash matches the source's)."""
    cols = ", ".join(f'"{c}"' for c in COLUMNS[table])
    try:
        lite = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return digest(lite.execute(f'SELECT {cols} FROM "public_{table}" ORDER BY id'))
        finally:
            lite.close()
    except sqlite3.OperationalError:  # the file or the table is not made yet: nothing arrived
        return digest([])


def compare(shop: str, replica: str, sqlite_path: str) -> bool:
    """Print the three copies side by side; True when they agree."""
    print(f"== {'table':<10} {'source':>26} {'postgres sink':>26} {'sqlite sink':>26}")
    agree = True
    for table in TABLES:
        source = summary_pg(shop, table)
        copies = (summary_pg(replica, table), summary_sqlite(sqlite_path, table))
        print(f"   {table:<10} {source!s:>26} {copies[0]!s:>26} {copies[1]!s:>26}")
        agree &= all(copy == source for copy in copies)
    print("== the three copies agree" if agree else "== MISMATCH", flush=True)
    return agree


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else ""
    if command == "write":
        # As a container's first process, SIGTERM would be ignored without a handler.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        DONE_FILE.unlink(missing_ok=True)
        dsn = os.environ["SHOP_DSN"]
        orders = int(os.environ.get("WRITER_ORDERS", "0")) or None
        rate = float(os.environ.get("WRITER_RATE", "10"))
        slot = os.environ.get("WRITER_WAIT_FOR_SLOT", "")
        create_schema(dsn)
        ALIVE_FILE.touch()

        def halfway() -> None:
            # The first half is there for the connector's initial snapshot, the second one for
            # its stream: both paths are shown (and tested by make compose-test).
            if slot:
                print(f"shop writer: half written; waiting for slot {slot} to stream", flush=True)
                if not wait_for_slot(dsn, slot, alive=ALIVE_FILE):
                    print(f"shop writer: slot {slot} does not stream; writing on", flush=True)

        print(f"shop writer: writing {orders or 'endless'} orders, {rate:g} a second", flush=True)
        written = write_orders(dsn, orders=orders, rate=rate, alive=ALIVE_FILE, halfway=halfway)
        DONE_FILE.touch()
        print(f"shop writer: done, {written} orders written", flush=True)
        while True:  # stays up (and healthy) for `compare` and the healthcheck
            ALIVE_FILE.touch()
            time.sleep(5)
    if command == "compare":
        env = os.environ
        return 0 if compare(env["SHOP_DSN"], env["REPLICA_DSN"], env["SQLITE_PATH"]) else 1
    print(f"usage: {argv[0]} write | compare", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
