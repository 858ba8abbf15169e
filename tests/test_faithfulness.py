"""Trustworthy explanations: AOPC comprehensiveness/sufficiency, window ranking vs leave-one-window-out,
adaptive integrated gradients (completeness within the reported delta, non-convergence flagged)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from clinical_ft import aggregation, encoders, engine
from clinical_ft.config import DataSpec, TaskCard, TrainConfig
from clinical_ft.interpret import attribution, faithfulness, trust

PAD = 0


def test_aopc_on_a_hand_computed_additive_model() -> None:
    # f(row) = sum of the token weights of the row; [PAD] weighs 0. Row: [CLS] 10 content tokens [SEP].
    weight = {PAD: 0.0, 101: 0.5, 102: 0.25, **{10 + i: float(i) for i in range(10)}}  # token 10+i weighs i

    def score(rows: np.ndarray) -> np.ndarray:
        return np.array([sum(weight[int(t)] for t in r) for r in rows])

    ids = [101] + [10 + i for i in range(10)] + [102]
    cand = np.array([False] + [True] * 10 + [False])
    ranking = np.array([0.0] + [float(i) for i in range(10)] + [9.0])  # ranks content by weight; [SEP] never removed
    res = faithfulness.aopc(score, ids, {"good": ranking, "bad": -ranking}, cand, PAD)
    # f(x) = 45.75. 5%, 10% of 10 tokens -> 1 token, 20% -> 2 tokens.
    # good: removed 9, 9, 9+8 -> comp = (9 + 9 + 17) / 3; kept only 9, 9, 17 -> f = 0.75 + those
    assert res["good"].comprehensiveness == pytest.approx(35 / 3)
    assert res["good"].sufficiency == pytest.approx(45.75 - (0.75 + 35 / 3))
    # bad: removes the weight-0 then the weight-1 token
    assert res["bad"].comprehensiveness == pytest.approx((0 + 0 + 1) / 3)
    assert res["bad"].sufficiency == pytest.approx(45.75 - (0.75 + 1 / 3))
    assert [p[0] for p in res["good"].per_fraction] == list(faithfulness.FRACTIONS)
    with pytest.raises(ValueError, match="3 scores for 12 tokens"):
        faithfulness.aopc(score, ids, {"short": np.zeros(3)}, cand, PAD)


@pytest.fixture(scope="module")
def seq_run(tiny_encoder: str, tmp_path_factory: pytest.TempPathFactory) -> engine.Run:
    import torch
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(5)
    model = encoders.load_model(AutoModelForSequenceClassification, tiny_encoder, num_labels=2).eval()
    card = TaskCard(name="synthetic_readmission", version=1, kind="readmission", data=DataSpec(format="csv"),
                    metric="auroc")
    return engine.Run(tmp_path_factory.mktemp("faith"), card, TrainConfig(max_length=24, stride=6,
                      aggregation="clinicalbert"), ["0", "1"], model, encoders.load_tokenizer(tiny_encoder))


def test_aopc_on_a_tiny_model_matches_one_forward_per_hand_built_input(seq_run: engine.Run) -> None:
    import torch

    from clinical_ft.chunking import tokenize_windows

    model, tok = seq_run.model, seq_run.tokenizer
    win = tokenize_windows(tok, ["chest pain with dyspnea and edema, creatinine rising after diuresis"],
                           max_length=24, stride=6)[0]
    n = len(win.input_ids)
    ranking = np.arange(n, dtype=float)  # later tokens first
    sel = attribution.class_prob(1)

    def f(ids: list[int]) -> float:
        t = torch.tensor([ids])
        with torch.no_grad():
            return float(sel(model(input_ids=t, attention_mask=torch.ones_like(t)))[0])

    res = trust.window_faithfulness(model, tok, win, sel, None, "cls", ranking)
    assert list(res) == [trust.IG, trust.RANDOM]
    cls, sep, pad = tok.cls_token_id, tok.sep_token_id, tok.pad_token_id
    content = [i for i, t in enumerate(win.input_ids) if t not in (cls, sep)]
    fx, comps, suffs = f(win.input_ids), [], []
    for q in faithfulness.FRACTIONS:
        k = int(np.ceil(q * len(content)))
        top = content[::-1][:k]  # highest ranking = last content tokens; [SEP] at the end is kept
        removed = [pad if i in top else t for i, t in enumerate(win.input_ids)]
        kept = [t if (i in top or i not in content) else pad for i, t in enumerate(win.input_ids)]
        assert removed[0] == kept[0] == cls and removed[-1] == kept[-1] == sep
        comps.append(fx - f(removed))
        suffs.append(fx - f(kept))
    assert res[trust.IG].comprehensiveness == pytest.approx(np.mean(comps), abs=1e-5)
    assert res[trust.IG].sufficiency == pytest.approx(np.mean(suffs), abs=1e-5)


@pytest.mark.parametrize("method", ["clinicalbert", "max", "mean"])
def test_window_ranking_equals_leave_one_window_out(method: str) -> None:
    probs = [0.31, 0.82, 0.07, 0.55, 0.79, 0.12]  # a fixture note's window probabilities
    c = 2.0
    score = aggregation.AGGREGATORS[method](probs, c)
    shares = aggregation.window_shares(probs, method, c)
    assert shares.sum() == pytest.approx(score)
    without = [aggregation.AGGREGATORS[method](probs[:i] + probs[i + 1:], c) for i in range(len(probs))]
    np.testing.assert_allclose(aggregation.leave_one_out(probs, method, c), without)
    # brute force: the window whose removal lowers the score most first (ties: higher p, then position)
    loo = sorted(range(len(probs)), key=lambda i: (round(without[i] - score, 12), -probs[i], i))
    assert aggregation.rank_windows(probs, method, c) == loo
    assert np.isnan(aggregation.leave_one_out([0.4], method, c)[0])


def test_adaptive_ig_is_complete_within_its_delta_with_few_steps(seq_run: engine.Run) -> None:
    import torch

    model, tok = seq_run.model, seq_run.tokenizer
    ids = tok("Pt with CHF and dyspnea, discharged on metoprolol.")["input_ids"]
    sel = attribution.class_log_odds(1)
    a = attribution.integrated_gradients(model, tok, ids, sel, n_steps=64, start_steps=4)

    def f(x: list[int]) -> float:
        t = torch.tensor([x])
        with torch.no_grad():
            return float(sel(model(input_ids=t, attention_mask=torch.ones_like(t)))[0])

    diff = f(ids) - f(attribution.baseline_ids(ids, tok))
    assert a.value == pytest.approx(f(ids), abs=1e-5) and a.value - a.baseline_value == pytest.approx(diff, abs=1e-5)
    assert abs(a.scores.sum() - diff) <= abs(a.delta) + 1e-6  # completeness within the reported delta
    assert a.converged and abs(a.delta) <= max(0.05 * abs(diff), attribution.ABS_TOLERANCE)
    assert a.n_steps <= 64 and a.rounds[0][0] == 4 and a.rounds[-1][0] == a.n_steps
    assert all(p.grad is None for p in model.parameters())  # no parameter gradients were computed
    tight = attribution.integrated_gradients(model, tok, ids, sel, n_steps=5, start_steps=1, tolerance=1e-9,
                                             atol=0.0)
    assert not tight.converged and tight.n_steps == 4 and [r[0] for r in tight.rounds] == [2, 4]  # 8 > 5: stop
    assert "did not converge" in trust.convergence_html(tight) and "converged" in trust.convergence_html(a)


def test_nested_trapezoid_reuses_its_gradients_and_is_a_true_trapezoid_rule(seq_run: engine.Run) -> None:
    import torch

    model, tok = seq_run.model, seq_run.tokenizer
    ids = tok("Pt with CHF and dyspnea, discharged on metoprolol.")["input_ids"]
    sel = attribution.class_log_odds(1)
    from clinical_ft.interpret.attention import attn_implementation

    seen: set[str] = set()
    hook = attribution.embedding_layer(model).register_forward_hook(lambda *_: seen.add(attn_implementation(model)))
    try:
        nested = attribution.integrated_gradients(model, tok, ids, sel, n_steps=8, start_steps=2, tolerance=1e-9,
                                                  atol=0.0)
    finally:
        hook.remove()
    assert [r[0] for r in nested.rounds] == [2, 4, 8] and nested.n_steps == 8
    assert seen == {"sdpa"}  # integrated gradients need no attention weights: the fast kernel throughout
    # the same as the trapezoid rule on 8 intervals computed at once: (x - x') * sum_k w_k grad(x' + a_k (x - x'))
    # with a_k = k/8 and weights 1/16, 1/8, ..., 1/8, 1/16 (9 gradients)
    emb = attribution.embedding_layer(model)
    x, xb = (emb(torch.tensor([v])).detach() for v in (ids, attribution.baseline_ids(ids, tok)))
    grads = []
    for a in np.linspace(0, 1, 9):
        z = (xb + a * (x - xb)).requires_grad_(True)
        with torch.enable_grad():
            out = sel(model(inputs_embeds=z, attention_mask=torch.ones(1, len(ids), dtype=torch.long)))
            grads.append(torch.autograd.grad(out.sum(), z)[0])
    w = np.array([0.5] + [1.0] * 7 + [0.5]) / 8
    direct = ((x - xb) * sum(float(wk) * g for wk, g in zip(w, grads))).sum(-1)[0].double().numpy()
    np.testing.assert_allclose(nested.scores, direct, rtol=1e-4, atol=1e-6)


def test_note_report_ranks_windows_and_states_faithfulness(seq_run: engine.Run, tmp_path: Path) -> None:
    from clinical_ft.interpret import explain_notes
    from clinical_ft.interpret.notes import note_sections

    text = " ".join(["Patient admitted with heart failure, treated with furosemide and discharged home."] * 6)
    record: list[dict] = []
    note_sections(seq_run, [("n1", text)], tmp_path / "png", n_steps=16, top_chunks=2, record=record)
    assert [r["rank"] for r in record] == [1, 2] and all(r["ig"]["steps"] <= 16 for r in record)
    assert set(record[0]["faithfulness"]) == {trust.IG, trust.ATTENTION, trust.ROLLOUT, trust.RANDOM}
    out = explain_notes(seq_run, [("n1", text)], tmp_path / "r.html", n_steps=16, top_chunks=1)
    html = out.read_text()
    assert 'class="strip"' in html and "share of score" in html and "score without it" in html
    assert "Faithfulness of window" in html and "comprehensiveness" in html and trust.NOT_ATTRIBUTIONS in html
    data = json.loads(re.search(r'<script type="application/json" class="data">(.*?)</script>', html, re.S).group(1))
    assert any(s for s in data["targets"][0]["scores"])  # IG word attributions shown
