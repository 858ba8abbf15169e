"""`clinical-ft report`: a self-contained page about a run directory."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np

from clinical_ft import cli, engine
from clinical_ft.config import DataSpec, TaskCard, TrainConfig
from clinical_ft.interpret.heatmap import heatmap_png


def make_run_dir(root: Path) -> Path:
    run = root / "runs" / "readmit"
    run.mkdir(parents=True)
    card = TaskCard(name="synthetic_readmission", version=1, kind="readmission",
                    data=DataSpec(format="csv", files={"test": "t.csv"}), metric="auroc")
    engine._save_run_file(run, card, TrainConfig(max_length=64, stride=16), ["0", "1"])
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


def test_run_report_rejects_a_non_run(tmp_path: Path, capsys) -> None:
    assert cli.main(["report", "--run", str(tmp_path), "--out", str(tmp_path / "x.html")]) == 2
    assert "not a clinical_ft run directory" in capsys.readouterr().err
    assert not (tmp_path / "x.html").exists()
