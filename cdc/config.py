"""Configuration: the TOML file, parsed once into typed, frozen objects.

:func:`load_config` is the only way in. It reads the file with :mod:`tomllib`, substitutes
``${ENV_VAR}`` references, validates everything with pydantic and returns a :class:`Config`. Nothing
downstream reads raw dicts. Every problem found becomes a :class:`~cdc.errors.ConfigProblem` naming
the key path, the bad value and what is allowed; secrets (passwords inside DSNs, ``*_password``
keys) are masked in every repr and message.
"""

from __future__ import annotations

__all__ = [
    "Config",
    "ConnectorConfig",
    "Dsn",
    "KafkaConfig",
    "KafkaProducerConfig",
    "KafkaTopicsConfig",
    "PostgresSinkConfig",
    "SinkConfig",
    "SqliteSinkConfig",
    "load_config",
    "parse_config",
]

import os
import re
import string
import tomllib
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic_core import core_schema

from cdc.errors import ConfigError, ConfigProblem

MASK = "***"


class Dsn:
    """A libpq connection string whose password never shows.

    ``str()`` and ``repr()`` give the masked form; only :attr:`conninfo` holds the real one, and
    only code that connects reads it.
    """

    __slots__ = ("conninfo", "masked", "params")

    def __init__(self, conninfo: str) -> None:
        try:
            params = conninfo_to_dict(conninfo)
        except psycopg.ProgrammingError as e:
            # libpq's parse errors never echo the password, but they may quote a fragment.
            reason = _first_line(e)
            raise ValueError(f"not a valid PostgreSQL connection string: {reason}") from None
        self.conninfo = conninfo
        self.params: Mapping[str, str] = {k: str(v) for k, v in params.items()}
        self.masked = mask_dsn(conninfo)

    @property
    def password(self) -> str | None:
        return self.params.get("password")

    def __str__(self) -> str:
        return self.masked

    def __repr__(self) -> str:
        return f"Dsn({self.masked!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Dsn) and other.conninfo == self.conninfo

    def __hash__(self) -> int:
        return hash(self.conninfo)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            _dsn, serialization=core_schema.plain_serializer_function_ser_schema(str)
        )


def mask_dsn(conninfo: str) -> str:
    """Return ``conninfo`` with any password replaced by ``***``, keeping its form (URL or k=v)."""
    if re.match(r"^postgres(ql)?://", conninfo):
        parts = urllib.parse.urlsplit(conninfo)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, hosts = netloc.rpartition("@")
            if ":" in userinfo:
                userinfo = userinfo.split(":", 1)[0] + ":" + MASK
            netloc = f"{userinfo}@{hosts}"
        query = "&".join(
            f"{k}={MASK}" if k == "password" else f"{k}={v}"
            for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        )
        return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    try:
        params = conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError:
        return MASK  # unparseable: show nothing rather than risk a secret
    if "password" in params:
        params["password"] = MASK
    return make_conninfo("", **params)


def _first_line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def _dsn(value: object) -> Dsn:
    if isinstance(value, Dsn):
        return value
    if not isinstance(value, str):
        raise ValueError("must be a string (a postgresql:// URL or key=value pairs)")
    if not value.strip():
        raise ValueError("must not be empty")
    return Dsn(value)


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


def _default_slot(name: str) -> str:
    return "cdc_" + re.sub(r"[^a-z0-9]", "_", name.lower())


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


class _SinkBase(_Spec):
    name: Name
    topics: TopicGlobs
    group_id: str = ""
    dropped_columns: Literal["keep", "drop"] = "keep"
    """What a target does with a column the source dropped: keep it (new rows hold NULL), or
    drop it at the table's next change that shows it gone (:mod:`cdc.columns`)."""

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


