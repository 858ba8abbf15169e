"""One chunking module for every task: overlapping token windows that keep document id and offsets.

Long inputs are never truncated silently. The tokenizer cuts each document into windows of
`max_length` tokens (special tokens included) that overlap by `stride` tokens
(`return_overflowing_tokens` + `return_offsets_mapping`); every window remembers which document
it came from and which characters of it it covers.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Window:
    """One token window of one document.

    Attributes:
        doc_index: position of the document in the input sequence.
        doc_id: the document's id (admission id, sentence id, question id...).
        window_index: k for the k-th window of this document.
        input_ids: token ids, special tokens included.
        token_type_ids: segment ids (0 for the question/first text, 1 for the context of pairs).
        offsets: per token, (start, end) character offsets into the document (or into the word,
            for pre-split input); special tokens and first-text tokens of pairs are (0, 0)/None.
        word_ids: per token, the word index for pre-split input; else None.
        sequence_ids: per token, 0/1 for the text of a pair, None for special tokens.
        char_start, char_end: the span of the document this window covers (pre-split: word span).
    """

    doc_index: int
    doc_id: str
    window_index: int
    input_ids: list[int]
    token_type_ids: list[int]
    offsets: list[tuple[int, int] | None]
    word_ids: list[int | None] | None
    sequence_ids: list[int | None]
    char_start: int
    char_end: int

    @property
    def content_positions(self) -> list[int]:
        """Token positions that belong to the windowed document (not specials, not the question)."""
        target = 1 if 1 in self.sequence_ids else 0
        return [i for i, s in enumerate(self.sequence_ids) if s == target]


def tokenize_windows(
    tokenizer: Any,
    texts: Sequence[str] | Sequence[Sequence[str]],
    *,
    max_length: int,
    stride: int,
    doc_ids: Sequence[str] | None = None,
    questions: Sequence[str] | None = None,
    is_split_into_words: bool = False,
) -> list[Window]:
    """Cut documents into overlapping windows.

    Args:
        tokenizer: a fast Hugging Face tokenizer.
        texts: raw strings, or lists of words when `is_split_into_words`.
        max_length: tokens per window, special tokens (and the question, for pairs) included.
        stride: tokens shared by consecutive windows.
        doc_ids: one id per text (defaults to the text's position as a string).
        questions: optional first sequence of a pair (QA); only `texts` is windowed.
        is_split_into_words: texts are lists of words (NER); `word_ids` is then filled.

    Returns:
        Windows in document order, then window order. Every document yields >= 1 window.
    """
    if doc_ids is None:
        doc_ids = [str(i) for i in range(len(texts))]
    if len(doc_ids) != len(texts):
        raise ValueError(f"doc_ids has {len(doc_ids)} entries for {len(texts)} texts")
    if not texts:
        return []
    args: tuple = (list(questions), list(texts)) if questions is not None else (list(texts),)
    enc = tokenizer(
        *args,
        max_length=max_length,
        stride=stride,
        truncation="only_second" if questions is not None else True,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        is_split_into_words=is_split_into_words,
    )
    windows: list[Window] = []
    counts: dict[int, int] = {}
    for f, doc in enumerate(enc["overflow_to_sample_mapping"]):
        seq_ids = enc.sequence_ids(f)
        target = 1 if questions is not None else 0
        offsets = [tuple(o) if s == target else None for o, s in zip(enc["offset_mapping"][f], seq_ids)]
        word_ids = enc.word_ids(f) if is_split_into_words else None
        if is_split_into_words:
            content = [w for w, s in zip(word_ids, seq_ids) if s == target and w is not None]
            span = (min(content), max(content) + 1) if content else (0, 0)
        else:
            content = [o for o in offsets if o is not None and o[1] > o[0]]
            span = (content[0][0], content[-1][1]) if content else (0, 0)
        k = counts.get(doc, 0)
        counts[doc] = k + 1
        windows.append(Window(
            doc_index=doc, doc_id=str(doc_ids[doc]), window_index=k,
            input_ids=list(enc["input_ids"][f]),
            token_type_ids=list(enc["token_type_ids"][f]) if "token_type_ids" in enc else [0] * len(seq_ids),
            offsets=offsets, word_ids=word_ids, sequence_ids=list(seq_ids),
            char_start=span[0], char_end=span[1],
        ))
    return windows


def centrality(window: Window) -> dict[int, int]:
    """Distance of each content token to the nearer edge of the window's content (bigger = more central)."""
    pos = window.content_positions
    if not pos:
        return {}
    lo, hi = pos[0], pos[-1]
    return {p: min(p - lo, hi - p) for p in pos}


def best_window_per_word(windows: Sequence[Window]) -> dict[int, tuple[int, int]]:
    """For pre-split input: word index -> (index into `windows`, token position) of its first subword
    in the window where that subword is most central. Each word is assigned exactly once.
    """
    best: dict[int, tuple[int, int, int]] = {}
    for wi, win in enumerate(windows):
        if win.word_ids is None:
            raise ValueError("best_window_per_word needs windows built with is_split_into_words=True")
        cen = centrality(win)
        lo = min(cen) if cen else 0
        for p, w in enumerate(win.word_ids):
            if w is None or p not in cen or (p > 0 and win.word_ids[p - 1] == w):
                continue
            # the window's first token may continue a word whose first piece lies in the previous
            # window; a word's first subword starts at character 0 of the word
            if p == lo and win.window_index > 0 and (win.offsets[p] or (0, 0))[0] > 0:
                continue
            if w not in best or cen[p] > best[w][2]:
                best[w] = (wi, p, cen[p])
    return {w: (wi, p) for w, (wi, p, _) in best.items()}


def fit_questions(tokenizer: Any, questions: list[str], max_length: int, stride: int) -> list[str]:
    """Questions cut (with a warning) to at most half a window, so that each window keeps more than
    `stride` context tokens (longer questions cannot be windowed). Returns the question strings."""
    limit = max(1, min(max_length - stride - 4, max_length // 2))  # 3 special tokens; context > stride
    offsets = tokenizer(questions, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"] if questions else []
    out, cut = [], 0
    for q, offs in zip(questions, offsets):
        if len(offs) > limit:
            q, cut = q[: offs[limit - 1][1]], cut + 1
        out.append(q)
    if cut:
        logging.getLogger("clinical_ft.chunking").warning("%d questions longer than %d tokens were cut to fit max_length %d with stride %d",
                    cut, limit, max_length, stride)
    return out
