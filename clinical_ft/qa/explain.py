"""Explain question answering over question + context. Extractive QA, "why this span": the best
span of post.py's post-processing (as ``predict`` reports it), outlined in the context with its
probability; integrated-gradient attributions of the span score (start logit + end logit) over the
words of question and context; attention of the span's start and end tokens. Yes/no QA: see
yesno_explain.py; both show the pair as qa_pair.py builds it. A context longer than one window is
explained in one window (extractive: the one holding the best span), and the report says so.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..chunking import Window
from ..interpret.attribution import TOLERANCE, span_logits, span_prob
from ..interpret.core import attribute, top_words_html, trust, write_report
from ..interpret.html import TargetView, esc
from ..interpret.textmap import word_spans
from ..taskapi import task_options
from .pair_view import PairView, forward, pair_notes, pair_view, question_windows, render_pair, window_note
from .post import best_spans

log = logging.getLogger("clinical_ft.qa")


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


def _forward(model: Any, win: Window) -> tuple[np.ndarray, np.ndarray]:
    out = forward(model, win)
    return out.start_logits[0].float().cpu().numpy(), out.end_logits[0].float().cpu().numpy()


def _top(task: Any, logits: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """(4, TOP_K) candidates of one window, exactly as ``predict`` reduces them (ExtractiveQATask.reduce_logits)."""
    import torch

    return task.reduce_logits(tuple(torch.from_numpy(v)[None] for v in logits), None)[0].numpy()


def _summary(ex: Any, cands: list[dict], windows: list[Window], w: int, cfg: Any, pv: PairView,
             words: list[tuple[int, int, float]]) -> str:
    if not cands:
        return ("<p><b>No valid answer span</b>: every candidate fell outside the context (or the context is "
                "empty). Only attention is shown.</p>")
    best = cands[0]
    rows = "".join(f'<tr><td>{i + 1}</td><td>{esc(c["text"])}</td><td class="num">{c["start"]}-{c["end"]}</td>'
                   f'<td class="num">{c["score"]:.3f}</td><td class="num">{c["probability"]:.4f}</td></tr>'
                   for i, c in enumerate(cands[:5]))
    ctx = ex.context
    a, b = best["start"], best["end"]
    lo, hi = max(0, a - 120), min(len(ctx), b + 120)
    snippet = (("..." if lo else "") + esc(ctx[lo:a]) + f"<mark>{esc(ctx[a:b])}</mark>" + esc(ctx[b:hi])
               + ("..." if hi < len(ctx) else ""))
    notes = [window_note(windows, w, cfg, "which holds the best span")] + pair_notes(pv)
    if ex.gold:
        notes.append("Gold answer(s): " + ", ".join(f"<b>{esc(g)}</b>" for g in ex.gold) + ".")
    how = "Attributions explain its score f = start logit + end logit." if words else "Attention only."
    return (f"<p><b>Answer: &ldquo;{esc(best['text'])}&rdquo;</b> (context characters {a}-{b}, outlined in green), "
            f"probability {best['probability']:.4f} (softmax over the n-best spans of all windows, as predict "
            f"reports it). {how} {' '.join(x for x in notes if x)}</p>"
            f"<p class=note>{snippet}</p><table><tr><th>rank</th><th>span</th><th>characters</th><th>score</th>"
            f"<th>probability</th></tr>{rows}</table>" + top_words_html(pv.text, words, "the span score"))


def qa_section(run: Any, ex: Any, n: int, folder: Path, *, attributions: bool = True, n_steps: int = 50,
               tolerance: float = TOLERANCE) -> str:
    """The report section of one extractive question (its PNG heatmap written to `folder`)."""
    model, tok, cfg = run.model, run.tokenizer, run.cfg
    opts = task_options(run.task, cfg)
    question, windows = question_windows(tok, cfg, ex)
    logits = [_forward(model, win) for win in windows]
    cands = best_spans(ex.context, [(win.offsets, _top(run.task, lg)) for win, lg in zip(windows, logits)],
                       opts.n_best_size, opts.max_answer_length)
    w, s, e = locate_span(windows, logits, cands[0]["start"], cands[0]["end"]) if cands else (0, 0, 0)
    queries = {"start": s, "end": e, "cls": 0} if cands else {"cls": 0}
    pv = pair_view(run, ex, question, windows, w, queries, folder, n, cands[0]["probability"] if cands else None)
    targets, words = [], []
    if cands:
        target = TargetView(f"answer span (p={cands[0]['probability']:.3f}): start + end logit", "start", 0)
        what = "p(start) * p(end) of the answer span"
        if attributions:
            words = attribute(target, model, tok, windows[w], span_logits(s, e), pv.tokens, word_spans(tok, pv.text),
                              n_steps=n_steps, tolerance=tolerance, view=pv.view, prob=span_prob(s, e), what=what)
        else:
            trust(target, model, tok, windows[w], span_prob(s, e), pv.view, what=what)
        targets += [target, TargetView("attention of the answer's end token", "end", 0)]
    targets.append(TargetView("attention of [CLS]", "cls", 0))
    marks = [(cands[0]["start"] + pv.shift, cands[0]["end"] + pv.shift)] if cands else []
    return render_pair(run, ex, pv, targets, _summary(ex, cands, windows, w, cfg, pv, words), n, marks)


def explain_qa(run: Any, examples: list[Any], out_html: str | Path, *, attributions: bool = True,
               n_steps: int = 50, tolerance: float = TOLERANCE) -> Path:
    """Write one self-contained HTML report explaining a QA model's answers: extractive spans, or
    yes/no(/maybe) labels for a yes/no run (yesno_explain.py).

    Args:
        run: a loaded QA run (engine.Run), extractive or yes/no.
        examples: readers.QAExample (extractive) or readers.YesNoExample (yes/no) objects; gold
            answers or labels are shown when present.
        out_html: report path to write; PNG heatmaps go to ``<stem>_heatmaps/`` beside it.
        attributions: compute integrated gradients of the best span's score (extractive) or of the
            predicted label's log-odds (yes/no).
        n_steps: most integration steps.
        tolerance: integrated gradients add steps until |delta| <= tolerance * |f(x) - f(baseline)|.

    Returns:
        The path of the HTML report.
    """
    return write_report(run, out_html, "Answer explanations", "question", examples,
                        lambda ex, n, folder: run.task.explain_section(run, ex, n, folder, attributions=attributions,
                                                                       n_steps=n_steps, tolerance=tolerance),
                        attributions=attributions, n_steps=n_steps, tolerance=tolerance,
                        setting=f"windows of {run.cfg.max_length} tokens, stride {run.cfg.stride} &middot; ")
