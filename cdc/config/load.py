"""Reading the TOML file: ``${ENV}`` substitution, validation, problems named by key path."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ValidationError,
)

from cdc.config.dsn import MASK, Dsn, mask_dsn
from cdc.config.models import SINK_TYPES, Config
from cdc.errors import ConfigError, ConfigProblem


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


_SECRET_KEYS = ("password", "dsn", "secret", "salt")


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
