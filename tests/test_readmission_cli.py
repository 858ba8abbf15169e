"""Every `python -m clinical_ft.readmission` subcommand through main(argv) with the tiny encoder,
plus one slow end-to-end `demo` on the real bundled MiniLM."""

from __future__ import annotations

import csv
import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from clinical_ft import engine, leakage
from clinical_ft.readmission import TASK, synthetic
from clinical_ft.readmission.cli import main


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("readmit")
    syn = synthetic.generate(root / "syn", 40, seed=1, words=90)
    assert main(["prepare", "--mimic-dir", syn["out"], "--out", str(root / "data")]) == 0
    return root / "data"


@pytest.fixture(scope="module")
def trained(prepared: Path, tiny_encoder: str) -> Path:
    out = prepared.parent / "run"
    rc = main(["train", "--data", str(prepared), "--config", "readmission/minilm", "--encoder", tiny_encoder,
               "--out", str(out), "max_length=64", "stride=8", "max_steps=2", "per_device_train_batch_size=4",
               "eval_strategy=steps", "eval_steps=2", "aggregation=max", "task_options.bootstrap=100"])
    assert rc == 0
    return out


def test_prepare_writes_splits_and_card(prepared: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert {p.name for p in prepared.iterdir()} >= {"train.csv", "validation.csv", "test.csv", "card.yaml"}
    header = next(csv.reader((prepared / "train.csv").open()))
    assert header == ["admission_id", "text", "label", "subject_id", "gender", "age_group", "admission_type",
                      "insurance", "ethnicity"]  # the admission attributes that define subgroups


def test_train_selects_on_admission_auroc(trained: Path) -> None:
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["global_steps"] == 2
    assert "auroc" in metrics["validation"] and "rp80" in metrics["validation"]
    run = engine.load_run(TASK, trained)
    assert run.cfg.aggregation == "max" and run.card.kind == "readmission"


def test_evaluate_writes_metrics_predictions_and_curves(trained: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "--model", str(trained), "--split", "test"]) == 0
    result = json.loads((trained / "eval_test.json").read_text())
    assert {"auroc", "auprc_avg_precision", "auprc_trapezoid", "rp80"} <= set(result)
    art = result["artifacts"]
    assert art["plots"] == ["roc_test.png", "pr_test.png", "reliability_test.png", "decision_test.png"]
    assert (art["aggregation"], art["aggregation_c"]) == ("max", 2.0) and art["calibration"].startswith("platt")
    assert {"brier", "ece", "calibration_slope", "uncalibrated_brier"} <= set(result)
    assert {"auroc", "brier", "ece", "rp80"} <= set(art["intervals"]) and "patients" in art["interval_method"]
    assert [p["name"] for p in art["operating_points"]] == ["precision_0.8", "sensitivity_0.8", "top_10pct"]
    for name in ("roc_test.png", "pr_test.png", "reliability_test.png", "predictions_test.jsonl"):
        assert (trained / name).is_file()
    rows = engine.read_predictions(trained / "predictions_test.jsonl")  # the format every task's evaluate writes
    assert len(rows) == result["admissions"] and set(rows[0]) == {"risk", "score", "n_chunks", "top_chunk_start",
                                                                  "top_chunk_end", "top_chunk_prob"}
    assert "auroc" in capsys.readouterr().out


