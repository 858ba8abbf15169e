"""The one training/evaluation path, on `transformers.Trainer` (with `accelerate` under it).

It knows nothing about tasks: a task (see taskapi.Task) supplies data reading, encoding, head,
collator, decoding and scoring. Multi-GPU needs no code change:
``torchrun --nproc_per_node N -m clinical_ft.ner train ...`` or ``accelerate launch -m clinical_ft.ner train ...``.
"""

from __future__ import annotations

import logging
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__, distributed, encoders, leakage, methods, rundir
from .atomic import write_json
from .batching import feature_lengths
from .config import TaskCard, TrainConfig
from .errors import ClinicalFTError
from .rundir import (  # noqa: F401  (public names of engine)
    RUN_FILE,
    Run,
    check_resume,
    limit_reasons,
    load_run,
    predictions_path,
    read_predictions,
    write_predictions,
)
from .taskapi import Encoded, Task, input_name, selection_metric
from .trainer import (
    is_main_process,
    on_gpu,
    peak_memory_mb,
    precision_flags,
    reset_peak_memory,
    trainer_class,
    training_arguments,
)

log = logging.getLogger("clinical_ft")


def _limit(examples: list[Any], n: int | None) -> list[Any]:
    return examples if n is None else examples[:n]


def length_order(dataset: Any) -> np.ndarray:
    """Feature indices longest first (stable): batches of similar length pad little."""
    return np.argsort(-np.asarray(feature_lengths(dataset)), kind="stable")


def restore_order(predictions: Any, order: np.ndarray) -> Any:
    """Undo `order`: row k of `predictions` (an array, or a tuple of arrays) belongs to feature ``order[k]``."""
    if isinstance(predictions, tuple | list):
        return type(predictions)(restore_order(p, order) for p in predictions)
    restored = np.empty_like(predictions)
    restored[order] = predictions
    return restored


