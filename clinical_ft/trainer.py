"""Device facts of the shared path: peak memory, precision, and the Trainer set-up (TrainingArguments
from a TrainConfig, the evaluation sampler) that training, evaluation and prediction share."""

from __future__ import annotations

import json
import os
import resource
import time
from pathlib import Path
from typing import Any

from .batching import feature_lengths, seeded_length_grouped_sampler, token_budget_sampler
from .config import TrainConfig
from .distributed import single_process_as_plain


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


def is_main_process() -> bool:
    """Whether this process writes outputs: always outside torchrun/accelerate, rank 0 inside."""
    return int(os.environ.get("RANK", "0")) == 0


def on_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def precision_flags(precision: str) -> dict[str, bool]:
    import torch

    if precision == "auto":
        gpu = on_gpu()
        precision = "bf16" if gpu and torch.cuda.is_bf16_supported() else ("fp16" if gpu else "fp32")
    return {"bf16": precision == "bf16", "fp16": precision == "fp16"}


def training_arguments(cfg: TrainConfig, out_dir: Path, has_eval: bool, metric: str) -> Any:
    """TrainingArguments from a TrainConfig: dynamic padding happens in the collator; here the
    schedule (warmup + linear decay), length grouping, evaluation, checkpointing and seed."""
    from transformers import TrainingArguments

    single_process_as_plain()  # torchrun --nproc_per_node 1: no DDP around one process
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
        dataloader_pin_memory=on_gpu(),
        use_cpu=not on_gpu(),  # without it accelerate sees no distributed CPU run under torchrun (gloo)
        average_tokens_across_devices=False,  # losses are per-example means: reported alike at any world size
        **precision_flags(cfg.precision),
    )


PROGRESS_FILE = "clinical_ft_progress.json"  # in each checkpoint: what a resumed run needs to report the whole run


def trainer_class() -> type:
    from torch.utils.data import SequentialSampler
    from transformers import Trainer

    class OrderedEvalTrainer(Trainer):
        """Trainer whose evaluation keeps dataset order.

        transformers 5 also length-groups *evaluation* batches when train_sampling_strategy is
        group_by_length; task decoders pair predictions with examples by position, so evaluation
        stays sequential (distributed evaluation already is, via accelerate's sharding).
        """

        prior: dict[str, Any] = {}  # the progress file of the checkpoint this run resumes from
        batch_tokens: int | None = None  # TrainConfig.batch_tokens: batches by token budget
        started: float = 0.0  # perf_counter when this process started training

        def _get_eval_sampler(self, eval_dataset: Any) -> Any:
            if eval_dataset is None:
                return None
            return SequentialSampler(eval_dataset) if self.args.world_size <= 1 else None

        def _get_train_sampler(self, train_dataset: Any = None) -> Any:
            ds = train_dataset if train_dataset is not None else self.train_dataset
            grouped = self.args.train_sampling_strategy == "group_by_length"
            if ds is None or not (self.batch_tokens or grouped and self.args.world_size <= 1):
                return super()._get_train_sampler(train_dataset)
            full = self.train_dataset  # before the Trainer dropped the columns the model does not take
            lengths = feature_lengths(full if len(full) == len(ds) else ds)
            seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
            if self.batch_tokens:
                return token_budget_sampler(lengths, self.batch_tokens, seed, self.args.process_index,
                                            self.args.world_size)
            return seeded_length_grouped_sampler(lengths, self.args.train_batch_size
                                                 * self.args.gradient_accumulation_steps, seed)

        def get_resumed_dataloader(self, dataloader: Any, steps: int) -> Any:
            """accelerate's batch skipping wraps the sampler once more, out of the Trainer's reach for
            ``set_epoch`` under more than one process: the resumed epoch is set here (the one the
            checkpoint's state is in)."""
            sampler = getattr(getattr(dataloader, "batch_sampler", None), "batch_sampler", None)
            sampler = getattr(dataloader, "batch_sampler", None) if sampler is None else sampler
            if self.batch_tokens and hasattr(sampler, "set_epoch"):
                sampler.set_epoch(int(self.state.epoch or 0))
            return super().get_resumed_dataloader(dataloader, steps)

        def progress(self, finished: bool = False) -> dict[str, Any]:
            """The whole run so far: steps, the sum of the per-step training losses, seconds of
            training over every process that worked on it, and how often it was resumed. Until
            training is `finished` the losses since the last log are still in ``_tr_loss``. Losses are
            means over the ranks, as transformers logs them (a collective: every rank calls this)."""
            loss = float(self._total_loss_scalar + (0.0 if finished else self._mean_over_ranks(self._tr_loss).item()))
            return {"step": self.state.global_step, "loss_sum": self.prior.get("loss_sum", 0.0) + loss,
                    "train_seconds": self.prior.get("train_seconds", 0.0) + time.perf_counter() - self.started,
                    "resumes": self.prior.get("resumes", -1) + 1}

        def _save_checkpoint(self, model: Any, trial: Any) -> None:
            """Write the progress file first: trainer_state.json, written last by transformers, then
            marks the checkpoint complete (rundir.checkpoints)."""
            from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

            folder = Path(self._get_output_dir(trial=trial)) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            progress = self.progress()  # on every rank (it gathers the losses); written by the main one
            if self.args.should_save:
                folder.mkdir(parents=True, exist_ok=True)
                (folder / PROGRESS_FILE).write_text(json.dumps(progress), encoding="utf-8")
            super()._save_checkpoint(model, trial)

        def _mean_over_ranks(self, loss: Any) -> Any:
            return self.accelerator.gather(loss.detach().reshape(1)).mean() if self.args.world_size > 1 else loss

        def _finalize_training(self, *args: Any, **kwargs: Any) -> Any:
            """The losses since the last log, averaged over the ranks before transformers adds them to the
            run's total (it gathers the logged ones alone): train_loss is then every rank's mean."""
            self._tr_loss = self._mean_over_ranks(self._tr_loss)
            return super()._finalize_training(*args, **kwargs)

    return OrderedEvalTrainer


