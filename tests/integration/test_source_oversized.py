"""``oversized = "skip" | "truncate"``: a record Kafka will never take does not hold up the rest.

Integration test on the devstack. The docs table's topic takes records up to 20 000 bytes; some of
its rows are three times that. The connector leaves them out or publishes them truncated, every
other change of every table goes on, the log names each one with its table, key and size, and
a SQLite sink applies what arrives (a truncated value keeps the one it holds, or NULL).
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import orjson
import psycopg
import pytest

from cdc.config import KafkaConfig
from cdc.events import UNAVAILABLE, Record
from cdc.kafka import KafkaPythonPublisher
from tests.support.big_records import BIG_BODY, BIG_ROWS, small_topic
from tests.support.harness import (
    CdcProcess,
    current_wal_lsn,
    read_topics,
    slot_confirmed_lsn,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.devstack


@pytest.mark.parametrize("client", ["kafka-python", "confluent-kafka"])
@pytest.mark.parametrize("policy", ["skip", "truncate"])
def test_an_oversized_record_is_skipped_or_truncated_and_the_rest_goes_on(
    tmp_path: Path, database: str, kafka_bootstrap: str, unique: str, policy: str, client: str
) -> None:
    name = f"over{unique}"
    topic = f"{name}.public.docs"
    admin = small_topic(kafka_bootstrap, topic)
    admin.close()
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("CREATE TABLE docs (id int PRIMARY KEY, body text, note text)")
        conn.execute("CREATE TABLE other (id int PRIMARY KEY, v text)")
    config = write_config(
        tmp_path / "cdc.toml",
        database,
        kafka_bootstrap,
        name=name,
        kafka_client=client,
        oversized=policy,
    )
    lite = tmp_path / "lite.db"
    config.write_text(
        config.read_text()
        + f'[[sinks]]\nname = "lite"\ntype = "sqlite"\ntopics = ["{name}.*"]\npath = "{lite}"\n'
    )
    cdc = CdcProcess(config, tmp_path / "cdc.log")
    slot = f"cdc_{name}"
    try:
        wait_for(lambda: slot_confirmed_lsn(database, slot), 30, "the connector's slot")
        with psycopg.connect(database, autocommit=True) as conn:
            conn.execute("INSERT INTO other VALUES (1, 'one')")
            conn.execute("INSERT INTO docs VALUES (1, 'small', 'a')")
            with conn.transaction():
                conn.execute(f"INSERT INTO docs VALUES (2, {BIG_BODY}, 'b')", (BIG_ROWS,))
                conn.execute("INSERT INTO other VALUES (2, 'two, same transaction')")
            conn.execute("INSERT INTO docs VALUES (3, 'small', 'c')")
            conn.execute(
                f"UPDATE docs SET body = {BIG_BODY}, note = 'a2' WHERE id = 1", (BIG_ROWS,)
            )
            conn.execute("INSERT INTO other VALUES (3, 'three')")
        end = current_wal_lsn(database)
        wait_for(lambda: slot_confirmed_lsn(database, slot) >= end, 60, "the whole workload")

        def applied() -> int:
            try:
                with sqlite3.connect(lite) as db:
                    return int(db.execute("SELECT count(*) FROM public_other").fetchone()[0])
            except sqlite3.OperationalError:
                return 0

        wait_for(lambda: applied() == 3, 60, "the sink")
        assert cdc.alive()
    finally:
        assert cdc.stop() == 0, cdc.output()[-3000:]
    log = cdc.output()
    other = read_topics(kafka_bootstrap, [f"{name}.public.other"])
    assert [e.key["id"] for e in other] == [1, 2, 3]
    docs = [e for e in read_topics(kafka_bootstrap, [topic]) if e.value is not None]
    with sqlite3.connect(lite) as db:
        rows = db.execute("SELECT id, body, note FROM public_docs ORDER BY id").fetchall()
    if policy == "skip":
        assert [(e.key["id"], e.op) for e in docs] == [(1, "c"), (3, "c")]
        assert "left out (oversized = 'skip'; 2 so far)" in log
        assert rows == [(1, "small", "a"), (3, "small", "c")]
    else:
        assert [(e.key["id"], e.op) for e in docs] == [(1, "c"), (2, "c"), (3, "c"), (1, "u")]
        for e in (docs[1], docs[3]):
            assert e.value is not None and e.value["after"]["body"] == UNAVAILABLE
            assert orjson.loads(e.headers["cdc-unavailable"]) == ["body"]
            assert orjson.loads(e.headers["cdc-oversized"])["body"] > 20_000
        assert "published with body" in log and "2 so far" in log
        # The update keeps the body it had; the new row has none.
        assert rows == [(1, "small", "a2"), (2, None, "b"), (3, "small", "c")]
    assert f"the record of {topic} with key" in log


def test_kafka_python_publisher_counts_the_bytes_it_waits_for(
    kafka_bootstrap: str, unique: str
) -> None:
    """kafka-python bounds nothing in bytes itself: the publisher counts what awaits an ack,
    which the connector's loops wait on (``BUFFER_BYTES``)."""
    config = KafkaConfig.model_validate({"bootstrap_servers": kafka_bootstrap})
    publisher = KafkaPythonPublisher(config)
    acked: list[int] = []
    errors: list[Exception] = []
    callback = publisher.callback(acked.append, errors.append, 1)
    try:
        for _ in range(20):
            publisher.send_with(Record(f"bytes{unique}", b"k", b"v" * 1000, []), callback)
        assert 0 < publisher.unacked_bytes <= 20_000
        publisher.flush(30)
        wait_for(lambda: len(acked) == 20, 30, "the acks")
        assert publisher.unacked_bytes == 0 and not errors
    finally:
        publisher.close()


