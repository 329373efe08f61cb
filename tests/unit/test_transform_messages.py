"""Logical decoding messages (issue 21, item 5) without a server: both plugins' messages as
PostgreSQL 15 and wal2json 2.5 wrote them (captured), their event ids, and their records."""

from __future__ import annotations

import base64
import struct

import orjson
import pytest

from cdc.config import parse_config
from cdc.errors import CdcError, ConfigError
from cdc.events import Change, SourceInfo
from cdc.transforms.messages import Messages
from cdc.transforms.transactions import is_boundary_or_message
from cdc.values import ValueMode
from connectors.postgres.decoding import Message
from connectors.postgres.pgoutput import PGOUTPUT, PgOutputDecoder
from connectors.postgres.wal2json import Wal2JsonDecoder
from tests.support.decoding import FakeCatalog

# Captured from PostgreSQL 15: BEGIN; pg_logical_emit_message(true, 'tx3', '\xff410a22'::bytea);
# COMMIT, and before it pg_logical_emit_message(false, 'nt2', '\xff41'::bytea).
PG_BEGIN = bytes.fromhex("420000000b428e2d50000304fd61dbca6400200953")
PG_MESSAGE = bytes.fromhex("4d010000000b428e2d507478330000000004ff410a22")
PG_NON_TX = bytes.fromhex("4d000000000b428e2d106e74320000000002ff41")
PG_NUL = bytes.fromhex("4d010000000b411a8f107066782e61000000000400ff41c3")  # 'pfx.a', 00ff41c3
W2J_BEGIN = (
    b'{"action":"B","xid":2099539,"timestamp":"2026-12-06 22:27:25.163108+00",'
    b'"lsn":"B/428E2D50","nextlsn":"B/428E2D80"}'
)
# wal2json 2.5 prints the content's bytes as they are (not UTF-8 here), escaping \n and ".
W2J_MESSAGE = (
    b'{"action":"M","xid":2099539,"timestamp":"2026-12-06 22:27:25.163108+00",'
    b'"lsn":"B/428E2D50","transactional":true,"prefix":"tx3","content":"\xffA\\n\\""}'
)
W2J_NON_TX = (
    b'{"action":"M","xid":null,"timestamp":null,"lsn":"B/428E2D10","transactional":false,'
    b'"prefix":"nt2","content":"\xffA"}'
)
W2J_TEXT = (
    b'{"action":"M","xid":2099539,"timestamp":"2026-12-06 22:27:25.163108+00",'
    b'"lsn":"B/428E2D50","transactional":true,"prefix":"pfx","content":"h\xc3\xa9llo"}'
)
COMMIT_LSN = 0xB428E2D50
SOURCE = SourceInfo("shop", "db", "shop")


def pg_insert(value: int) -> bytes:
    text = str(value).encode()
    return b"I" + struct.pack(">I", 1) + b"N\x00\x01t" + struct.pack(">i", len(text)) + text


PG_RELATION = (
    b"R" + struct.pack(">I", 1) + b"public\x00t\x00d" + struct.pack(">H", 1)
    + b"\x01id\x00" + struct.pack(">Ii", 20, -1)
)  # fmt: skip


def pgoutput(messages: bool) -> PgOutputDecoder:
    decoder = PgOutputDecoder(FakeCatalog(), lambda s, t: True)
    decoder.messages = messages
    decoder.decode(PG_BEGIN, COMMIT_LSN)
    decoder.decode(PG_RELATION, COMMIT_LSN)
    return decoder


def test_pgoutput_messages_are_exact_bytes_and_take_the_next_index() -> None:
    decoder = pgoutput(messages=True)
    first = decoder.decode(pg_insert(1), COMMIT_LSN - 0x40)
    message = decoder.decode(PG_MESSAGE, COMMIT_LSN)
    nul = decoder.decode(PG_NUL, COMMIT_LSN)
    after = decoder.decode(pg_insert(2), COMMIT_LSN)
    assert isinstance(first, Change) and isinstance(after, Change)
    assert isinstance(message, Message) and isinstance(nul, Message)
    assert (message.transactional, message.prefix, message.content) == (True, "tx3", b'\xffA\n"')
    assert nul.content == b"\x00\xffA\xc3"  # a NUL and bytes that are not UTF-8: exact
    assert (message.commit_lsn, message.index, message.xid) == (COMMIT_LSN, 1, 2099539)
    assert (message.total_order, message.data_collection_order) == (2, 1)
    assert (first.event_id, after.event_id) == (f"{COMMIT_LSN}:0", f"{COMMIT_LSN}:3")
    assert message.commit_ts_ms == first.commit_ts_ms > 0


