"""Readmission calibration benchmark: calibration methods, prior shift, bootstrap interval widths.

SYNTHETIC notes with a known outcome model (clinical_ft.readmission.synthetic, the demo's generator:
labels follow ClinicalBERT's 30-day rule on random timelines, note text carries risk/reassurance cues
that agree with the label except for 5% label noise). Held-out admissions only; every split is cut by
patient. Three experiments:

1. **Methods** (the demo's data and training: demo.DEMO, DEMO_CONFIG, FRACTIONS, seed 0, 80 steps).
   One model; ``none``, ``temperature``, ``platt`` and ``isotonic`` are each fitted
   (calibration.fit) on the SAME validation admissions' uncalibrated aggregated scores (the "score"
   field of predictions_validation.jsonl written by engine.evaluate) and measured on the test
   admissions: ECE, Brier, calibration slope/intercept (reliability.calibration_metrics), AUROC
   (metrics.readmission_metrics). Each fit is timed (median of repeats after one warm-up) and set
   against the training seconds of the run's metrics.json. Differences to ``platt`` get a paired
   patient-grouped bootstrap interval on test.
2. **Prior shift** (ClinicalBERT's balanced training). A larger synthetic set (seed 1); the train
   and validation splits are balanced 50/50 by dropping negatives; the test split is brought to a
   natural ~10% readmission rate by dropping positives (the generator's own rate is ~32%).
   Calibrated risks (each method fitted on the balanced validation admissions, prevalence 0.5) are
   measured on that test split without and with calibration.prior_shift to the true test
   prevalence. ``predict --prevalence`` is checked against prior_shift on a few test notes.
3. **Interval widths**: patient-grouped 95% bootstrap intervals (reliability.bootstrap_intervals,
   grouped by subject_id) of AUROC, Brier and ECE of experiment 1's platt risks on the full test
   split vs 30-admission random subsets of it.

Commands (what the committed results ran, from the repository root, 2 CPU cores):

    . .venv/bin/activate
    HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS=2 \\
        python benchmarks/calibration_bench.py --work runs/calibration_bench \\
        --out benchmarks/results/calibration.json --md benchmarks/results/calibration.md

    # the tables again from the trained runs and saved predictions, without training or inference
    # (same --work; fit times and bootstraps are recomputed; this pass gave the committed numbers)
    HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS=2 \
        python benchmarks/calibration_bench.py --work runs/calibration_bench --reuse \
        --out benchmarks/results/calibration.json --md benchmarks/results/calibration.md

    # the reading (a text file) into the JSON and the markdown, nothing recomputed
    python benchmarks/calibration_bench.py --render --reading reading.md \
        --out benchmarks/results/calibration.json --md benchmarks/results/calibration.md

Whole run ~9 min on 2 CPU cores (two 80-step trainings of ~130 s, inference on 74 + 203 and
108 + 300 admissions); ``--reuse`` ~1.5 min.

Outputs: ``--out`` (JSON, every number) and ``--md`` (tables + reading). Runs, data and predictions
stay in ``--work``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

METHODS = ("none", "temperature", "platt", "isotonic")
CAL_KEYS = ("ece", "brier", "calibration_slope", "calibration_intercept", "mean_risk")


def _rel(path: Path) -> str:
    """`path` relative to the working directory (never a machine path in the results)."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return Path(path).name


def train_run(data_dir: Path, run_dir: Path, card: Any, max_steps: int, reuse: bool) -> dict[str, Any]:
    """The demo's training (DEMO_CONFIG, `max_steps` steps) of `card`; metrics.json of the run."""
    from clinical_ft import engine
    from clinical_ft.config import TrainConfig
    from clinical_ft.readmission.demo import DEMO_CONFIG
    from clinical_ft.readmission.task import TASK

    if reuse and (run_dir / "metrics.json").is_file():
        print(f"[bench] reusing {_rel(run_dir)}", flush=True)
        metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
        if (run_dir / "bench_train.json").is_file():
            timing = json.loads((run_dir / "bench_train.json").read_text(encoding="utf-8"))
            metrics["bench_wall_s"], metrics["bench_loadavg_before"] = timing["wall_s"], timing["loadavg_before"]
        return metrics
    cfg = TrainConfig(encoder="minilm", max_steps=max_steps, eval_steps=max_steps, **DEMO_CONFIG)
    t = time.perf_counter()
    load = list(os.getloadavg())
    metrics = engine.train(TASK, card, cfg, run_dir, overwrite=True)
    metrics["bench_wall_s"] = time.perf_counter() - t
    metrics["bench_loadavg_before"] = load
    (run_dir / "bench_train.json").write_text(json.dumps({"wall_s": metrics["bench_wall_s"], "loadavg_before": load}))
    return metrics


