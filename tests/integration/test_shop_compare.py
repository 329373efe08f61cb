"""scripts/shop.py's comparison, which `make demo` and `make compose-test` trust to say that both
sinks hold what the source holds: it agrees only when every compared row is the same."""

from __future__ import annotations

import importlib.util
import sqlite3
from pathlib import Path
from types import ModuleType

import psycopg

from tests.support import ROOT


def _shop() -> ModuleType:
    spec = importlib.util.spec_from_file_location("shop", ROOT / "scripts" / "shop.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _sqlite_copy(dsn: str, path: Path) -> None:
    """The SQLite sink's layout: public_<table>, numeric as its decimal text, ids as integers."""
    lite = sqlite3.connect(path)
    lite.execute("CREATE TABLE public_customers (id INTEGER PRIMARY KEY, name TEXT)")
    lite.execute(
        "CREATE TABLE public_orders (id INTEGER PRIMARY KEY, customer_id INTEGER, total TEXT,"
        " status TEXT, placed_at TEXT, _cdc_lsn INTEGER)"
    )
    with psycopg.connect(dsn) as conn:
        lite.executemany(
            "INSERT INTO public_customers VALUES (?, ?)",
            conn.execute("SELECT id, name FROM customers").fetchall(),
        )
        lite.executemany(
            "INSERT INTO public_orders VALUES (?, ?, ?, ?, ?, 0)",
            conn.execute(
                "SELECT id, customer_id, total::text, status, placed_at::text FROM orders"
            ).fetchall(),
        )
    lite.commit()
    lite.close()


def test_the_comparison_agrees_only_when_every_row_is_the_same(
    database: str, tmp_path: Path
) -> None:
    shop = _shop()
    shop.create_schema(database)
    # Ids past 9: an order by the ids' text would not be the sinks' order by number.
    assert shop.write_orders(database, orders=40, rate=1000) == 40
    path = tmp_path / "shop.db"
    _sqlite_copy(database, path)
    assert shop.compare(database, database, str(path))

    # One value changed, then one row missing, then no file at all: each is a mismatch.
    lite = sqlite3.connect(path)
    last = "(SELECT max(id) FROM public_orders)"
    lite.execute(f"UPDATE public_orders SET total = '1.00' WHERE id = {last}")
    lite.commit()
    assert not shop.compare(database, database, str(path))
    lite.execute(f"DELETE FROM public_orders WHERE id = {last}")
    lite.commit()
    lite.close()
    assert not shop.compare(database, database, str(path))
    assert not shop.compare(database, database, str(tmp_path / "missing.db"))