def _metrics_fn(task: Task, examples: list[Any], encoded: Encoded, labels: list[str], cfg: TrainConfig,
                kept: dict[str, Any], order: np.ndarray) -> Any:
    """compute_metrics of the dev split, evaluated in length `order` (predictions are put back in
    feature order before decoding); keeps the decoded predictions of the best evaluation so far
    and of the latest one in `kept` (by global step), for `fit_after_training`."""
    def compute(pred: Any) -> dict[str, float]:
        preds = task.decode(examples, encoded, restore_order(pred.predictions, order), labels, cfg)
        state = kept["trainer"].state
        kept["by_step"] = {s: p for s, p in kept.get("by_step", {}).items() if s == state.best_global_step}
        kept["by_step"][state.global_step] = preds
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
    # rank 0 sets incomplete checkpoints aside; every rank gets its answer (or its error: no rank waits forever)
    resume_from, set_aside = distributed.on_main_first(lambda: rundir.resume_point(out, True))
    if is_main_process():  # said once per job
        for name in set_aside:
            log.warning("%s: %s was not saved whole (interrupted during the save): set aside as incomplete-%s",
                        out / "checkpoints", name, name)
        if set_aside and resume_from is None:
            log.warning("no complete checkpoint is left: training starts afresh")
    methods.preflight(cfg)  # e.g. qlora without a GPU: refused before anything loads
    set_seed(cfg.seed)
    tokenizer = encoders.load_tokenizer(cfg.encoder)  # fail fast on an unavailable encoder
    distributed.on_main_first(lambda: leakage.check(  # test text in the DAPT corpus? once per job, every rank told
        card, [encoders.resolve(cfg.encoder)], data_dir, missing_ok=True,
        texts_fn=lambda: leakage.example_texts(task.load_split(card, "test", data_dir))))
    train_ex = task.load_split(card, "train", data_dir)
    n_train_all = len(train_ex)
    train_ex = _limit(train_ex, cfg.max_train_examples)
    labels = task.label_list(card, train_ex)
    # eval_strategy "no" means no evaluation at all: the dev split is then neither read nor scored
    has_dev = ("validation" in card.data.files or card.data.dev_fraction is not None) and cfg.eval_strategy != "no"
    dev_all = task.load_split(card, "validation", data_dir) if has_dev else []
    dev_ex = _limit(dev_all, cfg.max_eval_examples)
    reasons = limit_reasons(cfg, (len(train_ex), n_train_all), (len(dev_ex), len(dev_all)))
    if reasons:
        log.warning("LIMITED run (not comparable with full-data results): %s", "; ".join(reasons))

    with methods.loading(cfg):  # qlora: 4-bit weights
        model = methods.apply(task.build_model(cfg.encoder, labels, cfg), cfg)  # see clinical_ft/methods/
    train_enc = task.encode(tokenizer, train_ex, cfg, labels)
    dev_enc = task.encode(tokenizer, dev_ex, cfg, labels) if dev_ex else None

    metric = selection_metric(task, card)
    args = training_arguments(cfg, out, dev_enc is not None, metric)
    cbs = list(callbacks or [])
    cbs.append(timer := methods.step_timer())
    if args.load_best_model_at_end and cfg.early_stopping_patience > 0:
        cbs.append(EarlyStoppingCallback(early_stopping_patience=cfg.early_stopping_patience))
    kept: dict[str, Any] = {}
    dev_order = length_order(dev_enc.dataset) if dev_enc else None  # dev batches of similar length: less padding
    trainer = trainer_class()(
        model=model,
        args=args,
        train_dataset=train_enc.dataset,
        eval_dataset=dev_enc.dataset.select(dev_order.tolist()) if dev_enc else None,
        data_collator=task.collator(tokenizer),
        processing_class=tokenizer,
        compute_metrics=_metrics_fn(task, dev_ex, dev_enc, labels, cfg, kept, dev_order) if dev_enc else None,
        preprocess_logits_for_metrics=task.reduce_logits,
        callbacks=cbs,
        optimizer_cls_and_kwargs=methods.optimizer_cls_and_kwargs(model, cfg, args),  # None unless LLRD
    )
    kept["trainer"] = trainer
    trainer.batch_tokens = cfg.batch_tokens
    main = trainer.is_world_process_zero()
    if main:
        out.mkdir(parents=True, exist_ok=True)
        rundir.save_run_file(out, card, cfg, labels)
    if resume_from is not None:
        trainer.prior = rundir.progress(resume_from)
        log.warning("resuming from %s (step %d)", resume_from, trainer.prior["step"])
    reset_peak_memory()
    trainer.started = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    whole = trainer.progress(finished=True)  # the whole run, across every resume

    n_tokens = int(np.sum(train_enc.dataset["length"] if "length" in train_enc.dataset.column_names
                          else [len(x) for x in train_enc.dataset["input_ids"]]))
    epochs = float(trainer.state.epoch or 0.0)
    seconds = max(whole["train_seconds"], 1e-9)
    metrics: dict[str, Any] = {
        "task": card.name, "encoder": cfg.encoder, "clinical_ft_version": __version__,
        "train_examples": len(train_ex), "train_examples_available": n_train_all,
        "train_features": len(train_enc.dataset), "limited": bool(reasons), "limited_reasons": reasons,
        "epochs_run": epochs, "global_steps": trainer.state.global_step,
        "resumed": resume_from is not None, "resumes": whole["resumes"],
        "resumed_from_step": trainer.prior.get("step") if resume_from else None,
        "train_runtime_s": whole["train_seconds"],  # over every process that trained this run
        "train_samples_per_second": len(train_enc.dataset) * epochs / seconds,
        "train_tokens_per_second": n_tokens * epochs / seconds,
        "train_loss": whole["loss_sum"] / max(trainer.state.global_step, 1),  # mean over every step
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "total_parameters": sum(p.numel() for p in model.parameters()),
        "peak_memory_mb": peak_memory_mb(),
        "device": str(trainer.args.device),
        "best_checkpoint_metric": trainer.state.best_metric,
        **methods.run_metrics(cfg, timer),
    }
    if dev_enc is not None:  # the scores of the model kept (the best checkpoint), as evaluated during training
        dev = best_evaluation(trainer.state.log_history, trainer.state.best_global_step, metric) or trainer.evaluate()
        metrics["validation"] = {k.removeprefix("eval_"): v for k, v in dev.items()}
    if dev_enc is not None:  # e.g. calibration on the validation admissions
        dev_preds = kept.get("by_step", {}).get(trainer.state.best_global_step)
        if dev_preds is None:  # evaluated before a resume: predict the dev split once (every rank takes part)
            raw = restore_order(trainer.predict(trainer.eval_dataset).predictions, dev_order)
            dev_preds = task.decode(dev_ex, dev_enc, raw, labels, cfg)
        if main:
            metrics.update(task.fit_after_training(out, dev_ex, dev_preds, cfg))
    if main:
        methods.save_model(trainer, out, rebuild=lambda: task.build_model(cfg.encoder, labels, cfg))  # + adapter/
        leakage.carry(encoders.resolve(cfg.encoder), out)
        tokenizer.save_pretrained(str(out))
        (out / "training_args.bin").unlink(missing_ok=True)  # a pickle; the run keeps run.yaml instead
        write_json(out / "labels.json", labels)
        write_json(out / "metrics.json", metrics)
        rundir.write_model_card(out, card, cfg, metrics)
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
    return metrics


