"""Extractive QA post-processing and metrics, pure functions on numpy arrays and strings.

Post-processing follows transformers ``examples/pytorch/question-answering/utils_qa.py``
(``postprocess_qa_predictions``): per window, the top-n start and end logits; spans outside the
context, with end < start, or longer than ``max_answer_length`` tokens are dropped; score = start +
end logit; candidates of all windows of a question are ranked together and softmaxed. One change:
the same character span found in two overlapping windows is listed once, with its best score.

Metrics: SQuAD v1.1 exact match / F1 (official normalisation) and BioASQ factoid strict accuracy,
lenient accuracy and MRR over the top 5 answers of a question.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

Offsets = Sequence[tuple[int, int] | None]


def answer_token_span(offsets: Offsets, char_start: int, char_end: int, cls_index: int = 0) -> tuple[int, int]:
    """Token positions (start, end) of the answer ``[char_start, char_end)`` in one window, or
    (cls_index, cls_index) when the answer is not wholly inside the window's context."""
    ctx = [i for i, o in enumerate(offsets) if o is not None]
    if not ctx or offsets[ctx[0]][0] > char_start or offsets[ctx[-1]][1] < char_end:
        return cls_index, cls_index
    start = next(i for i in ctx if offsets[i][1] > char_start)
    end = max(i for i in ctx if offsets[i][0] < char_end)
    return start, end


def best_spans(context: str, windows: Sequence[tuple[Offsets, np.ndarray]], n_best: int = 20,
               max_answer_length: int = 30) -> list[dict[str, Any]]:
    """Rank answer spans of one question across all its windows.

    Args:
        context: the text the offsets point into.
        windows: per window, its token offsets (None outside the context) and a (4, K) array:
            top-K start logits, their token positions, top-K end logits, their positions
            (positions < 0 are padding).
        n_best: start/end candidates per window, and answers kept.
        max_answer_length: longest answer in tokens.

    Returns:
        Up to `n_best` dicts with ``text``, ``start``, ``end`` (character offsets), ``score`` and
        ``probability`` (softmax over the kept candidates), best first; empty if no span is valid.
    """
    spans: dict[tuple[int, int], float] = {}
    for offsets, top in windows:
        sv, si, ev, ei = top[0, :n_best], top[1, :n_best].astype(int), top[2, :n_best], top[3, :n_best].astype(int)
        for s_val, s in zip(sv, si):
            if s < 0 or s >= len(offsets) or offsets[s] is None:
                continue
            for e_val, e in zip(ev, ei):
                if e < 0 or e >= len(offsets) or offsets[e] is None or e < s or e - s + 1 > max_answer_length:
                    continue
                key = (offsets[s][0], offsets[e][1])
                score = float(s_val) + float(e_val)
                if score > spans.get(key, -np.inf):
                    spans[key] = score
    ranked = sorted(spans.items(), key=lambda kv: -kv[1])[:n_best]
    if not ranked:
        return []
    scores = np.array([s for _, s in ranked])
    probs = np.exp(scores - scores.max())
    probs /= probs.sum()
    return [{"text": context[a:b], "start": a, "end": b, "score": s, "probability": float(p)}
            for ((a, b), s), p in zip(ranked, probs)]


def normalize_answer(s: str) -> str:
    """SQuAD v1.1 normalisation: lowercase, drop punctuation, articles (a/an/the) and extra whitespace."""
    s = "".join(ch for ch in s.lower() if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def exact_match(prediction: str, truth: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(truth))


def token_f1(prediction: str, truth: str) -> float:
    """SQuAD v1.1 token-overlap F1 of normalised answers."""
    pred, gold = normalize_answer(prediction).split(), normalize_answer(truth).split()
    same = sum((Counter(pred) & Counter(gold)).values())
    if same == 0:
        return 0.0
    p, r = same / len(pred), same / len(gold)
    return 2 * p * r / (p + r)


def squad_scores(predictions: Sequence[str], golds: Sequence[Sequence[str]]) -> dict[str, float]:
    """Mean over questions of the best EM / F1 against any gold answer (fractions in [0, 1]).
    Questions without gold answers are skipped and counted in ``unscored``."""
    em, f1 = [], []
    for pred, gold in zip(predictions, golds):
        if gold:
            em.append(max(exact_match(pred, g) for g in gold))
            f1.append(max(token_f1(pred, g) for g in gold))
    n = len(em)
    return {"exact_match": float(np.mean(em)) if n else 0.0, "f1": float(np.mean(f1)) if n else 0.0,
            "scored": float(n), "unscored": float(len(predictions) - n)}


def merge_candidates(per_snippet: Sequence[Sequence[dict[str, Any]]], top: int = 5) -> list[str]:
    """BioASQ: merge the candidates of all snippets of a question case-insensitively by summed
    probability; return the `top` answers (first surface form seen), best first."""
    total: dict[str, float] = {}
    surface: dict[str, str] = {}
    for cands in per_snippet:
        for c in cands:
            key = c["text"].strip().lower()
            if key:
                total[key] = total.get(key, 0.0) + float(c["probability"])
                surface.setdefault(key, c["text"].strip())
    ranked = sorted(total, key=lambda k: -total[k])[:top]
    return [surface[k] for k in ranked]


def factoid_scores(ranked: Sequence[Sequence[str]], golds: Sequence[Sequence[str]], top: int = 5) -> dict[str, float]:
    """BioASQ factoid strict accuracy (first answer correct), lenient accuracy (any of the top
    `top`) and MRR (1/rank of the first correct answer in the top `top`, else 0). An answer is
    correct when it equals a gold synonym ignoring case and surrounding whitespace."""
    strict, lenient, rr = [], [], []
    for answers, gold in zip(ranked, golds):
        ok = {g.strip().lower() for g in gold}
        hits = [i for i, a in enumerate(answers[:top]) if a.strip().lower() in ok]
        strict.append(float(bool(hits) and hits[0] == 0))
        lenient.append(float(bool(hits)))
        rr.append(1.0 / (hits[0] + 1) if hits else 0.0)
    n = len(strict)
    return {"strict_acc": float(np.mean(strict)) if n else 0.0, "lenient_acc": float(np.mean(lenient)) if n else 0.0,
            "mrr": float(np.mean(rr)) if n else 0.0, "questions": float(n)}
