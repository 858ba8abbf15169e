"""Explain yes/no(/maybe) QA (PubMedQA: sequence classification over question + context): the
predicted answer with its class probabilities exactly as ``predict`` reports them (window
probabilities aggregated per class by the config's ``aggregation``, then renormalised, by
YesNoTask.decode itself); integrated-gradient attributions of the predicted class's log-odds over
the words of question and context together; attention of [CLS], the token the head classifies.
A context longer than one window is explained in the window with the highest probability of the
predicted class, and the report says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..chunking import Window
from ..interpret.attribution import TOLERANCE, class_log_odds, class_prob
from ..interpret.core import attribute, class_table, top_words_html, trust
from ..interpret.html import TargetView, esc
from ..interpret.textmap import word_spans
from ..taskapi import Encoded
from .pair_view import PairView, forward, pair_notes, pair_view, question_windows, render_pair, window_note


@dataclass
class YesNoPrediction:
    """A yes/no run's answer to one question, window by window.

    Attributes:
        question: the question as the model sees it (cut to fit).
        windows: question + context windows.
        window_probs: (W, C) class probabilities of each window.
        row: the prediction as ``predict`` reports it (label, probability, probabilities, windows).
        label: index of the predicted class.
        window: index of the explained window, the one with the highest probability of `label`.
    """

    question: str
    windows: list[Window]
    window_probs: np.ndarray
    row: dict[str, Any]
    label: int
    window: int


def predict_windows(run: Any, ex: Any) -> YesNoPrediction:
    """Predict one question window by window and aggregate as ``predict`` does."""
    import torch

    question, windows = question_windows(run.tokenizer, run.cfg, ex)
    logits = torch.cat([forward(run.model, win).logits.float().cpu() for win in windows])  # (W, C)
    probs = run.task.reduce_logits(logits, None).numpy()
    row = run.task.decode([ex], Encoded(None, [0] * len(windows)), probs, run.labels, run.cfg)[0]
    k = run.labels.index(row["label"])
    return YesNoPrediction(question, windows, probs, row, k, int(np.argmax(probs[:, k])))


def _summary(run: Any, ex: Any, pred: YesNoPrediction, pv: PairView, words: list[tuple[int, int, float]]) -> str:
    labels, k, w = run.labels, pred.label, pred.window
    name = esc(labels[k])
    probs = [pred.row["probabilities"][lab] for lab in labels]
    n = len(pred.windows)
    how = (f"Attributions explain the log-odds f = logit({name}) - logsumexp(other logits) of the explained window"
           if words else "Attention only (no attributions computed)")
    notes = [window_note(pred.windows, w, run.cfg, f"the one with the highest p({name}), {pred.window_probs[w, k]:.4f}")]
    notes += pair_notes(pv)
    if ex.label is not None:
        notes.append(f"Gold answer: {esc(str(ex.label))}.")
    agg = (f"{esc(run.cfg.aggregation)} aggregation of the {n} windows' probabilities per class, renormalised"
           if n > 1 else "one window")
    table = class_table(labels, probs, k)
    if n > 1:
        rows = "".join(f'<tr><td>{i + 1}{" &#9733;" if i == w else ""}</td><td class="num">{win.char_start}-'
                       f'{win.char_end}</td>' + "".join(f'<td class="num">{p:.4f}</td>' for p in pred.window_probs[i])
                       + "</tr>" for i, win in enumerate(pred.windows))
        table += ("<table><tr><th>window</th><th>context characters</th>"
                  + "".join(f"<th>p({esc(lab)})</th>" for lab in labels) + f"</tr>{rows}</table>")
    return (f"<p><b>Predicted: {name}, probability {pred.row['probability']:.4f}</b> ({agg}, as predict reports "
            f"it). The head classifies the [CLS] hidden state of question and context together. {how}. "
            f"{' '.join(x for x in notes if x)}</p>" + table + top_words_html(pv.text, words, f"p({labels[k]})"))


def yesno_section(run: Any, ex: Any, n: int, folder: Path, *, attributions: bool = True, n_steps: int = 50,
                  tolerance: float = TOLERANCE) -> str:
    """The report section of one yes/no question (its PNG heatmap written to `folder`)."""
    pred = predict_windows(run, ex)
    k, w = pred.label, pred.window
    pv = pair_view(run, ex, pred.question, pred.windows, w, {"cls": 0}, folder, n, float(pred.window_probs[w, k]))
    target = TargetView(f"{run.labels[k]} (p={pred.row['probability']:.3f}): log-odds", "cls", 0)
    words: list[tuple[int, int, float]] = []
    what = f"p({run.labels[k]}) of the window"
    if attributions:
        words = attribute(target, run.model, run.tokenizer, pred.windows[w], class_log_odds(k), pv.tokens,
                          word_spans(run.tokenizer, pv.text), n_steps=n_steps, tolerance=tolerance, view=pv.view,
                          prob=class_prob(k),
                          what=what)
    else:
        trust(target, run.model, run.tokenizer, pred.windows[w], class_prob(k), pv.view, what=what)
    return render_pair(run, ex, pv, [target], _summary(run, ex, pred, pv, words), n)
