"""The one training/evaluation path, on `transformers.Trainer` (with `accelerate` under it).

It knows nothing about tasks: a task (see taskapi.Task) supplies data reading, encoding, head,
collator, decoding and scoring. Multi-GPU needs no code change:
``torchrun --nproc_per_node N -m clinical_ft.ner train ...`` or ``accelerate launch -m clinical_ft.ner train ...``.
"""

from __future__ import annotations

import json
import logging
import resource
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__, encoders, leakage, methods, rundir
from .config import TaskCard, TrainConfig, file_values
from .errors import ClinicalFTError
from .rundir import RUN_FILE, Run, check_resume, load_run  # noqa: F401  (public names of engine)
from .taskapi import Encoded, Task

log = logging.getLogger("clinical_ft")


def reset_peak_memory() -> None:
    """Start a new peak-memory window, so that a run in a long process (the benchmark grid) is measured alone.

    CUDA: ``reset_peak_memory_stats``. CPU on Linux: writing 5 to ``/proc/self/clear_refs`` resets the
    resident high-water mark (VmHWM) to the current RSS; elsewhere the process-lifetime peak is kept.
    """
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
        return
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_memory_mb() -> float:
    """Peak memory since the last `reset_peak_memory`: resident memory (CPU; VmHWM on Linux, else the
    process-lifetime ``ru_maxrss``), or peak allocated GPU memory when on CUDA."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _on_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def _precision_flags(precision: str) -> dict[str, bool]:
    import torch

    if precision == "auto":
        on_gpu = _on_gpu()
        precision = "bf16" if on_gpu and torch.cuda.is_bf16_supported() else ("fp16" if on_gpu else "fp32")
    return {"bf16": precision == "bf16", "fp16": precision == "fp16"}


def training_arguments(cfg: TrainConfig, out_dir: Path, has_eval: bool, metric: str) -> Any:
    """TrainingArguments from a TrainConfig: dynamic padding happens in the collator; here the
    schedule (warmup + linear decay), length grouping, evaluation, checkpointing and seed."""
    from transformers import TrainingArguments

    evaluate = has_eval and cfg.eval_strategy != "no"
    strategy = cfg.eval_strategy if evaluate else "no"
    return TrainingArguments(
        output_dir=str(out_dir / "checkpoints"),
        learning_rate=cfg.learning_rate,
        weight_decay=cfg.weight_decay,
        warmup_steps=cfg.warmup_ratio,  # transformers 5: a float < 1 is a ratio of total steps
        lr_scheduler_type="linear",
        num_train_epochs=cfg.num_train_epochs,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        per_device_eval_batch_size=cfg.per_device_eval_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        train_sampling_strategy="group_by_length" if cfg.group_by_length else "random",
        eval_strategy=strategy,
        eval_steps=cfg.eval_steps if strategy == "steps" else None,
        save_strategy=strategy if evaluate else "epoch",
        save_steps=cfg.eval_steps if strategy == "steps" else 500,
        save_total_limit=cfg.save_total_limit,
        load_best_model_at_end=evaluate,
        metric_for_best_model=metric if evaluate else None,
        greater_is_better=True,
        logging_steps=cfg.logging_steps,
        seed=cfg.seed,
        data_seed=cfg.seed,
        dataloader_num_workers=cfg.dataloader_num_workers,
        report_to=[],
        dataloader_pin_memory=_on_gpu(),
        **_precision_flags(cfg.precision),
    )


def _trainer_class() -> type:
    from torch.utils.data import SequentialSampler
    from transformers import Trainer

    class OrderedEvalTrainer(Trainer):
        """Trainer whose evaluation keeps dataset order.

        transformers 5 also length-groups *evaluation* batches when train_sampling_strategy is
        group_by_length; task decoders pair predictions with examples by position, so evaluation
        stays sequential (distributed evaluation already is, via accelerate's sharding).
        """

        def _get_eval_sampler(self, eval_dataset: Any) -> Any:
            if eval_dataset is None:
                return None
            return SequentialSampler(eval_dataset) if self.args.world_size <= 1 else None

    return OrderedEvalTrainer


def _limit(examples: list[Any], n: int | None) -> list[Any]:
    return examples if n is None else examples[:n]


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


def _metrics_fn(task: Task, examples: list[Any], encoded: Encoded, labels: list[str]) -> Any:
    def compute(pred: Any) -> dict[str, float]:
        preds = task.decode(examples, encoded, pred.predictions, labels)
        return task.score(examples, preds, labels)

    return compute


def train(
    task: Task,
    card: TaskCard,
    cfg: TrainConfig,
    out_dir: str | Path,
    *,
    data_dir: str | Path | None = None,
    overwrite: bool = False,
    callbacks: list[Any] | None = None,
) -> dict[str, Any]:
    """Fine-tune `cfg.encoder` on `card` with `task`'s head; write a self-contained run directory.

    The run directory holds the best model (safetensors), tokenizer, ``run.yaml`` (resolved card,
    config and labels), ``labels.json``, ``metrics.json`` and a model card ``README.md``. An
    interrupted run resumes from its last checkpoint when started again with the same `out_dir`
    and the same card and training settings (see :func:`check_resume`). ``metrics.json`` marks the
    run ``limited`` (with ``limited_reasons``) when :func:`limit_reasons` finds a cut budget.

    Raises:
        ClinicalFTError: `out_dir` holds a finished run, or an interrupted one with other training
            settings, and `overwrite` is False; bad data.
    """
    from transformers import EarlyStoppingCallback, set_seed

    out = Path(out_dir)
    if (out / "metrics.json").exists() and not overwrite:
        raise ClinicalFTError(f"{out} already holds a finished run; pass --overwrite or choose another --out")
    if overwrite:  # start afresh: never resume from a stale checkpoint of an earlier run
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
    elif rundir.checkpoints(out):
        check_resume(out, card, cfg)
    set_seed(cfg.seed)
    tokenizer = encoders.load_tokenizer(cfg.encoder)  # fail fast on an unavailable encoder
    leakage.check(card, [encoders.resolve(cfg.encoder)], data_dir, missing_ok=True,  # test text in DAPT corpus?
                  texts_fn=lambda: leakage.example_texts(task.load_split(card, "test", data_dir)))
    train_ex = task.load_split(card, "train", data_dir)
    n_train_all = len(train_ex)
    train_ex = _limit(train_ex, cfg.max_train_examples)
    labels = task.label_list(card, train_ex)
    # eval_strategy "no" means no evaluation at all: the dev split is then neither read nor scored
    has_dev = ("validation" in card.data.files or card.data.dev_fraction is not None) and cfg.eval_strategy != "no"
    dev_all = task.load_split(card, "validation", data_dir) if has_dev else []
    dev_ex = _limit(dev_all, cfg.max_eval_examples)

    model = methods.apply(task.build_model(cfg.encoder, labels, cfg), cfg)  # full/partial/head_only/lora
    train_enc = task.encode(tokenizer, train_ex, cfg, labels)
    dev_enc = task.encode(tokenizer, dev_ex, cfg, labels) if dev_ex else None

    metric = task.metric_for_best_model
    args = training_arguments(cfg, out, dev_enc is not None, metric)
    cbs = list(callbacks or [])
    cbs.append(timer := methods.step_timer())
    if args.load_best_model_at_end and cfg.early_stopping_patience > 0:
        cbs.append(EarlyStoppingCallback(early_stopping_patience=cfg.early_stopping_patience))
    trainer = _trainer_class()(
        model=model,
        args=args,
        train_dataset=train_enc.dataset,
        eval_dataset=dev_enc.dataset if dev_enc else None,
        data_collator=task.collator(tokenizer),
        processing_class=tokenizer,
        compute_metrics=_metrics_fn(task, dev_ex, dev_enc, labels) if dev_enc else None,
        preprocess_logits_for_metrics=task.reduce_logits,
        callbacks=cbs,
        optimizer_cls_and_kwargs=methods.optimizer_cls_and_kwargs(model, cfg, args),  # None unless LLRD
    )
    main = trainer.is_world_process_zero()
    if main:
        out.mkdir(parents=True, exist_ok=True)
        rundir.save_run_file(out, card, cfg, labels)
    ckpts = rundir.checkpoints(out)
    if ckpts:
        log.warning("resuming from the last checkpoint in %s", out / "checkpoints")
    reset_peak_memory()
    start = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=bool(ckpts))
    wall = time.perf_counter() - start

    n_tokens = int(np.sum(train_enc.dataset["length"] if "length" in train_enc.dataset.column_names
                          else [len(x) for x in train_enc.dataset["input_ids"]]))
    epochs = float(trainer.state.epoch or 0.0)
    reasons = limit_reasons(cfg, (len(train_ex), n_train_all), (len(dev_ex), len(dev_all)))
    metrics: dict[str, Any] = {
        "task": card.name, "encoder": cfg.encoder, "clinical_ft_version": __version__,
        "train_examples": len(train_ex), "train_examples_available": n_train_all,
        "train_features": len(train_enc.dataset), "limited": bool(reasons), "limited_reasons": reasons,
        "epochs_run": epochs, "global_steps": trainer.state.global_step,
        "train_runtime_s": result.metrics.get("train_runtime", wall),
        "train_samples_per_second": result.metrics.get("train_samples_per_second"),
        "train_tokens_per_second": n_tokens * epochs / max(wall, 1e-9),
        "train_loss": result.metrics.get("train_loss"),
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "total_parameters": sum(p.numel() for p in model.parameters()),
        "peak_memory_mb": peak_memory_mb(),
        "device": str(trainer.args.device),
        "best_checkpoint_metric": trainer.state.best_metric,
        **methods.run_metrics(cfg, timer),
    }
    if dev_enc is not None:
        dev = trainer.evaluate()
        metrics["validation"] = {k.removeprefix("eval_"): v for k, v in dev.items()}
    if main:
        methods.save_model(trainer, out)  # safetensors + config with id2label (LoRA: merged, + adapter/)
        leakage.carry(encoders.resolve(cfg.encoder), out)
        tokenizer.save_pretrained(str(out))
        (out / "training_args.bin").unlink(missing_ok=True)  # a pickle; the run keeps run.yaml instead
        rundir.write_json(out / "labels.json", labels)
        rundir.write_json(out / "metrics.json", metrics)
        rundir.write_model_card(out, card, cfg, metrics)
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
    return metrics


def predict_raw(task: Task, run: Run, encoded: Encoded, batch_size: int | None = None) -> Any:
    """Run the model over `encoded.dataset` in length-sorted batches; return per-feature
    reduced predictions in the original order (padded with -100 across batches)."""
    from transformers import TrainingArguments

    ds = encoded.dataset
    if len(ds) == 0:
        return np.zeros((0,))
    lengths = np.asarray([len(x) for x in ds["input_ids"]])
    order = np.argsort(-lengths, kind="stable")
    args = TrainingArguments(
        output_dir=str(run.path / ".predict"), per_device_eval_batch_size=batch_size or run.cfg.per_device_eval_batch_size,
        report_to=[], disable_tqdm=not sys.stderr.isatty(), dataloader_pin_memory=_on_gpu(),
        **_precision_flags(run.cfg.precision),
    )
    trainer = _trainer_class()(model=run.model, args=args, data_collator=task.collator(run.tokenizer),
                      processing_class=run.tokenizer, preprocess_logits_for_metrics=task.reduce_logits)
    out = trainer.predict(ds.select(order.tolist()))
    shutil.rmtree(run.path / ".predict", ignore_errors=True)
    preds = out.predictions
    restored = np.empty_like(preds)
    restored[order] = preds
    return restored


def check_test_leakage(run: Run, split: str, examples: list[Any], data_dir: str | Path | None = None) -> None:
    """Refuse to score the test split when its text was in the pre-training corpus of the run's encoder.

    Raises:
        ClinicalFTError: `split` is test and some of `examples`' text is in that corpus (leakage.check).
    """
    if split == "test":
        leakage.check(run.card, [run.path, encoders.resolve(run.cfg.encoder)], data_dir,
                      texts_fn=lambda: leakage.example_texts(examples))


def evaluate(task: Task, run: Run, split: str, data_dir: str | Path | None = None,
             save_predictions: bool = False) -> dict[str, Any]:
    """Score `run` on a split of its card; writes ``eval_<split>.json`` into the run directory.

    With `save_predictions`, also writes ``predictions_<split>.jsonl``: one line per example, in
    the split's order, ``{"index": i, "prediction": ...}`` (e.g. for bootstrap intervals).
    """
    examples = task.load_split(run.card, split, data_dir)
    check_test_leakage(run, split, examples, data_dir)
    encoded = task.encode(run.tokenizer, examples, run.cfg, run.labels)
    start = time.perf_counter()
    preds = task.decode(examples, encoded, predict_raw(task, run, encoded), run.labels)
    metrics = task.score(examples, preds, run.labels)
    result = {"split": split, "examples": len(examples), "seconds": time.perf_counter() - start, **metrics}
    report = getattr(task, "input_report", None)  # optional task hook: what reading the split changed
    if report is not None:
        result.update(report(examples))
    if save_predictions:
        write_predictions(run.path / f"predictions_{split}.jsonl", preds)
    artifacts = getattr(task, "write_artifacts", None)  # optional task hook, e.g. a confusion-matrix PNG
    if artifacts is not None:
        result["artifacts"] = artifacts(run.path, split, examples, preds, run.labels)
    rundir.write_json(run.path / f"eval_{split}.json", result)
    return result


def _jsonable(x: Any) -> Any:
    return x.tolist() if hasattr(x, "tolist") else str(x)  # numpy scalars/arrays; anything else as text


def write_predictions(path: Path, predictions: list[Any]) -> None:
    """Per-example predictions as JSON lines ``{"index": i, "prediction": p}``, written atomically."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for i, pred in enumerate(predictions):
            fh.write(json.dumps({"index": i, "prediction": pred}, default=_jsonable) + "\n")
    tmp.replace(path)
