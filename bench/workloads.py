"""The workloads the benchmarks write: their tables, and how each is written.

- **OLTP**: many small transactions (1 to 10 row changes each; 60 % inserts, 30 % updates,
  10 % deletes) on the 10-column ``orders`` table. A server-side procedure writes them and
  commits each one, so neither Python nor round trips limit the rate; it writes either as fast as
  it can or at a fixed offered load (changes per second), for the latency runs.
- **bulk**: one ``COPY`` of N rows into ``orders``, in one transaction.
- **wide**: ``docs`` rows carrying 8 to 16 kB of incompressible text (stored out of line by
  TOAST), 100 rows a transaction, then updates of other columns that leave that text unchanged
  (so the WAL does not carry it, and the connectors mark it unavailable).

Each writer returns a :class:`Written`. Its ``end_lsn`` is the WAL insert position read inside
the workload's last transaction just before it commits: every change of the workload is before
it and the last commit record after it, so a slot confirmed at or past ``end_lsn`` has delivered
the whole workload, whatever other databases on the server write meanwhile.
"""

from __future__ import annotations

__all__ = [
    "DOCS_DDL",
    "OLTP_PROCEDURE",
    "ORDERS_DDL",
    "Written",
    "bulk",
    "oltp",
    "wide",
]

import time
from dataclasses import dataclass
from typing import Any

import psycopg

from bench.common import Conn

ORDERS_DDL = """
CREATE TABLE orders (
    id bigint PRIMARY KEY, customer_id int NOT NULL, status text NOT NULL,
    total numeric(12, 2) NOT NULL, currency char(3) NOT NULL, created_at timestamptz NOT NULL,
    updated_at timestamptz, note text, qty int, flags bool
)
"""

DOCS_DDL = """
CREATE TABLE docs (
    id bigint PRIMARY KEY, title text NOT NULL, body text NOT NULL, version int NOT NULL,
    updated_at timestamptz NOT NULL
)
"""

OLTP_PROCEDURE = """
CREATE PROCEDURE bench_oltp(
    changes bigint, rate float8, seed float8,
    INOUT written bigint DEFAULT 0, INOUT inserts bigint DEFAULT 0,
    INOUT updates bigint DEFAULT 0, INOUT deletes bigint DEFAULT 0,
    INOUT end_lsn pg_lsn DEFAULT NULL, INOUT seconds float8 DEFAULT 0)
LANGUAGE plpgsql AS $$
DECLARE
    lo bigint;  -- the live ids are [lo, hi): inserts append hi, deletes take lo
    hi bigint;
    target bigint;
    k int;
    r float8;
    t0 timestamptz := clock_timestamp();
BEGIN
    PERFORM setseed(seed);
    SELECT coalesce(min(id), 0), coalesce(max(id) + 1, 0) INTO lo, hi FROM orders;
    WHILE written < changes LOOP
        -- rate > 0: write only what is due by now (an offered load, not a closed loop)
        IF rate > 0 AND written >= extract(epoch FROM clock_timestamp() - t0) * rate THEN
            PERFORM pg_sleep(0.001);
            CONTINUE;
        END IF;
        k := least(1 + floor(random() * 10)::int, changes - written);
        FOR j IN 1..k LOOP
            r := random();
            IF r < 0.6 OR hi = lo THEN
                INSERT INTO orders VALUES (hi, hi % 1000, 'new', (hi % 100000) / 100.0, 'EUR',
                    now(), NULL, 'order ' || hi, hi % 7, hi % 2 = 0);
                hi := hi + 1;
                inserts := inserts + 1;
            ELSIF r < 0.9 THEN
                target := lo + floor(random() * (hi - lo))::bigint;  -- not in WHERE: volatile
                UPDATE orders SET status = 'paid', total = total + 1, updated_at = now(),
                    qty = qty + 1 WHERE id = target;
                updates := updates + 1;
            ELSE
                DELETE FROM orders WHERE id = lo;
                lo := lo + 1;
                deletes := deletes + 1;
            END IF;
        END LOOP;
        written := written + k;
        IF written >= changes THEN
            end_lsn := pg_current_wal_insert_lsn();
        END IF;
        COMMIT;
    END LOOP;
    seconds := extract(epoch FROM clock_timestamp() - t0);
END $$
"""

WIDE_INSERT = """
INSERT INTO docs
SELECT g, 'doc ' || g,
       (SELECT string_agg(md5(g::text || ':' || i::text), '')
          FROM generate_series(1, 250 + g %% 251) i),  -- 8 000 to 16 032 hex digits
       1, now()
  FROM generate_series(%s::bigint, %s::bigint) g
"""