OVERSIZED_MB = int(os.environ.get("CDC_TEST_OVERSIZED_MB", "4"))
"""The big row's bytea, in MiB (its record is twice that: hex). ``make test-full``: 50."""


@pytest.mark.timeout(600)
@pytest.mark.parametrize("plugin", ["wal2json", "pgoutput"])
@pytest.mark.parametrize("policy", ["fail", "skip"])
def test_a_big_bytea_over_every_limit_is_handled_in_bounded_memory(
    tmp_path: Path, database: str, kafka_bootstrap: str, unique: str, policy: str, plugin: str
) -> None:
    """A bytea of ``OVERSIZED_MB`` MiB under Kafka's default limits (1 MiB records). ``fail``:
    the connector says why and where, holds its position and its memory; ``skip``: every other
    change goes on. Peak RSS is printed (``-s``) and must stay within a few copies of the row."""
    name = f"big{unique}"
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("CREATE TABLE blobs (id int PRIMARY KEY, data bytea)")
        conn.execute("CREATE TABLE other (id int PRIMARY KEY, v text)")
    config = write_config(
        tmp_path / "cdc.toml", database, kafka_bootstrap, name=name, plugin=plugin, oversized=policy
    )
    cdc = CdcProcess(config, tmp_path / "cdc.log")
    slot = f"cdc_{name}"
    try:
        wait_for(lambda: slot_confirmed_lsn(database, slot), 30, "the connector's slot")
        with psycopg.connect(database, autocommit=True) as conn:
            conn.execute("INSERT INTO other VALUES (1, 'before')")
            conn.execute(
                "INSERT INTO blobs SELECT 1, decode(string_agg(md5(g::text), ''), 'hex')"
                " FROM generate_series(1, %s) g",
                (OVERSIZED_MB * 1024 * 1024 // 16,),
            )
            blob_committed = current_wal_lsn(database)
            conn.execute("INSERT INTO other VALUES (2, 'after')")
        end = current_wal_lsn(database)
        if policy == "fail":
            wait_for(lambda: "Kafka did not take a record" in cdc.output(), 120, "the error")
            time.sleep(3)  # room for a wrong confirmation to reach the slot
            # Not confirmed past the big row's commit (a keepalive may confirm into its WAL:
            # a slot resends every transaction that commits after its confirmed position).
            assert slot_confirmed_lsn(database, slot) < blob_committed
            assert f'{name}.public.blobs with key {{"id":1}}' in cdc.output()
        else:
            wait_for(lambda: slot_confirmed_lsn(database, slot) >= end, 120, "the workload")
            assert "left out (oversized = 'skip'; 1 so far)" in cdc.output()
        assert cdc.alive()
        rss = cdc.peak_rss_mb()
    finally:
        assert cdc.stop() == 0, cdc.output()[-3000:]
    print(f"\n{plugin} {policy}: a {OVERSIZED_MB} MiB bytea, peak RSS {rss:.0f} MiB")
    assert rss < 200 + 12 * OVERSIZED_MB, rss
    other = [e.key["id"] for e in read_topics(kafka_bootstrap, [f"{name}.public.other"])]
    assert other == ([1] if policy == "fail" else [1, 2])
