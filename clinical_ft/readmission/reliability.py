"""Calibration of admission-level readmission risks, patient-grouped bootstrap intervals and subgroups.

- ``calibration_metrics``: Brier score, expected calibration error (ECE) over equal-width bins and the
  logistic recalibration slope/intercept (slope 1, intercept 0 = calibrated; slope < 1 = risks too
  extreme, over-confident; slope > 1 = too timid).
- ``reliability_png``: reliability diagram (sklearn ``calibration_curve``) over a histogram of risks.
- ``bootstrap_intervals``: percentile bootstrap that resamples patients, not admissions, so the
  admissions of one patient (which are correlated) are always drawn together.
- ``subgroup_table``: AUROC, Brier, ECE and prevalence per value of each attribute (sex, age band, ...),
  with intervals and flags for groups too small to read and groups that differ from the whole cohort.

Inputs are 1-D: ``labels`` (n,) 0/1 readmitted within 30 days, ``risks`` (n,) predicted probabilities
in [0, 1], one entry per admission. Every number returned is a plain float; an undefined one (one class,
an empty group) is NaN, never an exception. Operating points and decision curves live in operating.py
(re-exported here).
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import save_figure
from .operating import NAN, as_arrays, decision_curve, decision_curve_png, operating_points

__all__ = ["auroc", "bootstrap_intervals", "brier", "calibration_metrics", "decision_curve", "decision_curve_png",
           "ece", "grouped_resample_indices", "operating_points", "prevalence", "recalibration",
           "reliability_png", "subgroup_table"]

EPS = 1e-6  # risks are clipped to [EPS, 1 - EPS] before the logit of the recalibration fit
SUBGROUP_METRICS = ("auroc", "brier", "ece", "prevalence")
COMPARED = ("auroc", "brier", "ece")  # the metrics ``differs`` looks at (prevalence may differ by design)

MetricFn = Callable[[np.ndarray, np.ndarray], float]


def auroc(labels: Sequence[int], risks: Sequence[float]) -> float:
    """sklearn ``roc_auc_score``; NaN when only one class is present."""
    from sklearn.metrics import roc_auc_score

    y, r = as_arrays(labels, risks)
    return float(roc_auc_score(y, r)) if len(np.unique(y)) == 2 else NAN


def brier(labels: Sequence[int], risks: Sequence[float]) -> float:
    """sklearn ``brier_score_loss``: mean of (risk - label)^2 (defined for one class too; NaN when empty)."""
    from sklearn.metrics import brier_score_loss

    y, r = as_arrays(labels, risks)
    return float(brier_score_loss(y, r, pos_label=1)) if len(y) else NAN


def bin_ids(risks: np.ndarray, bins: int) -> np.ndarray:
    """Bin of each risk among `bins` equal-width bins over [0, 1], as sklearn ``calibration_curve``
    (strategy uniform) assigns them: bin 0 is [0, 1/bins], bin k is (k/bins, (k+1)/bins]."""
    return np.searchsorted(np.linspace(0.0, 1.0, bins + 1)[1:-1], risks)


def ece(labels: Sequence[int], risks: Sequence[float], bins: int = 10) -> float:
    """Expected calibration error: sum over non-empty bins of (n_bin / n) * |mean(label) - mean(risk)|.

    Bins as :func:`bin_ids`. NaN when there are no admissions.
    """
    y, r = as_arrays(labels, risks)
    if not len(y):
        return NAN
    ids = bin_ids(r, bins)
    gap = np.abs(np.bincount(ids, weights=y, minlength=bins) - np.bincount(ids, weights=r, minlength=bins))
    return float(gap.sum() / len(y))  # (n_b / n) * |sum_y / n_b - sum_r / n_b| = |sum_y - sum_r| / n; 0 if empty


def prevalence(labels: Sequence[int], risks: Sequence[float]) -> float:
    """Fraction of admissions readmitted (NaN when empty); `risks` only checked, for the metric_fn shape."""
    y, _ = as_arrays(labels, risks)
    return float(y.mean()) if len(y) else NAN


def recalibration(labels: Sequence[int], risks: Sequence[float]) -> tuple[float, float]:
    """(slope, intercept) of logit P(y=1) = intercept + slope * logit(risk), an unpenalised sklearn
    ``LogisticRegression`` on the logit of the risks clipped to [1e-6, 1 - 1e-6].

    NaN for both with one class or when all risks are equal (the slope is not identifiable).
    """
    import inspect

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    y, r = as_arrays(labels, risks)
    z = np.log(np.clip(r, EPS, 1 - EPS) / (1 - np.clip(r, EPS, 1 - EPS)))
    if len(np.unique(y)) < 2 or np.ptp(z) == 0:
        return NAN, NAN
    # scikit-learn >= 1.8 deprecates penalty=None in favour of C=inf; both mean "no penalty".
    old = inspect.signature(LogisticRegression).parameters["penalty"].default != "deprecated"
    lr = LogisticRegression(penalty=None, max_iter=1000) if old else LogisticRegression(C=np.inf, max_iter=1000)
    with warnings.catch_warnings():  # perfectly separated risks: the slope runs off, reported as it ends
        warnings.simplefilter("ignore", ConvergenceWarning)
        lr.fit(z.reshape(-1, 1), y)
    return float(lr.coef_[0, 0]), float(lr.intercept_[0])


def calibration_metrics(labels: Sequence[int], risks: Sequence[float], bins: int = 10) -> dict[str, float]:
    """Calibration of `risks` (n,) against 0/1 `labels` (n,).

    Returns:
        ``brier``, ``ece`` (over ``ece_bins`` equal-width bins), ``calibration_slope``,
        ``calibration_intercept`` (logistic recalibration, see :func:`recalibration`), ``mean_risk``
        and ``prevalence``; with ``admissions`` and ``positives`` for context. NaN where undefined.
    """
    y, r = as_arrays(labels, risks)
    slope, intercept = recalibration(y, r)
    return {"admissions": float(len(y)), "positives": float(y.sum()), "prevalence": prevalence(y, r),
            "mean_risk": float(r.mean()) if len(r) else NAN, "brier": brier(y, r), "ece": ece(y, r, bins),
            "ece_bins": float(bins), "calibration_slope": slope, "calibration_intercept": intercept}


def reliability_png(labels: Sequence[int], risks: Sequence[float], path: str | Path, title: str,
                    bins: int = 10) -> Path:
    """Write a reliability diagram of `risks` to `path` (PNG, atomically) and return the path.

    Top: observed readmission rate against mean risk per non-empty equal-width bin (sklearn
    ``calibration_curve``, strategy uniform) and the diagonal of perfect calibration. Bottom: histogram
    of the risks over the same bins. Drawn for one class or no admissions too (with what there is).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.calibration import calibration_curve

    y, r = as_arrays(labels, risks)
    m = calibration_metrics(y, r, bins)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(4.5, 5.5), dpi=100, sharex=True,
                                      gridspec_kw={"height_ratios": [3, 1]})
    top.plot([0, 1], [0, 1], ls="--", c="grey", lw=1, label="perfectly calibrated")
    if len(y):
        observed, predicted = calibration_curve(y, r, n_bins=bins, strategy="uniform", pos_label=1)
        top.plot(predicted, observed, marker="o", lw=1.8, label="model")
    top.set(ylabel="observed readmission rate", xlim=(0, 1), ylim=(0, 1.02),
            title=f"{title}\n{len(y)} admissions, Brier {m['brier']:.3f}, ECE {m['ece']:.3f}, "
                  f"slope {m['calibration_slope']:.2f}")
    top.legend(loc="upper left", fontsize=8)
    bottom.hist(r, bins=np.linspace(0, 1, bins + 1), color="tab:blue", alpha=0.6)
    bottom.set(xlabel="predicted risk", ylabel="admissions")
    fig.tight_layout()
    return save_figure(fig, path)


