"""Interpretability: eager switch, rollout, integrated gradients, offset mapping, HTML reports."""

from __future__ import annotations

import html as html_lib
import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest

from clinical_ft import encoders, engine
from clinical_ft.chunking import tokenize_windows
from clinical_ft.config import DataSpec, TaskCard, TrainConfig
from clinical_ft.interpret import attention, attribution
from clinical_ft.interpret.textmap import owner_tokens, segments

NOTE = ("SYNTHETIC NOTE (not a real patient). Pt admitted with CHF exacerbation & dyspnea <b>on exertion</b>.\n"
        "Diuresed with IV furosemide;  creatinine 1.9 -> 1.4. Café-au-lait macules noted 😀. "
        "Discharged home on metoprolol 25 mg BID, follow-up in 2 weeks.\n")


@pytest.fixture(scope="module")
def seq_run(tiny_encoder: str, tmp_path_factory: pytest.TempPathFactory) -> engine.Run:
    import torch
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(3)
    model = encoders.load_model(AutoModelForSequenceClassification, tiny_encoder, num_labels=2)
    card = TaskCard(name="synthetic_readmission", version=1, kind="readmission", data=DataSpec(format="csv"),
                    metric="auroc")
    return engine.Run(tmp_path_factory.mktemp("seq_run"), card, TrainConfig(max_length=40, stride=10),
                      ["0", "1"], model, encoders.load_tokenizer(tiny_encoder))


def test_eager_switch_gives_stochastic_rows_and_restores_sdpa(seq_run: engine.Run) -> None:
    model = seq_run.model
    assert attention.attn_implementation(model) == "sdpa"
    ids = seq_run.tokenizer(NOTE, truncation=True, max_length=40)["input_ids"]
    with attention.eager_attention(model):
        assert attention.attn_implementation(model) == "eager"
    out, att = attention.forward_with_attentions(model, ids)
    assert attention.attn_implementation(model) == "sdpa"
    n_layers, n_heads = model.config.num_hidden_layers, model.config.num_attention_heads
    assert att.shape == (n_layers, n_heads, len(ids), len(ids))
    np.testing.assert_allclose(att.sum(axis=-1), 1.0, atol=1e-5)
    assert out.logits.shape == (1, 2)


def test_rollout_on_hand_made_three_token_example() -> None:
    layer1 = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0]], dtype=float)  # both heads alike
    head_a = np.array([[0, 1, 0], [0, 1, 0], [0, 0, 1]], dtype=float)
    head_b = np.array([[0, 1, 0], [0, 0, 1], [0, 0, 1]], dtype=float)
    att = np.stack([np.stack([layer1, layer1]), np.stack([head_a, head_b])])  # (L=2, H=2, 3, 3)
    # layer 1: (A + I) / 2 = [[1,0,0],[.5,.5,0],[0,.5,.5]]
    # layer 2: mean of heads [[0,1,0],[0,.5,.5],[0,0,1]]; + I, rows / 2 = [[.5,.5,0],[0,.75,.25],[0,0,1]]
    expected = np.array([[0.75, 0.25, 0.0], [0.375, 0.5, 0.125], [0.0, 0.5, 0.5]])
    np.testing.assert_allclose(attention.rollout(att), expected)
    maps = attention.attention_maps(att.astype(np.float32))
    assert maps.shape == (2 * 3 + 1, 3, 3)
    np.testing.assert_allclose(maps[5], (head_a + head_b) / 2)  # layer 2 mean of heads
    np.testing.assert_allclose(maps[-1], expected, atol=1e-6)


def test_pool_averages_blocks() -> None:
    m = np.arange(16, dtype=np.float32).reshape(1, 4, 4)
    np.testing.assert_allclose(attention.pool(m, 2)[0], [[2.5, 4.5], [10.5, 12.5]])
    assert attention.pool(m, 8) is m


def _forward_value(model, ids: list[int], selector) -> float:
    import torch

    t = torch.tensor([ids])
    with torch.no_grad():
        return float(selector(model(input_ids=t, attention_mask=torch.ones_like(t)))[0])


