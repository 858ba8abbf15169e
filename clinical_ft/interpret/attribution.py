"""Token attributions with captum's LayerIntegratedGradients on the input embedding layer.

The core is task-agnostic: a *target selector* maps the model output (a transformers
``ModelOutput``) to one scalar per batch row, and :func:`integrated_gradients` attributes that
scalar to the input tokens. Selectors for each task kind:

- sequence classification (readmission, relation): :func:`class_log_odds` or :func:`class_logit`;
- token classification (NER, "why this entity"): :func:`token_logit` at the entity's first token;
- extractive QA ("why this span"): :func:`span_logits`, start logit at `start` + end logit at `end`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
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


def class_prob(label: int) -> Selector:
    """Softmax probability of class `label` (the score faithfulness is measured on)."""
    return lambda out: out.logits.float().softmax(-1)[:, label]


def token_prob(position: int, label: int) -> Selector:
    """Softmax probability of `label` at token `position` of a token classifier."""
    return lambda out: out.logits.float().softmax(-1)[:, position, label]


def span_prob(start: int, end: int) -> Selector:
    """Extractive QA: p(start) * p(end) over the window's tokens."""
    return lambda out: out.start_logits.float().softmax(-1)[:, start] * out.end_logits.float().softmax(-1)[:, end]


@dataclass
class Attribution:
    """Per-token attributions of one target on one sequence.

    Attributes:
        scores: (T,) attribution per token (embedding dimensions summed).
        delta: convergence delta, ``sum(scores) - (f(input) - f(baseline))``.
        value: f(input), the explained target value.
        baseline_value: f(baseline).
        n_steps: integration steps of the returned scores (intervals of the nested trapezoid rule,
            whose scores then use ``n_steps + 1`` gradients).
        converged: ``|delta| <= tolerance * |value - baseline_value|`` (or below an absolute ``atol``).
        tolerance: the relative tolerance it was checked against.
        rounds: (steps, delta, seconds) of every round tried, the returned one last.
    """

    scores: np.ndarray
    delta: float
    value: float
    baseline_value: float
    n_steps: int = 0
    converged: bool = True
    tolerance: float = 0.0
    rounds: list[tuple[int, float, float]] = field(default_factory=list)

    @property
    def relative_delta(self) -> float:
        """|delta| / |f(x) - f(baseline)| (inf when the difference is 0)."""
        diff = abs(self.value - self.baseline_value)
        return abs(self.delta) / diff if diff > 0 else float("inf")