def grouped_resample_indices(groups: Sequence[Hashable | None], resamples: int,
                             seed: int = 0) -> Iterator[np.ndarray]:
    """Yield `resamples` index arrays into the n admissions, each drawing the groups with replacement.

    Args:
        groups: (n,) a group (patient, subject id) per admission; None makes the admission its own group.
        resamples: how many resamples to yield.
        seed: ``numpy.random.default_rng`` seed; the same seed yields the same arrays.

    Yields:
        int arrays: for each of n_groups draws, all admission indices of the drawn group (so the
        length varies with the drawn patients' admission counts).
    """
    codes: dict[tuple[str, Hashable], int] = {}
    code = np.array([codes.setdefault(("admission", i) if g is None else ("group", g), len(codes))
                     for i, g in enumerate(groups)], dtype=np.int64)
    order = np.argsort(code, kind="stable")  # admissions grouped by code
    counts = np.bincount(code, minlength=len(codes))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    rng = np.random.default_rng(seed)
    for _ in range(resamples):
        if not len(codes):
            yield np.zeros(0, dtype=np.int64)
            continue
        drawn = rng.integers(0, len(codes), size=len(codes))
        sizes = counts[drawn]
        first = np.repeat(starts[drawn] - (np.cumsum(sizes) - sizes), sizes)  # group start - output offset
        yield order[first + np.arange(sizes.sum())]


