"""Token attributions with captum's LayerIntegratedGradients on the input embedding layer.

The core is task-agnostic: a *target selector* maps the model output (a transformers
``ModelOutput``) to one scalar per batch row, and :func:`integrated_gradients` attributes that
scalar to the input tokens. Selectors for each task kind:

- sequence classification (readmission, relation): :func:`class_log_odds` or :func:`class_logit`;
- token classification (NER, "why this entity"): :func:`token_logit` at the entity's first token;
- extractive QA ("why this span"): :func:`span_logits`, start logit at `start` + end logit at `end`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

Selector = Callable[[Any], Any]  # model output -> tensor (batch,)


def class_logit(label: int) -> Selector:
    """Raw logit of class `label` of a sequence classifier."""
    return lambda out: out.logits[:, label]


def class_log_odds(label: int) -> Selector:
    """Log-odds of class `label`: ``logit[label] - logsumexp(other logits)``.

    For a binary classifier and label 1 this is ``logit_1 - logit_0``, the log-odds of the positive
    class (e.g. readmission), so attributions read directly as "raises/lowers the risk".
    """
    import torch

    def select(out: Any) -> Any:
        logits = out.logits
        others = torch.cat([logits[:, :label], logits[:, label + 1:]], dim=1)
        return logits[:, label] - torch.logsumexp(others, dim=1)

    return select


def token_logit(position: int, label: int) -> Selector:
    """Logit of `label` at token `position` of a token classifier (NER: an entity's first token)."""
    return lambda out: out.logits[:, position, label]


def span_logits(start: int, end: int) -> Selector:
    """Extractive QA: start logit at token `start` plus end logit at token `end` (the span's score,
    as ranked by transformers' ``utils_qa.py`` post-processing)."""
    return lambda out: out.start_logits[:, start] + out.end_logits[:, end]


@dataclass
class Attribution:
    """Per-token attributions of one target on one sequence.

    Attributes:
        scores: (T,) attribution per token (embedding dimensions summed).
        delta: captum's convergence delta, ``sum(scores) - (f(input) - f(baseline))``.
        value: f(input), the explained target value.
        baseline_value: f(baseline).
    """

    scores: np.ndarray
    delta: float
    value: float
    baseline_value: float


def baseline_ids(input_ids: list[int], tokenizer: Any) -> list[int]:
    """Baseline input: [CLS]/[SEP] (all special tokens) kept, every other token replaced by [PAD]."""
    keep = {i for i in (tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.bos_token_id,
                        tokenizer.eos_token_id) if i is not None}
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return [t if t in keep else pad for t in input_ids]


def batch_inputs(extra_inputs: dict[str, Any] | None, device: Any) -> dict[str, Any]:
    """`extra_inputs` as tensors on `device`, each checked to have a leading batch axis of size 1.

    Raises:
        ValueError: a value whose first axis is not a batch of one.
    """
    import torch

    out = {}
    for k, v in (extra_inputs or {}).items():
        t = torch.as_tensor(v, device=device)
        if t.dim() == 0 or t.shape[0] != 1:
            raise ValueError(f"extra_inputs[{k!r}]: expected a leading batch axis of size 1, found shape {tuple(t.shape)}")
        out[k] = t
    return out


def embedding_layer(model: Any) -> Any:
    """The token embedding layer (``get_input_embeddings``), the layer IG integrates along."""
    return model.get_input_embeddings()


@contextmanager
def _frozen(model: Any) -> Iterator[None]:
    """No parameter gradients during attribution (only input gradients are needed), eval mode."""
    flags = [p.requires_grad for p in model.parameters()]
    was_training = model.training
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, f in zip(model.parameters(), flags):
            p.requires_grad_(f)
        model.train(was_training)


def integrated_gradients(
    model: Any,
    tokenizer: Any,
    input_ids: list[int],
    selector: Selector,
    *,
    token_type_ids: list[int] | None = None,
    extra_inputs: dict[str, Any] | None = None,
    n_steps: int = 50,
    internal_batch_size: int = 10,
) -> Attribution:
    """Attribute `selector(model(input))` to the input tokens with LayerIntegratedGradients.

    Args:
        model: a transformers model (any head); its attention implementation is left as is.
        tokenizer: the model's tokenizer (for the special and padding token ids of the baseline).
        input_ids: one unpadded sequence, special tokens included.
        selector: model output -> one scalar per batch row (see the selectors in this module).
        token_type_ids: segment ids for pairs; zeros when omitted.
        extra_inputs: further model keyword arguments, each a tensor with a leading batch axis of
            size 1, expanded to every interpolation batch (e.g. the relation head's
            ``entity_positions`` of shape (1, 2)); they are held fixed, not attributed.
        n_steps: integration steps (captum's Gauss-Legendre rule).
        internal_batch_size: interpolation steps per forward pass (bounds memory).

    Returns:
        An :class:`Attribution`; ``scores.sum() - (value - baseline_value) == delta``.
    """
    import torch
    from captum.attr import LayerIntegratedGradients

    dev = model.device
    ids = torch.tensor([input_ids], device=dev)
    base = torch.tensor([baseline_ids(input_ids, tokenizer)], device=dev)
    types = torch.tensor([token_type_ids if token_type_ids is not None else [0] * len(input_ids)], device=dev)
    mask = torch.ones_like(ids)
    extra = batch_inputs(extra_inputs, dev)

    def forward(inp: Any, tt: Any, am: Any) -> Any:
        n = inp.shape[0]
        more = {k: v.expand(n, *v.shape[1:]) for k, v in extra.items()}
        return selector(model(input_ids=inp, token_type_ids=tt.expand(n, -1), attention_mask=am.expand(n, -1), **more))

    with _frozen(model):
        lig = LayerIntegratedGradients(forward, embedding_layer(model))
        attr, delta = lig.attribute(ids, baselines=base, additional_forward_args=(types, mask), n_steps=n_steps,
                                    internal_batch_size=internal_batch_size, return_convergence_delta=True)
        with torch.no_grad():
            value = float(forward(ids, types, mask)[0])
            base_value = float(forward(base, types, mask)[0])
    scores = attr.sum(dim=-1)[0].detach().double().cpu().numpy()
    return Attribution(scores, float(delta[0]), value, base_value)
