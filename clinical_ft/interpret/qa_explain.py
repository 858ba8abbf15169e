"""Explain extractive QA, "why this span": the best span of qa_post's post-processing (as
``predict`` reports it), outlined in the context with its probability; integrated-gradient
attributions of the span score (start logit + end logit) over the words of question and context;
attention of the span's start and end tokens. A context longer than one window is explained in
the window holding the best span, and the report says so.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..chunking import Window, tokenize_windows
from ..qa_post import best_spans
from .attribution import integrated_gradients, span_logits
from .core import (
    attention_views,
    attribution_words,
    colour_scale,
    doc_name,
    ig_details,
    model_shape,
    top_words_html,
)
from .heatmap import png_dir
from .html import DocView, TargetView, esc, page, render_doc, write_atomic
from .textmap import TokenRef, owner_tokens, word_spans

log = logging.getLogger("clinical_ft.interpret")
GAP = "\n\n"  # between question and context in the shown text


def locate_span(windows: list[Window], logits: list[tuple[np.ndarray, np.ndarray]], start: int,
                end: int) -> tuple[int, int, int]:
    """The (window, start token, end token) whose start + end logit scores the character span
    [start, end) highest: where post-processing found the span.

    Raises:
        ValueError: no window has tokens starting at `start` and ending at `end`.
    """
    best: tuple[float, int, int, int] | None = None
    for w, (win, (s_log, e_log)) in enumerate(zip(windows, logits)):
        firsts = [i for i, o in enumerate(win.offsets) if o is not None and o[0] == start]
        lasts = [i for i, o in enumerate(win.offsets) if o is not None and o[1] == end]
        for s in firsts:
            for e in lasts:
                if e >= s and (best is None or s_log[s] + e_log[e] > best[0]):
                    best = (float(s_log[s] + e_log[e]), w, s, e)
    if best is None:
        raise ValueError(f"no window has a token span over characters {start}-{end}")
    return best[1], best[2], best[3]


def question_tokens(tokenizer: Any, question: str, win: Window) -> list[TokenRef]:
    """The question's tokens in `win` (sequence 0), with character offsets into `question`; empty
    when the pair's question tokens do not line up with the question tokenized alone."""
    positions = [i for i, s in enumerate(win.sequence_ids) if s == 0]
    offsets = tokenizer(question, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    if len(offsets) != len(positions):
        return []
    return [TokenRef(int(a), int(b), 0, p) for (a, b), p in zip(offsets, positions) if b > a]


def _forward(model: Any, win: Window) -> tuple[np.ndarray, np.ndarray]:
    import torch

    ids = torch.tensor([win.input_ids], device=model.device)
    with torch.no_grad():
        out = model(input_ids=ids, token_type_ids=torch.tensor([win.token_type_ids], device=model.device),
                    attention_mask=torch.ones_like(ids))
    return out.start_logits[0].float().cpu().numpy(), out.end_logits[0].float().cpu().numpy()


def _top(logits: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """(4, TOP_K) candidates of one window, exactly as ``predict`` reduces them (ExtractiveQATask.reduce_logits)."""
    import torch

    from ..qa import EXTRACTIVE

    return EXTRACTIVE.reduce_logits(tuple(torch.from_numpy(v)[None] for v in logits), None)[0].numpy()


def _summary(ex: Any, cands: list[dict], windows: list[Window], w: int, cfg: Any, shift: int, q_ok: bool,
             text: str, words: list[tuple[int, int, float]]) -> str:
    if not cands:
        return ("<p><b>No valid answer span</b>: every candidate fell outside the context (or the context is "
                "empty). Only attention is shown.</p>")
    best = cands[0]
    rows = "".join(f'<tr><td>{i + 1}</td><td>{esc(c["text"])}</td><td class="num">{c["start"]}-{c["end"]}</td>'
                   f'<td class="num">{c["score"]:.3f}</td><td class="num">{c["probability"]:.4f}</td></tr>'
                   for i, c in enumerate(cands[:5]))
    ctx = text[shift:]
    a, b = best["start"], best["end"]
    lo, hi = max(0, a - 120), min(len(ctx), b + 120)
    snippet = (("..." if lo else "") + esc(ctx[lo:a]) + f"<mark>{esc(ctx[a:b])}</mark>" + esc(ctx[b:hi])
               + ("..." if hi < len(ctx) else ""))
    notes = []
    if len(windows) > 1:
        win = windows[w]
        notes.append(f"The context is longer than one window ({len(windows)} windows of {cfg.max_length} tokens, "
                     f"stride {cfg.stride}): window {w + 1} (context characters {win.char_start}-{win.char_end}), "
                     "which holds the best span, is the one explained; the rest of the context is shown uncoloured.")
    if not q_ok:
        notes.append("The question's tokens could not be aligned with its characters: it is not coloured.")
    if ex.gold:
        notes.append("Gold answer(s): " + ", ".join(f"<b>{esc(g)}</b>" for g in ex.gold) + ".")
    how = "Attributions explain its score f = start logit + end logit." if words else "Attention only."
    return (f"<p><b>Answer: &ldquo;{esc(best['text'])}&rdquo;</b> (context characters {a}-{b}, outlined in green), "
            f"probability {best['probability']:.4f} (softmax over the n-best spans of all windows, as predict "
            f"reports it). {how} {' '.join(notes)}</p>"
            f"<p class=note>{snippet}</p><table><tr><th>rank</th><th>span</th><th>characters</th><th>score</th>"
            f"<th>probability</th></tr>{rows}</table>" + top_words_html(text, words, "the span score"))


def qa_section(run: Any, ex: Any, n: int, folder: Path, *, attributions: bool = True, n_steps: int = 50) -> str:
    """The report section of one question (its PNG heatmap written to `folder`)."""
    from ..qa import qa_options
    from ..qa_data import fit_questions

    model, tok, cfg = run.model, run.tokenizer, run.cfg
    opts = qa_options(cfg)
    question = fit_questions(tok, [ex.question], cfg.max_length, cfg.stride)[0]
    windows = tokenize_windows(tok, [ex.context], max_length=cfg.max_length, stride=cfg.stride, doc_ids=[ex.id],
                               questions=[question])
    logits = [_forward(model, win) for win in windows]
    cands = best_spans(ex.context, [(win.offsets, _top(lg)) for win, lg in zip(windows, logits)],
                       opts.n_best_size, opts.max_answer_length)
    w, s, e = locate_span(windows, logits, cands[0]["start"], cands[0]["end"]) if cands else (0, 0, 0)
    win = windows[w]
    shift = len(question) + len(GAP)
    text = question + GAP + ex.context
    q_toks = question_tokens(tok, question, win)
    tokens = q_toks + [TokenRef(t.start + shift, t.end + shift, 0, t.position) for t in owner_tokens([win])]
    queries = {"start": s, "end": e, "cls": 0} if cands else {"cls": 0}
    views, _, pngs = attention_views(model, tok, [win], {0: queries}, png_folder=folder, doc_name=doc_name(ex.id, n),
                                     embed={0}, probs=[cands[0]["probability"] if cands else None])
    views[0].char_start, views[0].char_end = 0, win.char_end + shift  # the question is part of the window
    views[0].index = w  # the picker names the window by its number in the context
    targets, words = [], []
    if cands:
        target = TargetView(f"answer span (p={cands[0]['probability']:.3f}): start + end logit", "start", 0)
        if attributions:
            a = integrated_gradients(model, tok, win.input_ids, span_logits(s, e), token_type_ids=win.token_type_ids,
                                     n_steps=n_steps)
            words = attribution_words(tokens, {0: a.scores}, word_spans(tok, text))
            target.scores = colour_scale(tokens, words)
            target.details = ig_details(a)
        targets += [target, TargetView("attention of the answer's end token", "end", 0)]
    targets.append(TargetView("attention of [CLS]", "cls", 0))
    marks = [(cands[0]["start"] + shift, cands[0]["end"] + shift)] if cands else []
    layers, heads = model_shape(model)
    summary = _summary(ex, cands, windows, w, cfg, shift, bool(q_toks) or not question.strip(), text, words)
    figs = [(f"window {w + 1}: rollout and last-layer mean attention", pngs[0])]
    return render_doc(DocView(str(ex.id), text, tokens, views, targets, layers, heads, 0, summary, figs, marks), n)


def explain_qa(run: Any, examples: list[Any], out_html: str | Path, *, attributions: bool = True,
               n_steps: int = 50) -> Path:
    """Write one self-contained HTML report explaining an extractive QA model's answers.

    Args:
        run: a loaded extractive QA run (engine.Run).
        examples: qa_data.QAExample objects (question, context; gold answers shown when present).
        out_html: report path to write; PNG heatmaps go to ``<stem>_heatmaps/`` beside it.
        attributions: compute integrated gradients of the best span's score.
        n_steps: integration steps.

    Returns:
        The path of the HTML report.
    """
    out_html = Path(out_html)
    run.model.eval()
    folder = png_dir(out_html)
    sections = []
    for n, ex in enumerate(examples):
        sections.append(qa_section(run, ex, n, folder, attributions=attributions, n_steps=n_steps))
        log.info("explained question %d of %d", n + 1, len(examples))
    intro = (f'<p class="note">Model: {esc(str(getattr(run, "path", "")))} &middot; task: {esc(run.card.name)} '
             f"&middot; windows of {run.cfg.max_length} tokens, stride {run.cfg.stride} &middot; integrated "
             f"gradients: {f'{n_steps} steps' if attributions else 'off'}. Heatmap PNGs: {esc(folder.name)}/</p>")
    return write_atomic(out_html, page("Answer explanations", intro, sections))
