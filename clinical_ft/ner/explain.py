"""Explain a token classifier (NER): predicted entities, "why this entity" attributions (target =
the entity label's logit at its first token) and the entity token's attention."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..chunking import tokenize_windows
from ..errors import ClinicalFTError
from ..interpret.attribution import TOLERANCE, integrated_gradients, token_logit, token_prob
from ..interpret.core import (
    attention_views,
    attribution_words,
    colour_scale,
    doc_name,
    ig_details,
    trust,
    write_report,
)
from ..interpret.html import DocView, TargetView, esc, render_doc
from ..interpret.textmap import owner_tokens, word_spans
from .conll import typed

log = logging.getLogger("clinical_ft.ner")


def predict_entities(run: Any, text: str) -> tuple[list[Any], list[dict[str, Any]]]:
    """Windows of `text` and its predicted entities.

    Each word (from the tokenizer's pre-tokenizer) takes the tag predicted at its first subword in
    the window where that subword is most central, as in NER decoding.

    Returns:
        (windows, entities); an entity is ``{type, start, end, label, window, position}`` where
        `label` is the label index predicted at its first token, which is at `position` of `window`.
    """
    import torch
    from seqeval.metrics.sequence_labeling import get_entities

    tok, cfg, model = run.tokenizer, run.cfg, run.model
    windows = tokenize_windows(tok, [text], max_length=cfg.max_length, stride=cfg.stride)
    words = word_spans(tok, text)
    first = {t.start: t for t in owner_tokens(windows)}
    with torch.no_grad():
        logits = []
        for win in windows:
            ids = torch.tensor([win.input_ids], device=model.device)
            tt = torch.tensor([win.token_type_ids], device=model.device)
            logits.append(model(input_ids=ids, token_type_ids=tt, attention_mask=torch.ones_like(ids)).logits[0])
    tags, where = [], []
    for s, _ in words:
        t = first.get(s)
        if t is None:  # a word with no subword of its own (e.g. control characters)
            tags.append("O")
            where.append(None)
            continue
        lab = int(logits[t.window][t.position].argmax())
        tags.append(run.labels[lab])
        where.append((t.window, t.position, lab))
    ents = []
    for typ, a, b in get_entities([typed(t) for t in tags]):
        w, p, lab = where[a]
        ents.append({"type": typ, "start": words[a][0], "end": words[b][1], "label": lab, "window": w, "position": p})
    return windows, ents


def ner_section(run: Any, doc_id: str, text: str, n: int, folder: Path, *, attributions: bool = True,
                n_steps: int = 50, tolerance: float = TOLERANCE, max_entities: int = 20) -> str:
    """The report section of one document (its PNG heatmaps written to `folder`); arguments as in
    :func:`explain_ner`, `n` numbering the section."""
    model, tok = run.model, run.tokenizer
    if not isinstance(text, str):
        raise ClinicalFTError(f"document {doc_id!r} (position {n + 1}): expected text, found {type(text).__name__}")
    windows, ents = predict_entities(run, text)
    queries: dict[int, dict[str, int]] = {k: {"cls": 0} for k in range(len(windows))}
    for j, e in enumerate(ents):
        queries[e["window"]][f"e{j}"] = e["position"]
    focus = ents[0]["window"] if ents else 0
    views, _, pngs = attention_views(model, tok, windows, queries, png_folder=folder,
                                     doc_name=doc_name(doc_id, n), embed={focus})
    tokens, spans = owner_tokens(windows), word_spans(tok, text)
    targets, rows = [], []
    for j, e in enumerate(ents):
        name = f"{e['type']}: {text[e['start']:e['end']]} ({e['start']}-{e['end']})"
        target = TargetView(name, f"e{j}", e["window"])
        note, win, a = "attention only", windows[e["window"]], None
        if attributions and j < max_entities:
            a = integrated_gradients(model, tok, win.input_ids, token_logit(e["position"], e["label"]),
                                     token_type_ids=win.token_type_ids, n_steps=n_steps,
                                     tolerance=tolerance)
            words = attribution_words(owner_tokens(windows, only={e["window"]}), {e["window"]: a.scores}, spans)
            target.scores = colour_scale(tokens, words)
            target.details = {"f(x) logit": a.value} | {k: v for k, v in ig_details(a).items() if k != "f(x)"}
            note = "attributed" if a.converged else "attributed (integrated gradients not converged)"
        elif attributions:
            note = f"not attributed (limit max_entities={max_entities})"
        if j < max_entities:  # faithfulness of what is shown for this entity
            trust(target, model, tok, win, token_prob(e["position"], e["label"]), views[e["window"]], a,
                  what=f"p({run.labels[e['label']]}) at the entity's first token", where=name)
        rows.append(f"<tr><td>{esc(e['type'])}</td><td>{esc(text[e['start']:e['end']])}</td>"
                    f'<td class="num">{e["start"]}-{e["end"]}</td><td>{esc(run.labels[e["label"]])}</td>'
                    f"<td>{esc(note)}</td></tr>")
        targets.append(target)
    if not targets:
        targets.append(TargetView("no entity predicted: attention of [CLS]", "cls", 0))
    summary = (f"<p>{len(ents)} entit{'y' if len(ents) == 1 else 'ies'} predicted. Attributions explain the "
               f"logit of the entity's label at its first token.</p>"
               "<table><tr><th>type</th><th>text</th><th>characters</th><th>label at first token</th>"
               f"<th>explanation</th></tr>{''.join(rows)}</table>") if ents else "<p>No entity predicted.</p>"
    layers, heads = int(model.config.num_hidden_layers), int(model.config.num_attention_heads)
    figs = [(f"window {focus + 1}: rollout and last-layer mean attention", pngs[focus])] if focus in pngs else []
    return render_doc(DocView(str(doc_id), text, tokens, views, targets, layers, heads, focus, summary, figs), n)


def explain_ner(run: Any, docs: list[tuple[str, str]], out_html: str | Path, *, attributions: bool = True,
                n_steps: int = 50, tolerance: float = TOLERANCE, max_entities: int = 20) -> Path:
    """Write one self-contained HTML report explaining a token classifier's entities.

    Args:
        run: a loaded NER run (engine.Run).
        docs: (id, text) pairs.
        out_html: report path to write; PNG heatmaps go to ``<stem>_heatmaps/`` beside it.
        attributions: compute integrated gradients for each entity.
        n_steps: most integration steps.
        tolerance: integrated gradients add steps until |delta| <= tolerance * |f(x) - f(baseline)|.
        max_entities: entities attributed per document; further ones are listed as not attributed.

    Returns:
        The path of the HTML report.
    """
    return write_report(run, out_html, "Entity explanations", "document", docs,
                        lambda d, n, folder: ner_section(run, d[0], d[1], n, folder, attributions=attributions,
                                                         n_steps=n_steps, tolerance=tolerance,
                                                         max_entities=max_entities),
                        attributions=attributions, n_steps=n_steps, tolerance=tolerance)