def best_evaluation(log_history: list[dict[str, Any]], best_step: int | None, metric: str) -> dict[str, Any] | None:
    """The evaluation logged at `best_step` (the checkpoint load_best_model_at_end kept), so that the
    validation split is not evaluated a second time after training; None when there is none."""
    return next((h for h in reversed(log_history) if h.get("step") == best_step and f"eval_{metric}" in h), None)


def predict_raw(task: Task, run: Run, encoded: Encoded, batch_size: int | None = None) -> Any:
    """Run the model over `encoded.dataset` in length-sorted batches; return per-feature
    reduced predictions in the original order (padded with -100 across batches)."""
    from transformers import TrainingArguments

    ds = encoded.dataset
    if len(ds) == 0:
        return np.zeros((0,))
    order = length_order(ds)
    distributed.single_process_as_plain()
    args = TrainingArguments(
        output_dir=str(run.path / ".predict"), per_device_eval_batch_size=batch_size or run.cfg.per_device_eval_batch_size,
        report_to=[], disable_tqdm=not sys.stderr.isatty(), dataloader_pin_memory=on_gpu(), use_cpu=not on_gpu(),
        **precision_flags(run.cfg.precision),
    )
    trainer = trainer_class()(model=run.model, args=args, data_collator=task.collator(run.tokenizer),
                      processing_class=run.tokenizer, preprocess_logits_for_metrics=task.reduce_logits)
    out = trainer.predict(ds.select(order.tolist()))
    shutil.rmtree(run.path / ".predict", ignore_errors=True)
    return restore_order(out.predictions, order)


def check_test_leakage(run: Run, split: str, examples: list[Any], data_dir: str | Path | None = None) -> None:
    """Refuse to score the test split when its text was in the pre-training corpus of the run's encoder.

    Raises:
        ClinicalFTError: `split` is test and some of `examples`' text is in that corpus (leakage.check).
    """
    if split == "test":
        leakage.check(run.card, [run.path, encoders.resolve(run.cfg.encoder)], data_dir,
                      texts_fn=lambda: leakage.example_texts(examples))


def predict(task: Task, run: Run, examples: list[Any], batch_size: int | None = None) -> list[Any]:
    """One prediction per example (encode, batched forward, decode with the run's config)."""
    if not examples:
        return []
    encoded = task.encode(run.tokenizer, examples, run.cfg, run.labels)
    preds = task.decode(examples, encoded, predict_raw(task, run, encoded, batch_size), run.labels, run.cfg)
    return task.finish_predictions(run.path, preds, run.cfg)


def evaluate(task: Task, run: Run, split: str, data_dir: str | Path | None = None,
             batch_size: int | None = None, input_file: str | Path | None = None) -> dict[str, Any]:
    """Score `run` on a split of its card, or on another labelled file (`input_file`, read in the
    card's format by the task's `read_file`), the same way for every task.

    Writes into the run directory ``eval_<name>.json`` (metrics; undefined ones, e.g. AUROC of a
    one-class split, are ``null``; what the task's `input_report` says about reading the split; the
    files its `write_artifacts` hook wrote) and ``predictions_<name>.jsonl`` (one line per example,
    in the split's order: ``{"index": i, "prediction": ...}``, read back by :func:`read_predictions`).
    `name` is the split, or for `input_file` its stem (:func:`input_name`). Returns the metrics (NaN
    where undefined).
    """
    if input_file is not None:
        path = Path(input_file)
        if not path.exists():
            raise ClinicalFTError(f"--input {path}: no such file")
        split, examples = input_name(path), task.read_file(run.card, path)
    else:
        examples = task.load_split(run.card, split, data_dir)
        check_test_leakage(run, split, examples, data_dir)
    start = time.perf_counter()
    preds = predict(task, run, examples, batch_size)
    metrics = task.score(examples, preds, run.labels)
    result = {"split": split, "examples": len(examples), "seconds": time.perf_counter() - start, **metrics,
              **task.input_report(examples)}
    write_predictions(predictions_path(run.path, split), preds)
    artifacts = task.write_artifacts(run.path, split, examples, preds, run.labels, run.cfg)
    if artifacts:
        result["artifacts"] = artifacts
    write_json(run.path / f"eval_{split}.json", result)
    return result
