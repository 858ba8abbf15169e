"""Faithfulness of a token ranking: ERASER's comprehensiveness and sufficiency as AOPC (as in ferret).

Task-agnostic: it takes a function scoring a batch of token-id rows (the explained target, e.g. the
probability of the predicted class) and one score per token for each ranking. For each fraction q
of the candidate tokens (default 5, 10, 20%), the top ``ceil(q * n)`` tokens of a ranking are

- removed: replaced by the fill token (the [PAD] baseline of integrated gradients), giving
  ``comprehensiveness = mean_q f(x) - f(x without top q)`` (higher: the ranking found what the
  model used);
- kept alone: every other candidate replaced by the fill token, giving
  ``sufficiency = mean_q f(x) - f(x with only top q)`` (lower: the top tokens alone suffice).

Non-candidate positions ([CLS], [SEP], other special tokens) are never replaced, so the length and
positions of the input do not change. A seeded random ranking is the floor every explanation should
beat. All perturbed inputs of all rankings go through the model in batches.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

FRACTIONS = (0.05, 0.10, 0.20)
Scorer = Callable[[np.ndarray], np.ndarray]  # (n, T) int64 token ids -> (n,) target scores


@dataclass
class Faithfulness:
    """AOPC comprehensiveness and sufficiency of one ranking (per fraction and their mean)."""

    comprehensiveness: float
    sufficiency: float
    per_fraction: list[tuple[float, float, float]]  # (fraction, comp, suff)


def top_positions(scores: np.ndarray, candidates: np.ndarray, fraction: float) -> np.ndarray:
    """Positions of the ``ceil(fraction * n)`` highest-scoring candidate tokens (ties: earlier first)."""
    cand = np.flatnonzero(candidates)
    k = min(len(cand), max(1, math.ceil(fraction * len(cand))))
    order = cand[np.argsort(-np.asarray(scores, dtype=np.float64)[cand], kind="stable")]
    return order[:k]


def perturbed(input_ids: Sequence[int], top: np.ndarray, candidates: np.ndarray, fill_id: int) -> tuple[np.ndarray, np.ndarray]:
    """(x without `top`, x with only `top` among the candidates), as token-id rows."""
    ids = np.asarray(input_ids, dtype=np.int64)
    removed = ids.copy()
    removed[top] = fill_id
    kept = np.where(candidates, fill_id, ids)
    kept[top] = ids[top]
    return removed, kept


def random_ranking(n: int, seed: int = 0) -> np.ndarray:
    """A seeded random score per token: the floor."""
    return np.random.default_rng(seed).random(n)


def aopc(score: Scorer, input_ids: Sequence[int], rankings: dict[str, np.ndarray], candidates: np.ndarray,
         fill_id: int, *, fractions: Sequence[float] = FRACTIONS, value: float | None = None,
         batch_size: int = 8) -> dict[str, Faithfulness]:
    """Comprehensiveness and sufficiency of each ranking on one input.

    Args:
        score: token-id rows -> the target score of each row (no gradients needed).
        input_ids: the explained input (one row, special tokens included).
        rankings: name -> (T,) score per token; higher = more important.
        candidates: (T,) bool, the tokens that may be removed (not [CLS]/[SEP]/special tokens).
        fill_id: the token that replaces removed tokens ([PAD], the IG baseline).
        fractions: the fractions of candidate tokens removed or kept.
        value: f(x) if already known (otherwise scored in the first batch).
        batch_size: rows per forward pass.

    Returns:
        name -> :class:`Faithfulness`, in the order of `rankings`.

    Raises:
        ValueError: a ranking or `candidates` whose length is not the input's.
    """
    ids = np.asarray(input_ids, dtype=np.int64)
    candidates = np.asarray(candidates, dtype=bool)
    for name, r in [("candidates", candidates), *rankings.items()]:
        if len(r) != len(ids):
            raise ValueError(f"{name}: {len(r)} scores for {len(ids)} tokens")
    rows = [] if value is not None else [ids]
    for r in rankings.values():
        for q in fractions:
            rows.extend(perturbed(ids, top_positions(r, candidates, q), candidates, fill_id))
    uniq, inverse = np.unique(np.stack(rows), axis=0, return_inverse=True)  # shared rows are scored once
    scored = np.concatenate([np.asarray(score(uniq[i:i + batch_size]), dtype=np.float64)
                             for i in range(0, len(uniq), batch_size)])[np.ravel(inverse)]
    fx = float(scored[0]) if value is None else float(value)
    scored = scored[1:] if value is None else scored
    out, i = {}, 0
    for name in rankings:
        per = []
        for q in fractions:
            per.append((q, fx - float(scored[i]), fx - float(scored[i + 1])))
            i += 2
        out[name] = Faithfulness(float(np.mean([p[1] for p in per])), float(np.mean([p[2] for p in per])), per)
    return out
