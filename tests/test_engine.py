from pathlib import Path

from datasets import Dataset

from clinical_ft import engine
from clinical_ft.config import TrainConfig


def test_evaluation_keeps_dataset_order_under_length_grouping(tmp_path: Path, tiny_encoder: str) -> None:
    """Decoders pair predictions with examples by position: eval must not be length-grouped."""
    from transformers import AutoModelForTokenClassification

    cfg = TrainConfig(group_by_length=True, per_device_eval_batch_size=4)
    args = engine.training_arguments(cfg, tmp_path, has_eval=True, metric="f1")
    assert args.train_sampling_strategy == "group_by_length"
    assert args.warmup_steps == cfg.warmup_ratio and args.lr_scheduler_type == "linear"
    ds = Dataset.from_dict({"input_ids": [[101] + [7] * n + [102] for n in (1, 9, 3, 7, 2, 8, 5)]})
    model = AutoModelForTokenClassification.from_pretrained(tiny_encoder, num_labels=2)
    trainer = engine._trainer_class()(model=model, args=args, eval_dataset=ds)
    assert list(trainer.get_eval_dataloader().sampler) == list(range(len(ds)))


def test_precision_auto_is_fp32_on_cpu() -> None:
    assert engine._precision_flags("auto") == {"bf16": False, "fp16": False}
    assert engine._precision_flags("bf16") == {"bf16": True, "fp16": False}
