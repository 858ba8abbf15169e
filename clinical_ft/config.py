"""Task cards (what a benchmark is) and train configs (how to train): validated dataclasses.

YAML keys equal dataclass fields. Unknown keys, wrong types and bad values are collected and
reported together, with the file and the dotted key, in one :class:`ConfigError` (schema.py);
each class's ``check`` holds its range checks.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from .schema import build, file_values, from_dict, load, to_dict  # noqa: F401  (public names of config)
from .yamlio import dump_yaml, parse_overrides, read_yaml  # noqa: F401  (public names of config)

Ok = Callable[..., bool]  # ok(*keys): none of the keys already has a problem

TASK_KINDS = ("ner", "relation", "qa", "readmission")  # registry.py maps each to its Task
IA3_DEFAULT_TARGETS = ("key", "value", "output.dense")  # method=ia3 without ia3_target_modules (peft's BERT mapping)
IA3_DEFAULT_FEEDFORWARD = ("output.dense",)  # ... and without ia3_feedforward_modules: those scale their input


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
    """A public benchmark: data, columns, labels, splits, metric, published reference scores.

    `metric` is the key of the task's scores that the benchmark is judged by (``f1``, ``mrr``,
    ``auroc``, ...): test tables report it and model selection maximises it on validation.
    `files` roles are train/validation/test plus the roles the task declares; the registry checks
    roles, format, columns and metric against the card's task when a card is loaded.
    """

    name: str
    version: int
    kind: Literal["ner", "relation", "qa", "readmission"]
    data: DataSpec
    metric: str
    description: str = ""
    labels: list[str] = field(default_factory=list)
    columns: dict[str, str] = field(default_factory=dict)
    references: list[Reference] = field(default_factory=list)

    def check(self, ok: Ok) -> list[str]:
        problems = []
        if ok("version") and self.version < 1:
            problems.append(f"version: expected an integer >= 1, found {self.version}")
        if ok("data.files") and self.data and not self.data.files:
            hub = f" (e.g. `{self.data.hf_dataset}`)" if ok("data.hf_dataset") and self.data.hf_dataset else ""
            problems.append(f"data.files: expected split -> file (train, validation, test); no hub loader exists: "
                            f"download the dataset{hub} and point `files` (and `path`) at the local files")
        frac = self.data.dev_fraction if self.data and ok("data.dev_fraction") else None
        if frac is not None and not 0 < frac < 1:
            problems.append(f"data.dev_fraction: expected a value in (0, 1), found {frac}")
        return problems


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
    # train batches of up to this many padded tokens (length-grouped; replaces the sentence count
    # above): equal work per step, bounded memory (clinical_ft/batching.py). Null: batches of sentences
    batch_tokens: int | None = None
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
    # fine-tuning method (clinical_ft/methods/): full, partial (freeze_embeddings/freeze_layers),
    # head_only (encoder frozen), bitfit (biases + head), lora/ia3/qlora (peft, merged into the saved
    # model; qlora CUDA only), prefix/prompt (peft virtual tokens, saved beside the model)
    method: Literal["full", "partial", "head_only", "bitfit", "lora", "ia3", "qlora", "prefix", "prompt"] = "full"
    freeze_embeddings: bool = False  # method=partial only
    freeze_layers: int = 0  # method=partial: freeze encoder layers 0..N-1 (bottom N)
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.1
    lora_target_modules: list[str] = field(default_factory=lambda: ["query", "value"])
    ia3_target_modules: list[str] | None = None  # method=ia3; null: key, value, output.dense (peft's BERT default)
    ia3_feedforward_modules: list[str] | None = None  # method=ia3: targets scaled on their input; null: output.dense
    num_virtual_tokens: int | None = None  # method=prefix/prompt; null: 20
    layerwise_lr_decay: float | None = None  # LLRD: layer l gets lr * decay**(depth above l); head gets lr
    # dropout on the attention probabilities while training; null keeps the encoder's own (BERT: 0.1).
    # 0 lets SDPA run its fused attention kernel in training too (faster on CPU; methods.set_attention_dropout)
    attention_dropout: float | None = None
    hidden_dropout: float | None = None  # dropout on the encoder's hidden states while training; null: the encoder's

    def check(self, ok: Ok) -> list[str]:
        """Ranges, and combinations of the fine-tuning method fields (see clinical_ft/methods/)."""
        problems = []
        floats = ("learning_rate", "weight_decay", "warmup_ratio", "num_train_epochs", "aggregation_c", "lora_dropout",
                  "layerwise_lr_decay", "attention_dropout", "hidden_dropout")
        for name in floats:  # NaN passes every comparison below: reject non-finite numbers first
            value = getattr(self, name)
            if ok(name) and isinstance(value, float) and not math.isfinite(value):
                problems.append(f"{name}: expected a finite number, found {value}")
                ok = _without(ok, name)
        for name in ("max_length", "per_device_train_batch_size", "per_device_eval_batch_size",
                     "gradient_accumulation_steps", "logging_steps", "eval_steps", "save_total_limit"):
            if ok(name) and getattr(self, name) <= 0:
                problems.append(f"{name}: expected a positive integer, found {getattr(self, name)}")
        if ok("batch_tokens", "max_length") and self.batch_tokens is not None and self.batch_tokens < self.max_length:
            problems.append(f"batch_tokens: expected null or an integer >= max_length ({self.max_length}), so that "
                            f"any window fits a batch, found {self.batch_tokens}")
        for name in ("max_train_examples", "max_eval_examples"):
            if ok(name) and getattr(self, name) is not None and getattr(self, name) <= 0:
                problems.append(f"{name}: expected a positive integer or null, found {getattr(self, name)}")
        for name in ("early_stopping_patience", "seed", "dataloader_num_workers"):
            if ok(name) and getattr(self, name) < 0:
                problems.append(f"{name}: expected an integer >= 0, found {getattr(self, name)}")
        if ok("max_steps") and (self.max_steps == 0 or self.max_steps < -1):
            problems.append(f"max_steps: expected a positive number of steps, or -1 for num_train_epochs, found {self.max_steps}")
        if ok("num_train_epochs", "max_steps") and self.max_steps == -1 and self.num_train_epochs <= 0:
            problems.append(f"num_train_epochs: expected > 0 (or set max_steps), found {self.num_train_epochs:g}")
        if ok("weight_decay") and self.weight_decay < 0:
            problems.append(f"weight_decay: expected >= 0, found {self.weight_decay}")
        if ok("stride", "max_length") and not 0 <= self.stride < self.max_length // 2:
            problems.append(f"stride: expected 0 <= stride < max_length/2 ({self.max_length // 2}), found {self.stride}")
        if ok("warmup_ratio") and not 0.0 <= self.warmup_ratio < 1.0:
            problems.append(f"warmup_ratio: expected a value in [0, 1), found {self.warmup_ratio}")
        if ok("learning_rate") and self.learning_rate <= 0:
            problems.append(f"learning_rate: expected > 0, found {self.learning_rate}")
        if ok("aggregation_c") and self.aggregation_c <= 0:
            problems.append(f"aggregation_c: expected > 0, found {self.aggregation_c}")
        if ok("freeze_layers") and self.freeze_layers < 0:
            problems.append(f"freeze_layers: expected an integer >= 0, found {self.freeze_layers}")
        if ok("method", "freeze_layers", "freeze_embeddings"):
            if self.method == "partial" and self.freeze_layers == 0 and not self.freeze_embeddings:
                problems.append("method: partial freezes nothing; set freeze_layers > 0 and/or freeze_embeddings: true")
            if self.method != "partial" and (self.freeze_layers or self.freeze_embeddings):
                problems.append(f"freeze_layers/freeze_embeddings: only used with method: partial, found method: {self.method}")
        if ok("lora_r", "lora_alpha") and (self.lora_r <= 0 or self.lora_alpha <= 0):
            problems.append(f"lora_r, lora_alpha: expected positive integers, found {self.lora_r}, {self.lora_alpha}")
        if ok("lora_dropout") and not 0.0 <= self.lora_dropout < 1.0:
            problems.append(f"lora_dropout: expected a value in [0, 1), found {self.lora_dropout}")
        if ok("lora_target_modules") and not self.lora_target_modules:
            problems.append("lora_target_modules: expected module names such as [query, value], found an empty list")
        problems += self._check_method_options(ok)
        for name in ("attention_dropout", "hidden_dropout"):
            if ok(name) and getattr(self, name) is not None and not 0.0 <= getattr(self, name) < 1.0:
                problems.append(f"{name}: expected a value in [0, 1) or null, found {getattr(self, name)}")
        if ok("layerwise_lr_decay") and self.layerwise_lr_decay is not None and not 0.0 < self.layerwise_lr_decay <= 1.0:
            problems.append(f"layerwise_lr_decay: expected a value in (0, 1] or null, found {self.layerwise_lr_decay}")
        return problems


    def _check_method_options(self, ok: Ok) -> list[str]:
        """Options of ia3 and prefix/prompt: ranges, and set only with their method."""
        problems = []
        uses = {"num_virtual_tokens": ("prefix", "prompt"), "ia3_target_modules": ("ia3",),
                "ia3_feedforward_modules": ("ia3",)}
        for key, owners in uses.items():
            if ok("method", key) and getattr(self, key) is not None and self.method not in owners:
                problems.append(f"{key}: only used with method: {' or '.join(owners)}, found method: {self.method}")
        if ok("num_virtual_tokens") and self.num_virtual_tokens is not None and self.num_virtual_tokens <= 0:
            problems.append(f"num_virtual_tokens: expected a positive integer, found {self.num_virtual_tokens}")
        if ok("ia3_target_modules") and self.ia3_target_modules is not None and not self.ia3_target_modules:
            problems.append("ia3_target_modules: expected module names such as [key, value, output.dense], found an empty list")
        targets = self.ia3_target_modules or list(IA3_DEFAULT_TARGETS)
        extra = [m for m in self.ia3_feedforward_modules or [] if m not in targets]
        if ok("ia3_target_modules", "ia3_feedforward_modules") and extra:
            problems.append(f"ia3_feedforward_modules: {extra} are not in ia3_target_modules {targets}")
        return problems


def _without(ok: Ok, bad: str) -> Ok:
    """`ok` that also refuses `bad` (a key already reported)."""
    return lambda *names: bad not in names and ok(*names)
