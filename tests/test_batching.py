"""Batches by token budget (``batch_tokens``): the budget holds, every example is seen once an epoch,
batches stay length-grouped, ranks share the batches, and an interrupted run resumes exactly."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import pytest
import torch

from clinical_ft import engine
from clinical_ft.batching import token_budget_batches, token_budget_sampler
from clinical_ft.config import TaskCard, TrainConfig, from_dict, load
from clinical_ft.errors import ConfigError
from clinical_ft.readmission import TASK

LENGTHS = [random.Random(0).choice([5, 9, 9, 12, 17, 30, 31, 64, 128]) for _ in range(500)]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_budget_holds_and_every_example_is_seen_once() -> None:
    batches = token_budget_batches(LENGTHS, 256, _gen(1))
    assert sorted(i for b in batches for i in b) == list(range(len(LENGTHS)))
    assert all(len(b) * max(LENGTHS[i] for i in b) <= 256 for b in batches)
    # greedy packing: a batch could not have taken one more example of its longest length
    assert sum(len(b) * max(LENGTHS[i] for i in b) for b in batches) > 0.9 * 256 * (len(batches) - 9)


def test_batches_are_length_grouped_and_change_with_the_epoch() -> None:
    a, b = token_budget_batches(LENGTHS, 256, _gen(1)), token_budget_batches(LENGTHS, 256, _gen(2))
    ranges = sorted((min(LENGTHS[i] for i in x), max(LENGTHS[i] for i in x)) for x in a)
    assert all(hi <= nxt_lo for (_, hi), (nxt_lo, _) in zip(ranges, ranges[1:]))  # sorted runs, no interleaving
    assert len(a) == len(b)  # the schedule needs the same number of batches every epoch
    assert [sorted(x) for x in a] != [sorted(x) for x in b]  # equal-length examples change batches
    assert {frozenset(x) for x in a} != {frozenset(x) for x in b}
    assert token_budget_batches(LENGTHS, 256, _gen(1)) == a  # a function of the seed only


def test_an_example_longer_than_the_budget_gets_a_batch_of_its_own() -> None:
    batches = token_budget_batches([3, 300, 3, 3], 100, _gen(0))
    assert sorted(map(sorted, batches)) == [[0, 2, 3], [1]]


def test_sampler_epochs_are_seeded_and_ranks_split_the_batches() -> None:
    one = token_budget_sampler(LENGTHS, 256, seed=7)
    epoch0 = list(one)
    one.set_epoch(1)
    assert list(one) != epoch0 and len(one) == len(epoch0)
    one.set_epoch(0)
    assert list(one) == epoch0  # a resumed epoch replays its batches
    ranks = [token_budget_sampler(LENGTHS, 256, seed=7, rank=r, world_size=3) for r in range(3)]
    assert len({len(r) for r in ranks}) == 1 and len(ranks[0]) == -(-len(epoch0) // 3)
    seen = [sorted(b) for r in ranks for b in r]
    assert all(sorted(b) in seen for b in epoch0)  # every batch on some rank; the tail padded by repeats
    assert len(seen) - len(epoch0) < 3


def test_batch_tokens_is_validated() -> None:
    with pytest.raises(ConfigError, match="batch_tokens: expected null or an integer >= max_length"):
        from_dict(TrainConfig, {"batch_tokens": 64, "max_length": 128}, "cfg.yaml")


# --- through the Trainer: 37 training windows of the readmission fixture (tests/test_resume.py) -------------

CARD = "tests/fixtures/readmission/notes_mini.yaml"


def _cfg(tiny_encoder: str) -> TrainConfig:
    return TrainConfig(encoder=tiny_encoder, max_length=32, stride=8, max_steps=14, batch_tokens=100,
                       eval_strategy="steps", eval_steps=5, logging_steps=1, early_stopping_patience=0,
                       learning_rate=3e-4, save_total_limit=5)


class Killed(Exception):
    pass


def _train(cfg: TrainConfig, out: Path, kill_at: int | None = None) -> dict:
    from transformers import TrainerCallback

    class Watch(TrainerCallback):
        def on_save(self, args, state, control, **kw):  # noqa: ANN001, ANN003, ANN201
            if state.global_step == kill_at:
                raise Killed

    return engine.train(TASK, load(TaskCard, CARD), cfg, out, data_dir="tests/fixtures", callbacks=[Watch()])


def _weights(run: Path) -> str:
    return hashlib.sha256((run / "model.safetensors").read_bytes()).hexdigest()


def test_trainer_uses_the_budget_and_resumes_exactly(tiny_encoder: str, tmp_path: Path) -> None:
    from clinical_ft.batching import token_budget_batches as real
    shapes: list[tuple[int, int]] = []

    def spy(lengths: list[int], max_tokens: int, generator: torch.Generator) -> list[list[int]]:
        batches = real(lengths, max_tokens, generator)
        shapes.extend((len(b), max(lengths[i] for i in b)) for b in batches)
        return batches

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("clinical_ft.batching.token_budget_batches", spy)
        m0 = _train(_cfg(tiny_encoder), tmp_path / "straight")
    assert shapes and all(n * longest <= 100 for n, longest in shapes)
    assert any(n > 3 for n, _ in shapes)  # short windows share a batch beyond 100 // max_length
    out = tmp_path / "resumed"
    with pytest.raises(Killed):
        _train(_cfg(tiny_encoder), out, kill_at=10)
    state = json.loads((out / "checkpoints" / "checkpoint-10" / "trainer_state.json").read_text())
    assert state["epoch"] % 1 != 0  # interrupted mid-epoch: the resumed epoch must replay its batches
    m1 = _train(_cfg(tiny_encoder), out)
    assert m1["resumed_from_step"] == 10 and m1["global_steps"] == m0["global_steps"] == 14
    assert _weights(out) == _weights(tmp_path / "straight")
    assert m1["train_loss"] == pytest.approx(m0["train_loss"], rel=1e-5)
