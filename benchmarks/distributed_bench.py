"""Distributed paths on CPU: their overhead at world size 1, 2-process scaling, Spark local[2] vs predict.

(a) overhead: the plain path (``python -m clinical_ft.readmission train`` / ``predict``) vs the same
    command under ``torchrun --nproc_per_node 1`` (accelerate's process group, gathers), both 2 threads;
(b) scaling: ``torchrun --nproc_per_node 2`` with 1 thread each vs one process with 2 threads, the same
    work (training: one epoch, the same global batch; predict: the same notes);
(c) Spark ``local[2]`` (clinical_ft.readmission.spark.score, 1 torch thread per Python worker) vs
    ``predict`` (1 process, 2 threads) on the same notes; risks must agree within 1e-5.

Turns alternate (plain, torchrun 1, torchrun 2 in each round), so that load drifts hit every arm alike.
Training time is metrics.json's train_runtime_s (the training loop; no evaluation: eval_strategy=no);
predict time is infer.predict_csv timed inside the process (no start-up). Model: the bundled MiniLM-L6
(max_length 128, stride 32); notes: MTSamples transcriptions (../shared/data/mtsamples_subset) with
synthetic alternating labels (speed does not depend on them). CPU only; GPUs not measured.

    python benchmarks/distributed_bench.py --rounds 3 --out benchmarks/results/distributed.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import machine, now_utc, write_json, write_text  # noqa: E402

ARGS = ["max_length=128", "stride=32", "num_train_epochs=1", "eval_strategy=no", "per_device_eval_batch_size=32"]


def _env(threads: int) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(Path.cwd())}


THREADS = {"plain": 2, "torchrun1": 2, "torchrun2": 1}  # --overhead-threads changes plain and torchrun1


def _launcher(arm: str) -> tuple[list[str], int]:
    torchrun = [shutil.which("torchrun") or "torchrun", "--master_port", "29561"]
    return {"plain": [sys.executable], "torchrun1": [*torchrun, "--nproc_per_node", "1"],
            "torchrun2": [*torchrun, "--nproc_per_node", "2"]}[arm], THREADS[arm]


def _run(cmd: list[str], env: dict[str, str], log: Path) -> str:
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    log.write_text(proc.stdout + proc.stderr, encoding="utf-8")
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed (rc {proc.returncode}); see {log}")
    return proc.stdout


def write_data(folder: Path, n_train: int, n_predict: int) -> tuple[Path, Path]:
    import pandas as pd

    from clinical_ft.readmission.prepare import prepare
    from clinical_ft.readmission.synthetic import mtsamples_texts

    texts = mtsamples_texts()
    labelled = folder / "labelled.csv"
    pd.DataFrame({"admission_id": [f"a{i}" for i in range(n_train)], "subject_id": [f"s{i}" for i in range(n_train)],
                  "text": [texts[i % len(texts)] for i in range(n_train)], "label": [i % 2 for i in range(n_train)]}
                 ).to_csv(labelled, index=False)
    prepare(folder / "data", notes=labelled, fractions=(0.8, 0.1, 0.1))
    notes = folder / "notes.csv"
    pd.DataFrame({"admission_id": [f"n{i}" for i in range(n_predict)],
                  "text": [texts[(i * 7) % len(texts)] for i in range(n_predict)]}).to_csv(notes, index=False)
    return folder / "data", notes


def train_turn(arm: str, data: Path, out: Path, log: Path) -> dict:
    launcher, threads = _launcher(arm)
    batch = 4 if arm == "torchrun2" else 8  # the same global batch of 8
    _run([*launcher, "-m", "clinical_ft.readmission", "train", "--data", str(data), "--config", "readmission/minilm",
          "--out", str(out), "--overwrite", *ARGS, f"per_device_train_batch_size={batch}"], _env(threads), log)
    m = json.loads((out / "metrics.json").read_text())
    return {"seconds": m["train_runtime_s"], "steps": m["global_steps"], "features": m["train_features"],
            "samples_per_s": m["train_samples_per_second"], "train_loss": m["train_loss"]}


def predict_turn(arm: str, run: Path, notes: Path, out: Path, log: Path) -> dict:
    launcher, threads = _launcher(arm)
    stdout = _run([*launcher, __file__, "--child-predict", str(run), str(notes), str(out)], _env(threads), log)
    return json.loads(next(line for line in stdout.splitlines() if line.startswith("{")))


def child_predict(run_dir: str, notes: str, out: str) -> None:
    from clinical_ft.readmission import infer
    from clinical_ft.trainer import is_main_process

    _, run = infer.open_run(run_dir)
    start = time.perf_counter()
    s = infer.predict_csv(run, notes, out, progress=False)
    seconds = time.perf_counter() - start
    if is_main_process():
        print(json.dumps({"seconds": seconds, "notes": s.scored, "windows": s.windows, "notes_per_s": s.scored / seconds}))


def spark_turns(run: Path, notes: Path, reference_csv: Path, n_jobs: int) -> dict:
    import pandas as pd

    os.environ.update({"PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable,
                       "PYTHONPATH": str(Path.cwd()), "OMP_NUM_THREADS": "1"})
    from pyspark.sql import SparkSession

    from clinical_ft.readmission import spark as spark_score

    parquet = notes.with_suffix(".parquet")
    pd.read_csv(notes, dtype=str, keep_default_na=False).to_parquet(parquet)
    start = time.perf_counter()
    session = SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false").getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    startup = time.perf_counter() - start
    df = session.read.parquet(str(parquet)).repartition(2)
    ref = pd.read_csv(reference_csv, dtype={"admission_id": str}).set_index("admission_id")["risk"]
    jobs = []
    for _ in range(n_jobs):  # the first job starts the Python workers and loads the model in each
        start = time.perf_counter()
        got = spark_score.score(df, run, threads=1).toPandas()
        seconds = time.perf_counter() - start
        diff = float((got.set_index("admission_id")["risk"] - ref.reindex(got["admission_id"]).to_numpy()).abs().max())
        jobs.append({"seconds": seconds, "notes": len(got), "notes_per_s": len(got) / seconds, "max_risk_diff": diff,
                     "unscored": int(got["reason"].notna().sum())})
    session.stop()
    return {"session_start_s": startup, "jobs": jobs}


def _summary(turns: list[dict], key: str) -> dict:
    values = [t[key] for t in turns]
    return {"median": statistics.median(values), "values": values}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--train-notes", type=int, default=30, help="labelled notes (80%% train)")
    p.add_argument("--predict-notes", type=int, default=120)
    p.add_argument("--spark-jobs", type=int, default=2, help="0: no Spark")
    p.add_argument("--arms", default="plain,torchrun1,torchrun2", help="a subset, e.g. plain,torchrun1 (overhead only)")
    p.add_argument("--overhead-threads", type=int, default=2, help="threads of the plain and torchrun1 arms")
    p.add_argument("--out", default="benchmarks/results/distributed.json")
    p.add_argument("--child-predict", nargs=3, metavar=("RUN", "NOTES", "OUT"), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child_predict:
        child_predict(*a.child_predict)
        return 0
    work = Path(tempfile.mkdtemp(prefix="distributed_bench_"))
    data, notes = write_data(work, a.train_notes, a.predict_notes)
    arms = tuple(a.arms.split(","))
    THREADS.update(plain=a.overhead_threads, torchrun1=a.overhead_threads)
    result: dict = {"started": now_utc(), "machine_before": machine(), "command": " ".join(["python", *sys.argv]),
                    "train": {arm: [] for arm in arms}, "predict": {arm: [] for arm in arms}}
    for r in range(a.rounds):
        for arm in arms:
            result["train"][arm].append(train_turn(arm, data, work / f"run_{arm}", work / f"train_{arm}_{r}.log"))
            print(f"round {r} train {arm}: {result['train'][arm][-1]}", flush=True)
    run = work / "run_plain"
    for r in range(a.rounds):
        for arm in arms:
            result["predict"][arm].append(predict_turn(arm, run, notes, work / f"risk_{arm}.csv", work / f"pred_{arm}_{r}.log"))
            print(f"round {r} predict {arm}: {result['predict'][arm][-1]}", flush=True)
    if a.spark_jobs:
        result["spark_local2"] = spark_turns(run, notes, work / "risk_plain.csv", a.spark_jobs)
        print(f"spark: {result['spark_local2']}", flush=True)
    result["threads"] = dict(THREADS)
    for kind, key in (("train", "seconds"), ("predict", "seconds")):
        med = {arm: _summary(result[kind][arm], key)["median"] for arm in arms}
        result[f"{kind}_summary"] = {"median_seconds": med, "overhead_torchrun1_vs_plain": med["torchrun1"] / med["plain"] - 1,
                                     "speedup_2x1_vs_1x2": med["plain"] / med["torchrun2"] if "torchrun2" in med else None}
    result["finished"], result["machine_after"] = now_utc(), machine()
    out = Path(a.out)
    write_json(out, result)
    write_text(out.with_suffix(".md"), report(result))
    shutil.rmtree(work, ignore_errors=True)
    print(report(result))
    return 0


def report(r: dict) -> str:
    t, p, s = r["train_summary"], r["predict_summary"], r.get("spark_local2")
    th = r["threads"]
    plain_nps = statistics.median(x["notes_per_s"] for x in r["predict"]["plain"])
    arms = [a for a in ("plain", "torchrun1", "torchrun2") if a in t["median_seconds"]]
    names = {"plain": f"plain (1 proc x {th['plain']} threads)", "torchrun1": f"torchrun 1 proc x {th['torchrun1']} threads",
             "torchrun2": "torchrun 2 procs x 1 thread"}
    lines = [f"# Distributed paths on CPU ({r['started']} to {r['finished']})", "",
             f"`{r['command']}`", "",
             f"Machine: {r['machine_before']['nproc']} CPUs ({r['machine_before']['cpu']}), load average before "
             f"{r['machine_before']['loadavg']}, after {r['machine_after']['loadavg']} (shared with other jobs). "
             "GPU: not measured (none here).", "",
             "| | " + " | ".join(names[a] for a in arms) + " |", "|---" * (len(arms) + 1) + "|"]
    for kind, summ, rows in (("train s (1 epoch)", t, r["train"]), ("predict s", p, r["predict"])):
        m = summ["median_seconds"]
        lines.append(f"| {kind}, median | " + " | ".join(f"{m[a]:.2f}" for a in arms) + " |")
        lines.append(f"| {kind}, each turn | " + " | ".join(", ".join(f"{x['seconds']:.1f}" for x in rows[a]) for a in arms) + " |")
    lines += ["", f"- Overhead of the distributed path at world size 1: training {t['overhead_torchrun1_vs_plain']:+.1%}, "
              f"predict {p['overhead_torchrun1_vs_plain']:+.1%} (limit: +5%)."]
    if t["speedup_2x1_vs_1x2"] is not None:
        lines.append(f"- 2 processes x 1 thread vs 1 process x {th['plain']} threads: training {t['speedup_2x1_vs_1x2']:.2f}x, "
                     f"predict {p['speedup_2x1_vs_1x2']:.2f}x (the same 2 cores either way).")
    if s:
        lines += [f"- Spark local[2] (1 thread per worker): session start {s['session_start_s']:.1f} s; jobs "
              + ", ".join(f"{j['notes_per_s']:.2f} notes/s ({j['seconds']:.1f} s, max |risk - predict| {j['max_risk_diff']:.1e})"
                          for j in s["jobs"])
                  + f" (the first job starts the workers and loads the model) vs predict {plain_nps:.2f} notes/s."]
    return "\n".join([*lines, ""])


if __name__ == "__main__":
    sys.exit(main())
