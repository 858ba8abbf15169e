"""Validated dataclasses for task cards (what a benchmark is) and train configs (how to train).

YAML keys equal dataclass fields. Unknown keys, wrong types and bad values are collected and
reported together, with the file and the dotted key, in one :class:`ConfigError`.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .errors import ConfigError
from .yamlio import dump_yaml, parse_overrides, read_yaml  # noqa: F401  (public names of config)

TASK_KINDS = ("ner", "relation", "qa", "readmission", "doc_classification")


@dataclass
class DataSpec:
    """Where a benchmark's data lives. `files` maps split name (train/validation/test) to a file."""

    format: str
    path: str = ""
    files: dict[str, str] = field(default_factory=dict)
    hf_dataset: str | None = None
    hf_config: str | None = None
    dev_fraction: float | None = None  # carve validation from train when the release has none
    split_seed: int = 13


@dataclass
class Reference:
    """A published score for this benchmark, shown beside ours in tables."""

    model: str
    score: float
    source: str
    metric: str = ""


@dataclass
class TaskCard:
    """A public benchmark: data, columns, labels, splits, metric, published reference scores."""

    name: str
    version: int
    kind: Literal["ner", "relation", "qa", "readmission", "doc_classification"]
    data: DataSpec
    metric: str
    description: str = ""
    labels: list[str] = field(default_factory=list)
    columns: dict[str, str] = field(default_factory=dict)
    references: list[Reference] = field(default_factory=list)


@dataclass
class TrainConfig:
    """How to train: encoder, windowing, optimisation, evaluation, budget."""

    encoder: str = "minilm"
    max_length: int = 128  # tokens per window, special tokens included
    stride: int = 32  # tokens shared by consecutive windows
    learning_rate: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    num_train_epochs: float = 3.0
    max_steps: int = -1
    per_device_train_batch_size: int = 32
    per_device_eval_batch_size: int = 64
    gradient_accumulation_steps: int = 1
    group_by_length: bool = True
    eval_strategy: Literal["epoch", "steps", "no"] = "epoch"
    eval_steps: int = 500
    early_stopping_patience: int = 2  # evaluations without improvement; 0 disables
    seed: int = 42
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto: bf16 on capable GPUs, fp32 on CPU
    max_train_examples: int | None = None  # budget for CPU users; recorded in metrics
    max_eval_examples: int | None = None
    logging_steps: int = 50
    save_total_limit: int = 2
    dataloader_num_workers: int = 0
    aggregation: Literal["clinicalbert", "max", "mean"] = "clinicalbert"
    aggregation_c: float = 2.0
    task_options: dict[str, Any] = field(default_factory=dict)  # validated by the task module
    # fine-tuning method (clinical_ft/methods.py): full, partial (freeze_embeddings/freeze_layers),
    # head_only (encoder frozen), lora (peft adapters, merged into the saved model)
    method: Literal["full", "partial", "head_only", "lora"] = "full"
    freeze_embeddings: bool = False  # method=partial only
    freeze_layers: int = 0  # method=partial: freeze encoder layers 0..N-1 (bottom N)
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.1
    lora_target_modules: list[str] = field(default_factory=lambda: ["query", "value"])
    layerwise_lr_decay: float | None = None  # LLRD: layer l gets lr * decay**(depth above l); head gets lr


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
            close = [n for n in fields if n.startswith(str(key)[:3])]
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(f"{prefix}{key}: unknown key{hint}; allowed: {sorted(fields)}")
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


def _check_values(obj: Any, problems: list[str]) -> None:
    """Range checks. A check is skipped only when one of its own keys already has a problem."""
    bad = {k for p in problems for k in _keys_of(p)}

    def ok(*names: str) -> bool:
        return not _touches(list(names), bad)

    if isinstance(obj, TrainConfig):
        for name in ("max_length", "per_device_train_batch_size", "per_device_eval_batch_size",
                     "gradient_accumulation_steps", "logging_steps", "eval_steps"):
            if ok(name) and getattr(obj, name) <= 0:
                problems.append(f"{name}: expected a positive integer, found {getattr(obj, name)}")
        if ok("stride", "max_length") and not 0 <= obj.stride < obj.max_length // 2:
            problems.append(f"stride: expected 0 <= stride < max_length/2 ({obj.max_length // 2}), found {obj.stride}")
        if ok("warmup_ratio") and not 0.0 <= obj.warmup_ratio < 1.0:
            problems.append(f"warmup_ratio: expected a value in [0, 1), found {obj.warmup_ratio}")
        if ok("learning_rate") and obj.learning_rate <= 0:
            problems.append(f"learning_rate: expected > 0, found {obj.learning_rate}")
        if ok("aggregation_c") and obj.aggregation_c <= 0:
            problems.append(f"aggregation_c: expected > 0, found {obj.aggregation_c}")
        _check_method(obj, problems, ok)
    if isinstance(obj, TaskCard):
        if ok("version") and obj.version < 1:
            problems.append(f"version: expected an integer >= 1, found {obj.version}")
        if ok("data.files") and obj.data and not obj.data.files:
            hub = f" (e.g. `{obj.data.hf_dataset}`)" if ok("data.hf_dataset") and obj.data.hf_dataset else ""
            problems.append(f"data.files: expected split -> file (train, validation, test); no hub loader exists: "
                            f"download the dataset{hub} and point `files` (and `path`) at the local files")
        frac = obj.data.dev_fraction if obj.data and ok("data.dev_fraction") else None
        if frac is not None and not 0 < frac < 1:
            problems.append(f"data.dev_fraction: expected a value in (0, 1), found {frac}")