def test_without_message_rules_messages_are_dropped_and_take_no_index() -> None:
    decoder = pgoutput(messages=False)
    assert decoder.decode(PG_MESSAGE, COMMIT_LSN) is None
    after = decoder.decode(pg_insert(2), COMMIT_LSN)
    assert isinstance(after, Change) and after.event_id == f"{COMMIT_LSN}:0"
    wal2json = Wal2JsonDecoder(FakeCatalog(), lambda s, t: True)
    wal2json.decode(W2J_BEGIN)
    assert wal2json.decode(W2J_MESSAGE) is None
    assert wal2json.decode(W2J_TEXT) is None
    assert wal2json.decode(W2J_NON_TX) is None


def test_a_non_transactional_message_is_its_own_at_its_lsn() -> None:
    decoder = PgOutputDecoder(FakeCatalog(), lambda s, t: True)
    decoder.messages = True
    message = decoder.decode(PG_NON_TX, 0xB428E2D10)
    assert isinstance(message, Message)
    assert (message.transactional, message.prefix, message.content) == (False, "nt2", b"\xffA")
    # Its id is {lsn - 1}:0: a commit record may start at lsn, and its first change is
    # {commit_lsn}:0.
    assert (message.lsn, message.commit_lsn, message.index, message.xid) == (
        0xB428E2D10,
        0xB428E2D10 - 1,
        0,
        None,
    )


def test_wal2json_gives_the_same_messages_as_pgoutput() -> None:
    decoder = Wal2JsonDecoder(FakeCatalog(), lambda s, t: True)
    decoder.messages = True
    decoder.decode(W2J_BEGIN)
    message = decoder.decode(W2J_MESSAGE)  # not UTF-8: not JSON a parser takes
    text = decoder.decode(W2J_TEXT)
    assert isinstance(message, Message) and isinstance(text, Message)
    pg = pgoutput(messages=True).decode(PG_MESSAGE, COMMIT_LSN)
    assert message == pg
    assert (text.content, text.index) == ("héllo".encode(), 1)
    decoder.decode(b'{"action":"C","lsn":"B/428E2D50","nextlsn":"B/428E2D80"}')
    non_tx = decoder.decode(W2J_NON_TX)
    assert isinstance(non_tx, Message)
    assert (non_tx.transactional, non_tx.content, non_tx.lsn, non_tx.index) == (
        False,
        b"\xffA",
        0xB428E2D10,
        0,
    )


def test_wal2json_unescapes_what_it_escaped() -> None:
    decoder = Wal2JsonDecoder(FakeCatalog(), lambda s, t: True)
    decoder.messages = True
    decoder.decode(W2J_BEGIN)
    raw = b'\xfe\\"\\\\\\t\\u0001/"\\n'  # not UTF-8, then \" \\ \t \u0001 / " \n
    payload = W2J_MESSAGE.replace(b'"\xffA\\n\\""', b'"' + raw + b'"')
    message = decoder.decode(payload)
    assert isinstance(message, Message)
    assert message.content == b'\xfe"\\\t\x01/"\n'


def test_pgoutput_asks_for_messages_only_when_rules_exist() -> None:
    base = """
[kafka]
bootstrap_servers = "k:9092"
[[connectors]]
name = "shop"
dsn = "host=h dbname=d"
plugin = "pgoutput"
"""
    plain = parse_config(base).connectors[0]
    assert "messages" not in PGOUTPUT.options(plain)
    rules = parse_config(base + '[[connectors.messages]]\nprefixes = ["audit*"]\n').connectors[0]
    assert PGOUTPUT.options(rules)["messages"] == "true"


def rules(*pairs: tuple[list[str], str | None]) -> Messages:
    text = '[kafka]\nbootstrap_servers = "k:9092"\n[[connectors]]\nname = "shop"\n'
    text += 'dsn = "host=h dbname=d"\n'
    for prefixes, topic in pairs:
        text += f"[[connectors.messages]]\nprefixes = {orjson.dumps(prefixes).decode()}\n"
        if topic:
            text += f'topic = "{topic}"\n'
    config = parse_config(text).connectors[0]
    return Messages(config.messages, config.topic_prefix)


