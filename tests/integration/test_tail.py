"""``cdc tail`` against a live stream: ``cdc run`` publishes, ``cdc tail`` shows what comes while
it runs, then finds one event by id (on the other Kafka client) and exits."""

from __future__ import annotations

import queue
import re
import signal
import subprocess
import threading
from pathlib import Path
from typing import IO

import orjson
import psycopg
import pytest
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic

from tests.support.harness import (
    CDC,
    CdcProcess,
    slot_confirmed_lsn,
    topic_ends,
    wait_for,
    write_config,
)


def run_tail(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CDC, "tail", "-c", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


class Lines:
    """The lines a stream gives, collected by a thread so that a test can wait for one."""

    def __init__(self, stream: IO[str]) -> None:
        self.seen: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self._queue.put(line.rstrip("\n"))

    def wait(self, pattern: str, timeout_s: float = 30) -> str:
        def found() -> str | None:
            while not self._queue.empty():
                self.seen.append(self._queue.get())
            return next((line for line in self.seen if re.search(pattern, line)), None)

        return str(wait_for(found, timeout_s, f"a line matching {pattern!r}: {self.seen}"))


def test_tail_shows_what_comes_and_finds_an_event_by_id(
    tmp_path: Path, database: str, kafka_bootstrap: str, unique: str
) -> None:
    name = f"tail{unique}"
    topic = f"{name}.public.orders"
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id int PRIMARY KEY, total numeric, status text)")
        conn.execute("ALTER TABLE orders REPLICA IDENTITY FULL")
    config = write_config(tmp_path / "cdc.toml", database, kafka_bootstrap, name=name)
    cdc = CdcProcess(config, tmp_path / "cdc.log")
    try:
        wait_for(lambda: slot_confirmed_lsn(database, f"cdc_{name}"), 30, "the slot")
        # A first row makes the topic, so the tail has a partition to read from its end.
        with psycopg.connect(database, autocommit=True) as conn:
            conn.execute("INSERT INTO orders VALUES (1, 5, 'old')")
        wait_for(lambda: topic_ends(kafka_bootstrap, lambda t: t == topic), 60, "the topic")

        tail = subprocess.Popen(
            [CDC, "tail", "-c", str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert tail.stdout is not None and tail.stderr is not None
        out, err = Lines(tail.stdout), Lines(tail.stderr)
        try:
            err.wait(r"reading 1 partition\(s\) of 1 topic\(s\)")
            with psycopg.connect(database, autocommit=True) as conn:
                conn.execute("INSERT INTO orders VALUES (2, 9.5, 'new')")
                conn.execute("UPDATE orders SET status = 'paid' WHERE id = 2")
            insert = out.wait(r" INSERT public\.orders ")
            update = out.wait(r" UPDATE public\.orders ")
        finally:
            tail.send_signal(signal.SIGTERM)
            code = tail.wait(10)
        assert code == 0, err.seen
        # Only what came after it started: the first row is not shown.
        assert [line for line in out.seen if "public.orders" in line] == [insert, update]
        assert 'key={"id":2}' in insert and 'id=2 total="9.5" status="new"' in insert
        assert re.search(r' event=\d+:\d+ status: "new" -> "paid" \[', update), update
        event_id = re.search(r" event=(\d+:\d+) ", insert)
        assert event_id is not None

        # Search by id, from the beginning, on the other client: exactly that event, then exit.
        other = tmp_path / "confluent.toml"
        other.write_text(config.read_text() + '\n[kafka.consumer]\nclient = "confluent-kafka"\n')
        found = run_tail(other, "--from-beginning", "--id", event_id[1])
        assert found.returncode == 0, found.stderr
        assert found.stdout.splitlines() == [insert]
        # From a time, as JSON.
        since = run_tail(config, "--since", "1h", "--json", "--id", event_id[1])
        assert since.returncode == 0, since.stderr
        (line,) = since.stdout.splitlines()
        record = orjson.loads(line)
        assert (record["topic"], record["key"]) == (topic, {"id": 2})
        assert record["headers"]["cdc-event-id"] == event_id[1]
        assert record["value"]["after"]["status"] == "new"
        # An id that is not there: exit 1 once every partition is read to its end.
        missing = run_tail(config, "--id", "1:999")
        assert (missing.returncode, missing.stdout) == (1, "")
        assert "no event 1:999" in missing.stderr
    finally:
        cdc.stop()
    # It read without a group: no consumer group was made for it.
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        groups = {g["group_id"] for g in admin.list_groups()}
    finally:
        admin.close()
    assert "cdc-unused" not in groups


@pytest.mark.parametrize("client", ["kafka-python", "confluent-kafka"])
def test_tail_reads_a_topic_made_after_it_started_and_shows_bad_records(
    tmp_path: Path, kafka_bootstrap: str, unique: str, client: str
) -> None:
    """No topic matches at first; one made later is read from its start, and a record that
    is not an event is printed as BAD with its place, without ending the tail."""
    prefix = f"tailnew{unique}"
    config = tmp_path / "cdc.toml"
    config.write_text(
        f'[kafka]\nbootstrap_servers = "{kafka_bootstrap}"\n'
        f'[kafka.consumer]\nclient = "{client}"\n'
        f'[[sinks]]\nname = "s"\ntype = "sqlite"\ntopics = ["{prefix}.*"]\n'
        f'path = "{tmp_path / "s.db"}"\n'
    )
    tail = subprocess.Popen(
        [CDC, "tail", "-c", str(config)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert tail.stdout is not None and tail.stderr is not None
    out, err = Lines(tail.stdout), Lines(tail.stderr)
    try:
        err.wait(r"reading 0 partition\(s\) of 0 topic\(s\)")
        admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        try:  # the broker creates no topic by itself
            admin.create_topics([NewTopic(f"{prefix}.public.t{s}", 1, 1) for s in ("", ".dlq")])
        finally:
            admin.close()
        producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
        producer.send(f"{prefix}.public.t", key=b'{"id": 1}', value=b"not json")
        producer.send(f"{prefix}.public.t.dlq", value=b"dead")  # not asked for
        producer.flush()
        producer.close()
        bad = out.wait(r"^BAD ", timeout_s=60)
    finally:
        tail.send_signal(signal.SIGTERM)
        code = tail.wait(10)
    assert code == 0, err.seen
    assert bad.startswith(f"BAD [{prefix}.public.t:0@0] value is not JSON")
    assert len(out.seen) == 1, out.seen
