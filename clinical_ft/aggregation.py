"""One aggregation module for every task: window scores -> one score per document. Pure functions."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def clinicalbert(probs: Sequence[float], c: float = 2.0) -> float:
    """ClinicalBERT's readmission vote: ``(max(p) + mean(p) * n / c) / (1 + n / c)``.

    With c = 2 this equals `run_readmission.py`'s ``(max + sum / 2) / (1 + n / 2)``. More windows
    shift weight from the single most alarming window to the average.
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.size == 0:
        raise ValueError("cannot aggregate zero window scores")
    n = p.size
    return float((p.max() + p.mean() * n / c) / (1.0 + n / c))


def max_score(probs: Sequence[float], c: float = 2.0) -> float:
    p = np.asarray(probs, dtype=np.float64)
    if p.size == 0:
        raise ValueError("cannot aggregate zero window scores")
    return float(p.max())


def mean_score(probs: Sequence[float], c: float = 2.0) -> float:
    p = np.asarray(probs, dtype=np.float64)
    if p.size == 0:
        raise ValueError("cannot aggregate zero window scores")
    return float(p.mean())


AGGREGATORS: dict[str, Callable[..., float]] = {"clinicalbert": clinicalbert, "max": max_score, "mean": mean_score}


def aggregate(
    doc_ids: Sequence[str], probs: Sequence[float], method: str = "clinicalbert", c: float = 2.0
) -> dict[str, tuple[float, int, int]]:
    """Group window probabilities by document and aggregate.

    Args:
        doc_ids: document id of each window.
        probs: positive-class probability of each window (same order).
        method: ``clinicalbert``, ``max`` or ``mean``.
        c: ClinicalBERT's scaling constant.

    Returns:
        doc id -> (score, number of windows, position in `probs` of the highest-scoring window),
        in order of first appearance.
    """
    if method not in AGGREGATORS:
        raise ValueError(f"unknown aggregation {method!r}; expected one of {sorted(AGGREGATORS)}")
    if len(doc_ids) != len(probs):
        raise ValueError(f"{len(doc_ids)} doc ids for {len(probs)} scores")
    groups: dict[str, list[int]] = {}
    for i, d in enumerate(doc_ids):
        groups.setdefault(d, []).append(i)
    fn = AGGREGATORS[method]
    out: dict[str, tuple[float, int, int]] = {}
    for d, idx in groups.items():
        vals = [float(probs[i]) for i in idx]
        out[d] = (fn(vals, c), len(idx), idx[int(np.argmax(vals))])
    return out


def window_shares(probs: Sequence[float], method: str = "clinicalbert", c: float = 2.0) -> np.ndarray:
    """Each window's share of the aggregated score; the shares sum to the score.

    ``mean``: ``p_i / n``. ``max``: the whole score to the first highest window. ``clinicalbert``:
    ``(p_i / c + [i is the first highest] * p_i) / (1 + n / c)``, the max term to its window, the
    mean term spread over all windows.
    """
    if method not in AGGREGATORS:
        raise ValueError(f"unknown aggregation {method!r}; expected one of {sorted(AGGREGATORS)}")
    p = np.asarray(probs, dtype=np.float64)
    if p.size == 0:
        raise ValueError("cannot aggregate zero window scores")
    n, top = p.size, int(np.argmax(p))
    onehot = np.zeros(n)
    onehot[top] = p[top]
    if method == "mean":
        return p / n
    if method == "max":
        return onehot
    return (p / c + onehot) / (1.0 + n / c)


def leave_one_out(probs: Sequence[float], method: str = "clinicalbert", c: float = 2.0) -> np.ndarray:
    """The aggregated score with each window left out in turn (nan for a single-window document)."""
    fn = AGGREGATORS[method]
    p = [float(x) for x in probs]
    return np.array([fn(p[:i] + p[i + 1:], c) if len(p) > 1 else float("nan") for i in range(len(p))])


def rank_windows(probs: Sequence[float], method: str = "clinicalbert", c: float = 2.0) -> list[int]:
    """Window indices, the one that drove the aggregated score most first: by share, then by
    probability (under ``max`` every other window's share is 0), then by position."""
    shares = window_shares(probs, method, c)
    return sorted(range(len(shares)), key=lambda i: (-shares[i], -float(probs[i]), i))
