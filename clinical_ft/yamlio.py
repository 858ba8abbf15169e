"""YAML in and out for cards, configs and run files: a safe loader that refuses duplicate keys and
names the file, line and byte of every problem; ``key=value`` command-line overrides; writing.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from .atomic import write_text
from .errors import ConfigError


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """Turn ``["learning_rate=3e-5", "task_options.pooling=entity_start"]`` into a nested dict.

    Raises:
        ConfigError: (source "command line") every item that is not ``key=value``, whose value is
            not valid YAML, or that sets a key both to a value and to a mapping (``a=1 a.b=2``).
    """
    out: dict[str, Any] = {}
    problems: list[str] = []
    for item in items:
        key, sep, raw = item.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(parts):
            problems.append(f"{item!r}: expected key=value (dotted keys for nested fields, e.g. task_options.pooling=cls)")
            continue
        try:  # YAML typing (numbers, lists, true/false), but yes/no/on/off stay strings
            value = raw if raw.lower() in ("yes", "no", "on", "off", "y", "n", "") else yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            problems.append(f"{item!r}: the value is not valid YAML ({str(exc).splitlines()[0]})")
            continue
        node = out
        for i, part in enumerate(parts[:-1]):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                problems.append(f"{item!r}: {'.'.join(parts[:i + 1])} was set to {node!r} by an earlier override; "
                                "expected a mapping")
                break
        else:
            if isinstance(node.get(parts[-1]), dict) and not isinstance(value, dict):
                problems.append(f"{item!r}: an earlier override set keys inside {key.strip()}; expected a mapping")
            else:
                node[parts[-1]] = value
    if problems:
        raise ConfigError("command line", problems)
    return out


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that records duplicate mapping keys (PyYAML keeps the last one silently)."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self.duplicates: list[str] = []

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True) if isinstance(key_node, yaml.ScalarNode) else id(key_node)
            line = key_node.start_mark.line + 1
            if key in seen:
                self.duplicates.append(f"line {line}: duplicate key {key!r} (first at line {seen[key]}); "
                                       "expected each key once")
            seen.setdefault(key, line)
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Parse a UTF-8 YAML file (safe loader; duplicate keys are errors).

    Raises:
        ConfigError: the file is missing, not UTF-8, not valid YAML, or repeats a key.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
        text = raw.decode("utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(str(path), ["file not found"]) from None
    except OSError as exc:
        raise ConfigError(str(path), [f"not readable: {exc}"]) from None
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(str(path), [f"expected UTF-8 text; found byte 0x{raw[exc.start]:02x} at offset "
                                      f"{exc.start} (line {line})"]) from None
    loader = _UniqueKeyLoader(text)
    try:
        data = loader.get_single_data()
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), [f"not valid YAML: {exc}"]) from None
    finally:
        loader.dispose()
    if loader.duplicates:
        raise ConfigError(str(path), loader.duplicates)
    return data if data is not None else {}


def dump_yaml(obj: Any, path: str | Path, header: str = "") -> None:
    """Write a dataclass or mapping as YAML (after the comment `header`), atomically."""
    text = yaml.safe_dump(dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else obj, sort_keys=False)
    write_text(path, header + text)
