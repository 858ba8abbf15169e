"""One contract over every task the registry serves (every kind and head, found in the registry, not
listed here): train two steps on a fixture card, evaluate (predictions saved), read the saved
predictions back through JSON and score them, reload the run, predict, explain."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from clinical_ft import engine, registry
from clinical_ft.config import TaskCard, TrainConfig, load
from clinical_ft.data import role_paths
from clinical_ft.errors import ClinicalFTError
from clinical_ft.taskapi import Task, selection_metric, task_options

FIX = Path(__file__).parent / "fixtures"
# the hooks the protocol only declares (no default behaviour, no `return`): every task must implement them
REQUIRED = [n for n, f in vars(Task).items() if inspect.isfunction(f) and "return" not in inspect.getsource(f)]
SMALL = {"max_length": 64, "stride": 16, "per_device_eval_batch_size": 4}  # short windows: long inputs are windowed


def _fixture_cards() -> dict[str, tuple[TaskCard, Path]]:
    """For each task of the registry (by class name), the first fixture card whose data is here."""
    found: dict[str, tuple[TaskCard, Path]] = {}
    for path in sorted(FIX.rglob("*.yaml")):
        card = load(TaskCard, path)
        name = type(registry.for_card(card)).__name__
        for data_dir in (path.parent, FIX):
            try:
                role_paths(card, "train", data_dir)
            except ClinicalFTError:
                continue
            found.setdefault(name, (card, data_dir))
            break
    return found


CARDS = _fixture_cards()
TASK_NAMES = [type(t).__name__ for t in registry.TASKS]


def test_every_task_implements_every_hook_and_has_a_fixture() -> None:
    for task in registry.TASKS:
        missing = [n for n in REQUIRED if getattr(type(task), n) is getattr(Task, n)]
        assert not missing, f"{type(task).__name__} lacks {missing}"
        assert task.formats and task.score_keys and task.metric_for_best_model in task.score_keys
    assert set(TASK_NAMES) <= set(CARDS), f"no fixture card with data for {set(TASK_NAMES) - set(CARDS)}"


def test_every_explain_hook_defaults_to_the_attribution_tolerance() -> None:
    from clinical_ft.interpret.attribution import TOLERANCE

    for hook in [Task.explain_section] + [type(t).explain_section for t in registry.TASKS]:
        assert inspect.signature(hook).parameters["tolerance"].default == TOLERANCE, hook.__qualname__


@pytest.mark.parametrize("name", TASK_NAMES)
def test_task_trains_evaluates_rereads_reloads_predicts_explains(name: str, tiny_encoder: str, tmp_path: Path) -> None:
    card, data_dir = CARDS[name]
    task = registry.for_card(card)
    cfg = TrainConfig(encoder=tiny_encoder, max_steps=2, per_device_train_batch_size=2, eval_strategy="no", **SMALL)
    task_options(task, cfg)  # the defaults are valid options
    metrics = engine.train(task, card, cfg, tmp_path / "run", data_dir=data_dir)
    assert metrics["global_steps"] == 2 and metrics["limited"] is True

    run = engine.load_run(task, tmp_path / "run")
    assert run.task is task and registry.for_run(run.path) is task
    result = engine.evaluate(task, run, "test", data_dir)
    assert selection_metric(task, card) in result
    saved = engine.read_predictions(engine.predictions_path(run.path, "test"))
    examples = task.load_split(run.card, "test", data_dir)
    assert len(saved) == len(examples) == result["examples"] > 0
    rescored = task.score(examples, saved, run.labels)  # predictions read back through JSON score the same
    for key, value in rescored.items():
        assert value == pytest.approx(result[key], nan_ok=True), key

    again = engine.predict(task, run, examples)  # the reloaded run predicts what evaluate saved
    assert len(again) == len(saved)
    assert task.score(examples, again, run.labels)[selection_metric(task, card)] == pytest.approx(
        result[selection_metric(task, card)], nan_ok=True)

    picks = task.pick_examples(examples, saved)
    assert picks and all(0 <= i < len(examples) and why for i, why in picks)
    run.model.eval()
    html = task.explain_section(run, examples[picks[0][0]], 0, tmp_path / "png", attributions=True, n_steps=4,
                                tolerance=0.37)
    assert "<section" in html and "convergence delta" in html
    if "No entity predicted" not in html and "No valid answer span" not in html:  # a target to explain
        assert "Faithfulness" in html and "comprehensiveness" in html and "random ranking" in html
        # integrated gradients were checked against the tolerance given to the task's hook, not the default 5%
        assert ("37% of |f(x) - f(baseline)|" in html or "tolerance 37%" in html) and "tolerance 5%" not in html
