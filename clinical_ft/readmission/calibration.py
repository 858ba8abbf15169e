"""Admission-level calibration: the number in ``risk.csv`` as a probability a hospital can act on.

At the end of training the run's aggregated validation scores (after window aggregation) are fitted
to the validation labels with scikit-learn, and the calibrator is saved as ``calibration.json`` in
the run directory:

- ``temperature``: p = sigmoid(logit(s) / T), one parameter (T fitted by log loss, scipy);
- ``platt``: p = sigmoid(a * logit(s) + b), sklearn ``LogisticRegression`` on logit(s) (the default:
  it corrects both the spread and the base rate of the scores, see benchmarks/calibration_bench.py);
- ``isotonic``: sklearn ``IsotonicRegression`` (monotone, piecewise linear between its thresholds);
- ``none``: risks are the scores.

Prior shift (Bayes odds correction): a calibrated risk p fitted at prevalence pi (the validation
admissions') is moved to a deployment prevalence q by odds(p') = odds(p) * odds(q) / odds(pi).

The file also keeps what ``predict`` needs to report drift: the validation scores' decile edges (for
the population stability index) and the operating thresholds chosen on validation.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import write_json

FILE = "calibration.json"
METHODS = ("temperature", "platt", "isotonic", "none")
EPS = 1e-6


def logit(p: Any) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    return np.log(p / (1 - p))


def sigmoid(z: Any) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(z, dtype=np.float64)))


@dataclass
class Calibrator:
    """A fitted admission-level calibrator (the content of calibration.json).

    Attributes:
        method: one of METHODS.
        params: method parameters (temperature ``T``; platt ``a``, ``b``; isotonic ``x``, ``y``).
        fitted_on: validation admissions it was fitted on, and how many were readmitted.
        prevalence: the readmission rate of those admissions (the prior of the calibrated risks).
        score_deciles: decile edges of the validation scores, for the population stability index.
        thresholds: operating-point name -> calibrated-risk threshold chosen on validation.
    """

    method: str
    params: dict[str, Any] = field(default_factory=dict)
    fitted_on: int = 0
    positives: int = 0
    prevalence: float = math.nan
    score_deciles: list[float] = field(default_factory=list)
    thresholds: dict[str, float | None] = field(default_factory=dict)

    def apply(self, scores: Any) -> np.ndarray:
        """Calibrated risks of aggregated scores (shape kept)."""
        s = np.asarray(scores, dtype=np.float64)
        if self.method == "temperature":
            return sigmoid(logit(s) / self.params["T"])
        if self.method == "platt":
            return sigmoid(self.params["a"] * logit(s) + self.params["b"])
        if self.method == "isotonic":  # what IsotonicRegression.predict does with out_of_bounds="clip"
            return np.interp(s, self.params["x"], self.params["y"])
        return s

    def describe(self) -> str:
        if self.method == "none":
            return "not calibrated (calibration: none)"
        return (f"{self.method} calibration fitted on {self.fitted_on} validation admissions "
                f"({self.positives} readmitted, prevalence {self.prevalence:.3f})")


def fit(method: str, scores: Any, labels: Any) -> Calibrator:
    """Fit `method` on validation `scores` (aggregated, uncalibrated) against 0/1 `labels`.

    Falls back to ``none`` (stated in `params["why"]`) when the labels hold one class only.
    """
    from scipy.optimize import minimize_scalar
    from sklearn.isotonic import IsotonicRegression
    from sklearn.linear_model import LogisticRegression

    s, y = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=int)
    cal = Calibrator(method, fitted_on=int(len(y)), positives=int(y.sum()),
                     prevalence=float(y.mean()) if len(y) else math.nan,
                     score_deciles=[float(v) for v in np.quantile(s, np.linspace(0, 1, 11))] if len(s) else [])
    if method == "none":
        return cal
    if len(np.unique(y)) < 2:
        return Calibrator("none", {"why": f"{method} needs both classes among the validation admissions"},
                          cal.fitted_on, cal.positives, cal.prevalence, cal.score_deciles)
    z = logit(s)
    if method == "temperature":
        def nll(log_t: float) -> float:
            p = np.clip(sigmoid(z / math.exp(log_t)), EPS, 1 - EPS)
            return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))

        cal.params = {"T": float(math.exp(minimize_scalar(nll, bounds=(-5, 5), method="bounded").x))}
    elif method == "platt":
        lr = LogisticRegression(C=1e6, max_iter=1000).fit(z.reshape(-1, 1), y)
        cal.params = {"a": float(lr.coef_[0, 0]), "b": float(lr.intercept_[0])}
    elif method == "isotonic":
        iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(s, y)
        cal.params = {"x": [float(v) for v in iso.X_thresholds_], "y": [float(v) for v in iso.y_thresholds_]}
    else:
        raise ValueError(f"calibration: expected one of {list(METHODS)}, found {method!r}")
    return cal


def prior_shift(risks: Any, from_prevalence: float, to_prevalence: float) -> np.ndarray:
    """Risks calibrated at prevalence `from_prevalence` moved to `to_prevalence` (Bayes odds correction)."""
    p = np.clip(np.asarray(risks, dtype=np.float64), EPS, 1 - EPS)
    ratio = (to_prevalence / (1 - to_prevalence)) / (from_prevalence / (1 - from_prevalence))
    odds = p / (1 - p) * ratio
    return odds / (1 + odds)


def psi(reference_edges: list[float], scores: Any) -> float:
    """Population stability index of `scores` against the reference deciles (each holds 10%):
    sum over bins of (a - e) * ln(a / e), empty bins floored at 1e-4. < 0.1 stable, 0.1-0.25 a
    moderate shift, > 0.25 a major one."""
    s = np.asarray(scores, dtype=np.float64)
    if len(reference_edges) < 2 or not len(s):
        return math.nan
    inner = np.asarray(reference_edges[1:-1])
    counts = np.bincount(np.searchsorted(inner, s, side="right"), minlength=len(inner) + 1)
    actual = np.maximum(counts / len(s), 1e-4)
    expected = np.full(len(actual), 1.0 / len(actual))
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def save(cal: Calibrator, run_dir: Path) -> Path:
    write_json(Path(run_dir) / FILE, asdict(cal))
    return Path(run_dir) / FILE


def load(run_dir: Path) -> Calibrator | None:
    """The run's calibrator, or None for a run trained without one (before calibration existed, or
    without a validation split)."""
    path = Path(run_dir) / FILE
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    data["prevalence"] = math.nan if data.get("prevalence") is None else data["prevalence"]
    return Calibrator(**data)
