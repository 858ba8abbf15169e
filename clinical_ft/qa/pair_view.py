"""Question + context as the QA explanations show it: the question, a blank line, then the
context; the explained window's tokens of both mapped onto that text, its attention, and the
report section built from them. Shared by extractive (qa_explain.py) and yes/no (yesno_explain.py)
explanations.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..chunking import Window, fit_questions, tokenize_windows
from ..interpret.core import attention_views, doc_name, model_shape
from ..interpret.html import ChunkView, DocView, TargetView, render_doc
from ..interpret.textmap import TokenRef, owner_tokens

GAP = "\n\n"  # between question and context in the shown text


def question_tokens(tokenizer: Any, question: str, win: Window) -> list[TokenRef]:
    """The question's tokens in `win` (sequence 0), with character offsets into `question`; empty
    when the pair's question tokens do not line up with the question tokenized alone."""
    positions = [i for i, s in enumerate(win.sequence_ids) if s == 0]
    offsets = tokenizer(question, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    if len(offsets) != len(positions):
        return []
    return [TokenRef(int(a), int(b), 0, p) for (a, b), p in zip(offsets, positions) if b > a]


def question_windows(tokenizer: Any, cfg: Any, ex: Any) -> tuple[str, list[Window]]:
    """The question as the model sees it (cut to fit, as in training) and the question + context
    windows, exactly as the QA tasks encode them."""
    question = fit_questions(tokenizer, [ex.question], cfg.max_length, cfg.stride)[0]
    return question, tokenize_windows(tokenizer, [ex.context], max_length=cfg.max_length, stride=cfg.stride,
                                      doc_ids=[ex.id], questions=[question])


def forward(model: Any, win: Window) -> Any:
    """The model's output on one window (no gradients)."""
    import torch

    ids = torch.tensor([win.input_ids], device=model.device)
    with torch.no_grad():
        return model(input_ids=ids, token_type_ids=torch.tensor([win.token_type_ids], device=model.device),
                     attention_mask=torch.ones_like(ids))


@dataclass
class PairView:
    """One question + context as the report shows it: the text (question, blank line, context),
    the explained window's tokens mapped onto it, and that window's attention."""

    text: str
    shift: int  # where the context starts in `text`
    tokens: list[TokenRef]
    question_aligned: bool
    window: int  # index of the explained window in the context's windows
    view: ChunkView
    png: bytes


def pair_view(run: Any, ex: Any, question: str, windows: list[Window], w: int, queries: dict[str, int],
              folder: Path, n: int, prob: float | None) -> PairView:
    """Attention of window `w` (its PNG written to `folder`) and its tokens over question + context."""
    tok, win = run.tokenizer, windows[w]
    shift = len(question) + len(GAP)
    q_toks = question_tokens(tok, question, win)
    tokens = q_toks + [TokenRef(t.start + shift, t.end + shift, 0, t.position) for t in owner_tokens([win])]
    views, _, pngs = attention_views(run.model, tok, [win], {0: queries}, png_folder=folder,
                                     doc_name=doc_name(ex.id, n), embed={0}, probs=[prob], indices=[w],
                                     n_windows=len(windows))
    views[0].char_start, views[0].char_end = 0, win.char_end + shift  # the question is part of the window
    return PairView(question + GAP + ex.context, shift, tokens, bool(q_toks) or not question.strip(), w, views[0],
                    pngs[0])


def window_note(windows: list[Window], w: int, cfg: Any, why: str) -> str:
    """The sentence saying which window of a long context is explained (empty for one window)."""
    if len(windows) < 2:
        return ""
    win = windows[w]
    return (f"The context is longer than one window ({len(windows)} windows of {cfg.max_length} tokens, "
            f"stride {cfg.stride}): window {w + 1} (context characters {win.char_start}-{win.char_end}), "
            f"{why}, is the one explained; the rest of the context is shown uncoloured.")


def render_pair(run: Any, ex: Any, pv: PairView, targets: list[TargetView], summary: str, n: int,
                marks: list[tuple[int, int]] | None = None) -> str:
    """The report section of one question from its PairView."""
    layers, heads = model_shape(run.model)
    figs = [(f"window {pv.window + 1}: rollout and last-layer mean attention", pv.png)]
    return render_doc(DocView(str(ex.id), pv.text, pv.tokens, [pv.view], targets, layers, heads, 0, summary, figs,
                              marks or []), n)


def pair_notes(pv: PairView) -> list[str]:
    """Caveats of the pair display (a question whose tokens could not be placed)."""
    return [] if pv.question_aligned else ["The question's tokens could not be aligned with its characters: "
                                           "it is not coloured."]
