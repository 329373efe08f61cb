"""The typed, frozen configuration: one pydantic model per TOML table, with its checks."""

from __future__ import annotations

import re
import string
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    model_validator,
)

from cdc.config.dsn import Dsn
from cdc.values import EXACT, ValueMode

_NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")
_TOPIC_RE = re.compile(r"^[A-Za-z0-9._-]+$")
_SLOT_RE = re.compile(r"^[a-z0-9_]{1,63}$")
_HOSTPORT_RE = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):([0-9]{1,5})$")


def _name(value: str) -> str:
    if not _NAME_RE.match(value):
        raise ValueError("must be made of letters, digits, _ and - only")
    return value


def _topic_part(value: str) -> str:
    if not _TOPIC_RE.match(value) or len(value) > 200:
        raise ValueError("must be a legal Kafka topic part: letters, digits, '.', '_' and '-'")
    return value


def _slot(value: str) -> str:
    if not _SLOT_RE.match(value):
        raise ValueError("must be a PostgreSQL slot name: 1 to 63 lower-case letters, digits and _")
    return value


def _identifier(value: str) -> str:
    if not value or len(value.encode()) > 63:
        raise ValueError("must be a PostgreSQL identifier of 1 to 63 bytes")
    return value


def _as_tuple(value: object) -> object:
    return tuple(value) if isinstance(value, list) else value


def _non_empty(value: tuple[str, ...]) -> tuple[str, ...]:
    if not value:
        raise ValueError("must not be an empty list")
    return value


def _table_glob(value: str) -> str:
    schema, dot, table = value.partition(".")
    if not dot or not schema or not table:
        raise ValueError(f"{value!r} is not of the form SCHEMA.TABLE (globs allowed: public.*)")
    return value


def _bootstrap(value: object) -> object:
    if isinstance(value, str):
        return tuple(s.strip() for s in value.split(",") if s.strip())
    return _as_tuple(value)


def _hostport(value: str) -> str:
    m = _HOSTPORT_RE.match(value)
    if not m or not 0 < int(m.group(2)) < 65536:
        raise ValueError(f"{value!r} is not of the form host:port")
    return value


def _table_template(value: str) -> str:
    fields = set()
    try:
        for _, field, spec, conv in string.Formatter().parse(value):
            if field is not None:
                if spec or conv:
                    raise ValueError("format specs are not allowed")
                fields.add(field)
    except ValueError as e:
        raise ValueError(f"{value!r} is not a valid template: {e}") from None
    unknown = fields - {"schema", "table"}
    if unknown:
        raise ValueError(
            f"{value!r} uses unknown placeholder(s) {', '.join(sorted(unknown))};"
            " allowed: {schema}, {table}"
        )
    if "table" not in fields:
        raise ValueError(f"{value!r} must contain {{table}}")
    return value


Name = Annotated[str, AfterValidator(_name)]
TableGlob = Annotated[str, AfterValidator(_table_glob)]
TableGlobs = Annotated[tuple[TableGlob, ...], BeforeValidator(_as_tuple)]
TopicGlobs = Annotated[tuple[str, ...], BeforeValidator(_as_tuple), AfterValidator(_non_empty)]


class _Spec(BaseModel):
    # strict: TOML is typed, so "5" is not 5 and 1 is not true. Frozen: read once, never changed.
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class KafkaTopicsConfig(_Spec):
    """How topics are created when missing."""

    partitions: int = Field(default=1, ge=1, le=10_000)
    replication_factor: int = Field(default=1, ge=1, le=100)


LINGER_MS = 20
"""The producer's default ``linger_ms``, above Kafka 4's 5 ms: fewer, larger produce requests cost
the broker less CPU and lowered commit -> sink row latency (docs/design.md)."""


class KafkaProducerConfig(_Spec):
    """Producer tuning. ``acks=all`` and idempotence are not options: delivery depends on them."""

    linger_ms: int = Field(default=LINGER_MS, ge=0, le=60_000)
    """How long a batch waits for more records before it is sent."""
    batch_size: int = Field(default=1024 * 1024, ge=1024)
    compression_type: Literal["none", "gzip", "snappy", "lz4", "zstd"] = "none"
    max_unacked_records: int = Field(default=50_000, ge=100)
    """Reading pauses while this many records wait for Kafka's ack: bounds the memory."""
    max_request_size: int = Field(default=4 * 1024 * 1024, ge=1024)
    request_timeout_ms: int = Field(default=30_000, ge=1000)
    client: Literal["kafka-python", "confluent-kafka"] = "kafka-python"
    """The producer library. confluent-kafka (librdkafka) spends a fraction of kafka-python's CPU
    per record; it is an optional install (``pip install 'cdc[fast]'``)."""


