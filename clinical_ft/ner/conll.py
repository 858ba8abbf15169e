"""CoNLL/IOB reading and writing: `token<TAB>tag` (or space separated), blank line between sentences.

Typed (`B-Disease`) and untyped (`B`, `I`, `O`) tags are accepted. An `I-` tag that does not
continue a chunk of the same type (after `O`, at a sentence start, or after another type) starts a
new chunk under IOB2 rules: it is rewritten to `B-` and its line is recorded, never dropped.
A UTF-8 byte-order mark at the start of the file is not part of the first token.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..atomic import atomic_open
from ..errors import InputError

TAG_RE = re.compile(r"^(O|[BI](-\S+)?)$")


@dataclass
class Sentence:
    """One sentence: words, gold tags (None when the file has no tag column) and where it came from."""

    words: list[str]
    tags: list[str] | None
    source: str
    line: int  # 1-based line of the first token; token i is on line `line + i`
    doc_id: str = ""
    iob_repairs: list[int] = field(default_factory=list)  # lines of this sentence where I- was read as B-


@dataclass
class ReadReport:
    sentences: int = 0
    tokens: int = 0
    iob_repairs: list[int] = field(default_factory=list)  # lines where I- became B-
    docstart_lines: int = 0


def typed(tag: str) -> str:
    """Untyped B/I tags become B-bio/I-bio for seqeval, as BioBERT does."""
    return tag + "-bio" if tag in ("B", "I") else tag


def chunk_type(tag: str) -> str:
    return tag[2:] if len(tag) > 2 else ""


def _repair(tags: list[str], lines: list[int]) -> tuple[list[str], list[int]]:
    """IOB2 repair: tags with every chunk-opening I- read as B-, and the lines that changed."""
    out: list[str] = []
    changed: list[int] = []
    prev = "O"
    for tag, ln in zip(tags, lines):
        if tag.startswith("I") and (prev == "O" or chunk_type(prev) != chunk_type(tag)):
            tag = "B" + tag[1:]
            changed.append(ln)
        out.append(tag)
        prev = tag
    return out, changed


def _decode(path: Path, ln: int, bline: bytes) -> str:
    """One line as text (a BOM at the start of line 1 dropped), without its trailing CR."""
    try:
        return bline.decode("utf-8-sig" if ln == 1 else "utf-8").rstrip("\r")
    except UnicodeDecodeError as exc:
        raise InputError(path, ln, "UTF-8 text", f"byte 0x{bline[exc.start]:02x} at column {exc.start + 1}") from None


def is_docstart(cols: list[str]) -> bool:
    """Whether a line's columns are a CoNLL document separator (``-DOCSTART- ...``)."""
    return bool(cols) and cols[0] == "-DOCSTART-"


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
            fixed, changed = _repair(tags, lines) if ncols is not None and ncols > 1 else (None, [])
            sentences.append(Sentence(list(words), fixed, str(path), lines[0], f"{path.name}:{lines[0]}", changed))
            report.iob_repairs.extend(changed)
            report.tokens += len(words)
            words.clear(), tags.clear(), lines.clear()

    for ln, bline in enumerate(raw.split(b"\n"), start=1):
        line = _decode(path, ln, bline)
        if not line.strip():
            flush()
            continue
        cols = line.split("\t") if "\t" in line else line.split()
        if is_docstart(cols):
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
    """Copy the CoNLL file `sentences` were read from to `path`, adding the prediction as a new last column.

    Every input line is kept as it was: all columns (POS, chunk, the gold tag as written, before
    any IOB2 repair), blank lines and ``-DOCSTART-`` lines, which get ``O`` so that every non-blank
    line has the same number of columns (as conlleval expects). The new column is separated by a
    tab, or by a space where the line's columns are space separated.

    Raises:
        ValueError: sentences from several files, a prediction count that differs from a sentence's
            token count, or a source file that changed since it was read.
        InputError: the source file can no longer be read as UTF-8.
    """
    tags_at: dict[int, str] = {}
    for sent, pred in zip(sentences, predicted, strict=True):
        if len(pred) != len(sent.words):
            raise ValueError(f"{sent.source}:{sent.line}: {len(pred)} predictions for {len(sent.words)} tokens")
        tags_at.update({sent.line + i: tag for i, tag in enumerate(pred)})
    sources = {s.source for s in sentences}
    if len(sources) != 1:
        raise ValueError(f"expected sentences read from one CoNLL file, found {len(sources)} sources")
    source = Path(sources.pop())
    out = Path(path)
    raw_lines = source.read_bytes().split(b"\n")
    with atomic_open(out, newline="") as fh:
        for ln, bline in enumerate(raw_lines, start=1):
            line = _decode(source, ln, bline)
            cols = line.split("\t") if "\t" in line else line.split()
            if ln in tags_at or (line.strip() and is_docstart(cols)):
                sep = " " if "\t" not in line and len(cols) > 1 else "\t"
                line += sep + tags_at.pop(ln, "O")
            elif line.strip():
                raise ValueError(f"{source}:{ln}: a token line without a prediction; was the file changed after reading?")
            fh.write(line + ("\r" if bline.endswith(b"\r") else "") + ("\n" if ln < len(raw_lines) else ""))
        if tags_at:  # raised inside the block: the output is not written
            raise ValueError(f"{source}: {len(tags_at)} predictions for lines that are not token lines (file changed?)")