def test_evaluate_refuses_a_test_split_the_encoder_was_pretrained_on(trained: Path, prepared: Path, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(trained, run_dir)
    (run_dir / "eval_test.json").unlink(missing_ok=True)
    text = next(csv.DictReader((prepared / "test.csv").open()))["text"]
    manifest = {"sources": [{"path": "corpus.txt", "sha256": "0" * 64}], "unit_hashes": [leakage.text_hash(text)]}
    (run_dir / leakage.MANIFEST).write_text(json.dumps(manifest))
    assert main(["evaluate", "--model", str(run_dir), "--split", "test"]) == 2
    assert "pre-trained on text of the test split" in capsys.readouterr().err
    assert not (run_dir / "eval_test.json").exists()
    assert main(["evaluate", "--model", str(run_dir), "--split", "validation"]) == 0  # only test is guarded


def test_one_class_split_writes_null_not_nan(trained: Path, prepared: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(prepared, data)
    rows = list(csv.DictReader((prepared / "test.csv").open()))
    with (data / "test.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows([r for r in rows if r["label"] == "0"])
    shutil.copytree(trained, tmp_path / "run")
    run = engine.load_run(TASK, tmp_path / "run")
    run.card.data.path = str(data)
    result = engine.evaluate(TASK, run, "test")
    assert math.isnan(result["auroc"])

    def no_constants(name: str) -> None:
        raise AssertionError(f"{name} in eval_test.json")

    saved = json.loads((tmp_path / "run" / "eval_test.json").read_text(), parse_constant=no_constants)
    assert saved["auroc"] is None and saved["rp80"] is None and saved["positives"] == 0


def test_predict_accounts_for_every_row(trained: Path, prepared: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    src = list(csv.DictReader((prepared / "test.csv").open()))[:4]
    notes = tmp_path / "notes.csv"
    with notes.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["hadm", "note"])
        w.writerows([[r["admission_id"], r["text"]] for r in src] + [["x", " "]])
    out = tmp_path / "pred" / "risk.csv"
    rc = main(["predict", "--model", str(trained), "--notes", str(notes), "--out", str(out), "--id-column", "hadm",
               "--text-column", "note", "--aggregation", "clinicalbert", "--c", "3"])
    assert rc == 0
    rows = list(csv.DictReader(out.open()))
    assert [r["admission_id"] for r in rows] == [r["admission_id"] for r in src]
    assert all(r["aggregation"] == "clinicalbert" and 0 <= float(r["risk"]) <= 1 for r in rows)
    assert {r["aggregation_c"] for r in rows} == {"3.0"}
    skipped = list(csv.DictReader((out.parent / "risk.skipped.csv").open()))
    assert [(s["row"], s["id"]) for s in skipped] == [("5", "x")]
    assert "4 admissions scored" in capsys.readouterr().out
    assert main(["predict", "--model", str(trained), "--notes", str(notes), "--out", str(out)]) == 2
    assert "hadm" in capsys.readouterr().err  # the header it found is named


@pytest.mark.parametrize("c", ["0", "-1", "nan"])
def test_aggregation_constant_must_be_positive(c: str, trained: Path, prepared: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "risk.csv"
    assert main(["predict", "--model", str(trained), "--notes", str(prepared / "test.csv"), "--out", str(out),
                 "--c", c]) == 2
    assert "--c: expected" in capsys.readouterr().err and not out.exists()
    assert main(["evaluate", "--model", str(trained), "--split", "test", "--c", c]) == 2


def test_explain_writes_a_report(trained: Path, prepared: Path, tmp_path: Path) -> None:
    ids = [r["admission_id"] for r in list(csv.DictReader((prepared / "test.csv").open()))[:2]]
    out = tmp_path / "report.html"
    rc = main(["explain", "--model", str(trained), "--notes", str(prepared / "test.csv"), "--ids", ",".join(ids),
               "--out", str(out), "--no-attributions"])
    assert rc == 0
    html = out.read_text()
    assert html.startswith("<!") and ids[0] in html
    assert main(["explain", "--model", str(trained), "--notes", str(prepared / "test.csv"), "--ids", "nope",
                 "--out", str(out)]) == 2


def test_demo_runs_end_to_end_on_a_tiny_model(tiny_encoder: str, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["demo", "--out", str(tmp_path / "demo"), "--encoder", tiny_encoder, "--patients", "30",
               "--words", "60", "--max-steps", "2", "--no-attributions"])
    assert rc == 0
    out = capsys.readouterr().out
    for name in ("risk.csv", "risk.skipped.csv", "report.html", "run/eval_test.json", "data/card.yaml",
                 "data/skipped.csv"):
        assert (tmp_path / "demo" / name).is_file(), name
        assert str(tmp_path / "demo" / name) in out or name.startswith(("run/", "data/"))
    assert "SYNTHETIC" in out
    _assert_both_classes_scored(tmp_path / "demo" / "run" / "eval_test.json")


def _assert_both_classes_scored(eval_json: Path) -> None:
    result = json.loads(eval_json.read_text())
    assert 0 < result["positives"] < result["admissions"]  # the demo's synthetic test split has both classes
    assert isinstance(result["auroc"], float) and math.isfinite(result["auroc"]) and 0.0 <= result["auroc"] <= 1.0


def test_module_entry_point() -> None:
    r = subprocess.run([sys.executable, "-m", "clinical_ft.readmission", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "demo" in r.stdout and "predict" in r.stdout


@pytest.mark.slow
def test_demo_on_the_bundled_minilm(tmp_path: Path) -> None:
    rc = main(["demo", "--out", str(tmp_path / "demo"), "--patients", "50", "--words", "150", "--max-steps", "8"])
    assert rc == 0
    _assert_both_classes_scored(tmp_path / "demo" / "run" / "eval_test.json")
    html = (tmp_path / "demo" / "report.html").read_text()
    assert html.startswith("<!") and 'class="strip"' in html and "Faithfulness of window" in html
    data = [json.loads(d) for d in re.findall(r'<script type="application/json" class="data">(.*?)</script>', html, re.S)]
    assert len(data) == 2 and all(any(s for s in d["targets"][0]["scores"]) for d in data)  # IG attributions, both notes
    assert "integrated gradients of window" in html.lower() or "Integrated gradients of window" in html


def test_predict_writes_calibrated_risks_beside_the_scores_and_a_drift_summary(
        trained: Path, prepared: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from clinical_ft.readmission import calibration

    cal = calibration.load(trained)
    assert cal is not None and cal.method == "platt" and cal.fitted_on > 0  # fitted on validation at train time
    assert "platt calibration fitted on" in (trained / "README.md").read_text()  # the model card says how
    out = tmp_path / "risk.csv"
    assert main(["predict", "--model", str(trained), "--notes", str(prepared / "test.csv"), "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0])[:4] == ["admission_id", "risk", "score", "n_chunks"]
    assert {r["calibration"] for r in rows} == {"platt"} and {r["prevalence"] for r in rows} == {""}
    scores = np.array([float(r["score"]) for r in rows])
    assert np.allclose([float(r["risk"]) for r in rows], cal.apply(scores), atol=2e-6)
    drift = json.loads((tmp_path / "risk.drift.json").read_text())
    assert drift["scored"] == len(rows) and drift["psi"] is not None and set(drift["share_above_threshold"]) == {
        "precision_0.8", "sensitivity_0.8", "top_10pct"}
    assert "risks: platt calibration" in capsys.readouterr().out

    low = tmp_path / "risk_low.csv"  # deployment prevalence 5%: every risk moves down by the odds ratio
    assert main(["predict", "--model", str(trained), "--notes", str(prepared / "test.csv"), "--out", str(low),
                 "--prevalence", "0.05"]) == 0
    shifted = list(csv.DictReader(low.open()))
    expected = calibration.prior_shift(cal.apply(scores), cal.prevalence, 0.05)
    assert np.allclose([float(r["risk"]) for r in shifted], expected, atol=2e-6)
    assert {r["prevalence"] for r in shifted} == {"0.05"} and "moved to a prevalence of 0.05" in capsys.readouterr().out
    assert main(["predict", "--model", str(trained), "--notes", str(prepared / "test.csv"), "--out", str(low),
                 "--prevalence", "1.5"]) == 2
    assert "prevalence: expected a readmission rate in (0, 1)" in capsys.readouterr().err


def test_a_run_without_a_calibrator_still_predicts_and_says_so(trained: Path, prepared: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    old = tmp_path / "old_run"  # as trained before calibration existed
    shutil.copytree(trained, old)
    (old / "calibration.json").unlink()
    out = tmp_path / "risk.csv"
    assert main(["predict", "--model", str(old), "--notes", str(prepared / "test.csv"), "--out", str(out),
                 "--prevalence", "0.1"]) == 0
    rows = list(csv.DictReader(out.open()))
    assert all(r["risk"] == r["score"] and r["calibration"] == "none" and r["prevalence"] == "" for r in rows)
    assert "risks: none: this run has no calibration.json" in capsys.readouterr().out


def test_evaluate_reports_each_subgroup(trained: Path) -> None:
    assert main(["evaluate", "--model", str(trained), "--split", "test", "--subgroups", "gender,admission_type"]) == 0
    groups = json.loads((trained / "eval_test.json").read_text())["artifacts"]["subgroups"]
    assert {g["attribute"] for g in groups} == {"gender", "admission_type"}
    assert all({"n", "events", "auroc", "auroc_low", "auroc_high", "too_small", "differs"} <= set(g) for g in groups)
    assert sum(g["n"] for g in groups if g["attribute"] == "gender") == json.loads(
        (trained / "eval_test.json").read_text())["admissions"]
    assert main(["evaluate", "--model", str(trained), "--split", "test", "--subgroups", "shoe_size"]) == 2