class KafkaConsumerConfig(_Spec):
    """How sinks read their topics."""

    client: Literal["kafka-python", "confluent-kafka"] = "kafka-python"
    """The consumer library. confluent-kafka (librdkafka) reads a record for a fraction of
    kafka-python's CPU; it is an optional install (``pip install 'cdc[fast]'``)."""


class KafkaConfig(_Spec):
    """The ``[kafka]`` table: where the brokers are and how to talk to them."""

    bootstrap_servers: Annotated[
        tuple[Annotated[str, AfterValidator(_hostport)], ...],
        BeforeValidator(_bootstrap),
        AfterValidator(_non_empty),
    ]
    client_id: str = "cdc"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] | None = None
    sasl_plain_username: str | None = None
    sasl_plain_password: SecretStr | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_password: SecretStr | None = None
    ssl_check_hostname: bool = True
    producer: KafkaProducerConfig = KafkaProducerConfig()
    consumer: KafkaConsumerConfig = KafkaConsumerConfig()
    topics: KafkaTopicsConfig = KafkaTopicsConfig()

    @model_validator(mode="after")
    def _sasl_needs_mechanism(self) -> KafkaConfig:
        if self.security_protocol.startswith("SASL") and self.sasl_mechanism is None:
            raise ValueError(
                f"security_protocol = {self.security_protocol!r} needs sasl_mechanism"
                " (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER)"
            )
        return self


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


class LoggingConfig(_Spec):
    """The ``[logging]`` table. ``--log-level`` / ``--log-format`` (or ``CDC_LOG_LEVEL`` /
    ``CDC_LOG_FORMAT``) win over it."""

    level: Annotated[Literal["debug", "info", "warning", "error"], BeforeValidator(_lower)] = "info"
    format: Literal["text", "json"] = "text"
    """``json``: one JSON object a line (:mod:`cdc.logs`), for a log collector."""


class MetricsConfig(_Spec):
    """The ``[metrics]`` table: where ``cdc run`` serves ``/metrics``, ``/healthz`` and
    ``/readyz`` (``cdc run --metrics-listen`` wins over it)."""

    listen: Annotated[str, AfterValidator(_hostport)] | None = None
    """``host:port`` (``[::1]:9187`` for IPv6; ``0.0.0.0`` for every interface); none: off."""


Columns = Annotated[
    tuple[Annotated[str, AfterValidator(_identifier)], ...], BeforeValidator(_as_tuple)
]


class ColumnsRule(_Spec):
    """One ``[[connectors.columns]]`` entry: which columns of the matching tables leave the
    database, and which are masked. Key columns can be neither dropped nor masked (an error
    at start names them)."""

    tables: Annotated[TableGlobs, AfterValidator(_non_empty)]
    include: Columns = ()
    """Keep only these columns (and nothing else); empty: every column."""
    exclude: Columns = ()
    """Leave these columns out of every event."""
    mask: dict[Annotated[str, AfterValidator(_identifier)], str] = {}
    """Column -> the constant text that replaces every value of it (NULL stays NULL)."""
    hash: Columns = ()
    """Columns replaced by the hex SHA-256 of the connector's ``mask_salt`` and the value's
    text: stable, so equal values still join."""

    @model_validator(mode="after")
    def _one_fate_per_column(self) -> ColumnsRule:
        if self.include and self.exclude:
            raise ValueError("give include or exclude, not both")
        seen: dict[str, str] = {}
        for fate, names in (
            ("exclude", self.exclude),
            ("mask", tuple(self.mask)),
            ("hash", self.hash),
        ):
            for name in names:
                if name in seen:
                    raise ValueError(f"column {name!r} is in both {seen[name]} and {fate}")
                seen[name] = fate
        if self.include:
            outside = [n for n in (*self.mask, *self.hash) if n not in self.include]
            if outside:
                raise ValueError(
                    f"masked column(s) {', '.join(outside)} are not in include: add them or"
                    " drop the mask"
                )
        if not (self.include or self.exclude or self.mask or self.hash):
            raise ValueError("says nothing: give include, exclude, mask or hash")
        return self


class FilterRule(_Spec):
    """One ``[[connectors.filters]]`` entry: only rows of the matching tables for which
    ``where`` holds are published (:mod:`cdc.transforms.filters` for the language)."""

    tables: Annotated[TableGlobs, AfterValidator(_non_empty)]
    where: str

    @model_validator(mode="after")
    def _parses(self) -> FilterRule:
        from cdc.transforms.filters import parse_filter  # noqa: PLC0415 (models import first)

        parse_filter(self.where)  # a ValueError names what is wrong, with the position
        return self


