"""Records a sink cannot apply go to ``{topic}.dlq`` with their reason; the valid ones around them
are applied, and the sink goes on. Integration test on the devstack's Kafka and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import psycopg
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from psycopg import sql
from psycopg.conninfo import make_conninfo

from tests.support.harness import CDC, CdcProcess, wait_for
from tests.support.services import drop_database
from tests.support.sinks import TYPES, dlq_count, envelope


def test_garbage_goes_to_the_dlq_and_the_rest_is_applied(
    tmp_path: Path, pg_dsn: str, kafka_bootstrap: str, unique: str
) -> None:
    topic = f"dlq{unique}.public.items"
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    admin.create_topics([NewTopic(topic, 1, 1)])
    admin.close()
    ok = [("cdc-types", TYPES)]
    records: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]], str | None]] = [
        (
            b'{"id":1}',
            envelope("c", {"id": 1, "n": "1.50", "note": "first"}),
            [("cdc-event-id", b"100:0"), *ok],
            None,
        ),
        (b'{"id":2}', b"this is not json", [("cdc-event-id", b"101:0")], "value is not JSON"),
        (
            b'{"id":3}',
            b'{"hello": "world"}',
            [("cdc-event-id", b"102:0")],
            "not a change event: op is None",
        ),
        (
            b'{"id":4}',
            # without source.lsn: not Debezium's either (whose records have no event id)
            envelope("c", {"id": 4, "n": "4", "note": "no id header"}).replace(b'"lsn":1,', b""),
            ok,
            "no cdc-event-id header",
        ),
        (
            b"not a key",
            envelope("c", {"id": 5, "n": "5", "note": "bad key"}),
            [("cdc-event-id", b"104:0"), *ok],
            "key is not JSON",
        ),
        (
            b'{"id":6}',
            envelope("c", {"id": 6, "n": "not a number", "note": "refused"}),
            [("cdc-event-id", b"105:0"), *ok],
            "the target refused it",
        ),  # PostgreSQL only
        (
            b'{"id":7}',
            envelope("c", {"id": 7, "n": "7.25", "note": "last"}),
            [("cdc-event-id", b"106:0"), *ok],
            None,
        ),
        (
            b'{"id":1}',
            envelope("u", {"id": 1, "n": "1.75", "note": "first, updated"}),
            [("cdc-event-id", b"107:0"), *ok],
            None,
        ),
        (b'{"id":1}', None, [("cdc-event-id", b"107:0")], None),  # a tombstone: skipped
    ]
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    for key, value, headers, _ in records:
        producer.send(topic, key=key, value=value, headers=headers)
    producer.flush()
    producer.close()

    replica = f"cdct_dlq_{unique}"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(replica)))
    replica_dsn = make_conninfo(pg_dsn, dbname=replica)
    lite = tmp_path / "dlq.db"
    config = tmp_path / "cdc.toml"
    config.write_text(
        f'[kafka]\nbootstrap_servers = "{kafka_bootstrap}"\n'
        f'[[sinks]]\nname = "pg"\ntype = "postgres"\ntopics = ["dlq{unique}.*"]\n'
        f'dsn = "{replica_dsn}"\ngroup_id = "dlq-{unique}-pg"\n'
        f'[[sinks]]\nname = "lite"\ntype = "sqlite"\ntopics = ["dlq{unique}.*"]\n'
        f'path = "{lite}"\ngroup_id = "dlq-{unique}-lite"\n'
    )
    cdc = CdcProcess(config, tmp_path / "cdc.log")
    try:

        def offsets_stored() -> bool:
            with psycopg.connect(replica_dsn) as conn:
                if conn.execute("SELECT to_regclass('cdc.offsets')").fetchone() == (None,):
                    return False
                row = conn.execute("SELECT max(next_offset) FROM cdc.offsets").fetchone()
            return row is not None and row[0] == len(records)

        wait_for(offsets_stored, 60, "the PostgreSQL sink to pass every record")
        wait_for(
            lambda: dlq_count(kafka_bootstrap, topic + ".dlq") >= 9, 60, "both sinks' DLQ records"
        )
        with psycopg.connect(replica_dsn) as conn:
            rows = conn.execute("SELECT id, n::text, note FROM public.items ORDER BY id").fetchall()
    finally:
        assert cdc.stop() == 0, cdc.output()[-3000:]
        drop_database(pg_dsn, replica)
    assert rows == [(1, "1.75", "first, updated"), (7, "7.25", "last")]

    dead = dlq_count(kafka_bootstrap, topic + ".dlq")
    assert dead == 9  # four bad records for each sink, one value only PostgreSQL refuses
    env = {**os.environ, "CDC_STATE_DIR": str(tmp_path / "state")}
    status = subprocess.run(
        [CDC, "status", "-c", str(config)], capture_output=True, text=True, check=False, env=env
    )
    assert f"WARN  sink lite: 9 record(s) it could not apply are in {topic}.dlq" in status.stdout
    assert " new since the last cdc status" not in status.stdout  # the first look
    again = subprocess.run(
        [CDC, "status", "-c", str(config)], capture_output=True, text=True, check=False, env=env
    )
    assert "; 0 new since the last cdc status (" in again.stdout, again.stdout
    # The count and the newest record's reason (issue 18, item 7).
    (line,) = [ln for ln in status.stdout.splitlines() if ln.startswith("WARN  sink lite: ")]
    newest = line.split("; newest at ")[1]
    assert newest[:4].isdigit() and " UTC: " in newest, line
    assert any(newest.split(" UTC: ", 1)[1].startswith(r[3]) for r in records if r[3]), line
    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap, enable_auto_commit=False)
    tp = TopicPartition(topic + ".dlq", 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    raw: list[Any] = []
    while len(raw) < dead:
        raw += consumer.poll(timeout_ms=1000).get(tp, [])
    consumer.close()
    reasons: dict[int, list[str]] = {}
    for r in raw:
        found = dict(r.headers)
        assert found["cdc-dlq-topic"] == topic.encode()
        assert found["cdc-dlq-partition"] == b"0"
        offset = int(found["cdc-dlq-offset"])
        reasons.setdefault(offset, []).append(found["cdc-dlq-reason"].decode())
        assert r.value == records[offset][1]  # the record itself, untouched
    for offset, (_, _, _, reason) in enumerate(records):
        if reason is None:
            assert offset not in reasons
        elif reason == "the target refused it":
            # Only PostgreSQL refuses text in a numeric column; SQLite keeps it as TEXT.
            assert len(reasons[offset]) == 1
            assert reasons[offset][0].startswith("the target refused it: ")
            assert "numeric" in reasons[offset][0]
        else:
            assert len(reasons[offset]) == 2  # once per sink
            assert all(r.startswith(reason) for r in reasons[offset]), reasons[offset]
