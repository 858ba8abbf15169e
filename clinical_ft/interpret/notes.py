"""Explain document classifiers on long notes (readmission): chunk probabilities beside their
aggregation, integrated-gradient word attributions inside the top chunks, attention per chunk."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..aggregation import aggregate
from ..chunking import tokenize_windows
from ..errors import ClinicalFTError
from .attribution import class_log_odds, integrated_gradients
from .core import (
    attention_views,
    attribution_words,
    colour_scale,
    doc_name,
    model_shape,
    probabilities,
    top_words_html,
)
from .heatmap import png_dir
from .html import DocView, TargetView, esc, page, render_doc, write_atomic
from .textmap import owner_tokens, word_spans

if TYPE_CHECKING:
    from ..engine import Run

log = logging.getLogger("clinical_ft.interpret")


def _summary(name: str, score: float, method: str, probs: list[float], windows: list[Any], top: list[int],
             ig: dict[int, Any], words: list[tuple[int, int, float]], text: str) -> str:
    rows = []
    for k, (p, win) in enumerate(zip(probs, windows)):
        a = ig.get(k)
        cells = (f'<td class="num">{a.value:.4f}</td><td class="num">{a.baseline_value:.4f}</td>'
                 f'<td class="num">{a.scores.sum():.4f}</td><td class="num">{a.delta:.2e}</td>') if a else "<td colspan=4></td>"
        mark = " &#9733;" if k in top else ""
        rows.append(f'<tr><td>{k + 1}{mark}</td><td class="num">{win.char_start}-{win.char_end}</td>'
                    f'<td class="num">{len(win.input_ids)}</td><td class="num">{p:.4f}</td>'
                    f'<td><span class="bar" style="width:{100 * p:.0f}px"></span></td>{cells}</tr>')
    table = (f"<table><tr><th>chunk</th><th>characters</th><th>tokens</th><th>p({esc(name)})</th><th></th>"
             "<th>IG f(x)</th><th>f(baseline)</th><th>sum of attributions</th><th>convergence delta</th></tr>"
             + "".join(rows) + "</table>")
    top_words = top_words_html(text, words, f"p({name})")
    return (f'<p><b>Aggregated p({esc(name)}) = {score:.4f}</b> ({esc(method)} aggregation over {len(probs)} '
            f"chunk(s); &#9733; = chunks explained with integrated gradients, which attribute the log-odds "
            f"f = logit({esc(name)}) - logsumexp(other logits)).</p>{table}{top_words}")


def explain_notes(run: Run, notes: list[tuple[str, str]], out_html: str | Path, *, attributions: bool = True,
                  n_steps: int = 50, top_chunks: int = 2, positive: int = 1, title: str = "") -> Path:
    """Write one self-contained HTML report explaining a sequence classifier on (long) notes.

    For each note: the probability of every chunk (token window of ``run.cfg.max_length`` with
    ``run.cfg.stride`` overlap) beside the aggregated score (``run.cfg.aggregation``), word-level
    integrated-gradient attributions inside the `top_chunks` most alarming chunks, and attention
    (per layer/head, mean of heads, rollout) of every chunk, mapped back to the note's characters.
    PNG heatmaps go to ``<stem>_heatmaps/`` beside the report. Note text appears only in the report.

    Args:
        run: a loaded sequence-classification run (engine.Run); label `positive` is explained.
        notes: (id, text) pairs.
        out_html: report path to write.
        attributions: compute integrated gradients (the slow part) or attention only.
        n_steps: integration steps for integrated gradients.
        top_chunks: number of highest-probability chunks per note to attribute.
        positive: index of the class whose probability and log-odds are explained.
        title: the page title (default: the card name).

    Returns:
        The path of the HTML report.
    """
    out_html = Path(out_html)
    folder = png_dir(out_html)
    sections = note_sections(run, notes, folder, attributions=attributions, n_steps=n_steps,
                             top_chunks=top_chunks, positive=positive)
    cfg = run.cfg
    intro = (f'<p class="note">Model: {esc(str(getattr(run, "path", "")))} &middot; task: {esc(run.card.name)} '
             f"&middot; chunks of {cfg.max_length} tokens, stride {cfg.stride} &middot; integrated gradients: "
             f"{f'{n_steps} steps, baseline [CLS]/[SEP] kept, [PAD] elsewhere' if attributions else 'off'}. "
             f"Heatmap PNGs: {esc(folder.name)}/</p>")
    title = title or f"{run.card.name} explanations"
    return write_atomic(out_html, page(title, intro, sections))


def note_sections(run: Run, notes: list[tuple[str, str]], folder: Path, *, attributions: bool = True,
                  n_steps: int = 50, top_chunks: int = 2, positive: int = 1, first_index: int = 0) -> list[str]:
    """The report sections of :func:`explain_notes` (one per note), PNG heatmaps written to `folder`.

    Args:
        first_index: number of the first section (keeps element ids unique when pages combine sections).
        Others: as in :func:`explain_notes`.

    Returns:
        One HTML ``<section>`` per note.
    """
    model, tok, cfg = run.model, run.tokenizer, run.cfg
    model.eval()
    name = str(run.labels[positive])
    sections = []
    for n, (doc_id, text) in enumerate(notes):
        doc_id = str(doc_id)
        if not isinstance(text, str):
            raise ClinicalFTError(f"note {doc_id!r} (position {n + 1}): expected its text as a string, "
                                  f"found {type(text).__name__}")
        windows = tokenize_windows(tok, [text], max_length=cfg.max_length, stride=cfg.stride, doc_ids=[doc_id])
        views, outputs, _ = attention_views(model, tok, windows, {k: {"cls": 0} for k in range(len(windows))},
                                            png_folder=folder, doc_name=doc_name(doc_id, first_index + n), embed=set())
        probs = probabilities(outputs, positive)
        for v, p in zip(views, probs):
            v.prob = p
        score = aggregate([doc_id] * len(probs), probs, cfg.aggregation, cfg.aggregation_c)[doc_id][0]
        top = [int(k) for k in np.argsort(-np.asarray(probs), kind="stable")[:max(0, top_chunks)]]
        ig = {}
        if attributions:
            for k in top:
                ig[k] = integrated_gradients(model, tok, windows[k].input_ids, class_log_odds(positive),
                                             token_type_ids=windows[k].token_type_ids, n_steps=n_steps)
        tokens = owner_tokens(windows)
        spans = word_spans(tok, text)
        words = attribution_words(owner_tokens(windows, only=set(ig)), {k: a.scores for k, a in ig.items()}, spans)
        target = TargetView(f"p({name}): [CLS] of each chunk", "cls", top[0] if top else 0,
                            colour_scale(tokens, words) if ig else None)
        figures = []
        if top:
            png = (folder / f"{doc_name(doc_id, first_index + n)}_chunk{top[0] + 1:03d}.png").read_bytes()
            figures.append((f"chunk {top[0] + 1} (highest p): rollout and last-layer mean attention", png))
        layers, heads = model_shape(model)
        doc = DocView(doc_id, text, tokens, views, [target], layers, heads, top[0] if top else 0,
                      _summary(name, score, cfg.aggregation, probs, windows, top, ig, words, text), figures)
        sections.append(render_doc(doc, first_index + n))
        log.info("explained note %d of %d: %d chunk(s), %d attributed", n + 1, len(notes), len(windows), len(ig))
    return sections
