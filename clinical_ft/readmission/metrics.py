"""Admission-level readmission metrics (scikit-learn) and ROC/PR curves as PNG (matplotlib, Agg).

- ``auroc``: area under the ROC curve.
- ``auprc_avg_precision``: average precision (sklearn's step-wise AUPRC, no interpolation).
- ``auprc_trapezoid``: ``auc(recall, precision)``, the trapezoid value ClinicalBERT reported.
- ``rp80``: the largest recall among operating points with precision >= 0.8 (0 when none).
  ClinicalBERT's own script takes the first such row of its curve, not the best.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..atomic import save_figure

log = logging.getLogger("clinical_ft.readmission")


def readmission_metrics(labels: Sequence[int], scores: Sequence[float]) -> dict[str, float]:
    """AUROC, both AUPRCs and RP80 of admission `scores` against 0/1 `labels`.

    With a single class present the ranking metrics are undefined and reported as NaN.
    """
    from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_auc_score

    y = np.asarray(labels, dtype=int)
    s = np.asarray(scores, dtype=np.float64)
    out = {"admissions": float(len(y)), "positives": float(y.sum()), "prevalence": float(y.mean()) if len(y) else 0.0}
    if len(np.unique(y)) < 2:
        log.warning("only one class among %d admissions: AUROC/AUPRC/RP80 are undefined (NaN)", len(y))
        return {**out, "auroc": float("nan"), "auprc_avg_precision": float("nan"),
                "auprc_trapezoid": float("nan"), "rp80": float("nan")}
    precision, recall, _ = precision_recall_curve(y, s)
    ok = precision >= 0.8
    return {
        **out,
        "auroc": float(roc_auc_score(y, s)),
        "auprc_avg_precision": float(average_precision_score(y, s)),
        "auprc_trapezoid": float(auc(recall, precision)),
        "rp80": float(recall[ok].max()) if ok.any() else 0.0,
    }


def plot_curves(labels: Sequence[int], scores: Sequence[float], out_dir: str | Path, tag: str) -> list[Path]:
    """Write ``roc_<tag>.png`` and ``pr_<tag>.png`` into `out_dir`; return their paths (none for one class)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve, roc_curve

    y = np.asarray(labels, dtype=int)
    s = np.asarray(scores, dtype=np.float64)
    if len(np.unique(y)) < 2:
        return []
    m = readmission_metrics(y, s)
    out = Path(out_dir)
    paths = []
    fpr, tpr, _ = roc_curve(y, s)
    precision, recall, _ = precision_recall_curve(y, s)
    curves = [
        ("roc", fpr, tpr, "false positive rate", "true positive rate", f"ROC (AUROC {m['auroc']:.3f})", [0, 1], [0, 1]),
        ("pr", recall, precision, "recall", "precision",
         f"PR (AP {m['auprc_avg_precision']:.3f}, RP80 {m['rp80']:.3f})", [0, 1], [m["prevalence"]] * 2),
    ]
    for name, x, yy, xl, yl, title, rx, ry in curves:
        fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=100)
        ax.plot(x, yy, lw=1.8, drawstyle="steps-post" if name == "pr" else "default")
        ax.plot(rx, ry, ls="--", c="grey", lw=1, label="chance")
        if name == "pr":
            ax.axhline(0.8, ls=":", c="tab:red", lw=1, label="precision 0.8")
        ax.set(xlabel=xl, ylabel=yl, title=f"{title}\n{tag}, {len(y)} admissions", xlim=(0, 1), ylim=(0, 1.02))
        ax.legend(loc="lower right" if name == "roc" else "upper right", fontsize=8)
        fig.tight_layout()
        path = out / f"{name}_{tag}.png"
        save_figure(fig, path)
        paths.append(path)
    return paths
