"""Configuration: defaults, secrets, ${ENV} substitution, and one clear error per bad file.

Unit tests: no services needed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from cdc.cli import cli
from cdc.config import (
    Dsn,
    LoggingConfig,
    PostgresSinkConfig,
    SqliteSinkConfig,
    load_config,
    parse_config,
)
from cdc.errors import ConfigError
from tests.support import ROOT

KAFKA = '[kafka]\nbootstrap_servers = ["127.0.0.1:19092"]\n'
CONNECTOR = '[[connectors]]\nname = "shop"\ndsn = "postgresql://postgres@127.0.0.1:15432/shop"\n'
GOOD = (
    KAFKA
    + CONNECTOR
    + """
[[sinks]]
name = "replica"
type = "postgres"
topics = ["shop.public.*"]
dsn = "postgresql://postgres@127.0.0.1:15432/replica"

[[sinks]]
name = "local"
type = "sqlite"
topics = ["shop.*"]
path = "replica.db"
"""
)


def test_defaults_follow_the_spec() -> None:
    config = parse_config(GOOD)
    assert config.kafka.bootstrap_servers == ("127.0.0.1:19092",)
    assert config.kafka.topics.partitions == 1
    assert config.kafka.topics.replication_factor == 1
    (shop,) = config.connectors
    assert shop.plugin == "wal2json"
    assert shop.slot == "cdc_shop"
    assert shop.publication == ""
    assert shop.publication_autocreate is None
    assert shop.partitions == "root"
    assert shop.tables == ("*.*",)
    assert shop.exclude_tables == ()
    assert shop.topic_prefix == "shop"
    assert shop.snapshot == "initial"
    assert shop.heartbeat_interval_s == 10
    assert shop.tombstones is True
    assert shop.failover_slot is False
    replica, local = config.sinks
    assert isinstance(replica, PostgresSinkConfig)
    assert replica.group_id == "cdc-sink-replica"
    assert replica.table == "{schema}.{table}"
    assert isinstance(local, SqliteSinkConfig)
    assert local.table == "{schema}_{table}"


def test_logging_defaults_to_text_at_info_and_takes_any_case() -> None:
    assert parse_config(GOOD).logging == LoggingConfig(level="info", format="text")
    config = parse_config(KAFKA + '[logging]\nlevel = "WARNING"\nformat = "json"\n' + CONNECTOR)
    assert config.logging == LoggingConfig(level="warning", format="json")


def test_derived_defaults_for_odd_names_and_pgoutput() -> None:
    config = parse_config(
        KAFKA
        + '[[connectors]]\nname = "My-Shop_2"\nplugin = "pgoutput"\n'
        + 'dsn = "host=127.0.0.1 dbname=shop"\n'
    )
    (c,) = config.connectors
    assert c.slot == "cdc_my_shop_2"
    assert c.publication == "cdc_my_shop_2"
    assert c.publication_autocreate == "filtered"
    assert c.topic_prefix == "My-Shop_2"


def test_bootstrap_servers_accepts_a_string() -> None:
    config = parse_config(
        '[kafka]\nbootstrap_servers = "a:9092, b:9093"\n' + CONNECTOR,
    )
    assert config.kafka.bootstrap_servers == ("a:9092", "b:9093")


def test_config_is_frozen() -> None:
    config = parse_config(GOOD)
    with pytest.raises(ValueError, match="frozen"):
        config.connectors[0].slot = "other"  # type: ignore[misc]


def test_passwords_never_show_in_repr_or_str() -> None:
    config = parse_config(
        KAFKA.replace("\n", "\nsecurity_protocol = 'SASL_PLAINTEXT'\nsasl_mechanism = 'PLAIN'\n", 1)
        + "sasl_plain_username = 'u'\nsasl_plain_password = 'kafka-hunter2'\n"
        + '[[connectors]]\nname = "a"\ndsn = "postgresql://bob:pg-hunter2@db:5432/shop"\n'
        + '[[connectors]]\nname = "b"\ndsn = "host=db user=bob password=kv-hunter2 dbname=x"\n'
    )
    for text in (repr(config), str(config), str(config.connectors[0].dsn)):
        assert "hunter2" not in text
    assert "postgresql://bob:***@db:5432/shop" in repr(config)
    assert "password=***" in repr(config)
    # The real values are still there for the code that connects.
    assert config.connectors[0].dsn.conninfo == "postgresql://bob:pg-hunter2@db:5432/shop"
    assert config.connectors[1].dsn.password == "kv-hunter2"
    assert config.kafka.sasl_plain_password is not None
    assert config.kafka.sasl_plain_password.get_secret_value() == "kafka-hunter2"


@pytest.mark.parametrize("salt", ["738261945", "7382.61945", "true"])
def test_a_mask_salt_of_the_wrong_type_is_never_shown(salt: str) -> None:
    # The salt of hash masks is a secret: a bad one was said back in the error.
    with pytest.raises(ConfigError) as raised:
        parse_config(KAFKA + f'[[connectors]]\nname = "a"\ndsn = "host=db"\nmask_salt = {salt}\n')
    assert "connectors[0].mask_salt: expected a string" in str(raised.value)
    assert salt not in str(raised.value), str(raised.value)
    config = parse_config(
        KAFKA + '[[connectors]]\nname = "a"\ndsn = "host=db"\nmask_salt = "s4lt"\n'
    )
    assert "s4lt" not in repr(config) and "s4lt" not in str(config)


def test_env_substitution_whole_and_embedded() -> None:
    text = (
        '[kafka]\nbootstrap_servers = ["${KAFKA_HOST}:19092"]\n'
        '[[connectors]]\nname = "shop"\ndsn = "${SHOP_DSN}"\nslot = "${SLOT}"\n'
    )
    config = parse_config(
        text,
        environ={"KAFKA_HOST": "broker", "SHOP_DSN": "postgresql://u:s3@h/db", "SLOT": "my_slot"},
    )
    assert config.kafka.bootstrap_servers == ("broker:19092",)
    assert config.connectors[0].dsn == Dsn("postgresql://u:s3@h/db")
    assert config.connectors[0].slot == "my_slot"


def test_env_substitution_with_a_default() -> None:
    """``${VAR:-default}``: the variable when set and not empty, else the default (as in sh)."""
    text = (
        '[kafka]\nbootstrap_servers = "${KAFKA:-127.0.0.1:19092}"\n'
        '[[connectors]]\nname = "shop"\ndsn = "${SHOP_DSN:-postgresql://u@h:5/db}"\n'
        'slot = "s_${SLOT:-one}"\n'
    )
    config = parse_config(text, environ={"SHOP_DSN": "", "SLOT": "two"})
    assert config.kafka.bootstrap_servers == ("127.0.0.1:19092",)
    assert config.connectors[0].dsn == Dsn("postgresql://u@h:5/db")
    assert config.connectors[0].slot == "s_two"
    config = parse_config(text, environ={"KAFKA": "k:1", "SHOP_DSN": "host=x dbname=y"})
    assert config.kafka.bootstrap_servers == ("k:1",)
    assert config.connectors[0].dsn == Dsn("host=x dbname=y")
    assert config.connectors[0].slot == "s_one"


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(
            KAFKA + '[[connectors]]\nname = "x"\nsnapshot = "no"\ntombstones = "yes"\n',
            file="f.toml",
        )
    paths = [p.path for p in info.value.problems]
    assert paths == ["connectors[0].dsn", "connectors[0].snapshot", "connectors[0].tombstones"]


# Each bad file: (id, TOML text, a fragment the error must contain). The CLI must exit 2.
SINK = '[[sinks]]\nname = "r"\ntype = "sqlite"\npath = "r.db"\ntopics = ["a.*"]\n'
BAD_CONFIGS = [
    ("syntax", KAFKA + "[[connectors]\n", "cfg.toml: TOML syntax error: "),
    ("syntax-value", KAFKA + "x = \n", "TOML syntax error: Invalid value (at line 3, column 5)"),
    (
        "unknown-top-key",
        GOOD + "foo = 1\n",
        "cfg.toml: sinks[1].foo: unknown key 'foo'; allowed keys here: name, topics, group_id",
    ),
    (
        "unknown-root-key",
        "verbose = true\n" + GOOD,
        "cfg.toml: verbose: unknown key 'verbose'; allowed keys here: kafka, connectors, sinks,"
        " logging",
    ),
    (
        "unknown-connector-key",
        KAFKA + CONNECTOR + 'slots = "x"\n',
        "cfg.toml: connectors[0].slots: unknown key 'slots'; allowed keys here: name, dsn, plugin",
    ),
    (
        "unknown-producer-key",
        KAFKA + "[kafka.producer]\nacks = 1\n" + CONNECTOR,
        "cfg.toml: kafka.producer.acks: unknown key 'acks'; allowed keys here: linger_ms",
    ),
    (
        "unknown-consumer-client",
        KAFKA + '[kafka.consumer]\nclient = "librdkafka"\n' + CONNECTOR,
        "cfg.toml: kafka.consumer.client: bad value 'librdkafka'; allowed: 'kafka-python' or"
        " 'confluent-kafka'",
    ),
    (
        "wrong-type-number",
        KAFKA + CONNECTOR + 'heartbeat_interval_s = "10"\n',
        "cfg.toml: connectors[0].heartbeat_interval_s: expected a number, got a string '10'",
    ),
    (
        "wrong-type-bool",
        KAFKA + CONNECTOR + "tombstones = 1\n",
        "cfg.toml: connectors[0].tombstones: expected true or false, got an integer 1",
    ),
    (
        "wrong-type-failover-slot",
        KAFKA + CONNECTOR + 'failover_slot = "yes"\n',
        "cfg.toml: connectors[0].failover_slot: expected true or false, got a string 'yes'",
    ),
    (
        "wrong-type-list",
        KAFKA + "[connectors]\nname = 'x'\n",
        "cfg.toml: connectors: expected a list, got a table",
    ),
    (
        "duplicate-connector-name",
        KAFKA + CONNECTOR + CONNECTOR.replace("/shop", "/other"),
        "cfg.toml: connectors[1].name: duplicate name 'shop': connectors[0] has it already",
    ),
    (
        "duplicate-sink-name",
        KAFKA + SINK + SINK,
        "cfg.toml: sinks[1].name: duplicate name 'r': sinks[0] has it already",
    ),
    (
        "shared-slot",
        KAFKA + CONNECTOR + CONNECTOR.replace('"shop"', '"shop2"') + 'slot = "cdc_shop"\n',
        "cfg.toml: connectors[1].slot: slot 'cdc_shop' on the same server is used by connectors[0]",
    ),
    (
        "bad-snapshot",
        KAFKA + CONNECTOR + 'snapshot = "sometimes"\n',
        "cfg.toml: connectors[0].snapshot: bad value 'sometimes'; allowed: 'initial', 'never',"
        " 'always' or 'initial_only'",
    ),
    (
        "bad-plugin",
        KAFKA + CONNECTOR + 'plugin = "decoderbufs"\n',
        "cfg.toml: connectors[0].plugin: bad value 'decoderbufs'; allowed: 'wal2json' or"
        " 'pgoutput'",
    ),
    (
        "missing-dsn",
        KAFKA + '[[connectors]]\nname = "shop"\n',
        "cfg.toml: connectors[0].dsn: required key is missing",
    ),
    ("missing-kafka", CONNECTOR, "cfg.toml: kafka: required key is missing"),
    (
        "empty-tables",
        KAFKA + CONNECTOR + "tables = []\n",
        "cfg.toml: connectors[0].tables: bad value []: must not be an empty list",
    ),
    (
        "table-glob-without-schema",
        KAFKA + CONNECTOR + 'tables = ["orders"]\n',
        "cfg.toml: connectors[0].tables[0]: bad value 'orders': 'orders' is not of the form"
        " SCHEMA.TABLE",
    ),
    (
        "unknown-sink-type",
        KAFKA + SINK.replace('"sqlite"', '"mysql"'),
        "cfg.toml: sinks[0].type: unknown sink type 'mysql'; known types: 'postgres', 'sqlite'",
    ),
    (
        "sink-without-type",
        KAFKA + '[[sinks]]\nname = "r"\ntopics = ["a"]\n',
        "cfg.toml: sinks[0].type: required key is missing; one of 'postgres', 'sqlite'",
    ),
    (
        "sqlite-sink-without-path",
        KAFKA + '[[sinks]]\nname = "r"\ntype = "sqlite"\ntopics = ["a"]\n',
        "cfg.toml: sinks[0].path: required key is missing",
    ),
    (
        "postgres-sink-with-path",
        KAFKA + SINK.replace('"sqlite"', '"postgres"') + 'dsn = "host=h"\n',
        "cfg.toml: sinks[0].path: unknown key 'path'; allowed keys here: name, topics, group_id,"
        " dropped_columns, decimal_handling_mode, time_precision_mode, binary_handling_mode,"
        " interval_handling_mode, type, dsn, table",
    ),
    (
        "sink-empty-topics",
        KAFKA + SINK.replace('["a.*"]', "[]"),
        "cfg.toml: sinks[0].topics: bad value []: must not be an empty list",
    ),
    (
        "sink-bad-table-template",
        KAFKA + SINK + 'table = "{db}_{table}"\n',
        "cfg.toml: sinks[0].table: bad value '{db}_{table}': '{db}_{table}' uses unknown"
        " placeholder(s) db; allowed: {schema}, {table}",
    ),
    (
        "unset-env-var",
        KAFKA + '[[connectors]]\nname = "shop"\ndsn = "${CDC_TEST_SURELY_UNSET}"\n',
        "cfg.toml: connectors[0].dsn: environment variable CDC_TEST_SURELY_UNSET is not set",
    ),
    (
        "bootstrap-without-port",
        '[kafka]\nbootstrap_servers = ["localhost"]\n' + CONNECTOR,
        "cfg.toml: kafka.bootstrap_servers[0]: bad value 'localhost': 'localhost' is not of the"
        " form host:port",
    ),
    (
        "bootstrap-empty",
        "[kafka]\nbootstrap_servers = []\n" + CONNECTOR,
        "cfg.toml: kafka.bootstrap_servers: bad value []: must not be an empty list",
    ),
    (
        "bad-connector-name",
        KAFKA + CONNECTOR.replace('"shop"', '"my shop"'),
        "cfg.toml: connectors[0].name: bad value 'my shop': must be made of letters, digits, _"
        " and - only",
    ),
    (
        "bad-slot-name",
        KAFKA + CONNECTOR + 'slot = "Shop-Slot"\n',
        "cfg.toml: connectors[0].slot: bad value 'Shop-Slot': must be a PostgreSQL slot name",
    ),
    (
        "bad-dsn",
        KAFKA + '[[connectors]]\nname = "shop"\ndsn = "host=db port"\n',
        'cfg.toml: connectors[0].dsn: not a valid PostgreSQL connection string: missing "="'
        ' after "port"',
    ),
    (
        "negative-heartbeat",
        KAFKA + CONNECTOR + "heartbeat_interval_s = -1\n",
        "cfg.toml: connectors[0].heartbeat_interval_s: bad value -1: Input should be greater than"
        " or equal to 0",
    ),
    (
        "zero-partitions",
        KAFKA + "[kafka.topics]\npartitions = 0\n" + CONNECTOR,
        "cfg.toml: kafka.topics.partitions: bad value 0: Input should be greater than or equal"
        " to 1",
    ),
    (
        "publication-with-wal2json",
        KAFKA + CONNECTOR + 'publication = "pub"\n',
        "cfg.toml: connectors[0]: publication only applies to plugin = 'pgoutput'",
    ),
    (
        "publication-autocreate-with-wal2json",
        KAFKA + CONNECTOR + 'publication_autocreate = "all_tables"\n',
        "cfg.toml: connectors[0]: publication_autocreate only applies to plugin = 'pgoutput'",
    ),
    (
        "bad-publication-autocreate",
        KAFKA + CONNECTOR + 'plugin = "pgoutput"\npublication_autocreate = "all"\n',
        "cfg.toml: connectors[0].publication_autocreate: bad value 'all'",
    ),
    (
        "bad-partitions",
        KAFKA + CONNECTOR + 'partitions = "parent"\n',
        "cfg.toml: connectors[0].partitions: bad value 'parent'",
    ),
    (
        "sasl-without-mechanism",
        KAFKA + 'security_protocol = "SASL_SSL"\n' + CONNECTOR,
        "cfg.toml: kafka: security_protocol = 'SASL_SSL' needs sasl_mechanism",
    ),
    (
        "bad-log-level",
        KAFKA + '[logging]\nlevel = "verbose"\n' + CONNECTOR,
        "cfg.toml: logging.level: bad value 'verbose'; allowed: 'debug', 'info', 'warning' or"
        " 'error'",
    ),
    (
        "bad-log-format",
        KAFKA + '[logging]\nformat = "xml"\n' + CONNECTOR,
        "cfg.toml: logging.format: bad value 'xml'; allowed: 'text' or 'json'",
    ),
    (
        "unknown-logging-key",
        KAFKA + '[logging]\nfile = "cdc.log"\n' + CONNECTOR,
        "cfg.toml: logging.file: unknown key 'file'; allowed keys here: level, format",
    ),
    (
        "nothing-to-run",
        KAFKA,
        "cfg.toml: defines no [[connectors]] and no [[sinks]]; nothing would run",
    ),
]


@pytest.mark.parametrize(
    ("text", "fragment"), [c[1:] for c in BAD_CONFIGS], ids=[c[0] for c in BAD_CONFIGS]
)
def test_bad_config_exits_2_with_precise_message(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "cfg.toml"
    path.write_text(text)
    result = CliRunner().invoke(cli, ["check", "-c", str(path)])
    assert result.exit_code == 2, result.output
    assert fragment.replace("cfg.toml", str(path)) in result.output


def test_bad_config_messages_never_hold_the_password(tmp_path: Path) -> None:
    path = tmp_path / "cfg.toml"
    path.write_text(
        KAFKA
        + '[[connectors]]\nname = "shop"\ndsn = "postgresql://bob:hunter2@db/shop?bogus=1"\n'
        + '[[connectors]]\nname = "x"\ndsn = "host=db password=hunter2 port"\n'
        + '[[sinks]]\nname = "r"\ntype = "postgres"\ntopics = ["a"]\ndsn = 5\n'
        + "tabel = 'hunter2'\n"
    )
    result = CliRunner().invoke(cli, ["check", "-c", str(path)])
    assert result.exit_code == 2
    assert "connectors[0].dsn: not a valid PostgreSQL connection string" in result.output
    assert "connectors[1].dsn: not a valid PostgreSQL connection string" in result.output
    assert "sinks[0].tabel: unknown key 'tabel'" in result.output
    assert "hunter2" not in result.output


def test_missing_file_exits_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["check", "-c", str(tmp_path / "nope.toml")])
    assert result.exit_code == 2
    assert f"{tmp_path / 'nope.toml'}: cannot read the file: No such file or directory" in (
        result.output
    )


def test_not_utf8_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "cfg.toml"
    path.write_bytes(b"[kafka]\nbootstrap_servers = ['\xff']\n")
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        load_config(path)


def test_the_installed_console_script_exits_2(tmp_path: Path) -> None:
    # The real entry point, in a real process: exit status as a shell sees it.
    path = tmp_path / "cfg.toml"
    path.write_text(KAFKA + CONNECTOR + 'snapshot = "sometimes"\n')
    cdc = Path(sys.executable).parent / "cdc"
    result = subprocess.run(
        [str(cdc), "check", "-c", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 2
    assert f"cdc: error: {path}: connectors[0].snapshot: bad value 'sometimes'" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("example", sorted((ROOT / "examples").glob("*.toml")))
def test_shipped_examples_are_valid(example: Path) -> None:
    env = {
        "CDC_TEST_KAFKA": "127.0.0.1:19092",
        "CDC_DEMO_SHOP": "postgresql://postgres@127.0.0.1:15432/demo_shop",
        "CDC_DEMO_REPLICA": "postgresql://postgres@127.0.0.1:15432/demo_replica",
        "CDC_DEMO_SQLITE": "demo.db",
        "CDC_DEMO_RUN": "1",
        "CDC_TEST_PG_DSN": "postgresql://postgres@127.0.0.1:15432/postgres",
        "CDC_PG_DSN": "postgresql://postgres:pw@postgres:5432/postgres",
    }
    config = load_config(example, environ=env)
    assert config.connectors or config.sinks


@pytest.mark.parametrize("example", sorted((ROOT / "examples").glob("*.toml")))
def test_examples_take_every_address_from_the_environment(example: Path) -> None:
    """Issue 18, item 8: with other ports in the environment, no example talks to a default one;
    without the environment, they fall back to the devstack's (compose's) addresses."""
    env = {
        "CDC_TEST_KAFKA": "kafka.test:29092",
        "CDC_KAFKA": "kafka.test:29092",
        "CDC_TEST_PG_DSN": "postgresql://postgres@pg.test:25432/postgres",
        "CDC_PG_DSN": "postgresql://postgres@pg.test:25432/postgres",
        "CDC_SHOP_DSN": "postgresql://postgres@pg.test:25432/shop",
        "CDC_REPLICA_DSN": "postgresql://postgres@pg.test:25432/replica",
        "CDC_DEMO_SHOP": "postgresql://postgres@pg.test:25432/demo_shop",
        "CDC_DEMO_REPLICA": "postgresql://postgres@pg.test:25432/demo_replica",
        "CDC_DEMO_SQLITE": "demo.db",
        "CDC_DEMO_RUN": "1",
    }
    config = load_config(example, environ=env)
    assert config.kafka.bootstrap_servers == ("kafka.test:29092",)
    dsns = [c.dsn for c in config.connectors]
    dsns += [s.dsn for s in config.sinks if isinstance(s, PostgresSinkConfig)]
    assert dsns
    for dsn in dsns:
        assert (dsn.params["host"], dsn.params["port"]) == ("pg.test", "25432"), dsn
    if "CDC_DEMO_" not in example.read_text():  # the demo's script sets its own
        defaults = load_config(example, environ={})
        assert defaults.kafka.bootstrap_servers in (("127.0.0.1:19092",), ("kafka:9092",))


def test_values_modes_and_debeziums_options() -> None:
    exact = parse_config(KAFKA + CONNECTOR).connectors[0]
    assert (exact.values, exact.value_mode.header, exact.skipped) == (
        "exact",
        b"exact",
        frozenset(),
    )
    dbz = parse_config(
        KAFKA
        + CONNECTOR
        + 'values = "debezium"\ndecimal_handling_mode = "string"\ntime_precision_mode = "connect"\n'
    ).connectors[0]
    assert dbz.value_mode.header == (
        b"debezium;decimal=string;time=connect;binary=bytes;interval=numeric"
    )
    assert dbz.skipped == {"t"}  # Debezium's default skipped.operations
    publish_all = parse_config(
        KAFKA + CONNECTOR + 'values = "debezium"\nskipped_operations = "none"\n'
    ).connectors[0]
    assert publish_all.skipped == set()
    listed = parse_config(KAFKA + CONNECTOR + 'skipped_operations = ["t", "u"]\n')
    assert listed.connectors[0].skipped == {"t", "u"}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('decimal_handling_mode = "string"\n', "Debezium's options, for values = 'debezium' only"),
        ('values = "debezium"\ntime_precision_mode = "nanos"\n', "time_precision_mode"),
        ('skipped_operations = "c,r"\n', "unknown operation 'r'"),
        ('values = "avro"\n', "values"),
    ],
)
def test_bad_values_settings_name_the_key(extra: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(KAFKA + CONNECTOR + extra)