START_STEPS = 8  # integration steps of the first round (4 missed 5% in 25 of 25 demo windows)
NESTED = "nested_trapezoid"  # the default quadrature: trapezoid rule refined by halving, every gradient reused
TOLERANCE = 0.05  # default: |delta| <= 5% of |f(x) - f(baseline)|
ABS_TOLERANCE = 1e-4  # |delta| below this counts as converged whatever f(x) - f(baseline) is
TOKENS_PER_BATCH = 4096  # interpolation steps per forward/backward: batch * T <= this


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
    n_steps: int = 64,
    start_steps: int = START_STEPS,
    tolerance: float = TOLERANCE,
    atol: float = ABS_TOLERANCE,
    internal_batch_size: int | None = None,
    method: str = NESTED,
) -> Attribution:
    """Attribute `selector(model(input))` to the input tokens with LayerIntegratedGradients,
    adding steps until the attributions are complete enough.

    Starts with `start_steps` and doubles them while ``|delta| > tolerance * |f(x) - f(baseline)|``
    (and ``|delta| > atol``), up to `n_steps`; an attribution that never gets there is
    returned with ``converged=False``. With the default nested trapezoid rule no gradient is
    computed twice: the first round is the trapezoid rule T_n on n = `start_steps` intervals
    (n + 1 points, captum's ``riemann_trapezoid``), each further round adds only the n new midpoints
    (captum's ``riemann_middle``) and T_2n = (T_n + M_n) / 2, so reaching T_16 costs 17 gradients
    where Gauss-Legendre doubling 4, 8, 16 costs 28 (benchmarks/explain_quadrature.py). Another `method` (any captum quadrature) starts
    each round afresh. Parameters need no gradients (frozen for the call), so each
    backward computes input gradients only; f(x) and f(baseline) come from one forward of two rows.

    Args:
        model: a transformers model (any head); its attention implementation is left as is.
        tokenizer: the model's tokenizer (for the special and padding token ids of the baseline).
        input_ids: one unpadded sequence, special tokens included.
        selector: model output -> one scalar per batch row (see the selectors in this module).
        token_type_ids: segment ids for pairs; zeros when omitted.
        extra_inputs: further model keyword arguments, each a tensor with a leading batch axis of
            size 1, expanded to every interpolation batch (e.g. the relation head's
            ``entity_positions`` of shape (1, 2)); they are held fixed, not attributed.
        n_steps: most integration steps (the last round uses at most this many).
        start_steps: integration steps of the first round (at most `n_steps`).
        tolerance: relative completeness tolerance (see above).
        atol: absolute tolerance, for targets that hardly move from the baseline.
        internal_batch_size: interpolation steps per forward/backward (default: ``TOKENS_PER_BATCH // T``).
        method: ``nested_trapezoid`` (default), or a captum quadrature (``gausslegendre``, ...).

    Returns:
        An :class:`Attribution`; ``scores.sum() - (value - baseline_value) == delta``.
    """
    import torch
    from captum.attr import LayerIntegratedGradients

    if n_steps < 1:
        raise ValueError(f"expected n_steps >= 1, found {n_steps}")
    dev = model.device
    ids = torch.tensor([input_ids], device=dev)
    base = torch.tensor([baseline_ids(input_ids, tokenizer)], device=dev)
    types = torch.tensor([token_type_ids if token_type_ids is not None else [0] * len(input_ids)], device=dev)
    mask = torch.ones_like(ids)
    extra = batch_inputs(extra_inputs, dev)
    batch = internal_batch_size or max(1, TOKENS_PER_BATCH // len(input_ids))

    def forward(inp: Any, tt: Any, am: Any) -> Any:
        n = inp.shape[0]
        more = {k: v.expand(n, *v.shape[1:]) for k, v in extra.items()}
        return selector(model(input_ids=inp, token_type_ids=tt.expand(n, -1), attention_mask=am.expand(n, -1), **more))

    rounds: list[tuple[int, float, float]] = []
    nested = method == NESTED
    with _frozen(model):
        with torch.no_grad():
            value, base_value = (float(v) for v in forward(torch.cat([ids, base]), types, mask))
        diff = value - base_value
        lig = LayerIntegratedGradients(forward, embedding_layer(model))

        def quadrature(points: int, rule: str) -> np.ndarray:
            attr = lig.attribute(ids, baselines=base, additional_forward_args=(types, mask), n_steps=points,
                                 method=rule, internal_batch_size=min(batch, points))
            return attr.sum(dim=-1)[0].detach().double().cpu().numpy()

        # captum's midpoints need 2 or more points: a nested rule that can double starts at 2 intervals
        steps = min(max(start_steps, 2 if nested else 1), n_steps)
        scores = np.zeros(len(input_ids))
        while True:
            t0 = time.perf_counter()
            if not nested:
                scores = quadrature(steps, method)
            elif not rounds:  # captum's trapezoid weights sum to (points - 1) / points: rescaled to sum to 1
                scores = quadrature(steps + 1, "riemann_trapezoid") * (steps + 1) / steps
            else:  # T_steps from T_(steps/2) and the steps/2 midpoints it lacks
                scores = (scores + quadrature(steps // 2, "riemann_middle")) / 2
            delta = float(scores.sum() - diff)
            rounds.append((steps, delta, time.perf_counter() - t0))
            converged = abs(delta) <= max(tolerance * abs(diff), atol)
            if converged or steps >= n_steps or (nested and 2 * steps > n_steps):
                break
            steps = 2 * steps if nested else min(2 * steps, n_steps)
    return Attribution(scores, delta, value, base_value, steps, converged, tolerance, rounds)
