"""Benchmark runner: grid expansion, failures recorded without stopping the grid, resume, the table
(reference column from card metadata, macro score), and the bootstrap interval."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from clinical_ft import registry
from clinical_ft.bench import runner as benchmark
from clinical_ft.bench import table as bench_table
from clinical_ft.cli import main
from clinical_ft.config import DataSpec, Reference, TaskCard, load
from clinical_ft.ner import TASK as NER
from clinical_ft.taskapi import Task, selection_metric

CARDS = ["tests/fixtures/ncbi_mini.yaml", "tests/fixtures/bc5_mini.yaml"]
FAST = ["max_length=32", "stride=8", "per_device_train_batch_size=2", "eval_strategy=no", "logging_steps=1"]


def test_bootstrap_interval_contains_estimate_is_seeded_and_narrows_with_more_data() -> None:
    correct = np.random.default_rng(0).integers(0, 2, size=50).astype(float)  # per-example 0/1 outcomes
    more = np.tile(correct, 16)  # same accuracy, 16x the examples

    def ci(v: np.ndarray, seed: int = 1) -> tuple[float, float]:
        return bench_table.bootstrap_ci(lambda idx: float(v[idx].mean()), len(v), resamples=400, seed=seed)

    low, high = ci(correct)
    assert low < correct.mean() < high
    assert ci(correct) == ci(correct) and ci(correct, seed=2) != ci(correct)
    low16, high16 = ci(more)
    assert low16 < more.mean() < high16
    assert high16 - low16 < (high - low) / 2  # width shrinks ~ 1/sqrt(n): about a quarter here
    assert bench_table.bootstrap_ci(lambda idx: 0.7, 10, resamples=50, seed=0) == (0.7, 0.7)
    assert all(math.isnan(x) for x in bench_table.bootstrap_ci(lambda idx: 1.0, 0, resamples=50))


def _done(card: str, kind: str, enc: str, seed: int, value: float, limited: bool = False) -> dict:
    return {"card": card, "kind": kind, "encoder": enc, "seed": seed, "status": "done", "metric": "f1",
            "value": value, "limited": limited, "train_examples": 10, "train_examples_available": 10}


def test_table_renders_reference_difference_and_blurb_macro() -> None:
    bc5 = load(TaskCard, "tests/fixtures/bc5_mini.yaml")  # reference: BioBERT v1.1, 93.04 (percent)
    qa = TaskCard(name="qa_x", version=1, kind="qa", data=DataSpec(format="squad", files={"test": "t.json"}),
                  metric="accuracy", references=[Reference(model="PubMedBERT", score=0.5584, source="BLURB")])
    recs = [_done("bc5_mini", "ner", "biobert", 1, 0.90), _done("bc5_mini", "ner", "biobert", 2, 0.92),
            _done("qa_x", "qa", "biobert", 1, 0.60),
            {"card": "qa_x", "kind": "qa", "encoder": "biobert", "seed": 2, "status": "failed", "reason": "ValueError: boom"}]
    rows = bench_table.summarize(recs, {"bc5_mini": bc5, "qa_x": qa})
    assert rows[0]["mean"] == pytest.approx(91.0) and rows[0]["sd"] == pytest.approx(math.sqrt(2))
    assert rows[0]["reference"] == 93.04 and rows[0]["diff"] == pytest.approx(-2.04)
    assert rows[1]["reference"] == pytest.approx(55.84) and rows[1]["diff"] == pytest.approx(4.16)  # fraction -> x100
    macros = bench_table.macro(rows, n_cards=2)
    assert macros[0]["macro"] == pytest.approx((91.0 + 60.0) / 2)  # mean of family means (ner, qa)
    grid = benchmark.Grid(cards=["a", "b"], encoders=["biobert"], seeds=[1, 2])
    md = bench_table.markdown(rows, macros, recs, grid, Path("bench"))
    assert "| bc5_mini | ner | biobert | f1 | 2 | 91.00 | 1.41 |" in md
    assert "93.04 (BioBERT v1.1) | -2.04 | full |" in md and "55.84 (PubMedBERT) | 4.16 |" in md
    assert "| biobert | 91.00 | 60.00 | 75.50 | 2/2 |" in md and "ValueError: boom" in md
    assert "LIMITED" not in md
    limited = bench_table.summarize([_done("bc5_mini", "ner", "minilm", 1, 0.5, limited=True)], {"bc5_mini": bc5})
    assert limited[0]["limited"] and limited[0]["budget"].startswith("LIMITED")
    # a run limited by a key=value override (no grid budget) carries its reasons into the table
    rec = _done("bc5_mini", "ner", "minilm", 1, 0.5, limited=True) | {
        "limited_reasons": ["num_train_epochs=1, below 3 in configs/ner/minilm.yaml"]}
    row = bench_table.summarize([rec], {"bc5_mini": bc5})[0]
    assert row["budget"] == "LIMITED: num_train_epochs=1, below 3 in configs/ner/minilm.yaml"
    assert "**LIMITED runs**" in bench_table.markdown(limited, bench_table.macro(limited, 1), [], grid, Path("b"))


def test_reference_follows_the_encoder_and_config_resolution() -> None:
    ncbi = load(TaskCard, "tasks/ner/ncbi_disease.yaml")
    assert bench_table.pick_reference(ncbi, "pubmedbert").model == "PubMedBERT"
    assert bench_table.pick_reference(ncbi, "dmis-lab/biobert-base-cased-v1.2").model.startswith("BioBERT")
    assert bench_table.pick_reference(ncbi, "minilm") is ncbi.references[0]
    grid = benchmark.Grid(cards=[], encoders=[], seeds=[], overrides=["learning_rate=3e-5"], epochs=1, max_train_examples=9)
    cfg, source = benchmark.run_config(grid, NER, "biobert", 7)  # no configs/ner/biobert.yaml: minilm's
    assert source.endswith("configs/ner/minilm.yaml") and cfg.encoder == "biobert" and cfg.seed == 7
    assert cfg.learning_rate == 3e-5 and cfg.num_train_epochs == 1.0 and cfg.max_train_examples == 9
    grid.config = "ner/bert_base"
    assert benchmark.run_config(grid, NER, "minilm", 1)[1].endswith("configs/ner/bert_base.yaml")


def test_test_metric_is_the_key_the_card_names() -> None:
    """The card's metric is a score key (data); one the task does not report falls back to its default."""
    def key(metric: str, kind: str = "qa", fmt: str = "bioasq") -> str:
        card = TaskCard(name="x", version=1, kind=kind, data=DataSpec(format=fmt, files={"test": "t"}), metric=metric)
        return selection_metric(registry.for_card(card), card)

    assert key("mrr") == "mrr" and key("f1") == "f1"
    assert key("accuracy", fmt="pubmedqa") == "accuracy"
    assert key("Disease_f1", kind="ner", fmt="conll") == "Disease_f1"  # per-type keys of a per-label task
    assert key("seqeval entity-level f1 (test)", kind="ner", fmt="conll") == "f1"  # prose (an old run.yaml)
    assert key("auroc", kind="readmission", fmt="notes_csv") == "auroc"