class RouteRule(_Spec):
    """One ``[[connectors.routes]]`` entry: the topic of the matching tables' events, by a
    template (``topic``), by a regex rewrite of the default topic (``regex`` and
    ``replacement``), or by the value of a key column (``by_column`` with ``{value}`` in
    ``topic``)."""

    tables: Annotated[TableGlobs, AfterValidator(_non_empty)] = ("*.*",)
    topic: str | None = None
    """Template: ``{topic_prefix}``, ``{db}``, ``{schema}``, ``{table}``, and ``{value}`` with
    ``by_column``."""
    regex: str | None = None
    """Applied to the default topic (``{topic_prefix}.{schema}.{table}``), whole-match."""
    replacement: str | None = None
    """``$1`` (as in Debezium) or ``\\1`` for groups."""
    by_column: Annotated[str, AfterValidator(_identifier)] | None = None
    key_table_field: str | None = None
    """Add the source table (``schema.table``) to each key under this field, so keys of
    different tables on one topic differ (Debezium: ``__dbz__physicalTableIdentifier``). Default:
    that name when the route can put several tables on one topic, else none. ``""``: never."""

    @model_validator(mode="after")
    def _one_way(self) -> RouteRule:
        from cdc.transforms.routes import check_route  # noqa: PLC0415

        check_route(self)
        return self


class OutboxConfig(_Spec):
    """One ``[[connectors.outbox]]`` entry: an outbox table whose inserts are published as
    domain events (Debezium's outbox event router)."""

    table: str
    """``schema.table`` (no globs)."""
    id_column: Annotated[str, AfterValidator(_identifier)] = "id"
    aggregate_type_column: Annotated[str, AfterValidator(_identifier)] = "aggregatetype"
    aggregate_id_column: Annotated[str, AfterValidator(_identifier)] = "aggregateid"
    type_column: Annotated[str, AfterValidator(_identifier)] = "type"
    payload_column: Annotated[str, AfterValidator(_identifier)] = "payload"
    topic: str = "outbox.event.{aggregatetype}"
    """Template: ``{aggregatetype}``, ``{topic_prefix}``, ``{schema}``, ``{table}``."""
    publish_rows: bool = False
    """Also publish the table's own row events on its usual topic."""

    @model_validator(mode="after")
    def _table_name(self) -> OutboxConfig:
        from cdc.transforms.outbox import check_outbox  # noqa: PLC0415

        check_outbox(self)
        return self


class MessagesRule(_Spec):
    """One ``[[connectors.messages]]`` entry: logical decoding messages
    (``pg_logical_emit_message``) whose prefix matches are published."""

    prefixes: Annotated[tuple[str, ...], BeforeValidator(_as_tuple), AfterValidator(_non_empty)]
    """Globs on the message's prefix."""
    topic: str = "{topic_prefix}.message.{prefix}"
    """Template: ``{topic_prefix}``, ``{prefix}`` (characters Kafka forbids become ``_``)."""

    @model_validator(mode="after")
    def _template(self) -> MessagesRule:
        from cdc.transforms.routes import template_fields  # noqa: PLC0415 (models import first)

        fields = frozenset({"topic_prefix", "prefix"})
        template_fields(self.topic, fields, "messages topic template")
        return self


def _default_slot(name: str) -> str:
    return "cdc_" + re.sub(r"[^a-z0-9]", "_", name.lower())


def _operations(value: Any) -> Any:
    """Debezium's ``skipped.operations``: ``"t"``, ``"c,u"``, ``"none"``, or a list."""
    if isinstance(value, str):
        value = [] if value.strip() == "none" else [v.strip() for v in value.split(",")]
    if isinstance(value, (list, tuple)):
        for op in value:
            if op not in ("c", "u", "d", "t"):
                raise ValueError(
                    f"unknown operation {op!r}: skipped_operations takes c, u, d, t"
                    ' (comma-separated, or a list), or "none"'
                )
        return tuple(value)
    return value