def scored_split(run: Any, split: str, reuse: bool) -> tuple[np.ndarray, np.ndarray, list[str], dict[str, Any]]:
    """(labels, uncalibrated aggregated scores, subject ids, eval JSON) of `split` via engine.evaluate."""
    from clinical_ft import engine
    from clinical_ft.readmission.task import TASK

    ev_path = run.path / f"eval_{split}.json"
    if not (reuse and ev_path.is_file() and engine.predictions_path(run.path, split).is_file()):
        t = time.perf_counter()
        engine.evaluate(TASK, run, split)
        print(f"[bench] evaluated {split} in {time.perf_counter() - t:.0f}s", flush=True)
    ev = json.loads(ev_path.read_text(encoding="utf-8"))
    preds = engine.read_predictions(engine.predictions_path(run.path, split))
    examples = TASK.load_split(run.card, split, None)
    y = np.asarray([int(n.label) for n in examples])
    s = np.asarray([p["score"] for p in preds], dtype=np.float64)
    subjects = [n.subject or n.id for n in examples]
    assert len(y) == len(s), (split, len(y), len(s))
    return y, s, subjects, ev


def measure(y: np.ndarray, risks: np.ndarray) -> dict[str, float]:
    from clinical_ft.readmission.metrics import readmission_metrics
    from clinical_ft.readmission.reliability import calibration_metrics

    cal = calibration_metrics(y, risks)
    rank = readmission_metrics(y, risks)
    return {**{k: cal[k] for k in CAL_KEYS}, "auroc": rank["auroc"], "auprc_avg_precision": rank["auprc_avg_precision"],
            "risk_sd": float(np.std(risks)), "risk_p05": float(np.quantile(risks, 0.05)),
            "risk_p95": float(np.quantile(risks, 0.95))}


def timed_fit(method: str, scores: np.ndarray, labels: np.ndarray, repeats: int) -> tuple[Any, float]:
    """The calibrator and the median seconds of `repeats` fits (after one warm-up fit)."""
    from clinical_ft.readmission import calibration

    cal = calibration.fit(method, scores, labels)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        calibration.fit(method, scores, labels)
        times.append(time.perf_counter() - t)
    return cal, statistics.median(times)


def paired_differences(y: np.ndarray, risks: dict[str, np.ndarray], subjects: list[str], ref: str,
                       resamples: int) -> dict[str, dict[str, float]]:
    """metric(method) - metric(ref) on the same patient-grouped resamples: mean and 95% interval."""
    from clinical_ft.readmission.reliability import brier, ece, grouped_resample_indices

    diffs: dict[str, dict[str, list[float]]] = {m: {"ece": [], "brier": []} for m in risks if m != ref}
    for idx in grouped_resample_indices(subjects, resamples, seed=0):
        yy = y[idx]
        base = {"ece": ece(yy, risks[ref][idx]), "brier": brier(yy, risks[ref][idx])}
        for m in diffs:
            diffs[m]["ece"].append(ece(yy, risks[m][idx]) - base["ece"])
            diffs[m]["brier"].append(brier(yy, risks[m][idx]) - base["brier"])
    out = {}
    for m, d in diffs.items():
        out[m] = {}
        for k, v in d.items():
            lo, hi = np.percentile(v, [2.5, 97.5])
            out[m][f"{k}_diff_mean"], out[m][f"{k}_diff_low"], out[m][f"{k}_diff_high"] = float(np.mean(v)), float(lo), float(hi)
    return out


