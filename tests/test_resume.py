"""An interrupted training ends where an uninterrupted one ends: same weights, same whole-run metrics,
also with length grouping (every shipped config) and after a kill during a checkpoint save."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import pytest

from clinical_ft import engine, rundir
from clinical_ft.config import TaskCard, TrainConfig, load
from clinical_ft.readmission import TASK

CARD = "tests/fixtures/readmission/notes_mini.yaml"  # 12 training notes -> ~40 windows of mixed length


class Killed(Exception):
    """Stands for a kill -9 right after a checkpoint was written."""


def _kill_after_save(step: int) -> object:
    from transformers import TrainerCallback

    class Kill(TrainerCallback):
        def on_save(self, args, state, control, **kw):  # noqa: ANN001, ANN003, ANN201
            if state.global_step == step:
                raise Killed(step)

    return Kill()


def _cfg(tiny_encoder: str, **over: object) -> TrainConfig:
    # 37 training windows, batch 4: 10 steps an epoch; checkpoints at steps 6 and 12 (2 steps into epoch 2)
    base = dict(encoder=tiny_encoder, max_length=32, stride=8, max_steps=16, per_device_train_batch_size=4,
                eval_strategy="steps", eval_steps=6, logging_steps=1, early_stopping_patience=0, group_by_length=True,
                learning_rate=3e-4, save_total_limit=5)
    return TrainConfig(**{**base, **over})


def _train(cfg: TrainConfig, out: Path, kill_at: int | None = None) -> dict:
    card = load(TaskCard, CARD)
    cbs = [_kill_after_save(kill_at)] if kill_at else None
    return engine.train(TASK, card, cfg, out, data_dir="tests/fixtures", callbacks=cbs)


def _weights(run: Path) -> str:
    return hashlib.sha256((run / "model.safetensors").read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def uninterrupted(tiny_encoder: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("resume") / "straight"
    return out, _train(_cfg(tiny_encoder), out)


def test_killed_and_resumed_equals_uninterrupted_with_length_grouping(uninterrupted: tuple[Path, dict],
                                                                       tiny_encoder: str, tmp_path: Path) -> None:
    straight, m0 = uninterrupted
    out = tmp_path / "resumed"
    with pytest.raises(Killed):
        _train(_cfg(tiny_encoder), out, kill_at=12)  # mid-epoch: the resumed epoch must see the same batches
    assert [p.name for p in rundir.checkpoints(out)] == ["checkpoint-6", "checkpoint-12"]
    m1 = _train(_cfg(tiny_encoder), out)
    assert _weights(out) == _weights(straight)
    for key in ("loss", "auroc", "auprc_avg_precision", "rp80"):  # the dev scores of the kept checkpoint
        assert m1["validation"][key] == pytest.approx(m0["validation"][key], rel=1e-6, nan_ok=True)
    # the whole run is reported, not the resumed part
    assert m1["train_loss"] == pytest.approx(m0["train_loss"], rel=1e-5)
    assert (m0["resumed"], m0["resumes"], m0["resumed_from_step"]) == (False, 0, None)
    assert (m1["resumed"], m1["resumes"], m1["resumed_from_step"]) == (True, 1, 12)
    assert m1["global_steps"] == m0["global_steps"] == 16
    assert m1["train_runtime_s"] > 0 and json.loads((out / "metrics.json").read_text())["resumes"] == 1


def test_a_checkpoint_killed_during_its_save_is_set_aside(uninterrupted: tuple[Path, dict], tiny_encoder: str,
                                                          tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    straight, m0 = uninterrupted
    out = tmp_path / "run"
    with pytest.raises(Killed):
        _train(_cfg(tiny_encoder), out, kill_at=12)
    (out / "checkpoints" / "checkpoint-12" / "trainer_state.json").unlink()  # transformers writes it last
    with caplog.at_level(logging.WARNING, logger="clinical_ft"):
        m1 = _train(_cfg(tiny_encoder), out)
    assert "checkpoint-12 was not saved whole" in caplog.text and "resuming from" in caplog.text
    assert m1["resumed_from_step"] == 6 and _weights(out) == _weights(straight)


def test_only_complete_checkpoints_count(tmp_path: Path) -> None:
    ck = tmp_path / "checkpoints"
    for step in (5, 10, 20):
        (ck / f"checkpoint-{step}").mkdir(parents=True)
        (ck / f"checkpoint-{step}" / "model.safetensors").write_bytes(b"x")
    for step in (5, 10):
        (ck / f"checkpoint-{step}" / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    (ck / "checkpoint-20" / "trainer_state.json").write_text('{"global_st')  # killed while writing it
    assert [p.name for p in rundir.checkpoints(tmp_path)] == ["checkpoint-5", "checkpoint-10", "checkpoint-20"]
    latest, aside = rundir.resume_point(tmp_path)
    assert latest == ck / "checkpoint-10" and aside == ["checkpoint-20"]  # numeric order: 10 after 5
    assert (ck / "incomplete-checkpoint-20").is_dir() and not (ck / "checkpoint-20").exists()
    for step in (5, 10):
        (ck / f"checkpoint-{step}" / "trainer_state.json").unlink()
    assert rundir.resume_point(tmp_path) == (None, ["checkpoint-5", "checkpoint-10"])  # starts afresh
