"""Map window tokens back to the characters of the original text, each character exactly once.

Overlapping windows tokenize the same text, so a token in an overlap appears in two windows with
the same character offsets; it is shown once, from the window where it is most central (the
rule NER decoding uses, chunking.centrality).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..chunking import Window, centrality


@dataclass(frozen=True)
class TokenRef:
    """A token shown in the report: characters [start, end) of the text, from `window` at `position`."""

    start: int
    end: int
    window: int
    position: int


def owner_tokens(windows: Sequence[Window], only: set[int] | None = None) -> list[TokenRef]:
    """One token per distinct character span, taken from its most central window.

    Args:
        windows: the windows of ONE document (from chunking.tokenize_windows on raw text).
        only: restrict to these window indices (e.g. the windows that were attributed).

    Returns:
        Tokens sorted by start, non-overlapping (a span overlapping its predecessor is clipped; an
        empty remainder is dropped), covering every character any token covers.
    """
    best: dict[tuple[int, int], tuple[int, int, int]] = {}
    for wi, win in enumerate(windows):
        if only is not None and wi not in only:
            continue
        cen = centrality(win)
        for p in win.content_positions:
            off = win.offsets[p]
            if off is None or off[1] <= off[0]:
                continue
            key = (int(off[0]), int(off[1]))
            if key not in best or cen.get(p, 0) > best[key][0]:
                best[key] = (cen.get(p, 0), wi, p)
    out: list[TokenRef] = []
    for (s, e), (_, wi, p) in sorted(best.items()):
        if out and s < out[-1].end:
            s = out[-1].end
        if s < e:
            out.append(TokenRef(s, e, wi, p))
    return out


def segments(text: str, tokens: Sequence[TokenRef]) -> list[tuple[int, int, TokenRef | None]]:
    """Partition ``range(len(text))`` into consecutive token segments and the gaps between them."""
    out: list[tuple[int, int, TokenRef | None]] = []
    pos = 0
    for tok in tokens:
        if tok.start > pos:
            out.append((pos, tok.start, None))
        out.append((tok.start, tok.end, tok))
        pos = tok.end
    if pos < len(text):
        out.append((pos, len(text), None))
    return out


def word_spans(tokenizer: Any, text: str) -> list[tuple[int, int]]:
    """Word boundaries from the tokenizer's own pre-tokenizer (whitespace and punctuation for BERT)."""
    pre = getattr(getattr(tokenizer, "backend_tokenizer", None), "pre_tokenizer", None)
    if pre is not None:
        return [(int(s), int(e)) for _, (s, e) in pre.pre_tokenize_str(text)]
    return [m.span() for m in re.finditer(r"\w+|[^\w\s]", text)]


def word_scores(tokens: Sequence[TokenRef], token_score: dict[tuple[int, int], float],
                words: Sequence[tuple[int, int]]) -> list[tuple[int, int, float]]:
    """Merge subword scores into words: a word's score is the sum of its scored tokens' scores.

    Args:
        tokens: owner tokens of the document.
        token_score: (window, position) -> score, for the tokens that were attributed.
        words: word spans from :func:`word_spans`, sorted.

    Returns:
        (start, end, score) for each word that has at least one scored token.
    """
    starts = [w[0] for w in words]
    acc: dict[int, float] = {}
    for tok in tokens:
        key = (tok.window, tok.position)
        if key not in token_score:
            continue
        i = bisect.bisect_right(starts, tok.start) - 1
        if i < 0 or tok.start >= words[i][1]:  # a token outside any pre-tokenized word: its own word
            acc_key = -1 - tok.start
        else:
            acc_key = i
        acc[acc_key] = acc.get(acc_key, 0.0) + float(token_score[key])
    out = []
    for k, v in acc.items():
        if k >= 0:
            out.append((words[k][0], words[k][1], v))
        else:
            tok = next(t for t in tokens if t.start == -1 - k)
            out.append((tok.start, tok.end, v))
    return sorted(out)