class ConnectorConfig(_Spec):
    """One ``[[connectors]]`` entry: a PostgreSQL database streamed into Kafka."""

    name: Name
    dsn: Dsn
    plugin: Literal["wal2json", "pgoutput"] = "wal2json"
    slot: Annotated[str, AfterValidator(_slot)] = ""
    publication: Annotated[str, AfterValidator(_identifier)] = ""
    publication_autocreate: Literal["filtered", "all_tables", "disabled"] | None = None
    """pgoutput only (default ``filtered``): what the connector makes of its publication."""
    partitions: Literal["root", "leaf"] = "root"
    """Where a partition's changes are published: on its partitioned (root) table's topic,
    with the root's key, or on the partition's own topic."""
    tables: Annotated[TableGlobs, AfterValidator(_non_empty)] = ("*.*",)
    exclude_tables: TableGlobs = ()
    topic_prefix: Annotated[str, AfterValidator(_topic_part)] = ""
    snapshot: Literal["initial", "never", "always", "initial_only"] = "initial"
    snapshot_chunk_rows: int = Field(default=10_000, ge=1, le=1_000_000)
    """Rows per chunk of an incremental snapshot (one watermark window each)."""
    heartbeat_interval_s: float = Field(default=10.0, ge=0)
    heartbeat_query: str | None = None
    oversized: Literal["fail", "skip", "truncate"] = "fail"
    """A record over the size Kafka takes: stop with an error (nothing lost), leave it out, or
    publish it with its largest values replaced by the placeholder (:mod:`cdc.oversized`)."""
    tombstones: bool = True
    failover_slot: bool = False
    """Create the slot as a failover slot (PostgreSQL 17 and later), kept on standbys that
    synchronize slots so that streaming resumes on a promoted standby."""
    status_lag_warn_mb: float = Field(default=64.0, ge=0)
    """``cdc status``: WARN when the slot, even streaming, is more than this behind."""
    status_lag_fail_mb: float = Field(default=1024.0, ge=0)
    """``cdc status``: FAIL when the slot is not streaming and more than this behind."""
    columns: Annotated[tuple[ColumnsRule, ...], BeforeValidator(_as_tuple)] = ()
    filters: Annotated[tuple[FilterRule, ...], BeforeValidator(_as_tuple)] = ()
    routes: Annotated[tuple[RouteRule, ...], BeforeValidator(_as_tuple)] = ()
    outbox: Annotated[tuple[OutboxConfig, ...], BeforeValidator(_as_tuple)] = ()
    messages: Annotated[tuple[MessagesRule, ...], BeforeValidator(_as_tuple)] = ()
    mask_salt: SecretStr | None = None
    """The salt of ``hash`` masks: a secret (``${ENV}`` works), never logged."""
    transaction_topic: bool = False
    """Publish a BEGIN and an END record per transaction to ``{topic_prefix}.transaction``."""
    values: Literal["exact", "debezium"] = "exact"
    """How values are encoded (docs/events.md): ``exact`` (exact and a Debezium configuration),
    or ``debezium`` (Debezium's encodings under its four options, and its envelope)."""
    decimal_handling_mode: Literal["precise", "string", "double"] | None = None
    time_precision_mode: (
        Literal["adaptive", "adaptive_time_microseconds", "connect", "isostring"] | None
    ) = None
    binary_handling_mode: Literal["bytes", "base64", "base64-url-safe", "hex"] | None = None
    interval_handling_mode: Literal["numeric", "string"] | None = None
    schemas: bool = False
    """Write key and value in Kafka Connect's JSON-with-schema layout (``JsonConverter`` with
    ``schemas.enable=true``)."""
    skipped_operations: Annotated[tuple[str, ...], BeforeValidator(_operations)] | None = None
    """Operations not published (Debezium's ``skipped.operations``): ``"t"`` by default in the
    debezium mode, none in the exact mode; ``"none"`` publishes all."""

    @property
    def value_mode(self) -> ValueMode:
        if self.values == "exact":
            return EXACT
        return ValueMode(
            "debezium",
            self.decimal_handling_mode or "precise",
            self.time_precision_mode or "adaptive",
            self.binary_handling_mode or "bytes",
            self.interval_handling_mode or "numeric",
        )

    @property
    def skipped(self) -> frozenset[str]:
        """The operations not published."""
        if self.skipped_operations is None:
            return frozenset("t") if self.values == "debezium" else frozenset()
        return frozenset(self.skipped_operations)

    @model_validator(mode="after")
    def _debezium_options_need_debezium(self) -> ConnectorConfig:
        given = [
            k
            for k in (
                "decimal_handling_mode",
                "time_precision_mode",
                "binary_handling_mode",
                "interval_handling_mode",
            )
            if getattr(self, k) is not None
        ]
        if given and self.values != "debezium":
            raise ValueError(
                f"{', '.join(given)}: Debezium's options, for values = 'debezium' only (the"
                " exact mode's encodings are fixed: docs/events.md); remove them or set"
                " values = 'debezium'"
            )
        return self

    @model_validator(mode="before")
    @classmethod
    def _defaults_from_name(cls, data: Any) -> Any:
        # Defaults derived from the name are filled in before validation so that they are
        # validated like values the user wrote.
        name = data.get("name") if isinstance(data, dict) else None
        if isinstance(name, str) and _NAME_RE.match(name):
            data = dict(data)
            data.setdefault("slot", _default_slot(name))
            data.setdefault("topic_prefix", name)
            if data.get("plugin", "wal2json") == "pgoutput":
                data.setdefault("publication", _default_slot(name))
                data.setdefault("publication_autocreate", "filtered")
        return data

    @model_validator(mode="after")
    def _publication_needs_pgoutput(self) -> ConnectorConfig:
        if self.publication and self.plugin != "pgoutput":
            raise ValueError(
                "publication only applies to plugin = 'pgoutput'"
                f" (this connector uses {self.plugin!r}); remove it"
            )
        if self.publication_autocreate is not None and self.plugin != "pgoutput":
            raise ValueError(
                "publication_autocreate only applies to plugin = 'pgoutput'"
                f" (this connector uses {self.plugin!r}); remove it"
            )
        return self

    @model_validator(mode="after")
    def _one_outbox_per_table(self) -> ConnectorConfig:
        seen: dict[str, int] = {}
        for i, box in enumerate(self.outbox):
            if box.table in seen:
                raise ValueError(
                    f"outbox[{i}]: table {box.table} is outbox[{seen[box.table]}]'s already:"
                    " one entry per outbox table"
                )
            seen[box.table] = i
        return self

    @model_validator(mode="after")
    def _salt_for_hashes(self) -> ConnectorConfig:
        hashed = [c for rule in self.columns for c in rule.hash]
        if hashed and (self.mask_salt is None or not self.mask_salt.get_secret_value()):
            raise ValueError(
                f"column(s) {', '.join(hashed)} are hashed: set mask_salt (a secret, for"
                ' example mask_salt = "${CDC_MASK_SALT}")'
            )
        return self