WIDE_UPDATE = """
UPDATE docs SET version = version + 1, updated_at = now() WHERE id BETWEEN %s AND %s
"""


@dataclass(frozen=True, slots=True)
class Written:
    """What a workload wrote."""

    changes: int
    """Row changes, each one event on Kafka (cdc adds a tombstone after each delete)."""
    deletes: int
    seconds: float
    end_lsn: int
    """WAL insert position read just before the last commit (see the module docstring)."""
    detail: dict[str, Any]
    """Counts by kind, sizes: for the results file."""

    @property
    def cdc_records(self) -> int:
        """Records cdc publishes: one per change, and a tombstone after each delete."""
        return self.changes + self.deletes


def _lsn(value: object) -> int:
    """A ``pg_lsn`` as psycopg returns it (text ``X/Y``) -> int."""
    high, low = str(value).split("/")
    return (int(high, 16) << 32) | int(low, 16)


def _insert_lsn(conn: Conn) -> int:
    row = conn.execute("SELECT pg_current_wal_insert_lsn()").fetchone()
    assert row is not None
    return _lsn(row[0])


def oltp(dsn: str, changes: int, *, rate: float = 0.0, seed: float = 0.42) -> Written:
    """``changes`` row changes in small transactions; ``rate`` changes/s, or 0 for flat out.

    Flat out, commits do not wait for the WAL flush (``synchronous_commit = off``): the WAL they
    write is the same, and the readers only start once it is all written. At an offered load
    they do wait, as an application's would, since that wait is part of the latency measured.
    """
    with psycopg.connect(dsn, autocommit=True) as conn:
        if rate <= 0:
            conn.execute("SET synchronous_commit = off")
        row = conn.execute(
            "CALL bench_oltp(%s, %s, %s)", (changes, rate, seed), prepare=False
        ).fetchone()
    assert row is not None
    written, inserts, updates, deletes, end_lsn, seconds = row
    return Written(
        changes=int(written),
        deletes=int(deletes),
        seconds=float(seconds),
        end_lsn=_lsn(end_lsn),
        detail={
            "changes": int(written),
            "inserts": int(inserts),
            "updates": int(updates),
            "deletes": int(deletes),
            "transaction_rows": "1 to 10, uniform",
            "offered_changes_per_s": rate or None,
            "achieved_changes_per_s": int(written) / float(seconds),
        },
    )


def _bulk_lines(lo: int, hi: int) -> str:
    return "".join(
        f"{i}\t{i % 1000}\tnew\t{i % 100000 / 100:.2f}\tEUR\t2026-11-27 06:00:00.123456+00\t\\N"
        f"\torder {i}\t{i % 7}\t{'t' if i % 2 == 0 else 'f'}\n"
        for i in range(lo, hi)
    )


def bulk(dsn: str, rows: int) -> Written:
    """One ``COPY orders FROM STDIN`` of ``rows`` rows, one transaction."""
    started = time.monotonic()
    with psycopg.connect(dsn) as conn:
        with conn.cursor().copy("COPY orders FROM STDIN") as copy:
            for lo in range(0, rows, 10_000):
                copy.write(_bulk_lines(lo, min(lo + 10_000, rows)))
        end = _insert_lsn(conn)
        conn.commit()
    return Written(
        changes=rows,
        deletes=0,
        seconds=time.monotonic() - started,
        end_lsn=end,
        detail={"changes": rows, "inserts": rows, "transactions": 1, "statement": "COPY"},
    )


def wide(dsn: str, rows: int, updates: int) -> Written:
    """``rows`` inserts of 8-16 kB rows, then ``updates`` updates leaving the text unchanged."""
    started = time.monotonic()
    end = 0
    batches = [(WIDE_INSERT, lo, min(lo + 100, rows) - 1) for lo in range(0, rows, 100)]
    batches += [(WIDE_UPDATE, lo, min(lo + 100, updates) - 1) for lo in range(0, updates, 100)]
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET synchronous_commit = off")
        for statement, lo, hi in batches:
            with conn.transaction():
                conn.execute(statement, (lo, hi))
                end = _insert_lsn(conn)
        row = conn.execute(
            "SELECT avg(length(body)), avg(pg_column_size(body)) FROM docs"
        ).fetchone()
    assert row is not None
    return Written(
        changes=rows + updates,
        deletes=0,
        seconds=time.monotonic() - started,
        end_lsn=end,
        detail={
            "changes": rows + updates,
            "inserts": rows,
            "updates_toast_unchanged": updates,
            "transaction_rows": 100,
            "avg_text_chars": float(row[0] or 0),
            "avg_text_stored_bytes": float(row[1] or 0),
        },
    )
