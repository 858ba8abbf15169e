"""Training under torchrun/accelerate launch is data parallel on CPU (gloo): each rank trains on its
shard, the steps of an epoch are divided by the world size, the gathered evaluation covers every
example once, the leakage check runs once, both ranks end with the same weights, train_loss is the
mean over the ranks, and an interrupted 2-process run resumes to the uninterrupted weights."""

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


ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def _train(n_proc: int, out: Path, encoder: str, batch: int, logs: list[str] | None = None, *extra: str) -> dict:
    launcher = [shutil.which("torchrun") or "torchrun", "--nproc_per_node", str(n_proc), "--master_port", str(29511 + n_proc)]
    cmd = [*launcher, "-m", "clinical_ft.readmission", "train", "--card", CARD, "--data-dir", "tests/fixtures",
           "--out", str(out), "--encoder", encoder, *COMMON, f"per_device_train_batch_size={batch}", *extra]
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "parallel_mode != ParallelMode.DISTRIBUTED" not in proc.stderr
    if logs is not None:
        logs.append(proc.stderr)
    return json.loads((out / "metrics.json").read_text())


@pytest.fixture(scope="module")
def manifest_encoder(tiny_encoder: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The tiny encoder with an (empty) pre-training manifest: training runs the leakage check and logs it."""
    out = tmp_path_factory.mktemp("dapt") / "tiny"
    shutil.copytree(tiny_encoder, out)
    (out / "pretraining_manifest.json").write_text(json.dumps({"sources": [], "unit_hashes": []}))
    return str(out)


@pytest.mark.skipif(sys.platform != "linux", reason="torchrun with gloo on Linux")
def test_torchrun_divides_the_steps_and_evaluates_every_example_once(manifest_encoder: str, tmp_path: Path) -> None:
    logs: list[str] = []
    one = _train(1, tmp_path / "one", manifest_encoder, 4)
    two = _train(2, tmp_path / "two", manifest_encoder, 4, logs)  # same per-device batch: a global batch of 8
    assert logs[0].count("leakage check: test split") == 1  # rank 0 checked; rank 1 waited for its verdict
    assert (one["global_steps"], two["global_steps"]) == (10, 5)  # ceil(37 / 4) and ceil(37 / 8)
    assert two["epochs_run"] == 1.0 and two["device"] == "cpu:0"
    assert one["device"] == "cpu"  # torchrun with one process in all: the plain path (no process group, no DDP)
    # the validation admissions were gathered from both ranks: 6 admissions, no duplicate from padding
    assert one["calibration"]["fitted_on"] == two["calibration"]["fitted_on"] == 6
    same_global = _train(1, tmp_path / "one_b8", manifest_encoder, 8)  # one process, the same global batch
    assert same_global["global_steps"] == two["global_steps"]
    for key in ("loss", "auroc"):
        assert two["validation"][key] == pytest.approx(same_global["validation"][key], abs=0.05), key
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())


@pytest.mark.skipif(sys.platform != "linux", reason="torchrun with gloo on Linux")
def test_token_budget_batches_are_shared_out_between_the_ranks(tiny_encoder: str, tmp_path: Path) -> None:
    """Each rank takes every other token-budget batch (the sampler is rank-aware; the Trainer must not
    shard it a second time): two processes run half the steps of one, rounded up."""
    one = _train(1, tmp_path / "one", tiny_encoder, 4, None, "batch_tokens=100")
    two = _train(2, tmp_path / "two", tiny_encoder, 4, None, "batch_tokens=100")
    assert two["global_steps"] == -(-one["global_steps"] // 2) and two["epochs_run"] == 1.0


def _cli(n_proc: int, module: str, args: list[str]) -> subprocess.CompletedProcess:
    launcher = [shutil.which("torchrun") or "torchrun", "--nproc_per_node", str(n_proc), "--master_port", str(29521 + n_proc)]
    proc = subprocess.run([*launcher, "-m", module, *args], env=ENV, capture_output=True, text=True, timeout=300)
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


def _probe(launcher: list[str], out: Path, encoder: str, *extra: str) -> subprocess.CompletedProcess:
    """tests/ddp_probe.py (readmission train; per-rank weight digests in <out>.digests) on 2 processes."""
    args = ["--digests", f"{out}.digests", "--card", CARD, "--data-dir", "tests/fixtures", "--encoder", encoder,
            "--out", str(out), *COMMON, "num_train_epochs=2", "per_device_train_batch_size=4", *extra]
    return subprocess.run([*launcher, "tests/ddp_probe.py", *args], env=ENV, capture_output=True, text=True, timeout=300)


def _digests(out: Path) -> list[str]:
    return [(Path(f"{out}.digests") / f"rank{r}.sha256").read_text() for r in (0, 1)]


@pytest.mark.skipif(sys.platform != "linux", reason="torchrun with gloo on Linux")
def test_interrupted_two_process_run_resumes_to_the_weights_of_accelerate_launch(tiny_encoder: str,
                                                                                 tmp_path: Path) -> None:
    import hashlib

    # reference: accelerate launch (multi_gpu launcher = torchrun underneath; gloo on CPU), every step logged,
    # so that transformers' own gathered step losses give the mean over the ranks
    accel = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
             "--main_process_port", "29531"]
    ref = _probe(accel, tmp_path / "ref", tiny_encoder, "logging_steps=1")
    assert ref.returncode == 0, ref.stderr[-3000:]
    ref_metrics = json.loads((tmp_path / "ref" / "metrics.json").read_text())
    assert ref_metrics["global_steps"] == 10  # 2 epochs of ceil(37 / 8): two processes, not one
    d0, d1 = _digests(tmp_path / "ref")
    assert d0 == d1  # both ranks end with the same weights
    torchrun = [shutil.which("torchrun") or "torchrun", "--nproc_per_node", "2", "--master_port", "29532"]
    run = tmp_path / "run"
    killed = _probe(torchrun, run, tiny_encoder, "--stop-after-save", "5")  # both ranks stop after checkpoint-5
    assert killed.returncode != 0 and not (run / "metrics.json").exists()
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["checkpoint-5"]
    resumed = _probe(torchrun, run, tiny_encoder)  # logging_steps at its default: the steps are never logged
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert (metrics["resumed"], metrics["resumed_from_step"], metrics["global_steps"]) == (True, 5, 10)
    assert _digests(run) == [d0, d0]
    sha = [hashlib.sha256((r / "model.safetensors").read_bytes()).hexdigest() for r in (tmp_path / "ref", run)]
    assert sha[0] == sha[1]
    # the mean over both ranks and every step (rank 0's own mean differs by ~2e-3 here)
    assert metrics["train_loss"] == pytest.approx(ref_metrics["train_loss"], abs=1e-5)


@pytest.mark.skipif(sys.platform != "linux", reason="torchrun with gloo on Linux")
def test_two_process_token_budget_run_resumes_mid_epoch_to_the_same_weights(tiny_encoder: str, tmp_path: Path) -> None:
    """With batch_tokens the resumed epoch replays its batches on every rank (the epoch reaches the sampler
    through accelerate's batch skipping as well)."""
    torchrun = [shutil.which("torchrun") or "torchrun", "--nproc_per_node", "2", "--master_port", "29533"]
    extra = ("batch_tokens=100", "eval_strategy=steps", "eval_steps=4", "save_total_limit=5")
    ref = _probe(torchrun, tmp_path / "ref", tiny_encoder, *extra)
    assert ref.returncode == 0, ref.stderr[-3000:]
    run = tmp_path / "run"
    killed = _probe(torchrun, run, tiny_encoder, *extra, "--stop-after-save", "8")
    assert killed.returncode != 0 and not (run / "metrics.json").exists()
    assert (run / "checkpoints" / "checkpoint-8").is_dir(), killed.stderr[-3000:]
    state = json.loads((run / "checkpoints" / "checkpoint-8" / "trainer_state.json").read_text())
    assert 1 < state["epoch"] < 2 and state["epoch"] % 1 != 0  # in the second epoch, mid-way
    resumed = _probe(torchrun, run, tiny_encoder, *extra)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    metrics, ref_metrics = (json.loads((r / "metrics.json").read_text()) for r in (run, tmp_path / "ref"))
    assert metrics["resumed_from_step"] == 8 and metrics["global_steps"] == ref_metrics["global_steps"] == 12
    # the loss of steps 9-12 differs unless they saw the reference's batches (the kept weights are the
    # best checkpoint's, which may predate step 8: they alone would not tell)
    assert metrics["train_loss"] == pytest.approx(ref_metrics["train_loss"], rel=1e-6)
    assert _digests(run) == _digests(tmp_path / "ref")


@pytest.mark.skipif(sys.platform != "linux", reason="torchrun with gloo on Linux")
def test_leakage_refusal_on_rank_0_stops_every_rank(tiny_encoder: str, tmp_path: Path) -> None:
    import csv

    from clinical_ft import leakage

    enc = tmp_path / "dapt"
    shutil.copytree(tiny_encoder, enc)
    test_notes = list(csv.DictReader(open("tests/fixtures/readmission/notes_mini/test.csv", encoding="utf-8")))
    hashes = sorted(leakage.unit_hashes(test_notes[0]["text"]))  # one test note was in the pre-training corpus
    (enc / "pretraining_manifest.json").write_text(json.dumps({"sources": [], "unit_hashes": hashes}))
    launcher = [shutil.which("torchrun") or "torchrun", "--nproc_per_node", "2", "--master_port", "29541"]
    proc = subprocess.run([*launcher, "-m", "clinical_ft.readmission", "train", "--card", CARD, "--data-dir",
                           "tests/fixtures", "--out", str(tmp_path / "run"), "--encoder", str(enc), *COMMON],
                          env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert proc.stderr.count("was pre-trained on text of the test split") == 2  # rank 0's refusal, and rank 1's copy
    assert "the main process (rank 0) stopped" in proc.stderr
    assert not (tmp_path / "run" / "metrics.json").exists()
