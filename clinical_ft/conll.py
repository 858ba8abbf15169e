"""CoNLL/IOB reading and writing: `token<TAB>tag` (or space separated), blank line between sentences.

Typed (`B-Disease`) and untyped (`B`, `I`, `O`) tags are accepted. An `I-` tag that does not
continue a chunk of the same type (after `O`, at a sentence start, or after another type) starts a
new chunk under IOB2 rules: it is rewritten to `B-` and counted in the report, never dropped.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InputError

TAG_RE = re.compile(r"^(O|[BI](-\S+)?)$")


@dataclass
class Sentence:
    """One sentence: words, gold tags (None when the file has no tag column) and where it came from."""

    words: list[str]
    tags: list[str] | None
    source: str
    line: int  # 1-based line of the first token
    doc_id: str = ""


@dataclass
class ReadReport:
    sentences: int = 0
    tokens: int = 0
    iob_repairs: list[int] = field(default_factory=list)  # lines where I- became B-
    docstart_lines: int = 0


def chunk_type(tag: str) -> str:
    return tag[2:] if len(tag) > 2 else ""


def _repair(tags: list[str], lines: list[int], report: ReadReport) -> list[str]:
    out: list[str] = []
    prev = "O"
    for tag, ln in zip(tags, lines):
        if tag.startswith("I") and (prev == "O" or chunk_type(prev) != chunk_type(tag)):
            tag = "B" + tag[1:]
            report.iob_repairs.append(ln)
        out.append(tag)
        prev = tag
    return out


def read_conll(path: str | Path, *, require_tags: bool = True) -> tuple[list[Sentence], ReadReport]:
    """Read a CoNLL/IOB file.

    Args:
        path: the file. Columns are tab separated (or whitespace separated when a line has no tab);
            the first column is the token, the last the tag; every line must have the same number.
        require_tags: if False, one-column files (tokens only) are accepted and `tags` is None.

    Raises:
        InputError: non-UTF-8 bytes, a wrong column count, a malformed tag, or no sentence at all,
            naming the file and line.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(path, None, "a readable CoNLL file", str(exc)) from None
    report = ReadReport()
    sentences: list[Sentence] = []
    words: list[str] = []
    tags: list[str] = []
    lines: list[int] = []
    ncols: int | None = None

    def flush() -> None:
        if words:
            has_tags = ncols is not None and ncols > 1
            fixed = _repair(tags, lines, report) if has_tags else None
            sentences.append(Sentence(list(words), fixed, str(path), lines[0], f"{path.name}:{lines[0]}"))
            report.tokens += len(words)
            words.clear(), tags.clear(), lines.clear()

    for ln, bline in enumerate(raw.split(b"\n"), start=1):
        try:
            line = bline.decode("utf-8").rstrip("\r")
        except UnicodeDecodeError as exc:
            raise InputError(path, ln, "UTF-8 text", f"byte 0x{bline[exc.start]:02x} at column {exc.start + 1}") from None
        if not line.strip():
            flush()
            continue
        cols = line.split("\t") if "\t" in line else line.split()
        if cols[0] == "-DOCSTART-":
            report.docstart_lines += 1
            flush()
            continue
        if ncols is None:
            ncols = len(cols)
            if ncols < 2 and require_tags:
                raise InputError(path, ln, "at least 2 columns (token<TAB>tag)", f"{ncols} column: {_clip(line)}")
        if len(cols) != ncols:
            raise InputError(path, ln, f"{ncols} columns like the file's first line", f"{len(cols)}: {_clip(line)}")
        if ncols > 1:
            tag = cols[-1].strip()
            if not TAG_RE.match(tag):
                raise InputError(path, ln, "an IOB tag: O, B, I, B-TYPE or I-TYPE", repr(_clip(tag)))
            tags.append(tag)
        words.append(cols[0])
        lines.append(ln)
    flush()
    if not sentences:
        raise InputError(path, None, "at least one sentence of token/tag lines", "no tokens (empty file)")
    report.sentences = len(sentences)
    return sentences, report


def _clip(text: str, n: int = 40) -> str:
    # error messages name structure, not content: show at most a short prefix of the offending line
    return text if len(text) <= n else text[:n] + "..."


def write_conll(path: str | Path, sentences: Sequence[Sentence], predicted: Sequence[Sequence[str]]) -> None:
    """Write `token<TAB>gold<TAB>pred` (or `token<TAB>pred` without gold) for every input token."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for sent, pred in zip(sentences, predicted, strict=True):
            if len(pred) != len(sent.words):
                raise ValueError(f"{sent.source}:{sent.line}: {len(pred)} predictions for {len(sent.words)} tokens")
            for i, word in enumerate(sent.words):
                cols = [word] + ([sent.tags[i]] if sent.tags is not None else []) + [pred[i]]
                fh.write("\t".join(cols) + "\n")
            fh.write("\n")
    tmp.replace(path)