def repeated_splits(y: np.ndarray, s: np.ndarray, subjects: list[str], sizes: list[int], repeats: int,
                    seed: int) -> dict[str, Any]:
    """Validation + test admissions of one model pooled, then `repeats` random patient splits per size:
    each method fitted on >= `size` admissions (whole patients), measured on the rest."""
    from clinical_ft.readmission import calibration
    from clinical_ft.readmission.reliability import brier, ece, recalibration

    patients = sorted(set(subjects))
    by_patient: dict[str, list[int]] = {}
    for i, p in enumerate(subjects):
        by_patient.setdefault(p, []).append(i)
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {}
    for size in sizes:
        vals: dict[str, dict[str, list[float]]] = {m: {"ece": [], "brier": [], "slope": []} for m in METHODS}
        done = 0
        while done < repeats:
            fit_idx: list[int] = []
            for p in rng.permutation(patients):
                if len(fit_idx) >= size:
                    break
                fit_idx += by_patient[p]
            mask = np.zeros(len(y), dtype=bool)
            mask[fit_idx] = True
            if len(set(y[mask])) < 2 or len(set(y[~mask])) < 2:
                continue
            for m in METHODS:
                r = calibration.fit(m, s[mask], y[mask]).apply(s[~mask])
                vals[m]["ece"].append(ece(y[~mask], r))
                vals[m]["brier"].append(brier(y[~mask], r))
                vals[m]["slope"].append(recalibration(y[~mask], r)[0])
            done += 1
        res = {}
        for m in METHODS:
            e, b = np.asarray(vals[m]["ece"]), np.asarray(vals[m]["brier"])
            pe, pb = np.asarray(vals["platt"]["ece"]), np.asarray(vals["platt"]["brier"])
            res[m] = {"ece_mean": float(e.mean()), "ece_median": float(np.median(e)), "brier_mean": float(b.mean()),
                      "slope_median": float(np.nanmedian(vals[m]["slope"])),
                      "ece_minus_platt_mean": float((e - pe).mean()), "brier_minus_platt_mean": float((b - pb).mean()),
                      "share_ece_below_platt": float(np.mean(e < pe)), "share_brier_below_platt": float(np.mean(b < pb))}
        out[str(size)] = {"fit_admissions_at_least": size, "evaluated_on": "the rest of the pooled admissions",
                          "repeats": repeats, "methods": res}
    return out


