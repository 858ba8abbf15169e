"""QA post-processing and metrics on hand-made logits and hand-computed values."""

import numpy as np
import pytest
import torch

from clinical_ft.qa import EXTRACTIVE
from clinical_ft.qa.extractive import TOP_K
from clinical_ft.qa.post import (
    answer_token_span,
    best_spans,
    exact_match,
    factoid_scores,
    merge_candidates,
    normalize_answer,
    squad_scores,
    token_f1,
)
from clinical_ft.qa.readers import QAExample

CONTEXT = "alpha beta gamma delta epsilon"
#          0     6    11    17    23
WORDS = {"alpha": (0, 5), "beta": (6, 10), "gamma": (11, 16), "delta": (17, 22), "epsilon": (23, 30)}
# [CLS] question [SEP] <content> [SEP]; window A holds alpha beta gamma, window B gamma delta epsilon
WIN_A = [None, None, None, WORDS["alpha"], WORDS["beta"], WORDS["gamma"], None]
WIN_B = [None, None, None, WORDS["gamma"], WORDS["delta"], WORDS["epsilon"], None]


def _top(start: list[float], end: list[float]) -> np.ndarray:
    """The engine's real reduction of one window's (start, end) logits."""
    out = EXTRACTIVE.reduce_logits((torch.tensor([start]), torch.tensor([end])), None)
    assert out.shape == (1, 4, TOP_K)
    return out[0].numpy()


def _low(n: int = 7) -> list[float]:
    return [0.0] * n


def test_answer_only_in_second_window() -> None:
    a = _top(_low(), _low())
    b_start, b_end = _low(), _low()
    b_start[4], b_end[5] = 5.0, 5.0  # delta .. epsilon in window B
    best = best_spans(CONTEXT, [(WIN_A, a), (WIN_B, _top(b_start, b_end))])
    assert best[0]["text"] == "delta epsilon" and (best[0]["start"], best[0]["end"]) == (17, 30)
    assert best[0]["score"] == pytest.approx(10.0)
    assert [c["probability"] for c in best] == sorted((c["probability"] for c in best), reverse=True)
    assert sum(c["probability"] for c in best) == pytest.approx(1.0)


def test_spans_never_combine_two_windows_and_overlap_is_listed_once() -> None:
    a_start, a_end = _low(), _low()
    a_start[4] = 9.0  # "beta" starts strongly in window A ...
    b_start, b_end = _low(), _low()
    b_end[4] = 9.0  # ... "delta" ends strongly in window B: "beta gamma delta" spans the boundary
    a_end[5], b_start[3] = 1.0, 1.0  # "gamma" is in both windows
    best = best_spans(CONTEXT, [(WIN_A, _top(a_start, a_end)), (WIN_B, _top(b_start, b_end))])
    assert all((c["start"], c["end"]) != (6, 22) for c in best)
    assert best[0]["text"] in ("beta gamma", "gamma delta")
    spans = [(c["start"], c["end"]) for c in best]
    assert len(spans) == len(set(spans))  # "gamma" from both windows appears once


def test_max_answer_length_is_enforced() -> None:
    start, end = _low(), _low()
    start[3], end[5] = 9.0, 9.0  # alpha .. gamma = 3 tokens
    assert best_spans(CONTEXT, [(WIN_A, _top(start, end))], max_answer_length=30)[0]["text"] == "alpha beta gamma"
    best = best_spans(CONTEXT, [(WIN_A, _top(start, end))], max_answer_length=2)
    assert best[0]["text"] != "alpha beta gamma" and best[0]["score"] == pytest.approx(9.0)
    assert all(len(c["text"].split()) <= 2 for c in best)


def test_end_before_start_is_rejected() -> None:
    start, end = _low(), _low()
    start[5], end[3] = 20.0, 20.0  # gamma .. alpha would score 40
    best = best_spans(CONTEXT, [(WIN_A, _top(start, end))])
    assert best[0]["score"] == pytest.approx(20.0) and best[0]["text"] in ("alpha", "gamma")
    assert all(c["start"] < c["end"] for c in best)


