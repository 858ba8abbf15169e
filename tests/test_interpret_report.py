"""`clinical-ft report`: a self-contained page about a run directory."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pytest

from clinical_ft import cli, encoders, engine
from clinical_ft.config import DataSpec, TaskCard, TrainConfig, load
from clinical_ft.interpret.heatmap import heatmap_png
from clinical_ft.rundir import save_run_file

FIX = Path(__file__).parent / "fixtures"


def make_run_dir(root: Path) -> Path:
    run = root / "runs" / "readmit"
    run.mkdir(parents=True)
    card = TaskCard(name="synthetic_readmission", version=1, kind="readmission",
                    data=DataSpec(format="notes_csv", files={"test": "t.csv"}), metric="auroc")
    save_run_file(run, card, TrainConfig(max_length=64, stride=16), ["0", "1"])
    (run / "metrics.json").write_text(json.dumps({"task": "synthetic_readmission", "train_loss": 0.61234,
                                                  "validation": {"auroc": 0.7123, "rp80": 0.25}}))
    (run / "eval_test.json").write_text(json.dumps({"split": "test", "examples": 40, "auroc": 0.6987}))
    (run / "README.md").write_text("# card\n\nNot a medical device <script>alert(1)</script>\n")
    (run / "loss_curve.png").write_bytes(heatmap_png([("curve", np.eye(4))]))
    return run


def test_run_report_embeds_metrics_curves_and_card(tmp_path: Path) -> None:
    run = make_run_dir(tmp_path)
    out = tmp_path / "run_report.html"
    assert cli.main(["report", "--run", str(run), "--out", str(out)]) == 0
    html = out.read_text(encoding="utf-8")
    assert "0.7123" in html and "0.6987" in html and "0.6123" in html and "eval_test.json" in html
    uris = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert [base64.b64decode(u) for u in uris] == [(run / "loss_curve.png").read_bytes()]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>alert" not in html
    assert "<script" not in html and "http://" not in html and "https://" not in html
    assert "synthetic_readmission" in html and "max_length: 64" in html
    assert "No example explanation is shown: the run directory has no test predictions (predictions_test.jsonl" in html


def test_run_report_rejects_a_non_run(tmp_path: Path, capsys) -> None:
    assert cli.main(["report", "--run", str(tmp_path), "--out", str(tmp_path / "x.html")]) == 2
    assert "not a clinical_ft run directory" in capsys.readouterr().err
    assert not (tmp_path / "x.html").exists()


def readmission_run_with_predictions(root: Path, tiny_encoder: str) -> tuple[Path, dict[str, float]]:
    """A run directory holding a (random) tiny model and predictions_test.jsonl of the notes_mini fixture."""
    import csv

    import torch
    from transformers import AutoModelForSequenceClassification

    run = root / "runs" / "readmit"
    card = load(TaskCard, FIX / "readmission" / "notes_mini.yaml")
    torch.manual_seed(0)
    encoders.load_model(AutoModelForSequenceClassification, tiny_encoder, num_labels=2).save_pretrained(run)
    encoders.load_tokenizer(tiny_encoder).save_pretrained(run)
    save_run_file(run, card, TrainConfig(max_length=48, stride=12), list(card.labels))
    with (FIX / "readmission" / "notes_mini" / "test.csv").open(encoding="utf-8", newline="") as fh:
        ids = [r["admission_id"] for r in csv.DictReader(fh)]
    risk = {i: round(0.1 + 0.8 * k / (len(ids) - 1), 3) for k, i in enumerate(reversed(ids))}
    engine.write_predictions(run / "predictions_test.jsonl", [
        {"risk": risk[i], "n_chunks": 1, "top_chunk_start": 0, "top_chunk_end": 10, "top_chunk_prob": risk[i]}
        for i in ids])
    return run, risk


def test_run_report_embeds_example_explanations(tiny_encoder: str, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    run, risk = readmission_run_with_predictions(tmp_path, tiny_encoder)
    (run / "explain report.html").write_text("<!DOCTYPE html><title>x</title>", encoding="utf-8")
    out = tmp_path / "reports" / "run_report.html"
    monkeypatch.setenv("CLINICAL_FT_DATA", str(FIX))
    assert cli.main(["report", "--run", str(run), "--out", str(out)]) == 0
    html = out.read_text(encoding="utf-8")
    hi, lo = max(risk, key=risk.get), min(risk, key=risk.get)
    assert re.findall(r'<section class="doc" id="doc\d+">\s*<h2>(.*?)</h2>', html) == [hi, lo]
    assert "highest risk (0.900)" in html and "lowest risk (0.100)" in html and "attention only" in html
    assert '<a href="../runs/readmit/explain%20report.html">explain report.html</a>' in html
    assert (out.parent / "../runs/readmit/explain report.html").resolve().is_file()  # the relative link resolves
    assert not re.search(r"src=\"(?!data:)", html) and "http://" not in html and "https://" not in html
    data = [json.loads(m) for m in re.findall(r'class="data">(.*?)</script>', html)]
    assert len(data) == 2 and all(t["scores"] is None for d in data for t in d["targets"])
    assert "<script>" in html and list((tmp_path / "reports" / "run_report_heatmaps").glob("*.png"))

    monkeypatch.setenv("CLINICAL_FT_DATA", str(tmp_path / "nowhere"))
    assert cli.main(["report", "--run", str(run), "--out", str(out)]) == 0
    html = out.read_text(encoding="utf-8")
    assert "No example explanation is shown: the test examples could not be read again" in html
    assert '<section class="doc"' not in html and "<script" not in html


def test_run_report_examples_from_benchmark_predictions(tiny_encoder: str, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Other tasks: predictions_test.jsonl as engine.evaluate(save_predictions=True) writes it (relation)."""
    from clinical_ft import relation
    from clinical_ft.relation.pairs import add_markers, read_tsv

    card = load(TaskCard, FIX / "relation" / "gad_mini.yaml")
    cfg = TrainConfig(max_length=48, stride=8)
    run = tmp_path / "rel"
    relation.TASK.build_model(tiny_encoder, ["0", "1"], cfg).save_pretrained(run)
    tok = encoders.load_tokenizer(tiny_encoder)
    add_markers(tok)
    tok.save_pretrained(run)
    save_run_file(run, card, cfg, ["0", "1"])
    out = tmp_path / "report.html"
    monkeypatch.setenv("CLINICAL_FT_DATA", str(FIX))
    assert cli.main(["report", "--run", str(run), "--out", str(out)]) == 0
    assert "no test predictions (predictions_test.jsonl" in out.read_text(encoding="utf-8")
    test = read_tsv(FIX / "relation" / "gad_mini" / "test.tsv")
    probs = [0.5 + 0.4 * k / len(test) for k in range(len(test))]
    engine.write_predictions(run / "predictions_test.jsonl", [["1", p] for p in probs])
    assert cli.main(["report", "--run", str(run), "--out", str(out)]) == 0
    html = out.read_text(encoding="utf-8")
    assert re.findall(r'<section class="doc" id="doc\d+">\s*<h2>(.*?)</h2>', html) == [test[-1].id, test[0].id]
    assert "most confident (1, p=" in html and "Predicted:" in html and "Gold label:" in html


