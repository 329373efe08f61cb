"""Kafka refuses one record: the connector confirms nothing from it on, and delivers it, and all
after it, once Kafka takes it.

Integration test on the devstack, with both clients. The topic is made beforehand with a
``max.message.bytes`` smaller than one of the rows, which sits in the middle of a transaction.
The broker refuses that record; the delivery error must stop the session before the slot is
confirmed past the transaction. Once the topic takes larger records, a later session publishes
the transaction again and everything arrives.
"""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import pytest
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

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


def take_large_records(admin: KafkaAdminClient, topic: str) -> None:
    admin.alter_configs(
        [ConfigResource(ConfigResourceType.TOPIC, topic, {"max.message.bytes": "1048588"})]
    )


@pytest.mark.parametrize("client", ["kafka-python", "confluent-kafka"])
def test_a_refused_record_is_never_confirmed_and_arrives_later(
    tmp_path: Path, database: str, kafka_bootstrap: str, unique: str, client: str
) -> None:
    name = f"refused{unique}"
    topic = f"{name}.public.docs"
    admin = small_topic(kafka_bootstrap, topic)
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("CREATE TABLE docs (id int PRIMARY KEY, body text)")
    config = write_config(
        tmp_path / "cdc.toml", database, kafka_bootstrap, name=name, kafka_client=client
    )
    cdc = CdcProcess(config, tmp_path / "cdc.log")
    slot = f"cdc_{name}"
    try:
        wait_for(lambda: slot_confirmed_lsn(database, slot), 30, "the connector's slot")
        with psycopg.connect(database, autocommit=True) as conn:
            conn.execute("INSERT INTO docs VALUES (1, 'before')")
            before = current_wal_lsn(database)
            with conn.transaction():
                conn.execute("INSERT INTO docs VALUES (2, 'small')")
                conn.execute(f"INSERT INTO docs VALUES (3, {BIG_BODY})", (BIG_ROWS,))
                conn.execute("INSERT INTO docs VALUES (4, 'after, same transaction')")
            conn.execute("INSERT INTO docs VALUES (5, 'after')")
        end = current_wal_lsn(database)
        wait_for(
            lambda: "Kafka did not take a" in cdc.output(),
            60,
            "the delivery error in the connector's log",
        )
        time.sleep(3)  # room for a wrong confirmation to reach the slot
        confirmed = slot_confirmed_lsn(database, slot)
        assert confirmed <= before, (confirmed, before)
        assert topic in cdc.output()  # the error names the topic
        assert cdc.alive()  # a refused record is retried, not the end of the process

        take_large_records(admin, topic)
        wait_for(lambda: slot_confirmed_lsn(database, slot) >= end, 90, "the whole workload")
    finally:
        admin.close()
        assert cdc.stop() == 0, cdc.output()[-3000:]
    ids = [e.key["id"] for e in read_topics(kafka_bootstrap, [topic]) if e.value is not None]
    assert set(ids) == {1, 2, 3, 4, 5}


@pytest.mark.parametrize("client", ["kafka-python", "confluent-kafka"])
def test_a_refused_snapshot_record_keeps_the_snapshot_unfinished(
    tmp_path: Path, database: str, kafka_bootstrap: str, unique: str, client: str
) -> None:
    name = f"refusedsnap{unique}"
    topic = f"{name}.public.docs"
    admin = small_topic(kafka_bootstrap, topic)
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("CREATE TABLE docs (id int PRIMARY KEY, body text)")
        conn.execute("INSERT INTO docs SELECT g, 'small' FROM generate_series(1, 50) g")
        conn.execute(f"UPDATE docs SET body = {BIG_BODY} WHERE id = 25", (BIG_ROWS,))
    config = write_config(
        tmp_path / "cdc.toml",
        database,
        kafka_bootstrap,
        name=name,
        kafka_client=client,
        snapshot="initial",
    )
    cdc = CdcProcess(config, tmp_path / "cdc.log")

    def state() -> str | None:
        with psycopg.connect(database) as conn:
            row = conn.execute(
                "SELECT state FROM cdc.snapshots WHERE connector = %s AND kind = 'initial'",
                (name,),
            ).fetchone()
        return None if row is None else str(row[0])

    try:
        wait_for(
            lambda: "Kafka did not take a" in cdc.output(),
            60,
            "the snapshot's delivery error in the connector's log",
        )
        assert topic in cdc.output()  # the error names the topic
        assert state() != "done"
        assert cdc.alive()
        take_large_records(admin, topic)
        wait_for(lambda: state() == "done", 90, "the snapshot to finish")
    finally:
        admin.close()
        assert cdc.stop() == 0, cdc.output()[-3000:]
    events = [e for e in read_topics(kafka_bootstrap, [topic]) if e.value is not None]
    # The snapshot started over, behind a truncate marker that retracts the first attempt's rows.
    assert [e.op for e in events if e.op == "t"] == ["t"]
    assert {e.key["id"] for e in events if e.op == "r"} == set(range(1, 51))