def _statuses(out: Path) -> dict[tuple[str, str, int], str]:
    grid = benchmark.load_grid(out)
    return {(c.card.name, benchmark.encoder_slug(c.encoder), c.seed): benchmark.status(c.dir)
            for c in benchmark.expand(grid, out)}


def test_grid_records_failures_resumes_and_reprints_the_table(
        tiny_encoder: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken.yaml"  # its data folder does not exist: the run fails, the grid goes on
    broken.write_text(Path(CARDS[0]).read_text().replace("name: ncbi_mini", "name: broken")
                      .replace("path: ncbi_mini", "path: no_such_folder"))
    rel = tmp_path / "rel.yaml"  # a relation card with a format no relation task reads: refused up front
    rel.write_text(broken.read_text().replace("name: broken", "name: rel_mini").replace("kind: ner", "kind: relation"))
    out = tmp_path / "bench"
    tiny = benchmark.encoder_slug(tiny_encoder)
    argv = ["benchmark", *FAST, "--cards", *CARDS, str(broken), "--encoders",
            f"{tiny_encoder},no-org/no-such-encoder", "--seeds", "1,2", "--max-steps", "2",
            "--data-dir", "tests/fixtures", "--bootstrap", "30", "--out", str(out)]
    assert main([*argv[:-1], str(tmp_path / "refused"), "--cards", str(rel)]) == 2
    err = capsys.readouterr().err
    assert "rel.yaml" in err and "data.format: expected one of ['tsv', 'ddi_xml'] for kind relation" in err
    assert not (tmp_path / "refused").exists()
    assert main(argv) == 0
    st = _statuses(out)
    assert len(st) == 3 * 2 * 2
    assert {k: v for k, v in st.items() if v == "done"}.keys() == {
        (c, tiny, s) for c in ("ncbi_mini", "bc5_mini") for s in (1, 2)}
    run = out / "runs" / "bc5_mini" / tiny / "seed2"
    result = json.loads((run / "result.json").read_text())
    assert result["metric"] == "f1" and 0.0 <= result["value"] <= 1.0 and result["limited"] is True
    assert result["limited_reasons"] == ["max_steps=2"]
    assert "seed: 2" in (run / "run.yaml").read_text() and "max_steps: 2" in (run / "run.yaml").read_text()
    assert len((run / "predictions_test.jsonl").read_text().splitlines()) == result["test_examples"] == 2
    err = json.loads((out / "runs" / "broken" / tiny / "seed1" / "error.json").read_text())
    assert err["type"] == "ClinicalFTError" and "not found" in err["message"] and "Traceback" in err["traceback"]
    skip = json.loads((out / "runs" / "ncbi_mini" / "no-org__no-such-encoder" / "seed1" / "skipped.json").read_text())
    assert skip["type"] == "EncoderNotFound" and "not available offline" in skip["reason"]
    md = (out / "results.md").read_text()
    assert "**LIMITED runs**" in md and "93.04 (BioBERT v1.1)" in md and "EncoderNotFound" in md
    assert "| LIMITED: max_steps=2 |" in md
    assert (out / "results.png").read_bytes()[:4] == b"\x89PNG"
    assert len((out / "runs.csv").read_text().splitlines()) == 1 + 12
    assert len((out / "results.csv").read_text().splitlines()) == 1 + 2

    # interruption: one run never started, one trained but not yet scored; resume redoes only those
    shutil.rmtree(out / "runs" / "bc5_mini" / tiny / "seed2")
    (out / "runs" / "ncbi_mini" / tiny / "seed2" / "result.json").unlink()
    kept = out / "runs" / "ncbi_mini" / tiny / "seed1" / "result.json"
    before = kept.stat().st_mtime_ns
    trained: list[tuple[str, str, int]] = []
    real_train = benchmark.engine.train

    def spy(task, card, cfg, out_dir, **kw):  # noqa: ANN001, ANN003, ANN202
        trained.append((card.name, cfg.encoder, cfg.seed))
        return real_train(task, card, cfg, out_dir, **kw)

    monkeypatch.setattr(benchmark.engine, "train", spy)
    assert main(["benchmark", "--resume", str(out)]) == 0
    # failed and skipped runs are retried; of the finished ones, only the removed run trains again
    assert [t for t in trained if t[0] != "broken" and t[1] == tiny_encoder] == [("bc5_mini", tiny_encoder, 2)]
    assert _statuses(out) == st and kept.stat().st_mtime_ns == before
    # a different grid in the same folder is refused; the table is printed again without training
    assert main(["3" if a == "1,2" else a for a in argv]) == 2  # seeds 3 instead of 1,2
    assert "holds a different grid" in capsys.readouterr().err
    monkeypatch.setattr(benchmark.engine, "train", None)
    assert main(["benchmark", "--table", str(out), "--format", "markdown"]) == 0
    assert capsys.readouterr().out.strip() == (out / "results.md").read_text().strip()


def test_ner_bootstrap_from_entity_counts_equals_rescoring_with_seqeval() -> None:
    """The fast path (summing per-sentence entity counts) gives seqeval's score on every resample."""
    card = load(TaskCard, "tests/fixtures/ncbi_mini.yaml")
    gold = NER.load_split(card, "test", "tests/fixtures")
    rng = np.random.default_rng(3)
    tags = ["O", "B-Disease", "I-Disease"]  # noisy predictions: some right, some split, some I- after O
    preds = [[t if rng.random() < 0.7 else tags[rng.integers(0, 3)] for t in s.tags] for s in gold]
    for key in ("f1", "precision", "recall", "Disease_f1"):
        rows, value = NER.score_counts(gold, preds, [], key)
        assert value(rows.sum(axis=0)) == pytest.approx(NER.score(gold, preds, [])[key], abs=1e-12)
        for _ in range(5):
            idx = rng.integers(0, len(gold), size=len(gold))
            want = NER.score([gold[i] for i in idx], [preds[i] for i in idx], [])[key]
            assert value(rows[idx].sum(axis=0)) == pytest.approx(want, abs=1e-12)
    assert NER.score_counts(gold, preds, [], "Disease_support") is None  # not a count ratio: re-scored
    with pytest.raises(ValueError, match="sentence 0"):  # misaligned predictions fail as seqeval does
        NER.score_counts(gold, [p[:-1] for p in preds], [], "f1")

    class Rescoring(type(NER)):  # the same task without the fast path (the protocol's default hook)
        score_counts = Task.score_counts

    other = [[t if rng.random() < 0.8 else "O" for t in s.tags] for s in gold]  # a second seed's predictions
    fast = bench_table.seed_mean_ci(NER, gold, [], [preds, other], "f1", 60, 0)
    slow = bench_table.seed_mean_ci(Rescoring(), gold, [], [preds, other], "f1", 60, 0)
    assert fast == pytest.approx(slow, abs=1e-12)