def experiment_methods(args: argparse.Namespace, work: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    from clinical_ft import engine
    from clinical_ft.readmission import synthetic
    from clinical_ft.readmission.demo import DEMO, FRACTIONS
    from clinical_ft.readmission.prepare import card_from_data, prepare
    from clinical_ft.readmission.task import TASK

    base = work / "methods"
    syn = synthetic.generate(base / "synthetic_mimic", DEMO["patients"], words=DEMO["words"])
    prep = prepare(base / "data", mimic_dir=syn["out"], fractions=FRACTIONS)
    metrics = train_run(base / "data", base / "run", card_from_data(prep["out"]), args.max_steps, args.reuse)
    run = engine.load_run(TASK, base / "run")
    yv, sv, subj_v, _ = scored_split(run, "validation", args.reuse)
    yt, st, subjects, ev_test = scored_split(run, "test", args.reuse)
    shipped = json.loads((base / "run" / "calibration.json").read_text(encoding="utf-8"))

    rows, risks, cals = {}, {}, {}
    for m in METHODS:
        cal, secs = timed_fit(m, sv, yv, args.fit_repeats)
        risks[m] = cal.apply(st)
        cals[m] = cal
        rows[m] = {"method": m, **measure(yt, risks[m]), "fit_s": secs,
                   "validation_ece": measure(yv, cal.apply(sv))["ece"],
                   "params": {k: v for k, v in cal.params.items() if k not in ("x", "y")}
                   | ({"isotonic_thresholds": len(cal.params.get("x", []))} if m == "isotonic" else {})}
    train_s = float(metrics["train_runtime_s"])
    for m in METHODS:
        rows[m]["fit_share_of_training"] = rows[m]["fit_s"] / train_s
    diffs = paired_differences(yt, risks, subjects, "platt", args.bootstrap)
    same_as_run = (shipped["method"] == "platt" and math.isclose(shipped["params"]["a"], cals["platt"].params["a"], rel_tol=1e-6)
                   and math.isclose(shipped["params"]["b"], cals["platt"].params["b"], rel_tol=1e-6))
    out = {
        "data": {"synthetic_seed": 0, "patients": DEMO["patients"], "words": DEMO["words"], "fractions": list(FRACTIONS),
                 "splits": prep["splits"], "generator_prevalence": prep["prevalence"]},
        "training": {"max_steps": args.max_steps, "train_runtime_s": train_s,
                     "wall_s_with_setup": metrics.get("bench_wall_s"), "global_steps": metrics["global_steps"],
                     "validation_auroc": metrics.get("validation", {}).get("auroc"),
                     "loadavg_before": metrics.get("bench_loadavg_before")},
        "validation": {"admissions": int(len(yv)), "positives": int(yv.sum())},
        "test": {"admissions": int(len(yt)), "positives": int(yt.sum()), "patients": len(set(subjects)),
                 "evaluate_auroc": ev_test["auroc"], "evaluate_ece": ev_test["ece"], "evaluate_brier": ev_test["brier"]},
        "run_calibration_json": {"method": shipped["method"], "params": shipped["params"],
                                 "equals_refit_on_evaluate_validation": same_as_run},
        "methods": rows,
        "paired_vs_platt": diffs,
        "paired_resamples": args.bootstrap,
        "repeated_splits": repeated_splits(np.concatenate([yv, yt]), np.concatenate([sv, st]), subj_v + subjects,
                                           [len(yv), args.pooled_large], args.split_repeats, args.seed),
    }
    return out, {"y": yt, "risk": risks["platt"], "subjects": subjects}


def _balance_negatives(df: Any, seed: int) -> Any:
    pos, neg = df[df.label == 1], df[df.label == 0]
    neg = neg.sample(n=min(len(pos), len(neg)), random_state=seed)
    return df.loc[sorted([*pos.index, *neg.index])]


def _natural_test(df: Any, prevalence: float, size: int, seed: int) -> Any:
    """`size` admissions (fewer if the split lacks negatives) at `prevalence`, positives dropped."""
    pos, neg = df[df.label == 1], df[df.label == 0]
    n_neg = min(len(neg), round(size * (1 - prevalence)))
    n_pos = min(len(pos), round(n_neg * prevalence / (1 - prevalence)))
    keep = [*pos.sample(n=n_pos, random_state=seed).index, *neg.sample(n=n_neg, random_state=seed).index]
    return df.loc[sorted(keep)]


def experiment_shift(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    import pandas as pd

    from clinical_ft import engine
    from clinical_ft.readmission import calibration, synthetic
    from clinical_ft.readmission.demo import DEMO
    from clinical_ft.readmission.prepare import card_from_data, prepare
    from clinical_ft.readmission.task import TASK

    base = work / "shift"
    syn = synthetic.generate(base / "synthetic_mimic", args.shift_patients, seed=1, words=DEMO["words"])
    prep = prepare(base / "data_full", mimic_dir=syn["out"], fractions=tuple(args.shift_fractions))
    full = Path(prep["out"])
    data = base / "data"
    data.mkdir(parents=True, exist_ok=True)
    sizes = {}
    for split, fn in (("train", lambda d: _balance_negatives(d, 1)), ("validation", lambda d: _balance_negatives(d, 2)),
                      ("test", lambda d: _natural_test(d, args.shift_prevalence, args.shift_test, 3))):
        df = pd.read_csv(full / f"{split}.csv", dtype={"admission_id": str, "subject_id": str}, keep_default_na=False)
        part = fn(df)
        part.to_csv(data / f"{split}.csv", index=False)
        sizes[split] = {"admissions": len(part), "positives": int(part.label.sum()), "prevalence": float(part.label.mean()),
                        "before": {"admissions": len(df), "positives": int(df.label.sum())}}
    card = card_from_data(full)
    card.data.path = str(data.resolve())
    metrics = train_run(data, base / "run", card, args.max_steps, args.reuse)
    run = engine.load_run(TASK, base / "run")
    yv, sv, _, _ = scored_split(run, "validation", args.reuse)
    yt, st, subjects, ev_test = scored_split(run, "test", args.reuse)
    target = float(yt.mean())
    rows = {}
    for m in METHODS:
        cal = calibration.fit(m, sv, yv)
        r = cal.apply(st)
        from_prev = cal.prevalence
        shifted = calibration.prior_shift(r, from_prev, target)
        rows[m] = {"method": m, "fitted_prevalence": from_prev, "without": measure(yt, r), "with": measure(yt, shifted)}
        w, wo = rows[m]["with"]["ece"], rows[m]["without"]["ece"]
        rows[m]["ece_ratio_without_over_with"] = wo / w if w > 0 else math.inf
        rows[m]["brier_ratio_without_over_with"] = rows[m]["without"]["brier"] / rows[m]["with"]["brier"]

    cli = None
    if not args.skip_cli_check:  # predict --prevalence on a few test notes == prior_shift of the run's risks
        sub = pd.read_csv(data / "test.csv", dtype={"admission_id": str, "subject_id": str}, keep_default_na=False).head(args.cli_notes)
        sub.to_csv(base / "cli_notes.csv", index=False)
        cmd = [sys.executable, "-m", "clinical_ft.readmission", "predict", "--model", str(base / "run"),
               "--notes", str(base / "cli_notes.csv"), "--out", str(base / "cli_risk.csv"), "--prevalence", f"{target:.6f}"]
        t = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        cli = {"command": (f"python -m clinical_ft.readmission predict --model <work>/shift/run --notes <work>/shift/cli_notes.csv "
                           f"--out <work>/shift/cli_risk.csv --prevalence {target:.6f}"), "rc": proc.returncode,
               "seconds": time.perf_counter() - t, "notes": len(sub)}
        if proc.returncode == 0:
            got = pd.read_csv(base / "cli_risk.csv", dtype={"admission_id": str})
            shipped = calibration.load(base / "run")
            want = calibration.prior_shift(shipped.apply(got["score"].to_numpy()), shipped.prevalence, target)
            cli["max_abs_diff_vs_prior_shift"] = float(np.max(np.abs(got["risk"].to_numpy() - want)))
            cli["max_abs_diff_score_vs_evaluate"] = float(np.max(np.abs(got["score"].to_numpy() - st[:len(sub)])))
        else:
            cli["stderr_tail"] = proc.stderr[-800:]
    return {
        "data": {"synthetic_seed": 1, "patients": args.shift_patients, "fractions": list(args.shift_fractions),
                 "generator_prevalence": prep["prevalence"], "splits": sizes},
        "training": {"max_steps": args.max_steps, "train_runtime_s": metrics["train_runtime_s"],
                     "validation_auroc": metrics.get("validation", {}).get("auroc"),
                     "calibration": metrics.get("calibration", {}).get("described"),
                     "loadavg_before": metrics.get("bench_loadavg_before")},
        "test_prevalence": target, "test_patients": len(set(subjects)), "evaluate_auroc": ev_test["auroc"],
        "methods": rows, "predict_cli_check": cli,
    }


def experiment_widths(args: argparse.Namespace, test: dict[str, Any]) -> dict[str, Any]:
    from clinical_ft.readmission.reliability import auroc, bootstrap_intervals, brier, ece

    fns = {"auroc": auroc, "brier": brier, "ece": ece}
    y, r, subj = test["y"], test["risk"], test["subjects"]

    def widths(idx: np.ndarray) -> dict[str, Any]:
        ci = bootstrap_intervals(y[idx], r[idx], [subj[i] for i in idx], fns, args.bootstrap, seed=0)
        return {k: {"low": ci[k][0], "high": ci[k][1], "width": ci[k][1] - ci[k][0],
                    "value": fns[k](y[idx], r[idx])} for k in fns} | {"resamples_used": ci["resamples_used"]}

    full = widths(np.arange(len(y)))
    rng = np.random.default_rng(args.seed)
    draws = []
    while len(draws) < args.subset_draws:
        idx = np.sort(rng.choice(len(y), size=args.subset, replace=False))
        if 0 < y[idx].sum() < len(idx):  # AUROC needs both classes
            draws.append(widths(idx))
    mean_w = {k: float(np.mean([d[k]["width"] for d in draws])) for k in fns}
    return {"full": {"admissions": int(len(y)), "patients": len(set(subj)), **full},
            "subset": {"admissions": args.subset, "draws": args.subset_draws, "first_draw": draws[0],
                       "mean_width": mean_w,
                       "width_range": {k: [float(min(d[k]["width"] for d in draws)), float(max(d[k]["width"] for d in draws))]
                                       for k in fns}},
            "ratio_subset_over_full": {k: mean_w[k] / full[k]["width"] for k in fns},
            "sqrt_n_ratio": math.sqrt(len(y) / args.subset), "resamples": args.bootstrap,
            "risks": "experiment 1 platt risks (the shipped default)"}


def f3(x: Any) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.3f}"


def markdown(res: dict[str, Any]) -> str:
    m, s, w = res["methods"], res["shift"], res["widths"]
    L = ["# Readmission calibration benchmark (SYNTHETIC notes)", "",
         f"Trained and scored {res.get('trained', res['started'])} on {res['machine']['nproc']} CPU cores "
         f"({res['load_note']}); tables computed {res['finished']}. "
         "Script and exact commands: `benchmarks/calibration_bench.py` (module docstring):", "",
         "```bash", res.get("command_trained", res["command"]),
         *([f"# tables recomputed from the same runs: {res['command']}"] if "command_trained" in res else []), "```", "",
         "Synthetic MIMIC-shaped notes with a known outcome model (the demo's generator); every number is on "
         "held-out admissions, splits by patient. Not real patients: read the comparisons, not the levels.", "",
         "## 1. Calibration methods (one model, the demo's data and training)", "",
         f"Trained {m['training']['global_steps']} steps in {m['training']['train_runtime_s']:.0f} s "
         f"(validation AUROC {f3(m['training']['validation_auroc'])}). Every method fitted on the same "
         f"{m['validation']['admissions']} validation admissions ({m['validation']['positives']} readmitted), "
         f"measured on {m['test']['admissions']} test admissions ({m['test']['positives']} readmitted, "
         f"{m['test']['patients']} patients). ECE: 10 equal-width bins. Fit time: median of repeated fits.", "",
         "| method | ECE | Brier | slope | intercept | mean risk | risk 5-95% | AUROC | validation ECE (in-sample) | fit s | "
         "fit / training |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for k in METHODS:
        r = m["methods"][k]
        L.append(f"| {k}{' (before)' if k == 'none' else ''}{' (shipped default)' if k == 'platt' else ''} | {f3(r['ece'])} | "
                 f"{f3(r['brier'])} | {r['calibration_slope']:.2f} | {r['calibration_intercept']:.2f} | {f3(r['mean_risk'])} | "
                 f"{f3(r['risk_p05'])}-{f3(r['risk_p95'])} | {f3(r['auroc'])} | {f3(r['validation_ece'])} | {r['fit_s']:.4f} | {r['fit_share_of_training']:.1e} |")
    L += ["", f"Test prevalence {m['test']['positives'] / m['test']['admissions']:.3f}. Paired patient-grouped "
          f"bootstrap ({m['paired_resamples']} resamples) of the difference to platt on test:", "",
          "| method | ECE - platt [95%] | Brier - platt [95%] |", "|---|---|---|"]
    for k, d in m["paired_vs_platt"].items():
        L.append(f"| {k} | {d['ece_diff_mean']:+.3f} [{d['ece_diff_low']:+.3f}, {d['ece_diff_high']:+.3f}] | "
                 f"{d['brier_diff_mean']:+.4f} [{d['brier_diff_low']:+.4f}, {d['brier_diff_high']:+.4f}] |")
    rs = m.get("repeated_splits", {})
    if rs:
        L += ["", f"Repeated splits: the {m['validation']['admissions']} validation + {m['test']['admissions']} test admissions "
              "of this model pooled; each repeat fits every method on random whole patients (at least the number of "
              "admissions shown) and measures on the rest.", "",
              "| fit on >= | method | ECE mean (median) | Brier mean | slope median | ECE - platt | Brier - platt | "
              "share ECE < platt | share Brier < platt |", "|---|---|---|---|---|---|---|---|---|"]
        for size, block in rs.items():
            for k in METHODS:
                r = block["methods"][k]
                L.append(f"| {size} ({block['repeats']} repeats) | {k} | {r['ece_mean']:.3f} ({r['ece_median']:.3f}) | "
                         f"{r['brier_mean']:.4f} | {r['slope_median']:.2f} | {r['ece_minus_platt_mean']:+.3f} | "
                         f"{r['brier_minus_platt_mean']:+.4f} | {r['share_ece_below_platt']:.2f} | {r['share_brier_below_platt']:.2f} |")
    L += ["", f"The run's own calibration.json (fitted at the end of training) equals the refit on "
          f"predictions_validation.jsonl: {m['run_calibration_json']['equals_refit_on_evaluate_validation']}.", "",
          "## 2. Prior shift (balanced training, natural-prevalence test)", ""]
    sp = s["data"]["splits"]
    L += [f"Synthetic seed 1, {s['data']['patients']} patients (generator prevalence {s['data']['generator_prevalence']:.3f}). "
          f"Train {sp['train']['admissions']} admissions and validation {sp['validation']['admissions']} balanced 50/50 "
          f"(negatives dropped); test {sp['test']['admissions']} admissions ({sp['test']['positives']} readmitted, prevalence "
          f"{s['test_prevalence']:.3f}; positives dropped from {sp['test']['before']['admissions']} admissions at "
          f"{sp['test']['before']['positives'] / sp['test']['before']['admissions']:.3f}). Test AUROC {f3(s['evaluate_auroc'])}. "
          f"Risks calibrated on the balanced validation (prevalence 0.5), then moved to {s['test_prevalence']:.3f} "
          "(calibration.prior_shift).", "",
          "| method | ECE without | ECE with | ECE without / with | Brier without | Brier with | mean risk without | mean risk with | slope with | intercept with |",
          "|---|---|---|---|---|---|---|---|---|---|"]
    for k in METHODS:
        r = s["methods"][k]
        L.append(f"| {k}{' (shipped default)' if k == 'platt' else ''} | {f3(r['without']['ece'])} | {f3(r['with']['ece'])} | "
                 f"{r['ece_ratio_without_over_with']:.1f}x | {f3(r['without']['brier'])} | {f3(r['with']['brier'])} | "
                 f"{f3(r['without']['mean_risk'])} | {f3(r['with']['mean_risk'])} | {r['with']['calibration_slope']:.2f} | "
                 f"{r['with']['calibration_intercept']:.2f} |")
    cli = s.get("predict_cli_check")
    if cli:
        L += ["", f"`predict --prevalence {s['test_prevalence']:.6f}` on the first {cli['notes']} test notes (rc {cli['rc']}): "
              f"largest |risk - prior_shift(platt(score))| = {cli.get('max_abs_diff_vs_prior_shift', float('nan')):.1e}, "
              f"largest |score - evaluate's score| = {cli.get('max_abs_diff_score_vs_evaluate', float('nan')):.1e}."]
    L += ["", "## 3. Bootstrap interval widths (patient-grouped, 95%)", "",
          f"Platt risks of experiment 1; {w['resamples']} resamples of patients. Subset: {w['subset']['admissions']} "
          f"random test admissions, {w['subset']['draws']} draws (with both classes); first draw and mean width.", "",
          "| metric | full test value [95%] | full width | 30-admission first draw [95%] | 30-admission mean width (range) | ratio | sqrt(n ratio) |",
          "|---|---|---|---|---|---|---|"]
    fd = w["subset"]["first_draw"]
    for k in ("auroc", "brier", "ece"):
        f = w["full"][k]
        lo, hi = w["subset"]["width_range"][k]
        L.append(f"| {k} | {f3(f['value'])} [{f3(f['low'])}, {f3(f['high'])}] | {f3(f['width'])} | {f3(fd[k]['value'])} "
                 f"[{f3(fd[k]['low'])}, {f3(fd[k]['high'])}] | {f3(w['subset']['mean_width'][k])} ({f3(lo)}-{f3(hi)}) | "
                 f"{w['ratio_subset_over_full'][k]:.1f}x | {w['sqrt_n_ratio']:.1f}x |")
    L += ["", f"Full test: {w['full']['admissions']} admissions, {w['full']['patients']} patients.", "", "## Reading", ""]
    L += res.get("reading", ["(reading written after the run)"])
    return "\n".join(L) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", default="runs/calibration_bench", help="data, runs and predictions (not committed)")
    p.add_argument("--out", default="benchmarks/results/calibration.json")
    p.add_argument("--md", default="benchmarks/results/calibration.md")
    p.add_argument("--reuse", action="store_true", help="reuse trained runs and saved predictions in --work")
    p.add_argument("--max-steps", type=int, default=80, help="training steps of both models (the demo's 80)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (intervals and paired differences)")
    p.add_argument("--fit-repeats", type=int, default=20)
    p.add_argument("--shift-patients", type=int, default=700)
    p.add_argument("--shift-fractions", type=float, nargs=3, default=[0.35, 0.15, 0.50])
    p.add_argument("--shift-prevalence", type=float, default=0.10, help="test readmission rate after dropping positives")
    p.add_argument("--shift-test", type=int, default=300, help="test admissions at that rate")
    p.add_argument("--cli-notes", type=int, default=20)
    p.add_argument("--skip-cli-check", action="store_true")
    p.add_argument("--split-repeats", type=int, default=200, help="random fit/eval splits of the pooled admissions")
    p.add_argument("--pooled-large", type=int, default=150, help="the larger fit size of the repeated splits")
    p.add_argument("--subset", type=int, default=30)
    p.add_argument("--subset-draws", type=int, default=20)
    p.add_argument("--seed", type=int, default=0, help="subset draws")
    p.add_argument("--load-note", default="machine otherwise idle", help="stated in the markdown")
    p.add_argument("--reading", help="a text file: the reading paragraph(s), stored in --out and shown in --md")
    p.add_argument("--render", action="store_true", help="only rewrite --md from --out (with --reading if given)")
    args = p.parse_args(argv)

    if args.render:
        res = json.loads(Path(args.out).read_text(encoding="utf-8"))
        if args.reading:
            res["reading"] = Path(args.reading).read_text(encoding="utf-8").rstrip("\n").split("\n")
            common.write_json(Path(args.out), res)
        common.write_text(Path(args.md), markdown(res))
        return 0

    work = Path(args.work)
    res: dict[str, Any] = {"started": common.now_utc(), "machine": common.machine(), "load_note": args.load_note,
                           "command": "HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS=2 python "
                                      "benchmarks/calibration_bench.py " + " ".join(a if not a.startswith("/") else Path(a).name
                                                                                     for a in (argv if argv is not None else sys.argv[1:]))}
    t0 = time.perf_counter()
    res["methods"], test = experiment_methods(args, work)
    print(f"[bench] experiment 1 done at {time.perf_counter() - t0:.0f}s", flush=True)
    res["widths"] = experiment_widths(args, test)
    res["shift"] = experiment_shift(args, work)
    res["finished"] = common.now_utc()
    res["total_s"] = time.perf_counter() - t0
    out = Path(args.out)
    res["trained"] = f"{res['started']} -> {res['finished']}"
    if out.is_file():  # keep a reading written into an earlier results file (and, with --reuse, when it trained)
        old = json.loads(out.read_text(encoding="utf-8"))
        if "reading" in old:
            res["reading"] = old["reading"]
        if args.reuse:
            res["trained"] = old.get("trained", f"{old['started']} -> {old['finished']}")
            res["load_note"] = old.get("load_note", res["load_note"])
            res["command_trained"] = old.get("command_trained", old["command"])
    common.write_json(out, res)
    common.write_text(Path(args.md), markdown(res))
    print(f"[bench] wrote {args.out} and {args.md} in {res['total_s']:.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