def test_integrated_gradients_are_complete_within_delta(seq_run: engine.Run) -> None:
    model, tok = seq_run.model, seq_run.tokenizer
    ids = tok(NOTE, truncation=True, max_length=40)["input_ids"]
    sel = attribution.class_log_odds(1)
    a = attribution.integrated_gradients(model, tok, ids, sel, n_steps=50)
    assert a.scores.shape == (len(ids),) and np.isfinite(a.scores).all() and np.isfinite(a.delta)
    base = attribution.baseline_ids(ids, tok)
    assert base[0] == tok.cls_token_id and base[-1] == tok.sep_token_id
    assert set(base[1:-1]) == {tok.pad_token_id}
    diff = _forward_value(model, ids, sel) - _forward_value(model, base, sel)  # computed independently
    assert abs(a.scores.sum() - diff) <= abs(a.delta) + 1e-5
    assert abs(a.delta) <= 0.05 * abs(diff) + 1e-4  # and IG actually converged
    assert all(p.requires_grad for p in model.parameters())  # parameters unfrozen again


def test_token_and_span_selectors(tiny_encoder: str) -> None:
    import torch
    from transformers import AutoModelForQuestionAnswering, AutoModelForTokenClassification

    tok = encoders.load_tokenizer(tiny_encoder)
    ids = tok("Breast cancer and cystic fibrosis.")["input_ids"]
    ner = encoders.load_model(AutoModelForTokenClassification, tiny_encoder, num_labels=3)
    sel = attribution.token_logit(1, 2)
    a = attribution.integrated_gradients(ner, tok, ids, sel, n_steps=30)
    diff = _forward_value(ner, ids, sel) - _forward_value(ner, attribution.baseline_ids(ids, tok), sel)
    assert np.isfinite(a.scores).all() and abs(a.scores.sum() - diff) <= abs(a.delta) + 1e-5
    qa = encoders.load_model(AutoModelForQuestionAnswering, tiny_encoder)
    b = attribution.integrated_gradients(qa, tok, ids, attribution.span_logits(2, 3), n_steps=30)
    t = torch.tensor([ids])
    with torch.no_grad():
        out = qa(input_ids=t)
    assert b.value == pytest.approx(float(out.start_logits[0, 2] + out.end_logits[0, 3]), abs=1e-5)


def test_offset_mapping_shows_every_character_once(seq_run: engine.Run) -> None:
    tok = seq_run.tokenizer
    text = NOTE * 4
    windows = tokenize_windows(tok, [text], max_length=24, stride=8)
    assert len(windows) > 5
    toks = owner_tokens(windows)
    segs = segments(text, toks)
    assert "".join(text[s:e] for s, e, _ in segs) == text
    assert [s for s, _, _ in segs] == [0] + [e for _, e, _ in segs[:-1]]  # consecutive, no overlap
    covered = {c for w in windows for o in w.offsets if o for c in range(o[0], o[1])}
    shown = [c for t in toks for c in range(t.start, t.end)]
    assert len(shown) == len(set(shown)) and set(shown) == covered
    for t in toks:  # each shown token really is that window's token at those characters
        assert windows[t.window].offsets[t.position] == (t.start, t.end)


