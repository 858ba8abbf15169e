"""How far a report's explanations can be trusted, per explained window: whether integrated gradients
converged, and the faithfulness (comprehensiveness / sufficiency AOPC) of integrated gradients,
attention, attention rollout and a random ranking for the same target."""

from __future__ import annotations

from typing import Any

import numpy as np

from .attribution import Attribution, Selector, batch_inputs
from .faithfulness import FRACTIONS, Faithfulness, aopc, random_ranking
from .html import ChunkView, esc

IG = "integrated gradients"
ATTENTION = "attention (last layer, mean of heads)"
ROLLOUT = "attention rollout"
RANDOM = "random ranking (seed 0)"
NOT_ATTRIBUTIONS = ("Attention weights are not attributions: they say where a token looked, not what moved the "
                    "output; the comprehensiveness and sufficiency beside them measure how far each ranking "
                    "tracks the model's output.")


def model_scorer(model: Any, win: Any, selector: Selector, extra_inputs: dict[str, Any] | None = None) -> Any:
    """Token-id rows of `win`'s length -> `selector` of the model's output on each (no gradients)."""
    import torch

    dev = model.device
    types = torch.tensor([win.token_type_ids], device=dev)
    extra = batch_inputs(extra_inputs, dev)

    def score(rows: np.ndarray) -> np.ndarray:
        ids = torch.as_tensor(rows, device=dev)
        n = ids.shape[0]
        more = {k: v.expand(n, *v.shape[1:]) for k, v in extra.items()}
        with torch.no_grad():
            out = model(input_ids=ids, token_type_ids=types.expand(n, -1), attention_mask=torch.ones_like(ids), **more)
            return selector(out).float().cpu().numpy()

    return score


def window_faithfulness(model: Any, tokenizer: Any, win: Any, selector: Selector, view: ChunkView | None,
                        query: str, ig_scores: np.ndarray | None = None, *,
                        extra_inputs: dict[str, Any] | None = None) -> dict[str, Faithfulness]:
    """AOPC comprehensiveness and sufficiency on window `win` of `selector` (a probability) for the
    rankings available: integrated gradients (`ig_scores`), the `query` token's last-layer mean
    attention and rollout rows (from `view`), and a seeded random ranking. Removed tokens become
    [PAD] (the IG baseline); special tokens ([CLS], [SEP], markers) are kept."""
    n = len(win.input_ids)
    rankings: dict[str, np.ndarray] = {}
    if ig_scores is not None:
        rankings[IG] = np.asarray(ig_scores)
    raw = view.raw.get(query) if view is not None else None
    if raw is not None:
        rankings[ATTENTION], rankings[ROLLOUT] = raw[0], raw[1]
    rankings[RANDOM] = random_ranking(n)
    special = set(tokenizer.all_special_ids)
    candidates = np.array([t not in special for t in win.input_ids])
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return aopc(model_scorer(model, win, selector, extra_inputs), win.input_ids, rankings, candidates, pad)


def faithfulness_html(results: dict[str, Faithfulness], what: str, where: str = "") -> str:
    """A table (one row per ranking) and plain sentences saying which explanation the model's
    behaviour supports, with the statement that attention weights are not attributions."""
    if not results:
        return ""
    pcts = "/".join(f"{100 * q:.0f}" for q in FRACTIONS)
    rows = "".join(f'<tr><td>{esc(name)}</td><td class="num">{f.comprehensiveness:+.4f}</td>'
                   f'<td class="num">{f.sufficiency:+.4f}</td></tr>' for name, f in results.items())
    best = max(results, key=lambda k: results[k].comprehensiveness - results[k].sufficiency)
    rnd = results.get(RANDOM)
    said = []
    for name in (IG, ATTENTION):
        f = results.get(name)
        if f is not None and rnd is not None:
            said.append(f"removing the tokens {esc(name)} ranks highest changes {esc(what)} by {-f.comprehensiveness:+.3f} "
                        f"on average (random tokens: {-rnd.comprehensiveness:+.3f}); keeping only them changes it by "
                        f"{-f.sufficiency:+.3f} (random: {-rnd.sufficiency:+.3f})")
    sentence = ("; ".join(said)[:1].upper() + "; ".join(said)[1:] + ". ") if said else ""
    verdict = (f"The model's behaviour supports <b>{esc(best)}</b> best here (largest comprehensiveness minus "
               f"sufficiency)" + ("; no better than random." if best == RANDOM else "."))
    return (f'<div class="faith"><p><b>Faithfulness{" of " + esc(where) if where else ""}</b> (AOPC over the top '
            f"{pcts}% of tokens, removed or kept alone; removed tokens become [PAD], [CLS]/[SEP] kept; target "
            f"{esc(what)}): comprehensiveness = f(x) - f(x without them), higher is more faithful; sufficiency = "
            f"f(x) - f(only them), lower is more faithful.</p><table><tr><th>ranking</th><th>comprehensiveness "
            f"&uarr;</th><th>sufficiency &darr;</th></tr>{rows}</table><p>{sentence}{verdict}</p>"
            + (f'<p class="note">{NOT_ATTRIBUTIONS}</p>' if ATTENTION in results else "") + "</div>")


def convergence_html(a: Attribution, where: str = "") -> str:
    """One line on integrated gradients' convergence; a warning when it did not converge."""
    diff = a.value - a.baseline_value
    tried = ", ".join(f"{s} steps: {d:+.2e}" for s, d, _ in a.rounds)
    if a.converged:
        # converged under the relative tolerance, or only under the absolute floor (a target that hardly moves)
        rel = f"{100 * a.tolerance:.0f}% of |f(x) - f(baseline)| = {abs(diff):.3g}"
        bound = (f"&le; {rel}" if abs(a.delta) <= a.tolerance * abs(diff)
                 else f"is under the absolute tolerance (not under {rel}: the target hardly moves)")
        return (f'<p class="note">Integrated gradients{" of " + esc(where) if where else ""} converged: |delta| '
                f"{abs(a.delta):.2e} {bound} ({tried}).</p>")
    return (f'<p class="warn"><b>&#9888; Integrated gradients{" of " + esc(where) if where else ""} did not converge'
            f"</b>: |delta| = {abs(a.delta):.3g} is {100 * a.relative_delta:.0f}% of |f(x) - f(baseline)| = "
            f"{abs(diff):.3g} after {a.n_steps} steps (tolerance {100 * a.tolerance:.0f}%; {tried}). The attributions "
            "do not add up to the output difference: read them with caution, or rerun with more --n-steps.</p>")

