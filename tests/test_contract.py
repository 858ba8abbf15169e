"""One contract over every task module: train two steps, save, reload, predict every test example."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from clinical_ft import engine
from clinical_ft.config import TaskCard, TrainConfig, load

# (task module, fixture card, data dir, config overrides)
CASES = [
    ("clinical_ft.ner", "tests/fixtures/ncbi_mini.yaml", "tests/fixtures", {"max_length": 32, "stride": 8}),
    ("clinical_ft.relation", "tests/fixtures/relation/gad_mini.yaml", "tests/fixtures",
     {"max_length": 64, "stride": 8, "task_options": {"pooling": "entity_start"}}),
    ("clinical_ft.readmission", "tests/fixtures/readmission/notes_mini.yaml", "tests/fixtures",
     {"max_length": 32, "stride": 8}),
]


@pytest.mark.parametrize("module,card_path,data_dir,over", CASES, ids=[c[0] for c in CASES])
def test_task_trains_saves_reloads_predicts(module: str, card_path: str, data_dir: str, over: dict,
                                            tiny_encoder: str, tmp_path: Path) -> None:
    task = importlib.import_module(module).TASK
    card = load(TaskCard, card_path)
    cfg = TrainConfig(encoder=tiny_encoder, max_steps=2, per_device_train_batch_size=2, eval_strategy="no", **over)
    metrics = engine.train(task, card, cfg, tmp_path / "run", data_dir=data_dir)
    assert metrics["global_steps"] == 2 and metrics["limited"] is True
    run = engine.load_run(task, tmp_path / "run")
    examples = task.load_split(run.card, "test", data_dir)
    encoded = task.encode(run.tokenizer, examples, run.cfg, run.labels)
    preds = task.decode(examples, encoded, engine.predict_raw(task, run, encoded), run.labels)
    assert len(preds) == len(examples)
    scores = task.score(examples, preds, run.labels)
    assert task.metric_for_best_model in scores