def test_explain_notes_writes_self_contained_report(seq_run: engine.Run, tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    from clinical_ft.interpret import explain_notes

    caplog.set_level(logging.DEBUG)
    notes = [("adm <1>", NOTE * 3), ("adm-2", ""), ("adm-3", "Short SYNTHETIC note.")]
    out = explain_notes(seq_run, notes, tmp_path / "r" / "report.html", n_steps=10, top_chunks=2)
    html = out.read_text(encoding="utf-8")
    assert out == tmp_path / "r" / "report.html"
    assert html.count('<section class="doc"') == 3
    assert "<b>on exertion" not in html
    shown = re.findall(r'<div class="text">(.*?)</div>', html, flags=re.S)
    plain = [re.sub(r'<span class="t"[^>]*>|</span>', "", s) for s in shown]
    assert [html_lib.unescape(p) for p in plain] == [t for _, t in notes]  # the exact note, escaped
    assert all("<" not in p for p in plain)
    assert "adm &lt;1&gt;" in html
    assert not re.search(r"(src|href)=\"(?!data:)", html) and "http://" not in html and "https://" not in html
    assert "<link" not in html and "<script src" not in html
    pngs = sorted((tmp_path / "r" / "report_heatmaps").glob("*.png"))
    n_windows = len(tokenize_windows(seq_run.tokenizer, [NOTE * 3], max_length=40, stride=10))
    assert len(pngs) == n_windows + 2 and all(p.read_bytes()[:4] == b"\x89PNG" for p in pngs)
    data = [json.loads(m) for m in re.findall(r'<script type="application/json" class="data">(.*?)</script>', html)]
    first = data[0]
    assert len(first["chunks"]) == n_windows and all(0 <= c["prob"] <= 1 for c in first["chunks"])
    scores = first["targets"][0]["scores"]
    assert len(scores) == len(first["tok"]) and any(s for s in scores) and max(abs(s or 0) for s in scores) == 100
    assert "SYNTHETIC" not in caplog.text and "furosemide" not in caplog.text  # never log note text


def test_explain_notes_attention_only_on_long_note(seq_run: engine.Run, tmp_path: Path) -> None:
    """A ~10,000-token note renders, one heatmap per chunk, file size bounded by the pooling budget."""
    from clinical_ft.interpret import explain_notes

    run = engine.Run(seq_run.path, seq_run.card, TrainConfig(max_length=512, stride=64), seq_run.labels,
                     seq_run.model, seq_run.tokenizer)
    per_note = len(seq_run.tokenizer(NOTE, add_special_tokens=False)["input_ids"])
    text = NOTE * (10_000 // per_note + 1)
    assert 10_000 < len(seq_run.tokenizer(text)["input_ids"]) < 10_000 + 2 * per_note
    out = explain_notes(run, [("long", text)], tmp_path / "long.html", attributions=False)
    html = out.read_text(encoding="utf-8")
    data = json.loads(re.search(r'class="data">(.*?)</script>', html).group(1))
    assert len(data["chunks"]) == len(list((tmp_path / "long_heatmaps").glob("*.png"))) >= 20
    assert data["targets"][0]["scores"] is None
    assert out.stat().st_size < 8_000_000
    assert html.count('<span class="t"') == len(data["tok"])  # each token shown once


def test_ner_explain_cli(tiny_encoder: str, tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForTokenClassification

    from clinical_ft import ner

    labels = ["O", "B-Disease", "I-Disease"]
    torch.manual_seed(0)
    model = encoders.load_model(AutoModelForTokenClassification, tiny_encoder, num_labels=3,
                                id2label=dict(enumerate(labels)), label2id={t: i for i, t in enumerate(labels)})
    with torch.no_grad():
        model.classifier.bias.copy_(torch.tensor([0.0, 0.05, -1.0]))
    rundir = tmp_path / "run"
    model.save_pretrained(rundir)
    encoders.load_tokenizer(tiny_encoder).save_pretrained(rundir)
    card = TaskCard(name="ncbi_mini", version=1, kind="ner", data=DataSpec(format="conll", files={"test": "t.tsv"}),
                    metric="f1")
    engine._save_run_file(rundir, card, TrainConfig(max_length=16, stride=4), labels)
    text = "Familial breast cancer & <i>cystic fibrosis</i> were ruled out; ataxia telangiectasia confirmed."
    out = tmp_path / "ner.html"
    assert ner.main(["explain", "--model", str(rundir), "--text", text, "--out", str(out), "--n-steps", "8"]) == 0
    html = out.read_text(encoding="utf-8")
    run = engine.load_run(ner.TASK, rundir)
    from clinical_ft.interpret.ner_explain import predict_entities

    _, ents = predict_entities(run, text)
    assert ents, "the biased random head should predict some entity"
    data = json.loads(re.search(r'class="data">(.*?)</script>', html).group(1))
    assert len(data["targets"]) == len(ents) and all(t["scores"] for t in data["targets"])
    assert "<i>cystic" not in html
    assert html.count("convergence delta") >= 1
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine line\n\nbroken \xff byte\n")
    assert ner.main(["explain", "--model", str(rundir), "--input", str(bad), "--out", str(out)]) == 2
    good = tmp_path / "good.txt"
    good.write_text("Cystic fibrosis.\n\nNo disease here.\n", encoding="utf-8")
    assert ner.main(["explain", "--model", str(rundir), "--input", str(good), "--out", str(out),
                     "--no-attributions"]) == 0
    assert out.read_text(encoding="utf-8").count('<section class="doc"') == 2


def test_read_lines_reports_bad_bytes_by_line(tmp_path: Path) -> None:
    from clinical_ft.errors import InputError
    from clinical_ft.interpret.cli import read_lines

    p = tmp_path / "x.txt"
    p.write_bytes(b"a\n\nb\n")
    assert read_lines(p) == ([("x.txt:1", "a"), ("x.txt:3", "b")], 1)
    p.write_bytes(b"a\n\xc3(\n")
    with pytest.raises(InputError, match="line 2"):
        read_lines(p)
