"""Run directories: what `engine.train` writes (run.yaml with the resolved card and config, labels,
metrics, a model card README) and how a trained run is loaded back for evaluate/predict.

Layout of a run directory: ``run.yaml``, ``labels.json``, ``metrics.json``, ``README.md``, the model
(safetensors) and tokenizer files, ``checkpoints/`` while training is interrupted, ``eval_<split>.json``.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import __version__, encoders, methods
from .atomic import atomic_open, jsonable, write_json, write_text  # noqa: F401  (write_json: a public name)
from .config import TaskCard, TrainConfig, dump_yaml, file_values, from_dict, read_yaml, to_dict
from .errors import ClinicalFTError
from .taskapi import Task
from .trainer import PROGRESS_FILE

RUN_FILE = "run.yaml"
# config fields that do not change what is trained: a resumed run may differ in these
RESUME_FREE = ("logging_steps", "dataloader_num_workers", "per_device_eval_batch_size", "save_total_limit")


@dataclass
class Run:
    """A trained run directory loaded back: card, config, labels, model, tokenizer."""

    path: Path
    card: TaskCard
    cfg: TrainConfig
    labels: list[str]
    model: Any
    tokenizer: Any
    task: Any = None  # the Task that trained it (taskapi.Task): explainers call its hooks through the run


def checkpoints(out: Path) -> list[Path]:
    """The ``checkpoints/checkpoint-N`` folders of a run directory, oldest (smallest N) first."""
    folder = out / "checkpoints"
    found = [p for p in folder.glob("checkpoint-*") if p.is_dir() and p.name.rpartition("-")[2].isdigit()] \
        if folder.is_dir() else []
    return sorted(found, key=lambda p: int(p.name.rpartition("-")[2]))


def complete(ckpt: Path) -> bool:
    """Whether a checkpoint was saved whole: transformers writes trainer_state.json last, so it must
    parse, name the checkpoint's step, and the weights must be there."""
    try:
        state = json.loads((ckpt / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    weights = any((ckpt / n).is_file() for n in ("model.safetensors", "model.safetensors.index.json",
                                                 "adapter_model.safetensors", "pytorch_model.bin"))
    return weights and str(state.get("global_step")) == ckpt.name.rpartition("-")[2]


def resume_point(out: Path, set_aside_incomplete: bool = True) -> tuple[Path | None, list[str]]:
    """The latest complete checkpoint of an interrupted run (None: none, start afresh), and the
    incomplete ones (a kill during a save), which are renamed ``incomplete-checkpoint-N`` so that
    neither transformers nor a later resume takes them for checkpoints (by the main process only:
    `set_aside_incomplete` is False on the other ranks of a distributed run)."""
    latest, set_aside = None, []
    for ckpt in checkpoints(out):
        if complete(ckpt):
            latest = ckpt
        elif set_aside_incomplete:
            target = ckpt.with_name("incomplete-" + ckpt.name)
            shutil.rmtree(target, ignore_errors=True)
            ckpt.rename(target)
            set_aside.append(ckpt.name)
    return latest, set_aside


def limit_reasons(cfg: TrainConfig, n_train: tuple[int, int], n_dev: tuple[int, int]) -> list[str]:
    """Why a run is LIMITED (not comparable with full-data runs); empty for a full run.

    Args:
        cfg: the run's config; epochs are compared with the config file it was loaded from
            (config.file_values), so ``num_train_epochs=1`` on the command line counts.
        n_train: (training examples used, available).
        n_dev: (validation examples used for model selection, available).
    """
    reasons = []
    if n_train[0] < n_train[1]:
        reasons.append(f"max_train_examples={cfg.max_train_examples}: {n_train[0]} of {n_train[1]} training examples")
    if n_dev[0] < n_dev[1]:
        reasons.append(f"max_eval_examples={cfg.max_eval_examples}: model selection on {n_dev[0]} of {n_dev[1]} "
                       "validation examples")
    if cfg.max_steps > 0:
        reasons.append(f"max_steps={cfg.max_steps}")
    source, before = file_values(cfg)
    epochs = before.get("num_train_epochs")
    if isinstance(epochs, (int, float)) and not isinstance(epochs, bool) and cfg.num_train_epochs < epochs:
        reasons.append(f"num_train_epochs={cfg.num_train_epochs:g}, below {epochs:g} in {source}")
    return reasons


def progress(ckpt: Path) -> dict[str, Any]:
    """What a checkpoint says of the run up to it (trainer.PROGRESS_FILE: step, loss sum, seconds,
    resumes); a checkpoint written without one (an older clinical_ft) gives its step alone."""
    try:
        return json.loads((ckpt / PROGRESS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        state = json.loads((ckpt / "trainer_state.json").read_text(encoding="utf-8"))
        return {"step": int(state["global_step"]), "loss_sum": 0.0, "train_seconds": 0.0, "resumes": 0}


def check_resume(out: Path, card: TaskCard, cfg: TrainConfig) -> None:
    """Refuse to resume the interrupted run in `out` with another card or training config.

    Raises:
        ClinicalFTError: run.yaml differs in a training-relevant setting (all differences listed).
    """
    path = out / RUN_FILE
    if not path.is_file():
        return
    data = read_yaml(path)
    old_card = to_dict(from_dict(TaskCard, data.get("card"), f"{path} card"))
    old_cfg = to_dict(from_dict(TrainConfig, data.get("config"), f"{path} config"))
    new_card, new_cfg = to_dict(card), to_dict(cfg)
    diffs = [f"card.{k}: {old_card[k]!r} in {RUN_FILE}, now {new_card[k]!r}"
             for k in ("name", "version", "kind", "data", "labels", "columns") if old_card[k] != new_card[k]]
    diffs += [f"{k}: {old_cfg[k]!r} in {RUN_FILE}, now {new_cfg[k]!r}"
              for k in new_cfg if k not in RESUME_FREE and old_cfg[k] != new_cfg[k]]
    if diffs:
        raise ClinicalFTError(f"{out} holds an interrupted run trained with other settings; resume it with the same "
                              "card, config and overrides, or pass --overwrite to start afresh:\n"
                              + "\n".join(f"  - {d}" for d in diffs))


def save_run_file(out: Path, card: TaskCard, cfg: TrainConfig, labels: list[str]) -> None:
    data = {"clinical_ft_version": __version__, "card": to_dict(card), "config": to_dict(cfg), "labels": labels}
    header = "# Resolved card and config of this run, written by clinical_ft train. Read by evaluate/predict.\n"
    dump_yaml(data, out / RUN_FILE, header)


def write_model_card(out: Path, card: TaskCard, cfg: TrainConfig, metrics: dict[str, Any]) -> None:
    dev = metrics.get("validation", {})
    lines = [
        f"# {card.name} ({card.kind}) fine-tuned from `{cfg.encoder}`",
        "",
        f"Trained with clinical_ft {__version__} on card `{card.name}` v{card.version}: {card.description}",
        "",
        f"- training examples: {metrics['train_examples']} of {metrics['train_examples_available']}"
        + (f" (LIMITED run: {'; '.join(metrics['limited_reasons'])}; not comparable with full-data results)"
           if metrics["limited"] else ""),
        f"- epochs run: {metrics['epochs_run']:.2f}, steps: {metrics['global_steps']}, seed: {cfg.seed}",
        f"- learning rate {cfg.learning_rate}, batch {cfg.per_device_train_batch_size}, "
        f"max_length {cfg.max_length}, stride {cfg.stride}",
        f"- fine-tuning method: {methods.describe(cfg)}; trainable parameters {metrics['trainable_parameters']}",
        f"- validation: {json.dumps({k: v for k, v in dev.items() if isinstance(v, float)}, default=float)}",
        *([f"- risks: {metrics['calibration']['described']} (calibration.json)"] if "calibration" in metrics else []),
        "",
        "Intended use: research on biomedical/clinical text. Not a medical device; do not use for",
        "individual clinical decisions without local validation. Full metrics: metrics.json.",
    ]
    write_text(out / "README.md", "\n".join(lines) + "\n")


def run_card(run_dir: str | Path) -> TaskCard:
    """The card recorded in a run directory's run.yaml."""
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        raise ClinicalFTError(f"{run_dir} is not a clinical_ft run directory (no {RUN_FILE}); train one first")
    return from_dict(TaskCard, read_yaml(path)["card"], f"{path} card")


def load_run(task: Task, run_dir: str | Path, attn_implementation: str = "sdpa") -> Run:
    """Load a run directory written by `train` (model weights via safetensors)."""
    path = Path(run_dir)
    if not (path / RUN_FILE).is_file():
        raise ClinicalFTError(f"{path} is not a clinical_ft run directory (no {RUN_FILE}); train one first")
    data = read_yaml(path / RUN_FILE)
    card = from_dict(TaskCard, data["card"], str(path / RUN_FILE) + " card")
    cfg = from_dict(TrainConfig, data["config"], str(path / RUN_FILE) + " config")
    if card.kind != task.kind:
        raise ClinicalFTError(f"{path} was trained for task kind {card.kind!r}, not {task.kind!r}")
    labels = list(data["labels"])
    model = methods.restore(task.build_model(str(path), labels, cfg), path, cfg)  # prefix/prompt: + adapter/
    if attn_implementation != "sdpa":
        model.set_attn_implementation(attn_implementation)
    return Run(path, card, cfg, labels, model, encoders.load_tokenizer(str(path)), task)


def predictions_path(run_dir: str | Path, split: str) -> Path:
    """Where `evaluate` saves the per-example predictions of `split`."""
    return Path(run_dir) / f"predictions_{split}.jsonl"


def write_predictions(path: Path, predictions: list[Any]) -> None:
    """Per-example predictions as JSON lines ``{"index": i, "prediction": p}``, written atomically."""
    with atomic_open(path) as fh:
        for i, pred in enumerate(predictions):
            fh.write(json.dumps({"index": i, "prediction": pred}, default=jsonable) + "\n")


def read_predictions(path: str | Path) -> list[Any]:
    """The predictions `write_predictions` wrote, in order.

    Raises:
        ClinicalFTError: the file is missing, or a line is not such a record (naming the line).
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ClinicalFTError(f"{path}: cannot read predictions ({exc.strerror or exc})") from None
    out = []
    for ln, line in enumerate(lines, start=1):
        try:
            rec = json.loads(line)
            if rec["index"] != len(out):
                raise ValueError(f"index {rec['index']}, expected {len(out)}")
            out.append(rec["prediction"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ClinicalFTError(f"{path}:{ln}: expected {{\"index\": i, \"prediction\": ...}} in order ({exc})") from None
    return out
