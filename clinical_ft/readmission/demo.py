"""`demo`: synthetic MIMIC-shaped tables -> prepare -> short training -> evaluate -> predict -> report.

Needs no data (the synthetic generator borrows MTSamples text when the shared data folder is
there) and runs in a few minutes on 2 CPU cores with the bundled MiniLM.
"""

from __future__ import annotations

import time
from pathlib import Path

from .. import engine
from ..config import TrainConfig
from . import infer, synthetic
from .prepare import card_from_data, prepare
from .task import TASK, TITLE

# sized for a few minutes on 2 CPU cores with MiniLM-L6 (about 700 training tokens/s); the test split is
# large enough (~200 admissions) for bootstrap intervals a reader can use, the validation split for calibration
DEMO = {"patients": 300, "words": 400, "max_steps": 80}
FRACTIONS = (0.45, 0.15, 0.40)  # train, validation, test admissions (split by patient)
# frozen embeddings and bottom layers: cheaper steps (no Adam state for the 12M embedding weights)
DEMO_CONFIG = {"max_length": 256, "stride": 32, "learning_rate": 2e-4, "per_device_train_batch_size": 8,
               "method": "partial", "freeze_embeddings": True, "freeze_layers": 2,
               "per_device_eval_batch_size": 32, "num_train_epochs": 3, "warmup_ratio": 0.1,
               "eval_strategy": "steps", "logging_steps": 10, "early_stopping_patience": 0, "seed": 42}


def run_demo(out: str | Path, *, encoder: str = "minilm", patients: int | None = None, words: int | None = None,
             max_steps: int | None = None, attributions: bool | None = None) -> dict[str, Path]:
    """Run the whole readmission pipeline on synthetic data; print and return what was written where."""
    start = time.perf_counter()
    out = Path(out).resolve()
    steps = max_steps or DEMO["max_steps"]
    paths: dict[str, Path] = {}
    syn = synthetic.generate(out / "synthetic_mimic", patients or DEMO["patients"], words=words or DEMO["words"])
    paths["synthetic tables (SYNTHETIC, not real patients)"] = Path(syn["out"])
    prep = prepare(out / "data", mimic_dir=syn["out"], fractions=FRACTIONS)
    paths["prepared splits + card.yaml"] = Path(prep["out"])
    paths["admissions left out, with reasons"] = Path(prep["skipped_csv"])
    print(f"[demo] {syn['admissions']} synthetic admissions -> "
          + ", ".join(f"{k} {v['admissions']} ({v['positives']} readmitted)" for k, v in prep["splits"].items()))
    cfg = TrainConfig(encoder=encoder, max_steps=steps, eval_steps=steps, **DEMO_CONFIG)
    card = card_from_data(prep["out"])
    metrics = engine.train(TASK, card, cfg, out / "run", overwrite=True)
    paths["trained run"] = out / "run"
    print(f"[demo] trained {metrics['global_steps']} steps in {metrics['train_runtime_s']:.0f}s; validation AUROC "
          f"{metrics.get('validation', {}).get('auroc', float('nan')):.3f}")
    run = engine.load_run(TASK, out / "run")
    ev = engine.evaluate(TASK, run, "test")
    paths["test metrics"] = out / "run" / "eval_test.json"
    for p in ev.get("artifacts", {}).get("plots", []):
        paths[f"{Path(p).stem.split('_')[0].upper()} curve"] = out / "run" / p
    ci = ev.get("artifacts", {}).get("intervals", {})

    def iv(key: str) -> str:
        lo, hi = ci.get(key, (None, None))
        return f" [{lo:.3f}, {hi:.3f}]" if lo is not None and hi is not None else ""

    print(f"[demo] test ({ev['admissions']:.0f} admissions, 95% intervals by patient): AUROC {ev['auroc']:.3f}{iv('auroc')}  "
          f"AUPRC(AP) {ev['auprc_avg_precision']:.3f}{iv('auprc_avg_precision')}  RP80 {ev['rp80']:.3f}{iv('rp80')}")
    print(f"[demo] calibrated risks ({ev.get('artifacts', {}).get('calibration', 'uncalibrated')}): Brier "
          f"{ev['brier']:.3f}{iv('brier')} (uncalibrated {ev.get('uncalibrated_brier', float('nan')):.3f}), "
          f"ECE {ev['ece']:.3f}{iv('ece')} (uncalibrated {ev.get('uncalibrated_ece', float('nan')):.3f}), "
          f"slope {ev['calibration_slope']:.2f}, intercept {ev['calibration_intercept']:.2f}")
    pred = infer.predict_csv(run, Path(prep["out"]) / "test.csv", out / "risk.csv", progress=False)
    paths["risk per admission"] = out / "risk.csv"
    paths["skipped rows"] = pred.skipped_csv
    paths["HTML report"] = _report(run, Path(prep["out"]) / "test.csv", out / "report.html", attributions)
    for what, p in paths.items():
        print(f"[demo] {what:<50} {p}")
    print(f"[demo] done in {time.perf_counter() - start:.0f}s")
    return paths


def _report(run: engine.Run, test_csv: Path, out_html: Path, attributions: bool | None) -> Path:
    """explain_notes on the riskiest readmitted and the safest not-readmitted test admission: window
    ranking, integrated gradients (adaptive steps, always on unless switched off) and faithfulness."""
    import pandas as pd

    from ..interpret import explain_notes

    risks = pd.read_csv(out_html.parent / "risk.csv", dtype={"admission_id": str})
    test = pd.read_csv(test_csv, dtype={"admission_id": str}).merge(risks, on="admission_id")
    picks = [test[test.label == 1].sort_values("risk").tail(1), test[test.label == 0].sort_values("risk").head(1)]
    notes = [(r.admission_id, r.text) for d in picks for r in d.itertuples()]
    use_ig = attributions is not False
    print(f"[demo] explaining admissions {[n for n, _ in notes]} "
          f"({'window ranking, integrated gradients, faithfulness' if use_ig else 'attention only'})")
    return explain_notes(run, notes, out_html, attributions=use_ig, title=TITLE)
