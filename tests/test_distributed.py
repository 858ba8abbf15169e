"""Training under torchrun is data parallel on CPU (gloo): each rank trains on its shard, the steps
of an epoch are divided by the world size, and the gathered evaluation covers every example once."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CARD = "tests/fixtures/readmission/notes_mini.yaml"  # 37 training windows, 6 validation admissions
COMMON = ["max_length=32", "stride=8", "num_train_epochs=1", "eval_strategy=epoch", "early_stopping_patience=0",
          "task_options.bootstrap=0"]


def _train(n_proc: int, out: Path, encoder: str, batch: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    launcher = [shutil.which("torchrun") or "torchrun", "--nproc_per_node", str(n_proc), "--master_port", str(29511 + n_proc)]
    cmd = [*launcher, "-m", "clinical_ft.readmission", "train", "--card", CARD, "--data-dir", "tests/fixtures",
           "--out", str(out), "--encoder", encoder, *COMMON, f"per_device_train_batch_size={batch}"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "parallel_mode != ParallelMode.DISTRIBUTED" not in proc.stderr
    return json.loads((out / "metrics.json").read_text())


@pytest.mark.skipif(sys.platform != "linux", reason="torchrun with gloo on Linux")
def test_torchrun_divides_the_steps_and_evaluates_every_example_once(tiny_encoder: str, tmp_path: Path) -> None:
    one = _train(1, tmp_path / "one", tiny_encoder, 4)
    two = _train(2, tmp_path / "two", tiny_encoder, 4)  # same per-device batch: a global batch of 8
    assert (one["global_steps"], two["global_steps"]) == (10, 5)  # ceil(37 / 4) and ceil(37 / 8)
    assert two["epochs_run"] == 1.0 and two["device"] == "cpu:0"
    # the validation admissions were gathered from both ranks: 6 admissions, no duplicate from padding
    assert one["calibration"]["fitted_on"] == two["calibration"]["fitted_on"] == 6
    same_global = _train(1, tmp_path / "one_b8", tiny_encoder, 8)  # one process, the same global batch
    assert same_global["global_steps"] == two["global_steps"]
    for key in ("loss", "auroc"):
        assert two["validation"][key] == pytest.approx(same_global["validation"][key], abs=0.05), key
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())


def _cli(n_proc: int, module: str, args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    launcher = [shutil.which("torchrun") or "torchrun", "--nproc_per_node", str(n_proc), "--master_port", str(29521 + n_proc)]
    proc = subprocess.run([*launcher, "-m", module, *args], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.skipif(sys.platform != "linux", reason="torchrun with gloo on Linux")
def test_distributed_predict_equals_single_process_bad_rows_included(tiny_encoder: str, tmp_path: Path) -> None:
    import csv

    run = tmp_path / "run"
    _train(1, run, tiny_encoder, 4)
    rows = list(csv.DictReader(open("tests/fixtures/readmission/notes_mini/test.csv", encoding="utf-8")))
    notes = tmp_path / "notes.csv"
    with notes.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["admission_id", "text"])
        w.writerows([[r["admission_id"], r["text"]] for r in rows] + [["empty", " "], [rows[0]["admission_id"], "dup"]]
                    + [[f"x{i}", rows[i % len(rows)]["text"] * (1 + i % 3)] for i in range(9)])
    outs = {}
    for n in (1, 2):
        out = tmp_path / f"risk{n}.csv"
        _cli(n, "clinical_ft.readmission", ["predict", "--model", str(run), "--notes", str(notes), "--out", str(out),
                                             "--batch-size", "3"])
        outs[n] = (list(csv.DictReader(out.open())), (tmp_path / f"risk{n}.skipped.csv").read_text())
    (one, skip1), (two, skip2) = outs[1], outs[2]
    assert [r["admission_id"] for r in one] == [r["admission_id"] for r in two] and len(one) == len(rows) + 9
    for a, b in zip(one, two):
        assert abs(float(a["risk"]) - float(b["risk"])) < 1e-5 and a["n_chunks"] == b["n_chunks"]
    assert skip1 == skip2 and skip1.count("\n") == 3  # header + the empty note + the duplicate id
    assert not list(tmp_path.glob("*.tmp"))
