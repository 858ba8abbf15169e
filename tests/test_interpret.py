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
from clinical_ft.rundir import save_run_file

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
    from clinical_ft.ner import cli as ner_cli

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
    save_run_file(rundir, card, TrainConfig(max_length=16, stride=4), labels)
    text = "Familial breast cancer & <i>cystic fibrosis</i> were ruled out; ataxia telangiectasia confirmed."
    out = tmp_path / "ner.html"
    assert ner_cli.main(["explain", "--model", str(rundir), "--text", text, "--out", str(out), "--n-steps", "8",
                         "--tolerance", "0"]) == 2
    assert ner_cli.main(["explain", "--model", str(rundir), "--text", text, "--out", str(out), "--n-steps", "8",
                         "--tolerance", "0.3"]) == 0
    html = out.read_text(encoding="utf-8")
    assert "30% of |f(x) - f(baseline)|" in html or "tolerance 30%" in html  # --tolerance reached IG
    run = engine.load_run(ner.TASK, rundir)
    from clinical_ft.ner.explain import predict_entities

    _, ents = predict_entities(run, text)
    assert ents, "the biased random head should predict some entity"
    data = json.loads(re.search(r'class="data">(.*?)</script>', html).group(1))
    assert len(data["targets"]) == len(ents) and all(t["scores"] for t in data["targets"])
    assert "<i>cystic" not in html
    assert html.count("convergence delta") >= 1
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine line\n\nbroken \xff byte\n")
    assert ner_cli.main(["explain", "--model", str(rundir), "--input", str(bad), "--out", str(out)]) == 2
    good = tmp_path / "good.txt"
    good.write_text("Cystic fibrosis.\n\nNo disease here.\n", encoding="utf-8")
    assert ner_cli.main(["explain", "--model", str(rundir), "--input", str(good), "--out", str(out),
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


# --- relation and extractive QA -------------------------------------------------------------------

REL_TEXT = "Milk and [E1] calcium [/E1] may impair the absorption of [E2] EMCYT [/E2] <b>tablets</b>."
REL_LABELS = ["false", "mechanism", "effect"]


def _relation_run_dir(tiny_encoder: str, out: Path, **options: str) -> Path:
    import torch

    from clinical_ft import relation
    from clinical_ft.relation.pairs import add_markers

    cfg = TrainConfig(max_length=32, stride=8, task_options=options)
    torch.manual_seed(1)
    model = relation.TASK.build_model(tiny_encoder, REL_LABELS, cfg)
    tok = encoders.load_tokenizer(tiny_encoder)
    add_markers(tok)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    card = TaskCard(name="ddi_mini", version=1, kind="relation", data=DataSpec(format="tsv", files={"test": "t.tsv"}),
                    metric="f1")
    save_run_file(out, card, cfg, REL_LABELS)
    return out


@pytest.fixture(scope="module")
def rel_dir(tiny_encoder: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _relation_run_dir(tiny_encoder, tmp_path_factory.mktemp("rel_run"), pooling="entity_start",
                             marker="entity_markers")


@pytest.fixture(scope="module")
def qa_dir(tiny_encoder: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from transformers import AutoModelForQuestionAnswering

    out = tmp_path_factory.mktemp("qa_run")
    torch.manual_seed(2)
    encoders.load_model(AutoModelForQuestionAnswering, tiny_encoder).save_pretrained(out)
    encoders.load_tokenizer(tiny_encoder).save_pretrained(out)
    card = TaskCard(name="squad_mini", version=1, kind="qa", data=DataSpec(format="squad", files={"test": "t.json"}),
                    metric="f1")
    save_run_file(out, card, TrainConfig(max_length=40, stride=8), [])
    return out


def _data(html: str) -> list[dict]:
    return [json.loads(m) for m in re.findall(r'<script type="application/json" class="data">(.*?)</script>', html)]


def _shown(html: str) -> list[list[tuple[str, bool]]]:
    """Per document, the shown text as (piece, inside an outlined span) pairs, unescaped."""
    out = []
    for div in re.findall(r'<div class="text">(.*?)</div>', html, flags=re.S):
        pieces, marked = [], False
        for part in re.split(r'(<span class="t"[^>]*>|</span>)', div):
            if part.startswith("<span"):
                marked = "data-mark" in part
            elif part == "</span>":
                marked = False
            elif part:
                pieces.append((html_lib.unescape(part), marked))
        out.append(pieces)
    return out


def _self_contained(html: str) -> None:
    assert not re.search(r"(src|href)=\"(?!data:)", html) and "http://" not in html and "https://" not in html
    assert "<link" not in html and "<script src" not in html


def test_extra_inputs_reach_the_entity_start_head(rel_dir: Path) -> None:
    """IG and the attention forward pass entity_positions through: they explain the pair's
    entity-start representation, not a [CLS]-pooled one, and IG stays complete."""
    import torch

    from clinical_ft import relation
    from clinical_ft.relation.explain import pair_example

    run = engine.load_run(relation.TASK, rel_dir)
    model, tok = run.model.eval(), run.tokenizer
    row = relation.TASK.encode(tok, [pair_example("p", REL_TEXT)], run.cfg, run.labels).dataset[0]
    ids, pos = row["input_ids"], torch.tensor([row["entity_positions"]])
    assert tok.convert_ids_to_tokens([ids[p] for p in row["entity_positions"]]) == ["[E1]", "[E2]"]
    seen: list = []
    hook = model.register_forward_pre_hook(lambda m, a, kw: seen.append(kw.get("entity_positions")), with_kwargs=True)
    sel = attribution.class_log_odds(1)
    try:
        a = attribution.integrated_gradients(model, tok, ids, sel, extra_inputs={"entity_positions": pos}, n_steps=40)
    finally:
        hook.remove()
    assert len(seen) >= 4 and all(s is not None and s.shape[1] == 2 and bool((s == pos).all()) for s in seen)

    def f(x: list[int], **kw) -> float:
        t = torch.tensor([x])
        with torch.no_grad():
            return float(sel(model(input_ids=t, attention_mask=torch.ones_like(t), **kw))[0])

    diff = f(ids, entity_positions=pos) - f(attribution.baseline_ids(ids, tok), entity_positions=pos)
    assert a.value == pytest.approx(f(ids, entity_positions=pos), abs=1e-5)
    assert abs(a.scores.sum() - diff) <= abs(a.delta) + 1e-5 and abs(a.delta) <= 0.05 * abs(diff) + 1e-4
    cls = attribution.integrated_gradients(model, tok, ids, sel, n_steps=40)  # entity_positions defaults to [CLS]
    assert cls.value == pytest.approx(f(ids), abs=1e-5) and cls.value != pytest.approx(a.value, abs=1e-4)
    assert not np.allclose(cls.scores, a.scores, atol=1e-6)
    out, _ = attention.forward_with_attentions(model, ids, extra_inputs={"entity_positions": pos})
    with torch.no_grad():
        direct = model(input_ids=torch.tensor([ids]), entity_positions=pos).logits
    assert torch.allclose(out.logits, direct, atol=1e-5)
    with pytest.raises(ValueError, match="batch axis"):
        attribution.integrated_gradients(model, tok, ids, sel, extra_inputs={"entity_positions": pos[0]})


def test_parse_markers() -> None:
    from clinical_ft.errors import ClinicalFTError
    from clinical_ft.relation.explain import pair_example, parse_markers

    assert parse_markers("Milk [E1] may [/E1] and [E2:drug] EMCYT [/E2:drug].") == (
        "Milk may and EMCYT.", ((5, 8), (13, 18)), None)
    assert parse_markers("[E1:drug]A[/E1:drug] [E2:brand]B[/E2:brand]")[2] == ("drug", "brand")
    assert parse_markers("no markers, @DRUG$ and @DRUG$") is None
    typed = "[E1:drug] A [/E1:drug] with [E2:brand] B [/E2:brand]."
    assert pair_example("p", typed).marked("typed_markers", ["drug", "brand"])[0] == typed  # re-marked identically
    assert pair_example("p", typed).marked("mask")[0] == "@DRUG$ with @DRUG$."
    for bad in ("[E1] a [/E1] only one", "[E1] a [/E1] [E2] b", "[E1][/E1] [E2] b [/E2]", "[/E1] a [E2] b [/E2]"):
        with pytest.raises(ClinicalFTError):
            parse_markers(bad)


def test_relation_explain_cli(rel_dir: Path, tiny_encoder: str, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    from clinical_ft import relation
    from clinical_ft.relation import cli as relation_cli
    from clinical_ft.relation.explain import pair_example

    out = tmp_path / "rel.html"
    assert relation_cli.main(["explain", "--model", str(rel_dir), "--text", REL_TEXT, "--out", str(out),
                          "--n-steps", "8"]) == 0
    html = out.read_text(encoding="utf-8")
    _self_contained(html)
    run = engine.load_run(relation.TASK, rel_dir)
    ex = pair_example("text", REL_TEXT)
    label, prob = relation_cli.predict(run, [ex])[0]
    m = re.search(r"Predicted: (\w+), probability ([0-9]+\.[0-9]+)", html)
    assert m and m.group(1) == label and float(m.group(2)) == pytest.approx(prob, abs=1e-4)
    assert "".join(p for p, _ in _shown(html)[0]) == ex.marked("entity_markers")[0]
    assert re.search(r'<span class="t"[^>]*>\[E1\]</span>', html)  # the marker is one token
    assert "<b>" not in re.search(r'<div class="text">(.*?)</div>', html, re.S).group(1)
    data = _data(html)[0]
    assert [t["query"] for t in data["targets"]] == ["e1", "e2", "cls"] and data["targets"][0]["scores"]
    assert "entity-start pooling" in html and "convergence delta" in html
    assert len(list((tmp_path / "rel_heatmaps").glob("*.png"))) == 1

    tsv = tmp_path / "pairs.tsv"
    tsv.write_text(f"index\tsentence\tlabel\n1\t{REL_TEXT}\tmechanism\n2\t@DRUG$ raises levels of @DRUG$.\tfalse\n",
                   encoding="utf-8")
    assert relation_cli.main(["explain", "--model", str(rel_dir), "--input", str(tsv), "--ids", "2,1", "--out", str(out),
                          "--no-attributions"]) == 0
    html = out.read_text(encoding="utf-8")
    assert re.findall(r"<h2>(.*?)</h2>", html) == ["2", "1"] and "Gold label: mechanism" in html
    assert all(t["scores"] is None for d in _data(html) for t in d["targets"])
    capsys.readouterr()
    assert relation_cli.main(["explain", "--model", str(rel_dir), "--input", str(tsv), "--ids", "7", "--out",
                          str(out)]) == 2
    assert "no item with id(s) ['7']" in capsys.readouterr().err
    assert relation_cli.main(["explain", "--model", str(rel_dir), "--text", "No arguments here.", "--out", str(out)]) == 2
    assert "[E1] x [/E1]" in capsys.readouterr().err

    mask_dir = _relation_run_dir(tiny_encoder, tmp_path / "mask_run", pooling="cls", marker="mask")
    assert relation_cli.main(["explain", "--model", str(mask_dir), "--text", REL_TEXT, "--out", str(out),
                          "--n-steps", "4"]) == 0
    html = out.read_text(encoding="utf-8")
    shown = "".join(p for p, _ in _shown(html)[0])
    assert shown == "Milk and @DRUG$ may impair the absorption of @DRUG$ <b>tablets</b>."  # the run's own style
    assert [t["query"] for t in _data(html)[0]["targets"]] == ["cls", "cls"] and "the [CLS] hidden state" in html


QUESTION = "What may impair the absorption of EMCYT?"
CONTEXT = ("SYNTHETIC. Milk, milk products and calcium-rich foods or drugs may impair the absorption of EMCYT. "
           + "Filler sentence about nothing in particular. " * 6 + "Patients should take it with water.")


def _spy_titles(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Titles of the PNG heatmaps written from now on."""
    from clinical_ft.interpret import core

    titles: list[str] = []
    real = core.heatmap_png

    def spy(panels, labels=None, title=""):
        titles.append(title)
        return real(panels, labels, title)

    monkeypatch.setattr(core, "heatmap_png", spy)
    return titles


def test_qa_explain_outlines_the_predicted_span(qa_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from clinical_ft import qa
    from clinical_ft.qa import cli as qa_cli
    from clinical_ft.qa.readers import QAExample

    titles = _spy_titles(monkeypatch)
    out = tmp_path / "qa.html"
    assert qa_cli.main(["explain", "--model", str(qa_dir), "--question", QUESTION, "--context", CONTEXT,
                    "--out", str(out), "--n-steps", "8"]) == 0
    html = out.read_text(encoding="utf-8")
    _self_contained(html)
    run = engine.load_run(qa.EXTRACTIVE, qa_dir)
    pred = qa_cli.predict(qa.EXTRACTIVE, run, [QAExample("q", QUESTION, CONTEXT, None)])[0]
    pieces = _shown(html)[0]
    shown = "".join(p for p, _ in pieces)
    assert shown == QUESTION + "\n\n" + CONTEXT
    pos, marked = 0, []
    for p, is_marked in pieces:
        if is_marked:
            marked.append((pos, pos + len(p)))
        pos += len(p)
    shift = len(QUESTION) + 2
    assert marked and (marked[0][0] - shift, marked[-1][1] - shift) == (pred["start"], pred["end"])
    m = re.search(r"Answer: &ldquo;(.*?)&rdquo;.*?probability ([0-9]+\.[0-9]+)", html, flags=re.S)
    assert html_lib.unescape(m.group(1)) == pred["answer"] and float(m.group(2)) == pytest.approx(pred["probability"],
                                                                                                  abs=1e-3)
    n_windows = int(re.search(r"longer than one window \((\d+) windows", html).group(1))  # 40-token windows
    data = _data(html)[0]
    w = data["chunks"][0]["index"]  # the window holding the span, by its number in the context
    assert n_windows > 1 and len(titles) == 1 and titles[0].startswith(f"chunk {w + 1} of {n_windows} (")
    assert f"window {w + 1}: rollout" in html and list((tmp_path / "qa_heatmaps").glob(f"*_chunk{w + 1:03d}.png"))
    assert [t["query"] for t in data["targets"]] == ["start", "end", "cls"]
    scores = data["targets"][0]["scores"]
    n_q = len(run.tokenizer(QUESTION, add_special_tokens=False)["input_ids"])
    assert len(scores) == len(data["tok"]) and max(abs(s or 0) for s in scores) == 100
    assert all(s is not None for s in scores[:n_q])  # the question's words are attributed too


def test_qa_span_attributions_are_complete_on_a_pair(qa_dir: Path) -> None:
    import torch

    from clinical_ft import qa

    run = engine.load_run(qa.EXTRACTIVE, qa_dir)
    model, tok = run.model.eval(), run.tokenizer
    win = tokenize_windows(tok, [CONTEXT], max_length=40, stride=8, questions=[QUESTION])[0]
    sel = attribution.span_logits(20, 23)
    a = attribution.integrated_gradients(model, tok, win.input_ids, sel, token_type_ids=win.token_type_ids, n_steps=50)

    def f(ids: list[int]) -> float:
        t = torch.tensor([ids])
        with torch.no_grad():
            return float(sel(model(input_ids=t, token_type_ids=torch.tensor([win.token_type_ids]),
                                   attention_mask=torch.ones_like(t)))[0])

    diff = f(win.input_ids) - f(attribution.baseline_ids(win.input_ids, tok))
    assert np.isfinite(a.scores).all() and abs(a.scores.sum() - diff) <= abs(a.delta) + 1e-5
    assert abs(a.delta) <= 0.05 * abs(diff) + 1e-4


def test_qa_explain_cli_input_and_errors(qa_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from clinical_ft.qa import cli as qa_cli

    squad = {"data": [{"paragraphs": [{"context": CONTEXT, "qas": [
        {"id": "a", "question": QUESTION, "answers": [{"text": "EMCYT", "answer_start": CONTEXT.index("EMCYT")}]},
        {"id": "b", "question": "What should patients take it with?", "answers": []}]}]}]}
    inp = tmp_path / "q.json"
    inp.write_text(json.dumps(squad), encoding="utf-8")
    out = tmp_path / "qa.html"
    assert qa_cli.main(["explain", "--model", str(qa_dir), "--input", str(inp), "--limit", "1", "--out", str(out),
                    "--no-attributions"]) == 0
    assert "1 more left out by --limit 1" in capsys.readouterr().out
    html = out.read_text(encoding="utf-8")
    assert html.count('<section class="doc"') == 1 and "Gold answer(s): <b>EMCYT</b>" in html
    assert qa_cli.main(["explain", "--model", str(qa_dir), "--question", QUESTION, "--out", str(out)]) == 2
    assert "--context" in capsys.readouterr().err


# --- yes/no QA (sequence classification over question + context) -----------------------------------

YESNO_LABELS = ["yes", "no", "maybe"]


def yesno_run_dir(tiny_encoder: str, out: Path, card: TaskCard | None = None) -> Path:
    """A yes/no run directory: the tiny random BERT with a 3-class head, scaled up so that windows
    of one context get visibly different probabilities; mean aggregation as in configs/qa/minilm.yaml."""
    import torch
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(3)
    model = encoders.load_model(AutoModelForSequenceClassification, tiny_encoder, num_labels=3)
    with torch.no_grad():
        model.classifier.weight.normal_(0.0, 8.0)
    model.save_pretrained(out)
    encoders.load_tokenizer(tiny_encoder).save_pretrained(out)
    card = card or TaskCard(name="pqa", version=1, kind="qa", metric="accuracy",
                            data=DataSpec(format="pubmedqa", files={"test": "t.json"}))
    save_run_file(out, card, TrainConfig(max_length=40, stride=8, aggregation="mean"), YESNO_LABELS)
    return out


@pytest.fixture(scope="module")
def yesno_dir(tiny_encoder: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return yesno_run_dir(tiny_encoder, tmp_path_factory.mktemp("yesno_run"))


YN_QUESTION = "Does milk impair the absorption of EMCYT?"


def test_yesno_explain_matches_predict_and_is_complete(yesno_dir: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The report's answer is predict's (label and aggregated probability); the explained window is
    the one with the highest p(label); IG of its log-odds is complete within the reported delta."""
    import torch

    from clinical_ft import qa
    from clinical_ft.qa import cli as qa_cli
    from clinical_ft.qa.readers import YesNoExample
    from clinical_ft.qa.yesno_explain import predict_windows

    titles = _spy_titles(monkeypatch)
    out = tmp_path / "yn.html"
    assert qa_cli.main(["explain", "--model", str(yesno_dir), "--question", YN_QUESTION, "--context", CONTEXT,
                    "--out", str(out), "--n-steps", "32"]) == 0
    html = out.read_text(encoding="utf-8")
    _self_contained(html)
    run = engine.load_run(qa.YESNO, yesno_dir)
    ex = YesNoExample("question", YN_QUESTION, CONTEXT, None)
    row = qa_cli.predict(qa.YESNO, run, [ex])[0]
    m = re.search(r"Predicted: (\w+), probability ([0-9]+\.[0-9]+)", html)
    assert m and m.group(1) == row["label"] and float(m.group(2)) == pytest.approx(row["probability"], abs=1e-4)
    n = row["windows"]
    assert n > 1 and f"mean aggregation of the {n} windows" in html and f"longer than one window ({n} windows" in html

    pred = predict_windows(run, ex)
    k, w = YESNO_LABELS.index(row["label"]), pred.window
    assert pred.label == k and w == int(np.argmax(pred.window_probs[:, k]))
    assert f"window {w + 1} (context characters {pred.windows[w].char_start}-" in html
    data = _data(html)[0]
    assert [c["index"] for c in data["chunks"]] == [w] and data["chunks"][0]["prob"] == pytest.approx(
        float(pred.window_probs[w, k]), abs=1e-6)
    assert titles == [f"chunk {w + 1} of {n} ({len(pred.windows[w].input_ids)} tokens)"]
    assert "".join(p for p, _ in _shown(html)[0]) == YN_QUESTION + "\n\n" + CONTEXT
    target = data["targets"][0]
    n_q = len(run.tokenizer(YN_QUESTION, add_special_tokens=False)["input_ids"])
    assert target["query"] == "cls" and all(s is not None for s in target["scores"][:n_q])  # question attributed

    model, tok, win = run.model.eval(), run.tokenizer, pred.windows[w]
    sel = attribution.class_log_odds(k)
    a = attribution.integrated_gradients(model, tok, win.input_ids, sel, token_type_ids=win.token_type_ids,
                                         n_steps=32)

    def f(ids: list[int]) -> float:
        t = torch.tensor([ids])
        with torch.no_grad():
            return float(sel(model(input_ids=t, token_type_ids=torch.tensor([win.token_type_ids]),
                                   attention_mask=torch.ones_like(t)))[0])

    diff = f(win.input_ids) - f(attribution.baseline_ids(win.input_ids, tok))
    assert abs(a.scores.sum() - diff) <= abs(a.delta) + 1e-5 and abs(a.delta) <= 0.05 * abs(diff) + 1e-4
    cells = re.search(r"log-odds</td>" + r'<td class="num">([^<]+)</td>' * 4, html).groups()
    fx, fb, total, delta = map(float, cells)  # the report's IG numbers (4 significant digits)
    assert fx == pytest.approx(f(win.input_ids), rel=1e-3, abs=1e-4) and fx == pytest.approx(a.value, rel=1e-3)
    assert abs(total - (fx - fb) - delta) <= 1e-3 * (abs(fx) + abs(fb) + abs(total)) + 1e-6


def test_yesno_explain_cli_input(yesno_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from clinical_ft.qa import cli as qa_cli

    out = tmp_path / "yn.html"
    pqa = str(Path(__file__).parent / "fixtures" / "qa" / "pubmedqa_mini" / "ori_pqal.json")
    assert qa_cli.main(["explain", "--model", str(yesno_dir), "--input", pqa, "--ids", "17113061,10808977",
                    "--out", str(out), "--no-attributions"]) == 0
    assert "2 question(s) explained" in capsys.readouterr().out
    html = out.read_text(encoding="utf-8")
    assert re.findall(r"<h2>(.*?)</h2>", html) == ["17113061", "10808977"]
    assert "Gold answer: no." in html and "Gold answer: yes." in html and "Attention only" in html
    assert all(t["scores"] is None for d in _data(html) for t in d["targets"])
    assert qa_cli.main(["explain", "--model", str(yesno_dir), "--input", pqa, "--ids", "nope", "--out", str(out)]) == 2
    assert "no item with id(s) ['nope']" in capsys.readouterr().err
    ctx = tmp_path / "ctx.txt"
    ctx.write_text("Short context.", encoding="utf-8")
    assert qa_cli.main(["explain", "--model", str(yesno_dir), "--question", "Is it?", "--context-file", str(ctx),
                    "--out", str(out), "--n-steps", "4"]) == 0
    html = out.read_text(encoding="utf-8")
    assert "longer than one window" not in html and "(one window, as predict reports it)" in html
