"""Operating points and decision curves of admission-level readmission risks (scikit-learn, matplotlib Agg).

- ``operating_points``: the confusion table, sensitivity, specificity, PPV, NPV and alerts per 100
  admissions at three thresholds a ward could adopt: precision 0.8 (the RP80 point), sensitivity 0.8
  and the top 10% of risks. An admission raises an alert when its risk >= the threshold.
- ``decision_curve``: net benefit (Vickers & Elkin, Med Decis Making 2006) of acting on the model, on
  every admission (treat all) and on none, over threshold probabilities pt:
  NB = TP/n - FP/n * pt / (1 - pt); ``decision_curve_png`` draws it.

Inputs are 1-D: ``labels`` (n,) 0/1, ``risks`` (n,) in [0, 1]. Numbers are plain floats; undefined
ones are NaN (a threshold that cannot be set is None, with a ``note`` saying why). ``as_arrays`` (the
input check) is shared with reliability.py, which re-exports this module's functions.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import save_figure

NAN = float("nan")
TARGET = 0.8  # the precision and the sensitivity of the first two operating points
TOP_FRACTION = 0.10  # the share of admissions alerted at the third
THRESHOLDS = np.linspace(0.01, 0.99, 99)  # the default decision-curve threshold probabilities (99,)


def as_arrays(labels: Sequence[int], risks: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """`labels` as int (n,) 0/1 and `risks` as float64 (n,) in [0, 1]; ValueError for anything else."""
    raw = np.asarray(labels).reshape(-1)
    r = np.asarray(risks, dtype=np.float64).reshape(-1)
    if len(raw) != len(r):
        raise ValueError(f"{len(raw)} labels but {len(r)} risks")
    if not np.isin(raw, (0, 1)).all():
        raise ValueError("labels must be 0 or 1")
    y = raw.astype(int)
    if not (np.isfinite(r).all() and (r >= 0).all() and (r <= 1).all()):
        raise ValueError("risks must be finite probabilities in [0, 1]")
    return y, r


def _ratio(a: int, b: int) -> float:
    return float(a / b) if b else NAN


def confusion_row(name: str, labels: np.ndarray, risks: np.ndarray, threshold: float | None,
                  note: str | None = None) -> dict[str, Any]:
    """One operating point: alerts are ``risks >= threshold``; every number NaN when threshold is None.

    Returns:
        ``name``, ``threshold``, ``sensitivity``, ``specificity``, ``ppv``, ``npv``, ``alerts_per_100``
        (alerts per 100 admissions), ``tp``, ``fp``, ``tn``, ``fn`` and ``note`` (None, or why not set).
    """
    keys = ("sensitivity", "specificity", "ppv", "npv", "alerts_per_100", "tp", "fp", "tn", "fn")
    if threshold is None:
        return {"name": name, "threshold": None, **dict.fromkeys(keys, NAN), "note": note}
    alert, pos = risks >= threshold, labels == 1
    tp, fp = int((alert & pos).sum()), int((alert & ~pos).sum())
    fn, tn = int((~alert & pos).sum()), int((~alert & ~pos).sum())
    return {"name": name, "threshold": float(threshold), "sensitivity": _ratio(tp, tp + fn),
            "specificity": _ratio(tn, tn + fp), "ppv": _ratio(tp, tp + fp), "npv": _ratio(tn, tn + fn),
            "alerts_per_100": 100 * _ratio(tp + fp, len(labels)), "tp": float(tp), "fp": float(fp),
            "tn": float(tn), "fn": float(fn), "note": note}


def precision_threshold(labels: np.ndarray, risks: np.ndarray, target: float = TARGET) -> float | None:
    """The threshold of largest recall among those with precision >= `target` (sklearn
    ``precision_recall_curve``); of equal recalls the highest threshold (fewest alerts). None if none."""
    from sklearn.metrics import precision_recall_curve

    if not labels.sum():
        return None
    precision, recall, thresholds = precision_recall_curve(labels, risks)
    ok = precision[:-1] >= target  # the curve's last point (recall 0) has no threshold
    if not ok.any():
        return None
    best = ok & (recall[:-1] == recall[:-1][ok].max())
    return float(thresholds[best].max())


def sensitivity_threshold(labels: np.ndarray, risks: np.ndarray, target: float = TARGET) -> float | None:
    """The largest threshold whose sensitivity >= `target` (sklearn ``roc_curve``); None without positives."""
    from sklearn.exceptions import UndefinedMetricWarning
    from sklearn.metrics import roc_curve

    if not labels.sum():
        return None
    with warnings.catch_warnings():  # no negatives: the false positive rate is undefined, tpr is fine
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        _, tpr, thresholds = roc_curve(labels, risks, drop_intermediate=False)
    ok = (tpr >= target) & np.isfinite(thresholds)
    return float(thresholds[ok].max()) if ok.any() else None


def operating_points(labels: Sequence[int], risks: Sequence[float]) -> list[dict[str, Any]]:
    """Rows (see :func:`confusion_row`) at three thresholds, in this order:

    - ``precision_0.8``: the RP80 point, largest recall among thresholds with precision >= 0.8;
    - ``sensitivity_0.8``: the largest threshold with sensitivity >= 0.8;
    - ``top_10pct``: the 90th percentile of the risks (numpy linear interpolation; with tied risks
      more than 10% may be alerted).

    A threshold that cannot be set (no positives, no precision >= 0.8, no admissions) gives a row
    with threshold None, NaN numbers and a ``note``.
    """
    y, r = as_arrays(labels, risks)
    if not len(y):
        return [confusion_row(name, y, r, None, "no admissions")
                for name in ("precision_0.8", "sensitivity_0.8", "top_10pct")]
    none_readmitted = "no readmitted admissions" if not y.sum() else None
    precision = precision_threshold(y, r)
    sensitivity = sensitivity_threshold(y, r)
    return [
        confusion_row("precision_0.8", y, r, precision,
                      None if precision is not None else none_readmitted or "no threshold reaches precision 0.8"),
        confusion_row("sensitivity_0.8", y, r, sensitivity, None if sensitivity is not None else none_readmitted),
        confusion_row("top_10pct", y, r, float(np.quantile(r, 1 - TOP_FRACTION))),
    ]


def decision_curve(labels: Sequence[int], risks: Sequence[float],
                   thresholds: Sequence[float] = THRESHOLDS) -> dict[str, Any]:
    """Net benefit per threshold probability pt (each in (0, 1); ValueError otherwise).

    Returns:
        ``thresholds`` (k,), ``model`` (k,) net benefit of alerting when risk >= pt, ``treat_all`` (k,)
        prevalence - (1 - prevalence) * pt / (1 - pt), ``treat_none`` (k,) zeros, as lists of floats
        (NaN without admissions); with ``admissions`` and ``prevalence``.
    """
    y, r = as_arrays(labels, risks)
    pt = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    if not ((pt > 0) & (pt < 1)).all():
        raise ValueError("decision curve thresholds must lie strictly between 0 and 1")
    odds, n = pt / (1 - pt), len(y)
    if n:
        treat = r[None, :] >= pt[:, None]  # (k, n)
        tp, fp = (treat & (y == 1)).sum(axis=1), (treat & (y == 0)).sum(axis=1)
        model, prev = tp / n - fp / n * odds, float(y.mean())
    else:
        model, prev = np.full(len(pt), NAN), NAN
    return {"thresholds": pt.tolist(), "model": [float(v) for v in model],
            "treat_all": [float(v) for v in prev - (1 - prev) * odds], "treat_none": [0.0] * len(pt),
            "admissions": float(n), "prevalence": prev}


def decision_curve_png(labels: Sequence[int], risks: Sequence[float], path: str | Path, title: str) -> Path:
    """Write the decision curve (model, treat all, treat none) to `path` (PNG, atomically); return it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = decision_curve(labels, risks)
    top = np.nanmax([d["prevalence"], *d["model"], 0.01]) if d["admissions"] else 0.1
    fig, ax = plt.subplots(figsize=(5, 4.5), dpi=100)
    ax.plot(d["thresholds"], d["model"], lw=1.8, label="model")
    ax.plot(d["thresholds"], d["treat_all"], lw=1, c="tab:orange", label="treat all")
    ax.plot(d["thresholds"], d["treat_none"], lw=1, ls="--", c="grey", label="treat none")
    ax.set(xlabel="threshold probability", ylabel="net benefit", xlim=(0, 1), ylim=(-0.05, 1.1 * top),
           title=f"{title}\n{int(d['admissions'])} admissions, prevalence {d['prevalence']:.3f}")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)
