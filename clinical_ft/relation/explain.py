"""Explain a relation classifier on marked pairs: the predicted label and its probability, word
attributions (target = the label's log-odds, with the head's ``entity_positions`` passed through,
so an entity-start model is explained on the representation it classifies) and attention.

Input sentences carry their two arguments as ``[E1] x [/E1] ... [E2] y [/E2]`` (re-marked in the
run's own style, so a mask-trained model sees ``@DRUG$``) or as BioBERT masks (``@GENE$``...).
"""

from __future__ import annotations

import dataclasses
import logging
import re
from pathlib import Path
from typing import Any

from ..errors import ClinicalFTError
from ..interpret.attribution import TOLERANCE, class_log_odds, class_prob
from ..interpret.core import (
    attention_views,
    attribute,
    class_table,
    doc_name,
    model_shape,
    top_words_html,
    trust,
    write_report,
)
from ..interpret.html import DocView, TargetView, esc, render_doc
from ..interpret.textmap import owner_tokens, word_spans
from ..taskapi import task_options

log = logging.getLogger("clinical_ft.relation")
MARKER = re.compile(r"\[E([12])(?::([a-z0-9_]+))?\] ?| ?\[/E([12])(?::[a-z0-9_]+)?\]")  # untyped or typed
ATOMS = re.compile(r"\[/?E[12](?::[a-z0-9_]+)?\]|@[A-Z][A-Z-]*\$|BC6ENT[CG]")  # shown (and scored) as one word


def parse_markers(text: str) -> tuple[str, tuple[tuple[int, int], tuple[int, int]], tuple[str, str] | None] | None:
    """Strip ``[E1] x [/E1]`` / ``[E2] y [/E2]`` markers, typed (``[E1:drug]``) or not (the formats
    pairs.mark writes).

    Returns:
        (unmarked text, (span of argument 1, span of argument 2) with exclusive ends, the two
        argument types or None when not both are typed), or None when `text` holds no entity marker.

    Raises:
        ClinicalFTError: markers that are unbalanced, repeated or enclose nothing.
    """
    out, pos, length = [], 0, 0
    opened: dict[str, int] = {}
    types: dict[str, str] = {}
    spans: dict[str, tuple[int, int]] = {}
    for m in MARKER.finditer(text):
        out.append(text[pos:m.start()])
        length += m.start() - pos
        pos = m.end()
        k = m.group(1) or m.group(3)
        if m.group(2):
            types[k] = m.group(2)
        if m.group(1):
            if k in opened:
                raise ClinicalFTError(f"[E{k}] appears twice; expected one [E1]...[/E1] and one [E2]...[/E2]")
            opened[k] = length
        elif k not in opened or k in spans:
            raise ClinicalFTError(f"[/E{k}] without a preceding [E{k}]; expected [E{k}] argument [/E{k}]")
        else:
            spans[k] = (opened[k], length)
    out.append(text[pos:])
    if not opened:
        return None
    missing = [f"[E{k}]...[/E{k}]" for k in "12" if k not in spans]
    if missing:
        raise ClinicalFTError(f"the sentence lacks {' and '.join(missing)}; mark both arguments")
    empty = [f"[E{k}]" for k in "12" if spans[k][0] >= spans[k][1]]
    if empty:
        raise ClinicalFTError(f"argument {' and '.join(empty)} encloses no text")
    typed = (types["1"], types["2"]) if set(types) == {"1", "2"} else None
    return "".join(out), (spans["1"], spans["2"]), typed


def pair_example(pair_id: str, text: str, label: str | None = None, source: str = "text") -> Any:
    """A relation example from one marked sentence (entity markers or BioBERT masks).

    Raises:
        ClinicalFTError: the sentence marks no argument.
    """
    from .pairs import RelExample, _tsv_starts

    parsed = parse_markers(text)
    if parsed is not None:
        plain, args, types = parsed
        return RelExample(pair_id, plain, label, source, None, pair_id, args, **({"types": types} if types else {}))
    if min(_tsv_starts(text)) < 0:
        raise ClinicalFTError(f"pair {pair_id!r}: expected its arguments marked as [E1] x [/E1] ... [E2] y [/E2] "
                              "or as masks such as @DRUG$ / @GENE$ / @DISEASE$; found neither")
    return RelExample(pair_id, text, label, source, None, pair_id)


def atom_spans(tokenizer: Any, text: str) -> list[tuple[int, int]]:
    """Word spans where every marker (``[E1]``) and mask (``@GENE$``) counts as one word."""
    atoms = [m.span() for m in ATOMS.finditer(text)]
    words = [w for w in word_spans(tokenizer, text) if not any(a <= w[0] < b for a, b in atoms)]
    return sorted(words + atoms)


def _marked(ex: Any, opts: Any) -> tuple[str, tuple[int, int]]:
    """The pair marked as the run's encoder sees it (its marker style and declared entity types)."""
    types = getattr(opts, "entity_types", None)
    return ex.marked(opts.marker, types) if types is not None else ex.marked(opts.marker)


