"""Task-independent pieces of an explanation: attention data per window, attribution colouring."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..chunking import Window
from .attention import attention_maps, b64, forward_with_attentions, pool, pool_bins, quantize
from .heatmap import heatmap_png, safe_name, write_png
from .html import ChunkView
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
        budget_bytes: bytes allowed for all pooled heatmaps of the document together.

    Returns:
        (chunk views, model outputs per window, {window index: PNG bytes} for `embed`).
    """
    views, outputs, pngs = [], [], {}
    bins = 8
    for k, win in enumerate(windows):
        out, att = forward_with_attentions(model, win.input_ids, win.token_type_ids, (extra_inputs or {}).get(k))
        outputs.append(out)
        n_layers, n_heads, t, _ = att.shape
        if k == 0:
            bins = pool_bins(len(windows), n_layers * (n_heads + 1) + 1, t, budget_bytes)
        maps = attention_maps(att)  # (n_maps, T, T)
        content = np.zeros(t, dtype=bool)
        content[win.content_positions] = True
        rows = {name: b64(quantize(maps[:, p, :], axis=-1, mask=content if content.any() else None))
                for name, p in queries.get(k, {}).items()}
        pooled = quantize(pool(maps, min(bins, t)), axis=(1, 2))
        del att
        views.append(ChunkView(k, win.char_start, win.char_end, t, None if probs is None else probs[k],
                               min(bins, t), b64(pooled), rows))
        labels = tokenizer.convert_ids_to_tokens(win.input_ids)
        png = heatmap_png([("rollout", maps[-1]), (f"layer {n_layers}, mean of heads", maps[-2])], labels,
                          f"chunk {k + 1} of {len(windows)} ({t} tokens)")
        write_png(png_folder, f"{doc_name}_chunk{k + 1:03d}.png", png)
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


def doc_name(doc_id: str, n: int) -> str:
    return f"{n + 1:03d}_{safe_name(doc_id)}"


def top_words_html(text: str, words: list[tuple[int, int, float]], what: str, n_up: int = 10, n_down: int = 5) -> str:
    """Two sentences naming the words that raised and lowered `what` most (escaped HTML)."""
    from .html import esc

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
