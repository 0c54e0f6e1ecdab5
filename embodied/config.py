"""The one config style: plain dataclasses, overridden by name with type checks.

Every task, learner and adapter config is a dataclass. Users change fields with a mapping
(``{"max_torque": 1.5}``) or, on the command line, ``key=value`` strings (``lr=1e-3``,
``noise.std=0.01``). Unknown keys and wrongly typed values raise :class:`ConfigError` naming
the key, the expected type and the closest valid keys, so a typo never passes silently.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A config override names an unknown key or has a value of the wrong type."""


def _closest(name: str, options: list[str]) -> str:
    close = difflib.get_close_matches(name, options, n=3, cutoff=0.5)
    return f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def coerce(value: Any, tp: Any, key: str) -> Any:
    """Return ``value`` converted to the annotated type ``tp``, or raise ConfigError.

    Only lossless conversions are made: an int becomes a float, a list becomes a tuple, a
    string from the command line is parsed as JSON first. Anything else must already match.
    """
    if isinstance(value, str) and tp is not str and not _accepts_str(tp):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            pass
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in args:
            try:
                return coerce(value, option, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(f"config key {key!r} expects {_type_name(tp)}, got {value!r}")
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"config key {key!r} expects None, got {value!r}")
    if origin is typing.Literal:
        if value in args:
            return value
        raise ConfigError(f"config key {key!r} expects one of {list(args)}, got {value!r}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config key {key!r} expects bool, got {type(value).__name__} {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"config key {key!r} expects float, got {type(value).__name__} {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"config key {key!r} expects int, got {type(value).__name__} {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"config key {key!r} expects str, got {type(value).__name__} {value!r}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key {key!r} expects {_type_name(tp)}, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(v, args[0], key) for v in value)
        if len(value) != len(args):
            raise ConfigError(
                f"config key {key!r} expects {len(args)} values ({_type_name(tp)}), got {value!r}"
            )
        return tuple(coerce(v, a, key) for v, a in zip(value, args, strict=True))
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key {key!r} expects {_type_name(tp)}, got {value!r}")
        return [coerce(v, args[0], key) for v in value] if args else list(value)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"config key {key!r} expects {_type_name(tp)}, got {value!r}")
        kt, vt = args if args else (Any, Any)
        return {coerce(k, kt, key): coerce(v, vt, f"{key}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if isinstance(value, Mapping):
            return apply_overrides(tp(), value, prefix=f"{key}.")
        raise ConfigError(f"config key {key!r} expects a {tp.__name__} mapping, got {value!r}")
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ConfigError(f"config key {key!r} expects {_type_name(tp)}, got {value!r}")


def _accepts_str(tp: Any) -> bool:
    if tp is str or tp is Any:
        return True
    if typing.get_origin(tp) is typing.Literal:
        return any(isinstance(a, str) for a in typing.get_args(tp))
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return any(_accepts_str(a) for a in typing.get_args(tp))
    return False


def _dataclass_type(tp: Any) -> Any:
    """The dataclass in ``tp`` (``X`` or ``X | None``), or None."""
    if dataclasses.is_dataclass(tp):
        return tp
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        found = [a for a in typing.get_args(tp) if dataclasses.is_dataclass(a)]
        return found[0] if len(found) == 1 else None
    return None


def apply_overrides(cfg: T, overrides: Mapping[str, Any], prefix: str = "") -> T:
    """Return a copy of dataclass ``cfg`` with ``overrides`` applied and type-checked.

    Keys may be dotted (``"noise.std"``) to reach nested dataclasses; a nested dataclass may
    also be given as a mapping. The original ``cfg`` is never modified.
    """
    hints = typing.get_type_hints(type(cfg))
    names = [f.name for f in dataclasses.fields(cfg)]  # type: ignore[arg-type]
    nested: dict[str, dict[str, Any]] = {}
    changes: dict[str, Any] = {}
    for raw_key, value in overrides.items():
        head, _, rest = raw_key.partition(".")
        if head not in names:
            raise ConfigError(
                f"unknown config key {prefix + head!r} for {type(cfg).__name__}{_closest(head, names)};"
                f" valid keys: {', '.join(names)}"
            )
        if rest:
            if _dataclass_type(hints[head]) is None:
                raise ConfigError(f"config key {prefix + head!r} has no sub-keys (got {prefix + raw_key!r})")
            nested.setdefault(head, {})[rest] = value
        else:
            changes[head] = coerce(value, hints[head], prefix + head)
    for head, sub in nested.items():
        base = changes.get(head, getattr(cfg, head))
        if base is None:  # an optional section that is off: switch it on with its defaults
            base = _dataclass_type(hints[head])()
        changes[head] = apply_overrides(base, sub, prefix=f"{prefix}{head}.")
    return dataclasses.replace(cfg, **changes)  # type: ignore[type-var]


def parse_overrides(pairs: list[str]) -> dict[str, str]:
    """Parse command-line ``key=value`` strings into a mapping (values stay strings)."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {pair!r} is not of the form key=value")
        out[key.strip().lstrip("-").replace("-", "_")] = value
    return out


def to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-ready dict of a dataclass config (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def check_json_serialisable(mapping: Mapping[str, Any], where: str) -> None:
    """Raise ConfigError unless ``mapping`` survives a JSON round trip unchanged in shape."""
    try:
        json.dumps(mapping)
    except TypeError as err:
        raise ConfigError(f"{where}: config values must be JSON-serialisable ({err})") from None
