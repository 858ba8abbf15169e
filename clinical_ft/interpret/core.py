"""Task-independent pieces of an explanation: attention data per window, attribution colouring."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..chunking import Window
from .attention import attention_maps, b64, forward_with_attentions, pool, pool_bins, quantize
from .attribution import TOLERANCE, Selector, integrated_gradients
from .heatmap import heatmap_png, safe_name, write_png
from .html import ChunkView, TargetView, esc
from .textmap import TokenRef, word_scores


def attention_views(
    model: Any,
    tokenizer: Any,
    windows: Sequence[Window],
    queries: dict[int, dict[str, int]],
    *,
    png_folder: Path,
    doc_name: str,
    embed: set[int],
    probs: Sequence[float | None] | None = None,
    extra_inputs: dict[int, dict[str, Any]] | None = None,
    indices: Sequence[int] | None = None,
    n_windows: int | None = None,
    budget_bytes: int = 2_000_000,
) -> tuple[list[ChunkView], list[Any], dict[int, bytes]]:
    """Run every window through the model with eager attention and keep what the report needs.

    Args:
        model, tokenizer: the run's model and tokenizer.
        windows: the windows of one document.
        queries: window index -> {query name: token position}; for each query the report keeps the
            attention of that token to every token, for every layer/head/mean and the rollout.
        png_folder: where each window's PNG heatmap (rollout + last-layer mean) is written.
        doc_name: file-name-safe document name for the PNGs.
        embed: window indices whose PNG is also returned for embedding in the HTML.
        probs: per-window probability to show, if any.
        extra_inputs: window index -> further model inputs (e.g. a relation head's ``entity_positions``).
        indices: each window's index in its document (default 0, 1, ...), when `windows` holds only
            some of them (QA explains one window): names the window in the picker, PNG title and file.
        n_windows: how many windows the document has (default ``len(windows)``).
        budget_bytes: bytes allowed for all pooled heatmaps of the document together.

    Returns:
        (chunk views, model outputs per window, {window index: PNG bytes} for `embed`).
    """
    views, outputs, pngs = [], [], {}
    bins = 8
    numbers = list(indices) if indices is not None else list(range(len(windows)))
    total = n_windows if n_windows is not None else len(windows)
    for k, win in enumerate(windows):
        out, att = forward_with_attentions(model, win.input_ids, win.token_type_ids, (extra_inputs or {}).get(k))
        outputs.append(out)
        n_layers, n_heads, t, _ = att.shape
        if k == 0:
            bins = pool_bins(len(windows), n_layers * (n_heads + 1) + 1, t, budget_bytes)
        maps = attention_maps(att)  # (n_maps, T, T)
        raw = {name: np.stack([maps[-2, p], maps[-1, p]]) for name, p in queries.get(k, {}).items()}
        content = np.zeros(t, dtype=bool)
        content[win.content_positions] = True
        rows = {name: b64(quantize(maps[:, p, :], axis=-1, mask=content if content.any() else None))
                for name, p in queries.get(k, {}).items()}
        pooled = quantize(pool(maps, min(bins, t)), axis=(1, 2))
        del att
        views.append(ChunkView(numbers[k], win.char_start, win.char_end, t, None if probs is None else probs[k],
                               min(bins, t), b64(pooled), rows, raw))
        labels = tokenizer.convert_ids_to_tokens(win.input_ids)
        png = heatmap_png([("rollout", maps[-1]), (f"layer {n_layers}, mean of heads", maps[-2])], labels,
                          f"chunk {numbers[k] + 1} of {total} ({t} tokens)")
        write_png(png_folder, f"{doc_name}_chunk{numbers[k] + 1:03d}.png", png)
        if k in embed:
            pngs[k] = png
    return views, outputs, pngs


def probabilities(outputs: Sequence[Any], label: int) -> list[float]:
    """Softmax probability of `label` for each window's sequence-classification output."""
    import torch

    return [float(torch.softmax(o.logits[0].float(), dim=-1)[label]) for o in outputs]


def colour_scale(tokens: Sequence[TokenRef], words: list[tuple[int, int, float]]) -> list[int | None]:
    """Each shown token gets its word's score, scaled to -100..100 by the largest |word score|."""
    top = max((abs(s) for _, _, s in words), default=0.0) or 1.0
    starts = [w[0] for w in words]
    out: list[int | None] = []
    import bisect

    for tok in tokens:
        i = bisect.bisect_right(starts, tok.start) - 1
        if i >= 0 and tok.start < words[i][1]:
            out.append(int(round(100 * words[i][2] / top)))
        else:
            out.append(None)
    return out


def attribution_words(tokens: Sequence[TokenRef], scores: dict[int, np.ndarray],
                      spans: Sequence[tuple[int, int]]) -> list[tuple[int, int, float]]:
    """Word-level scores from per-window token scores (window index -> (T,) scores)."""
    token_score = {(t.window, t.position): float(scores[t.window][t.position]) for t in tokens if t.window in scores}
    return word_scores(tokens, token_score, spans)


def attribute(target: TargetView, model: Any, tokenizer: Any, win: Window, selector: Selector,
              tokens: Sequence[TokenRef], spans: Sequence[tuple[int, int]], *, n_steps: int = 50,
              tolerance: float = TOLERANCE, extra_inputs: dict[str, Any] | None = None, view: ChunkView | None = None,
              prob: Selector | None = None, what: str = "p") -> list[tuple[int, int, float]]:
    """Integrated gradients of `selector` on one window (window 0 of `tokens`), merged into words;
    fills `target`'s colours, convergence details and, with `prob` (the target as a probability),
    the faithfulness of integrated gradients, attention of ``target.query`` (from `view`) and random.
    `n_steps` and `tolerance` as in :func:`.attribution.integrated_gradients`.

    Returns:
        (start, end, score) per attributed word of the shown text.
    """
    a = integrated_gradients(model, tokenizer, win.input_ids, selector, token_type_ids=win.token_type_ids,
                             extra_inputs=extra_inputs, n_steps=n_steps, tolerance=tolerance)
    words = attribution_words(tokens, {0: a.scores}, spans)
    target.scores = colour_scale(tokens, words)
    target.details = ig_details(a)
    trust(target, model, tokenizer, win, prob, view, a, extra_inputs=extra_inputs, what=what)
    return words


def trust(target: TargetView, model: Any, tokenizer: Any, win: Window, prob: Selector | None,
          view: ChunkView | None, a: Any = None, *, extra_inputs: dict[str, Any] | None = None,
          what: str = "p", where: str = "") -> dict[str, Any]:
    """Add the convergence line of `a` (if any) and the faithfulness table for `prob` (if given) to
    `target.notes_html`; a target whose integrated gradients did not converge says so in its name.

    Returns:
        ranking name -> Faithfulness (empty without `prob`).
    """
    from .trust import convergence_html, faithfulness_html, window_faithfulness

    if a is not None:
        target.notes_html += convergence_html(a, where)
        if not a.converged:
            target.name += " (integrated gradients not converged)"
    if prob is None:
        return {}
    res = window_faithfulness(model, tokenizer, win, prob, view, target.query, None if a is None else a.scores,
                              extra_inputs=extra_inputs)
    target.notes_html += faithfulness_html(res, what, where)
    return res


def ig_setting(n_steps: int, tolerance: float | None = None) -> str:
    """The report intro's words for the adaptive integrated-gradient setting."""
    from .attribution import START_STEPS, TOLERANCE

    tol = TOLERANCE if tolerance is None else tolerance
    return (f"trapezoid rule on {START_STEPS} intervals, halved (every gradient reused) up to {n_steps} until "
            f"|convergence delta| &le; {100 * tol:.0f}% of |f(x) - f(baseline)|, baseline [CLS]/[SEP] kept, [PAD] elsewhere")


def class_table(labels: Sequence[str], probs: Sequence[float], k: int) -> str:
    """Class probabilities as a table with bars, the predicted class `k` starred."""
    rows = "".join(f'<tr><td>{esc(lab)}{" &#9733;" if i == k else ""}</td><td class="num">{p:.4f}</td>'
                   f'<td><span class="bar" style="width:{100 * p:.0f}px"></span></td></tr>'
                   for i, (lab, p) in enumerate(zip(labels, probs)))
    return f"<table><tr><th>label</th><th>probability</th><th></th></tr>{rows}</table>"


def doc_name(doc_id: str, n: int) -> str:
    return f"{n + 1:03d}_{safe_name(doc_id)}"


def top_words_html(text: str, words: list[tuple[int, int, float]], what: str, n_up: int = 10, n_down: int = 5) -> str:
    """Two sentences naming the words that raised and lowered `what` most (escaped HTML)."""
    ranked = sorted(words, key=lambda w: -w[2])

    def wl(ws: list[tuple[int, int, float]]) -> str:
        return ", ".join(f"<b>{esc(text[s:e])}</b> ({v:+.3g})" for s, e, v in ws) or "none"

    if not words:
        return ""
    return (f"<p>Words that raised {esc(what)} most: {wl([w for w in ranked[:n_up] if w[2] > 0])}.<br>"
            f"Lowered it most: {wl([w for w in ranked[::-1][:n_down] if w[2] < 0])}.</p>")


def ig_details(a: Any) -> dict[str, float]:
    """The convergence numbers of an Attribution, as shown in the report's target table."""
    return {"f(x)": a.value, "f(baseline)": a.baseline_value, "sum of attributions": float(np.sum(a.scores)),
            "convergence delta": a.delta}


def model_shape(model: Any) -> tuple[int, int]:
    """(layers, heads) of the model's encoder, for the report's picker."""
    c = model.config
    return int(c.num_hidden_layers), int(c.num_attention_heads)


def write_report(run: Any, out_html: str | Path, title: str, what: str, items: Sequence[Any],
                 section: Any, *, attributions: bool, n_steps: int, tolerance: float = TOLERANCE,
                 setting: str = "") -> Path:
    """Render one section per item into a self-contained HTML report (PNGs in ``<stem>_heatmaps/``).

    Args:
        run: the loaded run (its model is put in eval mode).
        out_html: report path, written atomically.
        title: page title.
        what: the item's name in progress logs ("pair", "question", ...; never the text).
        items: what to explain, one section each.
        section: ``section(item, n, folder) -> str`` HTML of item ``n``.
        attributions: whether integrated gradients were asked for (said in the intro).
        n_steps: integration steps (said in the intro).
        tolerance: the integrated gradients' relative completeness tolerance (said in the intro).
        setting: extra intro text, e.g. the window size.

    Returns:
        The path of the HTML report.
    """
    import logging

    from .heatmap import png_dir
    from .html import page, write_atomic

    log = logging.getLogger("clinical_ft.interpret")
    out_html = Path(out_html)
    run.model.eval()
    folder = png_dir(out_html)
    sections = []
    for n, item in enumerate(items):
        sections.append(section(item, n, folder))
        log.info("explained %s %d of %d", what, n + 1, len(items))
    intro = (f'<p class="note">Model: {esc(str(getattr(run, "path", "")))} &middot; task: {esc(run.card.name)} '
             f"&middot; {setting}integrated gradients: {ig_setting(n_steps, tolerance) if attributions else 'off'}. "
             f"Heatmap PNGs: {esc(folder.name)}/</p>")
    return write_atomic(out_html, page(title, intro, sections))


def most_and_least(conf: list[tuple[float, int, str]], noun: str = "") -> list[tuple[int, str]]:
    """(index, why) of the most and the least confident of (probability, index, label or "") triples:
    the examples a run report explains."""
    def why(c: tuple[float, int, str], which: str) -> str:
        return f"{which} confident{noun} ({c[2] + ', ' if c[2] else ''}p={c[0]:.3f})"

    hi, lo = max(conf), min(conf)
    return [(hi[1], why(hi, "most")), (lo[1], why(lo, "least"))]