def load_config(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> Config:
    """Read, substitute and validate ``path``; raise :class:`ConfigError` listing every problem."""
    file = str(path)
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except OSError as e:
        problem = ConfigProblem("", f"cannot read the file: {e.strerror}")
        raise ConfigError(file, [problem]) from None
    except UnicodeDecodeError as e:
        raise ConfigError(file, [ConfigProblem("", f"not UTF-8 text: {e.reason}")]) from None
    return parse_config(text, file=file, environ=environ)


def parse_config(
    text: str, *, file: str = "<config>", environ: Mapping[str, str] | None = None
) -> Config:
    """Like :func:`load_config`, from the TOML text itself."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(file, [ConfigProblem("", f"TOML syntax error: {e}")]) from None

    env = os.environ if environ is None else environ
    problems: list[ConfigProblem] = []
    raw = _substitute(raw, (), env, problems)
    if problems:
        raise ConfigError(file, problems)
    if "source" in raw:
        raise ConfigError(file, [ConfigProblem("source", _unknown_key_message(Config, "source"))])

    try:
        config = Config.model_validate({**raw, "source": file})
    except ValidationError as e:
        raise ConfigError(file, [_problem(err, raw) for err in e.errors()]) from None

    problems = _cross_checks(config)
    if problems:
        raise ConfigError(file, problems)
    return config


_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
"""``${VAR}``, or ``${VAR:-default}``: the default when VAR is unset or empty (as in the shell)."""


def _substitute(
    node: Any, path: tuple[str | int, ...], env: Mapping[str, str], problems: list[ConfigProblem]
) -> Any:
    if isinstance(node, dict):
        return {k: _substitute(v, (*path, k), env, problems) for k, v in node.items()}
    if isinstance(node, list):
        return [_substitute(v, (*path, i), env, problems) for i, v in enumerate(node)]
    if isinstance(node, str) and "${" in node:

        def repl(m: re.Match[str]) -> str:
            var, default = m.group(1), m.group(2)
            if default is not None:
                return env.get(var) or default
            if var not in env:
                problems.append(
                    ConfigProblem(_render_path(path), f"environment variable {var} is not set")
                )
                return ""
            return env[var]

        return _ENV_RE.sub(repl, node)
    return node


def _cross_checks(config: Config) -> list[ConfigProblem]:
    problems = []
    if not config.connectors and not config.sinks:
        problems.append(
            ConfigProblem("", "defines no [[connectors]] and no [[sinks]]; nothing would run")
        )
    for kind, items in (("connectors", config.connectors), ("sinks", config.sinks)):
        seen: dict[str, int] = {}
        for i, item in enumerate(items):
            if item.name in seen:
                problems.append(
                    ConfigProblem(
                        f"{kind}[{i}].name",
                        f"duplicate name {item.name!r}: {kind}[{seen[item.name]}] has it already;"
                        " names must be unique",
                    )
                )
            seen.setdefault(item.name, i)
    slots: dict[tuple[str, str], int] = {}
    for i, c in enumerate(config.connectors):
        where = (_server_of(c.dsn), c.slot)
        if where in slots:
            problems.append(
                ConfigProblem(
                    f"connectors[{i}].slot",
                    f"slot {c.slot!r} on the same server is used by connectors[{slots[where]}];"
                    " two connectors cannot share a slot",
                )
            )
        slots.setdefault(where, i)
    return problems


def _server_of(dsn: Dsn) -> str:
    p = dsn.params
    return f"{p.get('host', '')}:{p.get('port', '')}/{p.get('dbname', '')}"


def _render_path(loc: Sequence[str | int]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


_SECRET_KEYS = ("password", "dsn", "secret")


def _show(loc: Sequence[str | int], value: Any) -> str:
    key = next((p for p in reversed(loc) if isinstance(p, str)), "")
    if any(s in key for s in _SECRET_KEYS):
        if key == "dsn" and isinstance(value, str):
            return repr(mask_dsn(value))
        return repr(MASK)
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, tuple):
        value = list(value)  # TOML wrote a list; say it back as one
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


_TYPE_NAMES = {
    "string_type": "a string",
    "int_type": "an integer",
    "float_type": "a number",
    "bool_type": "true or false",
    "tuple_type": "a list",
    "list_type": "a list",
    "model_type": "a table",
    "dict_type": "a table",
    "model_attributes_type": "a table",
}


def _toml_type(value: Any) -> str:
    return {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "a boolean",
        list: "a list",
        dict: "a table",
    }.get(type(value), type(value).__name__)


def _problem(err: Any, raw: Mapping[str, Any]) -> ConfigProblem:
    # Pydantic's loc includes union branch names such as "postgres"; they are not key paths.
    loc = _strip_union_tags(err["loc"], raw)
    path = _render_path(loc)
    kind = err["type"]
    ctx = err.get("ctx") or {}
    value = err.get("input")
    if kind == "missing":
        return ConfigProblem(path, "required key is missing")
    if kind == "extra_forbidden":
        return ConfigProblem(path, _unknown_key_message(_model_at(loc[:-1], raw), str(loc[-1])))
    if kind == "literal_error":
        return ConfigProblem(path, f"bad value {_show(loc, value)}; allowed: {ctx['expected']}")
    if kind in ("union_tag_invalid",):
        tags = ", ".join(repr(t) for t in SINK_TYPES)
        return ConfigProblem(
            f"{path}.type", f"unknown sink type {ctx.get('tag')!r}; known types: {tags}"
        )
    if kind == "union_tag_not_found":
        tags = ", ".join(repr(t) for t in SINK_TYPES)
        return ConfigProblem(f"{path}.type", f"required key is missing; one of {tags}")
    if kind in _TYPE_NAMES:
        got = _toml_type(value)
        if not isinstance(value, dict | list):
            got += f" {_show(loc, value)}"
        return ConfigProblem(path, f"expected {_TYPE_NAMES[kind]}, got {got}")
    if kind == "value_error":
        message = str(ctx.get("error", err["msg"]))
        if not loc or loc[-1] == "dsn" or isinstance(value, dict):
            return ConfigProblem(path, message)
        return ConfigProblem(path, f"bad value {_show(loc, value)}: {message}")
    return ConfigProblem(path, f"bad value {_show(loc, value)}: {err['msg']}")


def _strip_union_tags(loc: Sequence[str | int], raw: Mapping[str, Any]) -> tuple[str | int, ...]:
    out: list[str | int] = []
    node: Any = raw
    for part in loc:
        # A union tag (e.g. "postgres") sits between the list index and the key.
        if isinstance(node, dict) and part not in node and node.get("type") == part:
            continue
        out.append(part)
        node = _child(node, part)
    return tuple(out)


def _child(node: Any, part: str | int) -> Any:
    if isinstance(node, dict) and isinstance(part, str):
        return node.get(part)
    if isinstance(node, list) and isinstance(part, int) and part < len(node):
        return node[part]
    return None


def _model_at(loc: Sequence[str | int], raw: Mapping[str, Any]) -> type[BaseModel] | None:
    """The spec class that validates the table at ``loc`` (for listing its keys)."""
    model: type[BaseModel] | None = Config
    node: Any = raw
    for part in loc:
        node = _child(node, part)
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if model else None
        if field is None:
            return None
        model = _model_of(field.annotation)
    if len(loc) == 2 and loc[0] == "sinks" and isinstance(node, dict):
        # A sink's keys depend on its type; the annotation alone cannot say which.
        return SINK_TYPES.get(str(node.get("type")), model)
    return model


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_of(arg)
        if found is not None:
            return found
    origin = getattr(annotation, "__origin__", None)
    if origin is not None and origin is not annotation:
        return _model_of(origin)
    return None


def _unknown_key_message(model: type[BaseModel] | None, key: str) -> str:
    if model is None:
        return f"unknown key {key!r}"
    allowed = ", ".join(k for k in model.model_fields if k != "source")
    return f"unknown key {key!r}; allowed keys here: {allowed}"
