"""Device facts of the shared path: peak memory, precision, and the Trainer set-up (TrainingArguments
from a TrainConfig, the evaluation sampler) that training, evaluation and prediction share."""

from __future__ import annotations

import resource
from pathlib import Path
from typing import Any

from .config import TrainConfig


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
        **precision_flags(cfg.precision),
    )


def trainer_class() -> type:
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