def test_special_and_question_tokens_are_never_answers() -> None:
    start, end = _low(), _low()
    start[0] = end[0] = start[1] = end[6] = 50.0  # [CLS], question, [SEP]
    best = best_spans(CONTEXT, [(WIN_A, _top(start, end))])
    assert best and all(c["text"] for c in best)
    assert best_spans("", [([None, None, None], _top([9.0, 9.0, 9.0], [9.0, 9.0, 9.0]))]) == []


def test_short_windows_are_padded_to_top_k() -> None:
    top = _top([1.0, 2.0], [3.0, 4.0])
    assert list(top[1, :2]) == [1.0, 0.0] and (top[1, 2:] == -1).all() and np.isneginf(top[0, 2:]).all()


def test_answer_token_span_inside_and_outside_the_window() -> None:
    assert answer_token_span(WIN_A, 6, 16) == (4, 5)
    assert answer_token_span(WIN_A, 7, 9) == (4, 4)  # inside one token
    assert answer_token_span(WIN_A, 11, 22) == (0, 0)  # ends in the next window
    assert answer_token_span(WIN_B, 0, 5) == (0, 0)
    assert answer_token_span(WIN_B, 17, 30, cls_index=0) == (4, 5)


def test_squad_normalisation_em_and_f1() -> None:
    assert normalize_answer("The  Cat's, hat!") == "cats hat"
    assert normalize_answer("an apple a day") == "apple day"
    assert exact_match("the Spike protein.", "spike protein") == 1.0
    # pred tokens [cat, sat], gold [cat, sat, down]: P = 1, R = 2/3, F1 = 0.8
    assert token_f1("the cat sat", "a cat sat down") == pytest.approx(0.8)
    assert token_f1("dog", "cat") == 0.0
    m = squad_scores(["cat sat", "x", ""], [["dog", "the cat sat"], ["y"], []])
    assert m["exact_match"] == pytest.approx(0.5) and m["f1"] == pytest.approx(0.5)
    assert m["scored"] == 2 and m["unscored"] == 1


def test_bioasq_merge_and_factoid_metrics() -> None:
    snippets = [[{"text": "JAK3", "probability": 0.4}, {"text": "STAT5", "probability": 0.35}],
                [{"text": "jak3 ", "probability": 0.3}, {"text": "Stat5", "probability": 0.2}, {"text": "IL-2", "probability": 0.5}]]
    # summed case-insensitively: JAK3 0.7, STAT5 0.55, IL-2 0.5; first surface form kept
    assert merge_candidates(snippets) == ["JAK3", "STAT5", "IL-2"]
    assert merge_candidates(snippets, top=1) == ["JAK3"]
    ranked = [["JAK3", "STAT5"], ["a", "b", "c"], ["a", "b", "c", "d", "e", "f"], []]
    golds = [["jak3", "Janus kinase 3"], ["C"], ["f"], ["x"]]
    m = factoid_scores(ranked, golds)
    assert m["strict_acc"] == pytest.approx(1 / 4) and m["lenient_acc"] == pytest.approx(2 / 4)
    assert m["mrr"] == pytest.approx((1 + 1 / 3) / 4) and m["questions"] == 4


def test_task_score_merges_snippets_of_a_question() -> None:
    def ex(i: str, q: str, gold: list[str]) -> QAExample:
        return QAExample(f"{q}_{i}", "q?", "ctx", None, gold, q, q, factoid=True)

    examples = [ex("000", "q1", ["IL-2"]), ex("001", "q1", ["IL-2"]), ex("000", "q2", ["TNF"])]
    preds = [[{"text": "JAK3", "probability": 0.6}, {"text": "IL-2", "probability": 0.4}],
             [{"text": "il-2", "probability": 0.9}], []]
    m = EXTRACTIVE.score(examples, preds, [])
    # q1: IL-2 1.3 > JAK3 0.6 -> correct first; q2: no answer
    assert m["strict_acc"] == 0.5 and m["mrr"] == 0.5 and m["questions"] == 2
    assert m["exact_match"] == pytest.approx(1 / 3) and m["no_answer"] == 1
