"""Validated dataclasses from YAML mappings: the machinery behind every card, config and options
dataclass. YAML keys equal dataclass fields; unknown keys, wrong types and bad values are collected
and reported together, with the file and the dotted key, in one :class:`ConfigError`.

A dataclass may define ``check(self, ok) -> list[str]`` for its range checks: ``ok(*keys)`` is true
when none of those keys already has a type problem (so a bad value is reported once).
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from .errors import ConfigError
from .yamlio import parse_overrides, read_yaml


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str, problems: list[str]) -> Any:
    """Check `value` against type `tp`; append problems; return the (possibly converted) value."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        sub: list[str] = []
        out = _coerce(value, inner[0], key, sub)
        problems.extend(sub)
        return out
    if origin is Literal:
        if isinstance(value, bool) and ("no" if value is False else "yes") in args:
            value = "no" if value is False else "yes"  # YAML 1.1 reads `no`/`yes` as booleans
        if value not in args:
            problems.append(f"{key}: expected one of {list(args)}, found {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            problems.append(f"{key}: expected a mapping for {tp.__name__}, found {type(value).__name__}")
            return None
        return _build(tp, value, key + ".", problems)
    if origin is list:
        if not isinstance(value, list):
            problems.append(f"{key}: expected a list, found {type(value).__name__} {value!r}")
            return []
        return [_coerce(v, args[0], f"{key}[{i}]", problems) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            problems.append(f"{key}: expected a mapping, found {type(value).__name__}")
            return {}
        return {str(k): _coerce(v, args[1], f"{key}.{k}", problems) for k, v in value.items()}
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):
        try:
            return float(value)  # YAML reads 5e-5 as a string
        except ValueError:
            pass
    if tp in (int, float, str, bool) and (not isinstance(value, tp) or (tp is int and isinstance(value, bool))):
        problems.append(f"{key}: expected {_type_name(tp)}, found {type(value).__name__} {value!r}")
    return value


def _build(cls: type, data: dict[str, Any], prefix: str, problems: list[str]) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(f"{prefix}{key}: unknown key{hint}; allowed: {sorted(fields) or 'none'}")
            continue
        kwargs[key] = _coerce(value, hints[key], prefix + key, problems)
    for name, f in fields.items():
        no_default = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if no_default and name not in kwargs:
            problems.append(f"{prefix}{name}: required key is missing")
            kwargs[name] = None  # reported; the object is still built so that range checks can run
    return cls(**kwargs)  # never escapes with problems: from_dict raises ConfigError


def _keys_of(problem: str) -> list[str]:
    """The dotted keys a problem names before its first ': ' (list indexes dropped)."""
    return [k for k in re.split(r"[ ,/]+", re.sub(r"\[\d+\]", "", problem.split(": ", 1)[0])) if k]


def _touches(keys: list[str], names: set[str]) -> bool:
    """Whether any of `keys` equals, contains or lies inside one of the dotted `names`."""
    return any(k == n or k.startswith(n + ".") or n.startswith(k + ".") for k in keys for n in names)


def _dotted(data: dict[str, Any], prefix: str = "") -> set[str]:
    """Dotted leaf keys of a nested mapping."""
    out: set[str] = set()
    for k, v in data.items():
        out |= _dotted(v, f"{prefix}{k}.") if isinstance(v, dict) and v else {f"{prefix}{k}"}
    return out


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for k, v in extra.items():
        merged[k] = _merge(merged[k], v) if isinstance(v, dict) and isinstance(merged.get(k), dict) else v
    return merged


def build(cls: type, data: Any, prefix: str = "") -> tuple[Any, list[str]]:
    """Build dataclass `cls` from the mapping `data`; return it with every problem found (keys
    prefixed with `prefix`), its own ``check`` included."""
    if not isinstance(data, dict):
        return None, [f"{prefix.rstrip('.') or 'top level'}: expected a mapping, found {type(data).__name__}"]
    problems: list[str] = []
    obj = _build(cls, data, prefix, problems)
    _check_nested(obj, problems, prefix)
    return obj, problems


def _check_nested(obj: Any, problems: list[str], prefix: str) -> None:
    """Run the ``check`` of `obj` and of the dataclasses it holds, skipping keys that already failed."""
    bad = {k.removeprefix(prefix) for p in problems for k in _keys_of(p)}

    def ok(*names: str) -> bool:
        return not _touches(list(names), bad)

    check: Callable[..., list[str]] | None = getattr(obj, "check", None)
    if check is not None:
        problems += [prefix + p for p in check(ok)]


def from_dict(cls: type, data: dict[str, Any], source: str, command_line: set[str] | None = None,
              checks: Any = None) -> Any:
    """Build and validate dataclass `cls` from `data`; raise ConfigError listing every problem.

    Args:
        cls: the dataclass.
        data: its fields as a (nested) mapping.
        source: where `data` came from, named in the error (a file, "defaults").
        command_line: dotted keys that came from ``key=value`` overrides; their problems are
            labelled as coming from the command line.
        checks: optional ``obj -> list[str]`` with more problems (e.g. the registry's checks of a
            card against its task), reported with the others.

    Raises:
        ConfigError: unknown keys, wrong types and out-of-range values, all together.
    """
    if not isinstance(data, dict):
        raise ConfigError(source, [f"expected a YAML mapping at top level, found {type(data).__name__}"])
    obj, problems = build(cls, data)
    if checks is not None and obj is not None:
        problems += checks(obj)
    if problems:
        if command_line and source == "defaults":  # the defaults are valid: every problem is an override's
            source = "command line"
        elif command_line:
            problems = [f"command line: {p}" if _touches(_keys_of(p), command_line) else p for p in problems]
            source = f"{source} (with command-line overrides)"
        raise ConfigError(source, problems)
    return obj


def load(cls: type, path: str | Path | None, overrides: list[str] | dict[str, Any] | None = None,
         checks: Any = None) -> Any:
    """Load dataclass `cls` from a YAML file (or defaults when `path` is None) plus overrides.

    The values the file (or the defaults) gave to overridden keys stay readable through
    :func:`file_values`, e.g. to tell whether an override shortened training.
    """
    data = read_yaml(path) if path is not None else {}
    extra = parse_overrides(overrides) if isinstance(overrides, list) else (overrides or {})
    source = str(path) if path else "defaults"
    obj = from_dict(cls, _merge(data, extra), source, _dotted(extra), checks)
    defaults = {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}
    obj.__dict__["_file_values"] = (source, {k: data.get(k, defaults.get(k)) for k in extra})
    return obj


def file_values(obj: Any) -> tuple[str, dict[str, Any]]:
    """Where `obj` was loaded from and the values its file (or the defaults) gave to the keys that
    ``key=value`` overrides replaced; ``("", {})`` for objects not built by :func:`load`."""
    return obj.__dict__.get("_file_values", ("", {}))


def to_dict(obj: Any) -> dict[str, Any]:
    return dataclasses.asdict(obj)