def test_topics_by_prefix_first_rule_wins_unmatched_publish_nothing() -> None:
    messages = rules((["audit.*"], "{topic_prefix}.audit"), (["*"], None))
    assert messages.topic("audit.login") == "shop.audit"
    assert messages.topic("orders/placed") == "shop.message.orders_placed"
    assert rules((["a*"], None)).topic("b") is None


def test_a_bad_topic_template_stops_the_configuration_naming_it() -> None:
    # It used to load, and the first message matching it raised a bare KeyError in the
    # stream loop (the connector restarting forever); and a `/` in the template's text made a
    # topic name Kafka refuses.
    for topic, said in (
        ("{topic_prefix}.{prefx}", "unknown placeholder {prefx}"),
        ("{topic_prefix}.{prefix", "messages topic template"),
        ("{prefix:>10}", "takes no format spec"),
    ):
        with pytest.raises(ConfigError) as raised:
            rules((["a*"], topic))
        assert "connectors[0].messages[0]" in str(raised.value), str(raised.value)
        assert said in str(raised.value), str(raised.value)
    assert rules((["a*"], "events/{prefix}")).topic("a b") == "events_a_b"


def test_message_record_is_debeziums_layout_with_the_event_id() -> None:
    decoder = pgoutput(messages=True)
    message = decoder.decode(PG_MESSAGE, COMMIT_LSN)
    assert isinstance(message, Message)
    record = rules((["tx*"], None)).record(message, SOURCE, 1234)
    assert record is not None
    assert record.topic == "shop.message.tx3"
    assert orjson.loads(record.key or b"") == {"prefix": "tx3"}
    assert record.headers == [("cdc-event-id", f"{COMMIT_LSN}:0".encode())]
    value = orjson.loads(record.value or b"")
    assert value["op"] == "m" and value["ts_ms"] == 1234
    assert value["message"] == {"prefix": "tx3", "content": base64.b64encode(b'\xffA\n"').decode()}
    assert base64.b64decode(value["message"]["content"]) == b'\xffA\n"'
    source = value["source"]
    assert (source["name"], source["db"], source["connector"]) == ("shop", "db", "postgresql")
    assert (source["txId"], source["lsn"], source["snapshot"]) == (2099539, COMMIT_LSN, "false")
    assert source["ts_ms"] == message.commit_ts_ms
    assert value["transaction"] == {
        "id": f"2099539:{COMMIT_LSN}",
        "total_order": 1,
        "data_collection_order": 1,
    }
    assert is_boundary_or_message(record.value)

    non_tx = PgOutputDecoder(FakeCatalog(), lambda s, t: True)
    non_tx.messages = True
    own = non_tx.decode(PG_NON_TX, 0)
    assert isinstance(own, Message)
    record = rules((["*"], None)).record(own, SOURCE, 99)
    assert record is not None
    assert record.headers == [("cdc-event-id", f"{0xB428E2D10 - 1}:0".encode())]
    value = orjson.loads(record.value or b"")
    assert value["transaction"] is None
    assert (value["source"]["txId"], value["source"]["ts_ms"]) == (None, 99)


def test_a_prefix_that_makes_a_topic_kafka_refuses_stops_naming_it() -> None:
    with pytest.raises(CdcError, match=r"message prefix 'ppp.*263 char"):
        rules((["*"], None)).topic("p" * 250)


def test_a_message_record_in_the_debezium_mode_has_debeziums_source_and_transaction() -> None:
    """values = "debezium": source.name is the topic prefix and source has Debezium's
    microsecond and nanosecond times and origin fields, as the change events'; the transaction
    block is null unless the transaction topic is on (Debezium's provide.transaction.metadata)."""
    decoder = pgoutput(messages=True)
    message = decoder.decode(PG_MESSAGE, COMMIT_LSN)
    assert isinstance(message, Message)
    mode = ValueMode("debezium")
    for blocks in (False, True):
        source = SourceInfo("connector-name", "db", "shop", mode, transaction_blocks=blocks)
        record = rules((["tx*"], None)).record(message, source, 1234)
        assert record is not None
        value = orjson.loads(record.value or b"")
        block = value["source"]
        assert block["name"] == "shop"
        assert block["ts_us"] == message.commit_ts_ms * 1000
        assert block["ts_ns"] == message.commit_ts_ms * 1_000_000
        assert (block["origin"], block["origin_lsn"]) == (None, None)
        assert (value["transaction"] is not None) == blocks
    exact = rules((["tx*"], None)).record(message, SourceInfo("connector-name", "db", "shop"), 1)
    assert exact is not None
    assert orjson.loads(exact.value or b"")["source"]["name"] == "connector-name"
