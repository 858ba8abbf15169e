"""What ``evaluate`` writes beside the readmission metrics (eval JSON ``artifacts``): the curves, 95%
bootstrap intervals that resample patients (all admissions of a patient together), the operating
points a team can set an alert at, net benefit, and the metrics of each subgroup of admissions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from ..config import TrainConfig
from .calibration import Calibrator
from .metrics import plot_curves, readmission_metrics
from .notes import Note
from .operating import confusion_row, decision_curve, decision_curve_png, operating_points
from .reliability import bootstrap_intervals, brier, ece, reliability_png, subgroup_table

DECISION_THRESHOLDS = [round(t, 2) for t in np.arange(0.05, 0.55, 0.05)]  # net benefit kept in the JSON


def _interval_metrics(bins: int) -> dict[str, Any]:
    def ranking(key: str) -> Any:
        return lambda y, r: readmission_metrics(y, r)[key]

    return {"auroc": roc_auc_score, "auprc_avg_precision": ranking("auprc_avg_precision"),
            "auprc_trapezoid": ranking("auprc_trapezoid"), "rp80": ranking("rp80"), "brier": brier,
            "ece": lambda y, r: ece(y, r, bins)}


def evaluation_report(run_dir: Path, split: str, examples: list[Note], predictions: list[dict[str, Any]],
                      cfg: TrainConfig, opts: Any, cal: Calibrator | None) -> dict[str, Any]:
    """Write the split's PNGs into `run_dir`; return intervals, operating points, net benefit,
    subgroups and the settings the risks were computed with (all JSON-ready).

    Args:
        opts: the run's ReadmissionOptions (bootstrap resamples, ECE bins, subgroups, prevalence).
        cal: the run's calibrator (its validation thresholds are evaluated here too), or None.
    """
    y = [int(n.label) for n in examples]
    risks = np.asarray([r["risk"] for r in predictions], dtype=np.float64)
    subjects = [n.subject for n in examples]
    title = f"{split}, {len(y)} admissions"
    plots = plot_curves(y, risks, run_dir, split)
    if len(set(y)) == 2:
        plots += [reliability_png(y, risks, Path(run_dir) / f"reliability_{split}.png", title, opts.ece_bins),
                  decision_curve_png(y, risks, Path(run_dir) / f"decision_{split}.png", title)]
    out: dict[str, Any] = {
        "plots": [p.name for p in plots], "aggregation": cfg.aggregation, "aggregation_c": cfg.aggregation_c,
        "calibration": cal.describe() if cal else "none: the run has no calibration.json",
        "prevalence_target": opts.prevalence if cal else None,
        "operating_points": operating_points(y, risks)}
    if cal is not None and cal.thresholds and opts.prevalence is None:  # thresholds chosen on validation (on
        out["operating_points_at_validation_thresholds"] = [  # calibrated risks before any prior shift), here
            confusion_row(name, np.asarray(y), risks, t, None if t is not None else "no threshold on validation")
            for name, t in cal.thresholds.items()]
    curve = decision_curve(y, risks) if len(set(y)) == 2 else None
    if curve is not None:
        keep = [i for i, t in enumerate(curve["thresholds"]) if round(t, 2) in DECISION_THRESHOLDS]
        out["net_benefit"] = [{"threshold": curve["thresholds"][i], "model": curve["model"][i],
                               "treat_all": curve["treat_all"][i], "treat_none": 0.0} for i in keep]
    if opts.bootstrap > 0:
        out["intervals"] = bootstrap_intervals(y, risks, subjects, _interval_metrics(opts.ece_bins), opts.bootstrap)
        out["interval_method"] = (f"95% percentile bootstrap, {opts.bootstrap} resamples of patients "
                                  "(a patient's admissions drawn together)")
    if opts.subgroups:
        attrs = {a: [n.attrs.get(a) for n in examples] for a in opts.subgroups}
        overall = {"auroc": roc_auc_score(y, risks) if len(set(y)) == 2 else float("nan"), "brier": brier(y, risks),
                   "ece": ece(y, risks, opts.ece_bins)}
        out["subgroups"] = subgroup_table(y, risks, attrs, subjects, overall, max(opts.bootstrap, 1),
                                          bins=opts.ece_bins)
    return out
