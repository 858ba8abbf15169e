"""Attention weights of a loaded model: the eager switch, attention rollout, and compact encodings.

SDPA (the default) returns no attention weights, so the model is switched to eager attention only
for the duration of :func:`eager_attention` and restored afterwards.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np


def attn_implementation(model: Any) -> str:
    """The attention implementation the model currently uses (e.g. ``sdpa`` or ``eager``)."""
    return str(getattr(model.config, "_attn_implementation", None) or "sdpa")


@contextmanager
def eager_attention(model: Any) -> Iterator[Any]:
    """Switch `model` to eager attention (which returns weights) and restore the previous one on exit."""
    previous = attn_implementation(model)
    model.set_attn_implementation("eager")
    try:
        yield model
    finally:
        model.set_attn_implementation(previous)


def forward_with_attentions(model: Any, input_ids: list[int], token_type_ids: list[int] | None = None,
                            extra_inputs: dict[str, Any] | None = None) -> tuple[Any, np.ndarray]:
    """One unpadded sequence through `model` with eager attention.

    Args:
        model: a transformers model (any head).
        input_ids: one sequence, special tokens included.
        token_type_ids: segment ids, if the model takes them.
        extra_inputs: further model keyword arguments with a batch axis of 1 (e.g. ``entity_positions``).

    Returns:
        (model output, attentions) with attentions of shape (layers, heads, T, T); each row sums to 1.
    """
    import torch

    from .attribution import batch_inputs

    ids = torch.tensor([input_ids], device=model.device)
    kwargs: dict[str, Any] = {"input_ids": ids, "attention_mask": torch.ones_like(ids),
                              **batch_inputs(extra_inputs, model.device)}
    if token_type_ids is not None:
        kwargs["token_type_ids"] = torch.tensor([token_type_ids], device=model.device)
    with eager_attention(model), torch.no_grad():
        out = model(**kwargs, output_attentions=True)
    att = torch.stack([a[0] for a in out.attentions]).float().cpu().numpy()  # (L, H, T, T)
    # callers keep the output (logits) of every window: drop its attention tensors, `att` has them
    return type(out)(**{k: v for k, v in out.items() if k != "attentions"}), att


def rollout(attentions: np.ndarray) -> np.ndarray:
    """Attention rollout (Abnar & Zuidema 2020).

    Per layer: average the heads, add the identity (the residual path), renormalise rows to sum
    to 1; then multiply through the layers, ``R = A'_L ... A'_2 A'_1``.

    Args:
        attentions: (layers, heads, T, T) row-stochastic attention weights.

    Returns:
        (T, T) rollout matrix; row i says how much each input token flows into position i at the top.
    """
    att = np.asarray(attentions, dtype=np.float64)
    n = att.shape[-1]
    result = np.eye(n)
    for layer in att:  # (H, T, T)
        a = layer.mean(axis=0) + np.eye(n)
        a = a / a.sum(axis=-1, keepdims=True)
        result = a @ result
    return result


def attention_maps(attentions: np.ndarray) -> np.ndarray:
    """All maps offered by the report's picker: for each layer its heads then their mean; rollout last.

    Returns:
        (layers * (heads + 1) + 1, T, T); index ``layer * (heads + 1) + head`` (head == heads: mean).
    """
    n_layers, n_heads, t, _ = attentions.shape
    maps = np.empty((n_layers * (n_heads + 1) + 1, t, t), dtype=np.float32)
    for layer in range(n_layers):
        base = layer * (n_heads + 1)
        maps[base:base + n_heads] = attentions[layer]
        maps[base + n_heads] = attentions[layer].mean(axis=0)
    maps[-1] = rollout(attentions)
    return maps


def pool(maps: np.ndarray, bins: int) -> np.ndarray:
    """Average-pool the last two (T, T) axes of `maps` into at most `bins` x `bins` blocks."""
    t = maps.shape[-1]
    if bins >= t:
        return maps
    edges = np.linspace(0, t, bins + 1).astype(int)[:-1]
    sizes = np.diff(np.append(edges, t)).astype(np.float32)
    out = np.add.reduceat(np.add.reduceat(maps, edges, axis=-1), edges, axis=-2)
    return out / sizes[:, None] / sizes[None, :]


def quantize(values: np.ndarray, axis: int | tuple[int, ...] = -1, mask: np.ndarray | None = None) -> np.ndarray:
    """Scale non-negative values to 0..255 (uint8) by their maximum along `axis` (over `mask` only, if given)."""
    v = np.asarray(values, dtype=np.float32)
    ref = v if mask is None else np.where(mask, v, 0.0)
    top = ref.max(axis=axis, keepdims=True)
    top[top <= 0] = 1.0
    return np.clip(np.rint(v / top * 255.0), 0, 255).astype(np.uint8)


def b64(array: np.ndarray) -> str:
    """Base64 text of a uint8 array's bytes (row-major), for embedding in the report."""
    return base64.b64encode(np.ascontiguousarray(array, dtype=np.uint8).tobytes()).decode("ascii")


def pool_bins(n_chunks: int, n_maps: int, length: int, budget_bytes: int = 2_000_000, cap: int = 128) -> int:
    """Heatmap resolution so that all chunks' pooled maps together stay within `budget_bytes`."""
    fit = int(np.sqrt(budget_bytes / max(1, n_chunks * n_maps)))
    return int(max(8, min(length, cap, fit)))
