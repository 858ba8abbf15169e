"""End-to-end runs on the real bundled MiniLM (marked slow; CI runs them).

Skipped when ../shared/data/ncbi_disease is missing, unless CI=true, where missing data fails.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from clinical_ft.ner.cli import main as ner_main
from clinical_ft.resources import data_root

pytestmark = pytest.mark.slow
NCBI = data_root() / "ncbi_disease"


def need_data(path: Path) -> None:
    """Skip without the data folder, but fail under CI=true: CI must run these tests."""
    if path.is_dir():
        return
    if os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail(f"CI=true but {path} is missing (set $CLINICAL_FT_DATA or provide ../shared/data)")
    pytest.skip(f"needs {path}")


def test_ner_minilm_learns_disease_mentions(tmp_path: Path) -> None:
    need_data(NCBI)
    out = tmp_path / "ncbi"
    rc = ner_main(["train", "--card", "ner/ncbi_disease", "--config", "ner/minilm", "--out", str(out),
                   "max_train_examples=800", "max_eval_examples=200", "num_train_epochs=2",
                   "per_device_train_batch_size=16", "eval_strategy=no"])
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["encoder"] == "minilm" and m["limited"] is True
    assert ner_main(["evaluate", "--model", str(out), "--split", "validation"]) == 0
    ev = json.loads((out / "eval_validation.json").read_text())
    assert ev["examples"] == 923
    assert ev["f1"] > 0.35, ev  # a pretrained encoder learns disease mentions from 800 sentences