def test_report_data_dir_and_yesno_examples(tiny_encoder: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """A yes/no QA run: `--data-dir` finds the test examples (the environment points elsewhere), the
    two picked examples are explained, and the "Write more" line names the qa explain command."""
    from test_interpret import yesno_run_dir

    from clinical_ft import qa

    card = load(TaskCard, FIX / "qa" / "pubmedqa_mini.yaml")
    run = yesno_run_dir(tiny_encoder, tmp_path / "pqa_run", card)
    test = qa.YESNO.load_split(card, "test", FIX / "qa")
    assert len(test) == 2
    engine.write_predictions(run / "predictions_test.jsonl", [
        {"label": "no", "probability": 0.55, "probabilities": {"yes": 0.4, "no": 0.55, "maybe": 0.05}, "windows": 9},
        {"label": "yes", "probability": 0.81, "probabilities": {"yes": 0.81, "no": 0.1, "maybe": 0.09}, "windows": 9}])
    monkeypatch.setenv("CLINICAL_FT_DATA", str(tmp_path / "nowhere"))
    out = tmp_path / "report.html"
    assert cli.main(["report", "--run", str(run), "--out", str(out)]) == 0
    assert "the test examples could not be read again" in out.read_text(encoding="utf-8")
    assert cli.main(["report", "--run", str(run), "--out", str(out), "--data-dir", str(FIX / "qa")]) == 0
    html = out.read_text(encoding="utf-8")
    assert re.findall(r'<section class="doc" id="doc\d+">\s*<h2>(.*?)</h2>', html) == [test[1].id, test[0].id]
    assert "most confident (yes, p=0.810)" in html and "least confident (no, p=0.550)" in html
    assert html.count("Predicted: ") == 2 and "Gold answer: " in html and "No example explanation" not in html
    assert f"python -m clinical_ft.qa explain --model {run}" in html
    data = [json.loads(m) for m in re.findall(r'class="data">(.*?)</script>', html)]
    assert len(data) == 2 and all(t["scores"] is None for d in data for t in d["targets"])  # attention only

    capsys.readouterr()

    def no_load(*args, **kwargs):
        raise AssertionError("--no-examples must not load the model")

    monkeypatch.setattr(engine, "load_run", no_load)
    assert cli.main(["report", "--run", str(run), "--out", str(out), "--no-examples"]) == 0
    html = out.read_text(encoding="utf-8")
    assert "skipped on request (--no-examples)" in html and '<section class="doc"' not in html
    assert "<script" not in html and "run report written to" in capsys.readouterr().out
