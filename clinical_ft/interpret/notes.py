"""Explain document classifiers on long notes (readmission), top-down: first which windows drove the
aggregated score (each window's share and the score without it, a strip over the whole note), then
integrated-gradient word attributions inside the top-k windows, each with its convergence and the
faithfulness of integrated gradients, attention, rollout and random; attention per window."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..aggregation import aggregate, leave_one_out, rank_windows, window_shares
from ..chunking import tokenize_windows
from ..errors import ClinicalFTError
from .attribution import TOLERANCE, class_log_odds, class_prob, integrated_gradients
from .core import (
    attention_views,
    attribution_words,
    colour_scale,
    doc_name,
    ig_setting,
    model_shape,
    probabilities,
    top_words_html,
)
from .heatmap import png_dir
from .html import DocView, TargetView, esc, page, render_doc, write_atomic
from .textmap import owner_tokens, word_spans
from .trust import convergence_html, faithfulness_html, window_faithfulness
from .window_view import ranking_table, strip_html

if TYPE_CHECKING:
    from ..engine import Run

log = logging.getLogger("clinical_ft.interpret")


TOP_WINDOWS = 2  # windows explained word by word (benchmarks/explain_results.md: cost and share covered)


def _summary(name: str, score: float, method: str, c: float, probs: list[float], windows: list[Any],
             ranking: list[int], ig: dict[int, Any], trust_html: str, words: list[tuple[int, int, float]],
             text: str) -> str:
    shares, without = window_shares(probs, method, c), leave_one_out(probs, method, c)
    agg = f"{esc(method)}{f', c={c:g}' if method == 'clinicalbert' else ''}"
    return (f'<p><b>Aggregated p({esc(name)}) = {score:.4f}</b> ({agg} aggregation over {len(probs)} window(s)). '
            "Which windows drove it: each window's share of the aggregated score (the shares add up to it) and the "
            f"score with that window left out; &#9733; = windows explained word by word with integrated gradients "
            f"of the log-odds f = logit({esc(name)}) - logsumexp(other logits).</p>"
            + strip_html(windows, shares, ranking, set(ig), len(text))
            + ranking_table(name, probs, windows, shares, without, ranking, ig) + trust_html
            + top_words_html(text, words, f"p({name})"))


def explain_notes(run: Run, notes: list[tuple[str, str]], out_html: str | Path, *, attributions: bool = True,
                  n_steps: int = 50, top_chunks: int = TOP_WINDOWS, positive: int = 1, title: str = "",
                  tolerance: float = TOLERANCE, faithfulness: bool = True) -> Path:
    """Write one self-contained HTML report explaining a sequence classifier on (long) notes.

    For each note: the probability of every window (``run.cfg.max_length`` tokens with
    ``run.cfg.stride`` overlap), its share of the aggregated score (``run.cfg.aggregation``) and
    the score without it, ranked; word-level integrated-gradient attributions inside the
    `top_chunks` top-ranked windows with their convergence and faithfulness; attention (per
    layer/head, mean of heads, rollout) of every window, mapped back to the note's characters.
    PNG heatmaps go to ``<stem>_heatmaps/`` beside the report. Note text appears only in the report.

    Args:
        run: a loaded sequence-classification run (engine.Run); label `positive` is explained.
        notes: (id, text) pairs.
        out_html: report path to write.
        attributions: compute integrated gradients (the slow part) or attention only.
        n_steps: most integration steps (adaptive: see attribution.integrated_gradients).
        top_chunks: number of top-ranked windows per note to attribute.
        positive: index of the class whose probability and log-odds are explained.
        title: the page title (default: the card name).
        tolerance: integrated gradients stop adding steps once |delta| <= tolerance * |f(x) - f(baseline)|.
        faithfulness: comprehensiveness/sufficiency of each explained window (forward passes only).

    Returns:
        The path of the HTML report.
    """
    out_html = Path(out_html)
    folder = png_dir(out_html)
    sections = note_sections(run, notes, folder, attributions=attributions, n_steps=n_steps,
                             top_chunks=top_chunks, positive=positive, tolerance=tolerance, faithfulness=faithfulness)
    cfg = run.cfg
    intro = (f'<p class="note">Model: {esc(str(getattr(run, "path", "")))} &middot; task: {esc(run.card.name)} '
             f"&middot; chunks of {cfg.max_length} tokens, stride {cfg.stride} &middot; integrated gradients: "
             f"{ig_setting(n_steps, tolerance) + f', top {top_chunks} window(s) per note' if attributions else 'off'}. "
             f"Heatmap PNGs: {esc(folder.name)}/</p>")
    title = title or f"{run.card.name} explanations"
    return write_atomic(out_html, page(title, intro, sections))


def note_sections(run: Run, notes: list[tuple[str, str]], folder: Path, *, attributions: bool = True,
                  n_steps: int = 50, top_chunks: int = TOP_WINDOWS, positive: int = 1, first_index: int = 0,
                  tolerance: float = TOLERANCE, faithfulness: bool = True,
                  record: list[dict[str, Any]] | None = None) -> list[str]:
    """The report sections of :func:`explain_notes` (one per note), PNG heatmaps written to `folder`.

    Args:
        first_index: number of the first section (keeps element ids unique when pages combine sections).
        record: if given, one dict per explained window is appended (note, window, rank, IG
            convergence, faithfulness per ranking): what benchmarks read.
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
        ranking = rank_windows(probs, cfg.aggregation, cfg.aggregation_c)
        top = ranking[:max(0, top_chunks)]
        ig, trust = {}, []
        for k in top:
            a = None
            if attributions:
                a = ig[k] = integrated_gradients(model, tok, windows[k].input_ids, class_log_odds(positive),
                                                 token_type_ids=windows[k].token_type_ids, n_steps=n_steps,
                                                 tolerance=tolerance)
                trust.append(convergence_html(a, f"window {k + 1}"))
            res = window_faithfulness(model, tok, windows[k], class_prob(positive), views[k], "cls",
                                      None if a is None else a.scores) if faithfulness else {}
            trust.append(faithfulness_html(res, f"p({name}) of the window", f"window {k + 1}"))
            if record is not None:
                record.append({"note": doc_id, "window": k, "rank": top.index(k) + 1, "tokens": len(windows[k].input_ids),
                               "ig": None if a is None else {"steps": a.n_steps, "delta": a.delta, "converged": a.converged,
                                                             "relative_delta": a.relative_delta, "rounds": a.rounds},
                               "faithfulness": {m: [f.comprehensiveness, f.sufficiency] for m, f in res.items()}})
        tokens = owner_tokens(windows)
        spans = word_spans(tok, text)
        words = attribution_words(owner_tokens(windows, only=set(ig)), {k: a.scores for k, a in ig.items()}, spans)
        unconverged = [k + 1 for k, a in ig.items() if not a.converged]
        target = TargetView(f"p({name}): [CLS] of each window" + (f" (integrated gradients not converged in window(s) "
                            f"{unconverged})" if unconverged else ""), "cls", top[0] if top else 0,
                            colour_scale(tokens, words) if ig else None)
        figures = []
        if top:
            png = (folder / f"{doc_name(doc_id, first_index + n)}_chunk{top[0] + 1:03d}.png").read_bytes()
            figures.append((f"window {top[0] + 1} (rank 1): rollout and last-layer mean attention", png))
        layers, heads = model_shape(model)
        doc = DocView(doc_id, text, tokens, views, [target], layers, heads, top[0] if top else 0,
                      _summary(name, score, cfg.aggregation, cfg.aggregation_c, probs, windows, ranking, ig, "".join(trust),
                               words, text), figures)
        sections.append(render_doc(doc, first_index + n))
        log.info("explained note %d of %d: %d chunk(s), %d attributed", n + 1, len(notes), len(windows), len(ig))
    return sections