def _summary(run: Any, probs: list[float], k: int, gold: str | None, pooling: str, lost: bool,
             win: Any, text: str, words: list[tuple[int, int, float]]) -> str:
    pooled = ("the hidden states at the two argument start markers (entity-start pooling)" if pooling == "entity_start"
              else "the [CLS] hidden state")
    notes = [f"The head classifies {pooled}."]
    if lost:
        notes.append("An argument marker fell outside the model's window: that argument was pooled at [CLS].")
    if len(run.tokenizer(text)["input_ids"]) > run.cfg.max_length:
        notes.append(f"The sentence is longer than one window: characters {win.char_start}-{win.char_end} "
                     "(the window holding both markers most centrally) are explained.")
    if gold is not None:
        notes.append(f"Gold label: {esc(gold)}.")
    name = f"p({run.labels[k]})"
    how = (f"Attributions explain its log-odds f = logit({esc(run.labels[k])}) - logsumexp(other logits)." if words
           else "Attention only (no attributions computed).")
    return (f"<p><b>Predicted: {esc(run.labels[k])}, probability {probs[k]:.4f}.</b> {how} {' '.join(notes)}</p>"
            + class_table(run.labels, probs, k) + top_words_html(text, words, name))


def relation_section(run: Any, ex: Any, n: int, folder: Path, *, attributions: bool = True,
                     n_steps: int = 50, tolerance: float = TOLERANCE) -> str:
    """The report section of one pair (its PNG heatmap written to `folder`)."""
    import torch

    model, tok = run.model, run.tokenizer
    opts = task_options(run.task, run.cfg)
    text, starts = _marked(ex, opts)
    enc = run.task.encode(tok, [dataclasses.replace(ex, label=None)], run.cfg, run.labels)  # gold: shown, not encoded
    win, row = enc.meta[0], enc.dataset[0]
    queries = {"cls": 0}
    extra = None
    lost = False
    if "entity_positions" in row:
        p1, p2 = row["entity_positions"]
        queries |= {"e1": p1, "e2": p2}
        extra = {"entity_positions": torch.tensor([[p1, p2]])}
        lost = not all(any(o and o[0] <= s < o[1] for o in win.offsets) for s in starts)
    views, outputs, pngs = attention_views(model, tok, [win], {0: queries}, png_folder=folder,
                                           doc_name=doc_name(ex.id, n), embed={0},
                                           extra_inputs={0: extra} if extra else None)
    probs = [float(p) for p in torch.softmax(outputs[0].logits[0].float(), dim=-1)]
    k = max(range(len(probs)), key=probs.__getitem__)
    views[0].prob = probs[k]
    tokens, spans = owner_tokens([win]), atom_spans(tok, text)
    main_query = "e1" if extra else "cls"
    target = TargetView(f"{run.labels[k]} (p={probs[k]:.3f}): log-odds", main_query, 0)
    words: list[tuple[int, int, float]] = []
    what = f"p({run.labels[k]})"
    if attributions:
        words = attribute(target, model, tok, win, class_log_odds(k), tokens, spans, n_steps=n_steps,
                          tolerance=tolerance, extra_inputs=extra, view=views[0], prob=class_prob(k), what=what)
    else:
        trust(target, model, tok, win, class_prob(k), views[0], extra_inputs=extra, what=what)
    targets = [target]
    if extra:
        targets.append(TargetView("attention of the second argument's start marker", "e2", 0))
    targets.append(TargetView("attention of [CLS]", "cls", 0))
    layers, heads = model_shape(model)
    summary = _summary(run, probs, k, ex.label, opts.pooling, lost, win, text, words)
    figs = [("rollout and last-layer mean attention", pngs[0])]
    return render_doc(DocView(str(ex.id), text, tokens, views, targets, layers, heads, 0, summary, figs), n)


def explain_relation(run: Any, pairs: list[Any], out_html: str | Path, *, attributions: bool = True,
                     n_steps: int = 50, tolerance: float = TOLERANCE) -> Path:
    """Write one self-contained HTML report explaining a relation classifier's predictions.

    Args:
        run: a loaded relation run (engine.Run), [CLS] or entity-start pooling.
        pairs: (id, marked sentence) pairs, or pairs.RelExample objects (e.g. from a tsv).
        out_html: report path to write; PNG heatmaps go to ``<stem>_heatmaps/`` beside it.
        attributions: compute integrated gradients of the predicted label's log-odds.
        n_steps: most integration steps.
        tolerance: integrated gradients add steps until |delta| <= tolerance * |f(x) - f(baseline)|.

    Returns:
        The path of the HTML report.

    Raises:
        ClinicalFTError: a sentence whose arguments are not marked.
    """
    examples = [pair_example(str(p[0]), p[1]) if isinstance(p, tuple) else p for p in pairs]
    return write_report(run, out_html, "Relation explanations", "pair", examples,
                        lambda ex, n, folder: relation_section(run, ex, n, folder, attributions=attributions,
                                                               n_steps=n_steps, tolerance=tolerance),
                        attributions=attributions, n_steps=n_steps, tolerance=tolerance)
