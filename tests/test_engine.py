import dataclasses
from pathlib import Path

import pytest
from datasets import Dataset

from clinical_ft import engine, resources, trainer
from clinical_ft.bench import runner as benchmark
from clinical_ft.config import TaskCard, TrainConfig, load
from clinical_ft.errors import ClinicalFTError
from clinical_ft.ner import TASK as NER
from clinical_ft.rundir import save_run_file


def test_evaluation_keeps_dataset_order_under_length_grouping(tmp_path: Path, tiny_encoder: str) -> None:
    """Decoders pair predictions with examples by position: eval must not be length-grouped."""
    from transformers import AutoModelForTokenClassification

    cfg = TrainConfig(group_by_length=True, per_device_eval_batch_size=4)
    args = engine.training_arguments(cfg, tmp_path, has_eval=True, metric="f1")
    assert args.train_sampling_strategy == "group_by_length"
    assert args.warmup_steps == cfg.warmup_ratio and args.lr_scheduler_type == "linear"
    ds = Dataset.from_dict({"input_ids": [[101] + [7] * n + [102] for n in (1, 9, 3, 7, 2, 8, 5)]})
    model = AutoModelForTokenClassification.from_pretrained(tiny_encoder, num_labels=2)
    tr = trainer.trainer_class()(model=model, args=args, eval_dataset=ds)
    assert list(tr.get_eval_dataloader().sampler) == list(range(len(ds)))


