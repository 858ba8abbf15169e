"""What a user sees around training and evaluation: one dev evaluation per evaluation step, model
selection on the card's metric, range checks, LIMITED runs said on screen, missing inputs as one
line, and `evaluate --input` on a held-out file."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

from clinical_ft import engine
from clinical_ft.config import TaskCard, TrainConfig, load
from clinical_ft.ner import TASK as NER
from clinical_ft.ner.cli import main as ner_main
from clinical_ft.qa import EXTRACTIVE

NCBI = "tests/fixtures/ncbi_mini.yaml"
FAST = ["max_length=32", "stride=8", "per_device_train_batch_size=2", "logging_steps=1"]


@pytest.fixture(scope="module")
def ner_run(tiny_encoder: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ner") / "run"
    assert ner_main(["train", "--card", NCBI, "--data-dir", "tests/fixtures", "--out", str(out), "--encoder",
                     tiny_encoder, *FAST, "max_steps=2", "eval_strategy=no"]) == 0
    return out


def test_the_dev_split_is_scored_once_per_evaluation(tiny_encoder: str, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = type(NER).score

    def counting(self, examples, predictions, labels):  # noqa: ANN001, ANN202
        calls.append(len(examples))
        return real(self, examples, predictions, labels)

    monkeypatch.setattr(type(NER), "score", counting)
    cfg = TrainConfig(encoder=tiny_encoder, max_length=32, stride=8, per_device_train_batch_size=2, num_train_epochs=2,
                      eval_strategy="epoch", early_stopping_patience=0)
    metrics = engine.train(NER, load(TaskCard, NCBI), cfg, tmp_path / "run", data_dir="tests/fixtures")
    assert calls == [4, 4]  # two epochs, two evaluations of the 4 dev sentences; none after training
    assert metrics["validation"]["f1"] == metrics["best_checkpoint_metric"]


def test_model_selection_uses_the_metric_the_card_names(tiny_encoder: str, tmp_path: Path) -> None:
    card = load(TaskCard, "tests/fixtures/qa/bioasq_mini.yaml")
    assert card.metric == "mrr"
    cfg = TrainConfig(encoder=tiny_encoder, max_length=64, stride=16, per_device_train_batch_size=2, max_steps=2,
                      eval_strategy="steps", eval_steps=1, early_stopping_patience=1)
    metrics = engine.train(EXTRACTIVE, card, cfg, tmp_path / "run", data_dir="tests/fixtures/qa")
    assert "mrr" in metrics["validation"] and metrics["best_checkpoint_metric"] == metrics["validation"]["mrr"]


@pytest.mark.parametrize("override,message", [
    ("num_train_epochs=-1", "num_train_epochs: expected > 0 (or set max_steps), found -1"),
    ("learning_rate=nan", "learning_rate: expected a finite number, found nan"),
    ("max_steps=0", "max_steps: expected a positive number of steps, or -1"),
    ("max_train_sentences=100", "max_train_sentences: unknown key (did you mean 'max_train_examples'?)"),
])
def test_bad_numbers_and_misspelt_budgets_are_config_errors(override: str, message: str, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert ner_main(["train", "--card", NCBI, "--data-dir", "tests/fixtures", "--out", str(tmp_path / "r"),
                     override]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and not (tmp_path / "r").exists()


def test_a_limited_run_says_so_at_the_start_and_the_end(tiny_encoder: str, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str],
                                                        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="clinical_ft"):
        assert ner_main(["train", "--card", NCBI, "--data-dir", "tests/fixtures", "--out", str(tmp_path / "r"),
                         "--encoder", tiny_encoder, *FAST, "max_steps=2", "eval_strategy=no"]) == 0
    start = [r.getMessage() for r in caplog.records if "LIMITED run" in r.getMessage()]
    assert start == ["LIMITED run (not comparable with full-data results): max_steps=2"]
    out = capsys.readouterr().out
    assert out.rstrip().splitlines()[-1] == "LIMITED run (not comparable with full-data results): max_steps=2"


def test_missing_inputs_are_one_line_errors(ner_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from clinical_ft.qa.cli import main as qa_main
    from clinical_ft.readmission.cli import main as readmission_main

    missing = tmp_path / "missing.txt"
    assert ner_main(["predict", "--model", str(ner_run), "--input", str(missing), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == f"error: {missing}: No such file or directory"  # one line, no traceback
    assert "Traceback" not in err
    assert ner_main(["evaluate", "--model", str(ner_run), "--input", str(missing)]) == 2
    assert "missing.txt" in capsys.readouterr().err
    for main, argv in ((qa_main, ["predict", "--model", str(ner_run), "--input", str(missing)]),
                       (readmission_main, ["predict", "--model", str(ner_run), "--notes", str(missing), "--out", "x"])):
        assert main(argv) == 2  # a run of another kind is refused before the input is read
        assert capsys.readouterr().err.startswith("error: run ")


def test_evaluate_input_scores_a_held_out_file(ner_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    held_out = tmp_path / "held_out.tsv"
    shutil.copy("tests/fixtures/ncbi_mini/devel.tsv", held_out)
    assert ner_main(["evaluate", "--model", str(ner_run), "--input", str(held_out)]) == 0
    assert "eval_held_out.json" in capsys.readouterr().out
    mine = json.loads((ner_run / "eval_held_out.json").read_text())
    assert mine["split"] == "held_out" and mine["examples"] == 4
    assert len(engine.read_predictions(ner_run / "predictions_held_out.jsonl")) == 4
    assert ner_main(["evaluate", "--model", str(ner_run), "--split", "validation", "--data-dir", "tests/fixtures"]) == 0
    dev = json.loads((ner_run / "eval_validation.json").read_text())  # the same file read as the card's dev split
    assert {k: v for k, v in mine.items() if k not in ("split", "seconds")} == \
        {k: v for k, v in dev.items() if k not in ("split", "seconds")}
    test_named = tmp_path / "test.tsv"  # never overwrites the card's own eval_test.json
    shutil.copy("tests/fixtures/ncbi_mini/test.tsv", test_named)
    assert ner_main(["evaluate", "--model", str(ner_run), "--input", str(test_named)]) == 0
    assert (ner_run / "eval_test_input.json").is_file() and not (ner_run / "eval_test.json").exists()