class _SinkBase(_Spec):
    name: Name
    topics: TopicGlobs
    group_id: str = ""
    dropped_columns: Literal["keep", "drop"] = "keep"
    """What a target does with a column the source dropped: keep it (new rows hold NULL), or
    drop it at the table's next change that shows it gone (:mod:`cdc.columns`)."""
    # How Debezium's connector wrote the topics' records that carry no schema (its options, by
    # its names and defaults): records without cdc-event-id are read as Debezium's.
    decimal_handling_mode: Literal["precise", "string", "double"] = "precise"
    time_precision_mode: Literal[
        "adaptive", "adaptive_time_microseconds", "connect", "isostring"
    ] = "adaptive"
    binary_handling_mode: Literal["bytes", "base64", "base64-url-safe", "hex"] = "bytes"
    interval_handling_mode: Literal["numeric", "string"] = "numeric"

    @model_validator(mode="before")
    @classmethod
    def _default_group(cls, data: Any) -> Any:
        name = data.get("name") if isinstance(data, dict) else None
        if isinstance(name, str) and _NAME_RE.match(name):
            data = dict(data)
            data.setdefault("group_id", "cdc-sink-" + name)
        return data


class PostgresSinkConfig(_SinkBase):
    """A ``[[sinks]]`` entry of ``type = "postgres"``."""

    type: Literal["postgres"]
    dsn: Dsn
    table: Annotated[str, AfterValidator(_table_template)] = "{schema}.{table}"


class SqliteSinkConfig(_SinkBase):
    """A ``[[sinks]]`` entry of ``type = "sqlite"``."""

    type: Literal["sqlite"]
    path: Annotated[str, AfterValidator(_non_empty_str)]
    table: Annotated[str, AfterValidator(_table_template)] = "{schema}_{table}"


def _non_empty_str(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


SinkConfig = Annotated[PostgresSinkConfig | SqliteSinkConfig, Field(discriminator="type")]

SINK_TYPES: dict[str, type[_SinkBase]] = {
    "postgres": PostgresSinkConfig,
    "sqlite": SqliteSinkConfig,
}


class Config(_Spec):
    """A whole configuration file."""

    kafka: KafkaConfig
    connectors: Annotated[tuple[ConnectorConfig, ...], BeforeValidator(_as_tuple)] = ()
    sinks: Annotated[tuple[SinkConfig, ...], BeforeValidator(_as_tuple)] = ()
    logging: LoggingConfig = LoggingConfig()
    metrics: MetricsConfig = MetricsConfig()
    source: str = ""
    """The file this came from (set by :func:`load_config`, not a TOML key)."""

    @property
    def connector_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.connectors)

    @property
    def sink_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.sinks)


# ---------------------------------------------------------------------------------------------
# Loading