def _check_method(cfg: TrainConfig, problems: list[str], ok: Any) -> None:
    """Ranges and combinations of the fine-tuning method fields (see clinical_ft/methods.py)."""
    if ok("freeze_layers") and cfg.freeze_layers < 0:
        problems.append(f"freeze_layers: expected an integer >= 0, found {cfg.freeze_layers}")
    if ok("method", "freeze_layers", "freeze_embeddings"):
        if cfg.method == "partial" and cfg.freeze_layers == 0 and not cfg.freeze_embeddings:
            problems.append("method: partial freezes nothing; set freeze_layers > 0 and/or freeze_embeddings: true")
        if cfg.method != "partial" and (cfg.freeze_layers or cfg.freeze_embeddings):
            problems.append(f"freeze_layers/freeze_embeddings: only used with method: partial, found method: {cfg.method}")
    if ok("lora_r", "lora_alpha") and (cfg.lora_r <= 0 or cfg.lora_alpha <= 0):
        problems.append(f"lora_r, lora_alpha: expected positive integers, found {cfg.lora_r}, {cfg.lora_alpha}")
    if ok("lora_dropout") and not 0.0 <= cfg.lora_dropout < 1.0:
        problems.append(f"lora_dropout: expected a value in [0, 1), found {cfg.lora_dropout}")
    if ok("lora_target_modules") and not cfg.lora_target_modules:
        problems.append("lora_target_modules: expected module names such as [query, value], found an empty list")
    if ok("layerwise_lr_decay") and cfg.layerwise_lr_decay is not None and not 0.0 < cfg.layerwise_lr_decay <= 1.0:
        problems.append(f"layerwise_lr_decay: expected a value in (0, 1] or null, found {cfg.layerwise_lr_decay}")


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


def from_dict(cls: type, data: dict[str, Any], source: str, command_line: set[str] | None = None) -> Any:
    """Build and validate dataclass `cls` from `data`; raise ConfigError listing every problem.

    Args:
        cls: the dataclass.
        data: its fields as a (nested) mapping.
        source: where `data` came from, named in the error (a file, "defaults").
        command_line: dotted keys that came from ``key=value`` overrides; their problems are
            labelled as coming from the command line.

    Raises:
        ConfigError: unknown keys, wrong types and out-of-range values, all together.
    """
    if not isinstance(data, dict):
        raise ConfigError(source, [f"expected a YAML mapping at top level, found {type(data).__name__}"])
    problems: list[str] = []
    obj = _build(cls, data, "", problems)
    _check_values(obj, problems)
    if problems:
        if command_line and source == "defaults":  # the defaults are valid: every problem is an override's
            source = "command line"
        elif command_line:
            problems = [f"command line: {p}" if _touches(_keys_of(p), command_line) else p for p in problems]
            source = f"{source} (with command-line overrides)"
        raise ConfigError(source, problems)
    return obj


def load(cls: type, path: str | Path | None, overrides: list[str] | dict[str, Any] | None = None) -> Any:
    """Load dataclass `cls` from a YAML file (or defaults when `path` is None) plus overrides.

    The values the file (or the defaults) gave to overridden keys stay readable through
    :func:`file_values`, e.g. to tell whether an override shortened training.
    """
    data = read_yaml(path) if path is not None else {}
    extra = parse_overrides(overrides) if isinstance(overrides, list) else (overrides or {})
    source = str(path) if path else "defaults"
    obj = from_dict(cls, _merge(data, extra), source, _dotted(extra))
    defaults = {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}
    obj.__dict__["_file_values"] = (source, {k: data.get(k, defaults.get(k)) for k in extra})
    return obj


def file_values(obj: Any) -> tuple[str, dict[str, Any]]:
    """Where `obj` was loaded from and the values its file (or the defaults) gave to the keys that
    ``key=value`` overrides replaced; ``("", {})`` for objects not built by :func:`load`."""
    return obj.__dict__.get("_file_values", ("", {}))


def to_dict(obj: Any) -> dict[str, Any]:
    return dataclasses.asdict(obj)