def test_precision_auto_follows_the_device(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(trainer, "on_gpu", lambda: False)  # the same answer on a GPU machine
    assert trainer.precision_flags("auto") == {"bf16": False, "fp16": False}
    assert trainer.precision_flags("bf16") == {"bf16": True, "fp16": False}
    monkeypatch.setattr(trainer, "on_gpu", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert trainer.precision_flags("auto") == {"bf16": True, "fp16": False}
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert trainer.precision_flags("auto") == {"bf16": False, "fp16": True}
    assert trainer.precision_flags("fp32") == {"bf16": False, "fp16": False}


def test_limit_reasons_include_command_line_budgets() -> None:
    shipped = resources.find("ner/minilm", "configs")
    full = load(TrainConfig, shipped)
    assert engine.limit_reasons(full, (10, 10), (5, 5)) == []
    assert engine.limit_reasons(load(TrainConfig, shipped, ["num_train_epochs=99"]), (10, 10), (5, 5)) == []
    cut = load(TrainConfig, shipped, ["num_train_epochs=1", "max_eval_examples=2", "max_train_examples=4", "max_steps=3"])
    assert engine.limit_reasons(cut, (4, 10), (2, 5)) == [
        "max_train_examples=4: 4 of 10 training examples",
        "max_eval_examples=2: model selection on 2 of 5 validation examples",
        "max_steps=3",
        f"num_train_epochs=1, below {full.num_train_epochs:g} in {shipped}",
    ]
    # the benchmark runner passes its budget options as a dict of overrides: the same check applies
    grid = benchmark.Grid(cards=[], encoders=[], seeds=[], epochs=1)
    cfg, source = benchmark.run_config(grid, NER, "minilm", 1)
    assert engine.limit_reasons(cfg, (10, 10), (0, 0)) == [f"num_train_epochs=1, below {full.num_train_epochs:g} in {source}"]
    assert engine.limit_reasons(TrainConfig(num_train_epochs=1), (10, 10), (0, 0)) == []  # no file to compare with


def test_resume_refuses_other_training_settings(tmp_path: Path) -> None:
    card = load(TaskCard, "tests/fixtures/ncbi_mini.yaml")
    cfg = TrainConfig(encoder="minilm", learning_rate=3e-5)
    save_run_file(tmp_path, card, cfg, ["O", "B-Disease", "I-Disease"])
    (tmp_path / "checkpoints" / "checkpoint-2").mkdir(parents=True)
    engine.check_resume(tmp_path, card, cfg)  # identical: resumes
    engine.check_resume(tmp_path, card, dataclasses.replace(cfg, logging_steps=1, dataloader_num_workers=2))
    other = dataclasses.replace(cfg, learning_rate=1e-4, num_train_epochs=1.0)
    with pytest.raises(ClinicalFTError) as exc:  # refused before anything is loaded or trained
        engine.train(None, card, other, tmp_path)  # type: ignore[arg-type]
    msg = str(exc.value)
    assert "interrupted run trained with other settings" in msg and "--overwrite" in msg
    assert "learning_rate: 3e-05 in run.yaml, now 0.0001" in msg and "num_train_epochs: 3.0 in run.yaml, now 1.0" in msg
    moved = dataclasses.replace(card, data=dataclasses.replace(card.data, path="elsewhere"))
    with pytest.raises(ClinicalFTError, match="card.data:"):
        engine.check_resume(tmp_path, moved, cfg)


def test_peak_memory_window_resets_and_sees_allocations() -> None:
    """The peak is measured per run: a reset drops an earlier peak; a new allocation raises it."""
    import sys

    import numpy as np
    import pytest

    from clinical_ft import engine

    if not sys.platform.startswith("linux"):
        pytest.skip("VmHWM reset is Linux-only")
    big = np.ones(400 * 2**20 // 8)  # ~400 MB, touched
    before = engine.peak_memory_mb()
    del big
    engine.reset_peak_memory()
    after_reset = engine.peak_memory_mb()
    assert after_reset < before - 300, (before, after_reset)
    again = np.ones(200 * 2**20 // 8)
    assert engine.peak_memory_mb() > after_reset + 150
    del again


def test_dev_evaluation_runs_in_length_order_and_decodes_in_feature_order(tmp_path: Path, tiny_encoder: str) -> None:
    """In-training evaluation sees the dev features longest first (less padding); compute_metrics puts
    the predictions back in feature order: decoding equals a prediction over the dataset in its order."""
    from clinical_ft import encoders

    card = load(TaskCard, "tests/fixtures/ncbi_mini.yaml")
    cfg = TrainConfig(encoder=tiny_encoder, max_length=32, stride=8, per_device_eval_batch_size=3)
    dev = NER.load_split(card, "validation", "tests/fixtures")
    labels = NER.label_list(card, dev)
    enc = NER.encode(encoders.load_tokenizer(tiny_encoder), dev, cfg, labels)
    order = engine.length_order(enc.dataset)
    lengths = [len(x) for x in enc.dataset["input_ids"]]
    assert [lengths[i] for i in order] == sorted(lengths, reverse=True) and list(order) != sorted(order)
    kept: dict = {}
    common = {"model": NER.build_model(tiny_encoder, labels, cfg), "args": engine.training_arguments(cfg, tmp_path, True, "f1"),
              "data_collator": NER.collator(encoders.load_tokenizer(tiny_encoder)), "preprocess_logits_for_metrics": NER.reduce_logits}
    tr = trainer.trainer_class()(**common, eval_dataset=enc.dataset.select(order.tolist()),
                                 compute_metrics=engine._metrics_fn(NER, dev, enc, labels, cfg, kept, order))
    kept["trainer"] = tr
    tr.evaluate()
    plain = trainer.trainer_class()(**common, eval_dataset=enc.dataset)  # no compute_metrics: predictions as they come
    in_order = NER.decode(dev, enc, plain.predict(enc.dataset).predictions, labels, cfg)
    assert kept["by_step"][0] == in_order and len({t for s in in_order for t in s}) > 1  # a random model: mixed tags


def test_in_training_dev_metrics_equal_evaluate_on_the_saved_model(tmp_path: Path, tiny_encoder: str,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """engine.train scores dev in length order (restored before decoding); `evaluate --split validation`
    on the saved run scores it in dataset order through predict: the same decoded predictions and metrics."""
    card = load(TaskCard, "tests/fixtures/ncbi_mini.yaml")
    cfg = TrainConfig(encoder=tiny_encoder, max_length=32, stride=8, max_steps=3, per_device_train_batch_size=4,
                      per_device_eval_batch_size=3, eval_strategy="epoch", early_stopping_patience=0)
    scored, score = [], NER.score
    monkeypatch.setattr(NER, "score", lambda ex, preds, labels: scored.append(preds) or score(ex, preds, labels))
    metrics = engine.train(NER, card, cfg, tmp_path / "run", data_dir="tests/fixtures")
    assert scored  # the dev evaluations during training (through compute_metrics, in length order)
    run = engine.load_run(NER, tmp_path / "run")
    again = engine.evaluate(NER, run, "validation", "tests/fixtures")
    saved = engine.read_predictions(engine.predictions_path(run.path, "validation"))
    assert saved in scored and len({t for p in saved for t in p}) > 1  # the kept model's; mixed tags: not all-O
    for key in ("precision", "recall", "f1"):
        assert metrics["validation"][key] == pytest.approx(again[key]), key