def bootstrap_intervals(labels: Sequence[int], risks: Sequence[float], groups: Sequence[Hashable | None],
                        metric_fns: Mapping[str, MetricFn], resamples: int = 1000, seed: int = 0,
                        level: float = 0.95) -> dict[str, Any]:
    """Percentile bootstrap intervals of metrics, resampling patients (all admissions of a patient together).

    Args:
        labels: (n,) 0/1. risks: (n,) in [0, 1]. groups: (n,) patient id per admission (None: its own).
        metric_fns: name -> fn(labels, risks) -> float. A resample where fn returns NaN/inf or raises
            ValueError (e.g. sklearn's one-class error) is skipped for that metric only.
        resamples: bootstrap resamples drawn. seed: rng seed (deterministic). level: interval coverage.

    Returns:
        name -> (low, high), the (1-level)/2 and (1+level)/2 percentiles of the metric over the resamples
        where it was defined ((NaN, NaN) when none), plus ``"resamples_used"``: name -> count (float).
    """
    if "resamples_used" in metric_fns:
        raise ValueError("'resamples_used' is reserved for the per-metric resample counts")
    y, r = as_arrays(labels, risks)
    if len(groups) != len(y):
        raise ValueError(f"{len(groups)} groups but {len(y)} admissions")
    import sklearn
    from sklearn.exceptions import UndefinedMetricWarning

    values: dict[str, list[float]] = {name: [] for name in metric_fns}
    # inputs are checked once above: sklearn's per-call validation would double the cost of a resample
    with sklearn.config_context(assume_finite=True, skip_parameter_validation=True), warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)  # one-class resamples are skipped, not warned
        for idx in grouped_resample_indices(groups, resamples, seed):
            for name, fn in metric_fns.items():
                try:
                    v = float(fn(y[idx], r[idx]))
                except ValueError:
                    continue
                if math.isfinite(v):
                    values[name].append(v)
    q = [100 * (1 - level) / 2, 100 * (1 + level) / 2]
    out: dict[str, Any] = {}
    for name, vs in values.items():
        low, high = np.percentile(vs, q) if vs else (NAN, NAN)
        out[name] = (float(low), float(high))
    out["resamples_used"] = {name: float(len(vs)) for name, vs in values.items()}
    return out


def _finite(x: Any) -> bool:
    """True for a finite number (False for None, as JSON ``null`` reads back, and for NaN)."""
    return isinstance(x, (int, float, np.floating, np.integer)) and math.isfinite(float(x))


def subgroup_table(labels: Sequence[int], risks: Sequence[float],
                   groups_by_attr: Mapping[str, Sequence[str | None]], subject_ids: Sequence[Hashable | None],
                   overall: Mapping[str, float], resamples: int = 1000, seed: int = 0, min_size: int = 30,
                   min_events: int = 5, bins: int = 10) -> list[dict[str, Any]]:
    """AUROC, Brier, ECE (`bins` equal-width bins) and prevalence per subgroup, with patient-grouped bootstrap intervals.

    Args:
        labels: (n,) 0/1. risks: (n,) in [0, 1].
        groups_by_attr: attribute (e.g. ``"sex"``) -> (n,) its value per admission (None: ``"unknown"``).
        subject_ids: (n,) patient id per admission, the bootstrap's resampling unit (None: its own).
        overall: the whole cohort's metric values (``auroc``, ``brier``, ``ece``) for ``differs``.
        resamples, seed: of :func:`bootstrap_intervals` (95% intervals), the same seed for each group.
        min_size, min_events: below either (or with no non-events) a group is ``too_small``.
        bins: equal-width bins of the ECE.

    Returns:
        One row per attribute and value (values sorted, ``"unknown"`` last): ``attribute``, ``value``,
        ``n``, ``events``, for each metric ``<m>``, ``<m>_low``, ``<m>_high``, ``resamples_used``
        (metric -> count), ``too_small`` and ``differs`` (the metrics among auroc, brier, ece whose
        interval excludes the overall value; read together with ``too_small``). ECE grows as a group
        shrinks (fewer admissions per bin), so a small group's ECE may differ from noise alone.
    """
    y, r = as_arrays(labels, risks)
    subjects = list(subject_ids)
    if len(subjects) != len(y):
        raise ValueError(f"{len(subjects)} subject ids but {len(y)} admissions")
    fns: dict[str, MetricFn] = {"auroc": auroc, "brier": brier, "ece": functools.partial(ece, bins=bins),
                                "prevalence": prevalence}
    rows = []
    for attr, values in groups_by_attr.items():
        if len(values) != len(y):
            raise ValueError(f"attribute {attr!r}: {len(values)} values but {len(y)} admissions")
        names = np.array(["unknown" if v is None else str(v) for v in values], dtype=object)
        for value in sorted(set(names), key=lambda v: (v == "unknown", v)):
            mask = names == value
            gy, gr = y[mask], r[mask]
            ci = bootstrap_intervals(gy, gr, [s for s, m in zip(subjects, mask) if m], fns, resamples, seed)
            row: dict[str, Any] = {"attribute": attr, "value": value, "n": float(mask.sum()),
                                   "events": float(gy.sum())}
            for name, fn in fns.items():
                row[name] = fn(gy, gr)
                row[f"{name}_low"], row[f"{name}_high"] = ci[name]
            row["resamples_used"] = ci["resamples_used"]
            row["too_small"] = bool(mask.sum() < min_size or gy.sum() < min_events or gy.sum() == mask.sum())
            row["differs"] = [name for name in COMPARED
                              if _finite(overall.get(name)) and _finite(row[f"{name}_low"])
                              and not row[f"{name}_low"] <= overall[name] <= row[f"{name}_high"]]
            rows.append(row)
    return rows
