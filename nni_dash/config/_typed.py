"""Typed-dict machinery behind :mod:`nni_dash.config`: YAML loading, type coercion, dotted paths, checks."""
from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from typing import Any, Union

import yaml

from nni_dash.errors import ConfigError

__all__ = ["yaml_load", "parse_override", "build", "set_path", "one_of", "check_range"]


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads ``1e-3`` as a string; accept it (and ``1E5``, ``.5``) as a float."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                  |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                  |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                  |[-+]?\.(?:inf|Inf|INF)
                  |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


def yaml_load(text: str) -> Any:
    """``yaml.safe_load`` with scientific-notation floats."""
    return yaml.load(text, Loader=_Loader)


def parse_override(text: str) -> tuple[str, Any]:
    """``"search.epochs=3"`` -> ``("search.epochs", 3)`` (the value is parsed as YAML)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {text!r}: expected key.sub=value (e.g. search.epochs=3)")
    try:
        return key, yaml_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        return key, raw


def set_path(data: dict[str, Any], dotted: str, value: Any, cls: type) -> None:
    parts = dotted.split(".")
    node, node_cls = data, cls  # node_cls: the dataclass describing `node`, None inside free-form dicts
    for i, part in enumerate(parts):
        here = ".".join(parts[:i + 1])
        if node_cls is not None:
            fields = {f.name: f for f in dataclasses.fields(node_cls)}
            if part not in fields:
                raise ConfigError(_unknown_key(here, node_cls))
            hint = typing.get_type_hints(node_cls)[part]
            next_cls = hint if dataclasses.is_dataclass(hint) else None
        else:
            next_cls = None
        if i == len(parts) - 1:
            node[part] = value
            return
        if not isinstance(node.get(part), dict):
            if node_cls is not None and next_cls is None and not _is_mapping(hint):
                raise ConfigError(f"{here}: is a value, not a section; cannot set {dotted!r}")
            node[part] = {}
        node, node_cls = node[part], next_cls


def _is_mapping(hint: Any) -> bool:
    """True for ``dict[...]`` and ``dict[...] | None`` (a section that may be unset)."""
    if typing.get_origin(hint) is dict:
        return True
    return any(typing.get_origin(arg) is dict for arg in typing.get_args(hint) if arg is not type(None))


def _unknown_key(path: str, cls: type) -> str:
    parent = path.rpartition(".")[0]
    allowed = ", ".join(f.name for f in dataclasses.fields(cls))
    return f"{path}: unknown key; allowed keys{' in ' + parent if parent else ''}: {allowed}"


def build(cls: type, data: Any, path: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{path or 'config'}: expected a mapping of keys, got {type(data).__name__} {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        name = str(key) if isinstance(key, str) and key.isidentifier() else repr(key)  # a YAML key can be anything
        here = f"{path}.{name}" if path else name
        if key not in names:
            raise ConfigError(_unknown_key(here, cls))
        kwargs[key] = _coerce(value, hints[key], here)
    return cls(**kwargs)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is not None:
        return f"{origin.__name__}[{', '.join(_type_name(a) for a in typing.get_args(tp))}]"
    return "any" if tp is Any else getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, path: str) -> Any:
    """``value`` checked against the annotation ``tp`` (ints are accepted as floats)."""
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        return build(tp, {} if value is None else value, path)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        for arg in args:
            try:
                return _coerce(value, arg, path)
            except ConfigError:
                continue
    elif origin is list:
        if isinstance(value, (list, tuple)):
            return [_coerce(v, args[0], f"{path}[{i}]") for i, v in enumerate(value)]
    elif origin is dict:
        if isinstance(value, dict) and all(isinstance(k, str) for k in value):
            return {k: _coerce(v, args[1], f"{path}.{k}") for k, v in value.items()}
        if value is None:
            return {}
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(value, tp):
        return value
    raise ConfigError(f"{path}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}")


def one_of(key: str, value: Any, allowed: Any, what: str = "value") -> None:
    if value not in allowed:
        raise ConfigError(f"{key}: unknown {what} {value!r}; allowed: {', '.join(map(str, allowed))}")


def check_range(key: str, value: float, *, low: float, high: float | None = None, strict: bool = False,
                 strict_high: bool = False) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key}={value!r}: must be a finite number")
    bad_low = value <= low if strict else value < low
    bad_high = high is not None and (value >= high if strict_high else value > high)
    if bad_low or bad_high:
        lo = f"> {low}" if strict else f">= {low}"
        hi = "" if high is None else (f" and < {high}" if strict_high else f" and <= {high}")
        raise ConfigError(f"{key}={value!r}: must be {lo}{hi}")
