"""Relation examples, the BioBERT/BLUE tsv reader and argument marking (DDI-2013 XML: ddi_xml.py).

Both give `RelExample`s: one candidate pair per example. Tsv sentences come with the arguments
masked; document pairs keep the sentence and the two argument spans, marked at encoding time in the
configured style (`RelExample.marked`). Bad document input is counted and reported, never a crash
(policies: clinical_ft/ddi_xml.py).

Marker styles: ``entity_markers`` (``[E1] x [/E1]``), ``typed_markers`` (``[E1:drug] x [/E1:drug]``,
one token pair per argument slot and declared entity type; a pair whose argument type was not
declared falls back to the untyped markers, counted by the task) and ``mask`` (``@DRUG$``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError

MARKERS = ("[E1]", "[/E1]", "[E2]", "[/E2]")
MARKER_STYLES = ("entity_markers", "typed_markers", "mask")
DDI_TYPES = ("drug", "brand", "group", "drug_n")  # entity types of DDI-2013
MASK, OVERLAP_MASK = "@DRUG$", "@DRUG-DRUG$"
# argument masks in tsv files: BLUE/BioBERT (@GENE$, @CHEM-GENE$...) and ChemProt BioBERT (BC6ENTC/G)
TSV_MASK = re.compile(r"@[A-Z][A-Z-]*\$|BC6ENT[CG]")


@dataclass
class RelExample:
    """One candidate pair, arguments marked in `text`.

    Attributes:
        id: pair id (DDI) or tsv index column, else ``file:line``.
        text: the sentence with both arguments marked (entity markers or masks).
        label: gold class, or None when unlabelled.
        source, line: where it came from (line is None for XML).
        doc_id: document id (groups pairs for a dev split carved by document).
        args: character spans (exclusive ends) of the two arguments in an unmarked `text`
            (documents; marked at encoding time in the configured style), or None when `text`
            already carries masks (tsv).
        types: entity types of the two arguments (documents), or None when unknown (tsv).
    """

    id: str
    text: str
    label: str | None
    source: str
    line: int | None
    doc_id: str
    args: tuple[tuple[int, int], tuple[int, int]] | None = None
    types: tuple[str, str] | None = None

    def typed(self, known: Iterable[str]) -> bool:
        """Whether both argument types are among `known` (typed markers exist for them)."""
        return self.types is not None and set(self.types) <= set(known)

    def marked(self, style: str, known_types: Iterable[str] = DDI_TYPES) -> tuple[str, tuple[int, int]]:
        """The text with both arguments marked, and where the two argument markers start
        (-1 when a tsv sentence carries no recognisable mask). ``typed_markers`` falls back to
        untyped markers when an argument type is not in `known_types`."""
        if self.args is None:
            return self.text, _tsv_starts(self.text)
        types = self.types if style == "typed_markers" and self.typed(known_types) else None
        return mark(self.text, self.args[0], self.args[1], style, types)


def _tsv_starts(text: str) -> tuple[int, int]:
    found = [m.start() for m in TSV_MASK.finditer(text)]
    if not found:
        return (-1, -1)
    return (found[0], found[1] if len(found) > 1 else found[0])  # one mask: overlapping arguments


NO_MARKER = "no argument marker"


def marking_note(ex: RelExample) -> str:
    """How `RelExample.marked` reads a pair whose arguments are not two masks, as a note for the
    user ('' when they are, and for document pairs, which always have two argument spans).

    Returns:
        `NO_MARKER` (no mask: no argument position, the task pools at [CLS]), one mask read as
        overlapping arguments, or more than two masks of which the first two are the arguments.
    """
    if ex.args is not None:
        return ""
    n = len(TSV_MASK.findall(ex.text))
    if n == 0:
        return NO_MARKER
    if n == 1:
        return "one argument mask: read as overlapping arguments"
    return "" if n == 2 else f"{n} argument masks: the first two read as the arguments"


def read_tsv(path: str | Path, require_labels: bool = True) -> list[RelExample]:
    """Read a BioBERT/BLUE relation tsv: ``sentence<TAB>label`` or ``index<TAB>sentence<TAB>label``,
    with or without a header line (a header names its columns: ``index``/``id``, ``sentence``/``text``,
    ``label``). Unlabelled input (predict) may also be one sentence per line, or ``index<TAB>sentence``
    under a header.

    Raises:
        InputError: undecodable bytes, a blank line, a row with the wrong number of fields, an empty
            sentence or label — with file and line.
    """
    path = Path(path)
    raw = path.read_bytes().split(b"\n")
    if raw and raw[-1].strip() == b"":
        raw.pop()
    rows: list[tuple[int, list[str]]] = []
    for ln, bline in enumerate(raw, start=1):
        try:
            line = bline.decode("utf-8").rstrip("\r")
        except UnicodeDecodeError as exc:
            raise InputError(path, ln, "UTF-8 text", f"byte 0x{bline[exc.start]:02x}") from None
        rows.append((ln, line.split("\t")))
    if not rows:
        raise InputError(path, None, "at least one `sentence<TAB>label` row", "an empty file")
    first = [f.strip().lower() for f in rows[0][1]]
    ncols = len(first)
    if "sentence" in first or "text" in first:  # header: columns by name
        rows = rows[1:]
        name = {f: i for i, f in enumerate(first)}
        s_col = name.get("sentence", name.get("text"))
        i_col, l_col = name.get("index", name.get("id")), name.get("label")
    else:  # by count: sentence | sentence, label | index, sentence, label
        s_col, i_col, l_col = (1, 0, 2) if ncols == 3 else (0, None, 1 if ncols == 2 else None)
    if ncols > 3 or (require_labels and l_col is None):
        raise InputError(path, 1, "`sentence<TAB>label` or `index<TAB>sentence<TAB>label` rows (optional header)",
                         f"{ncols} field(s)")
    out = []
    for ln, fields in rows:
        if len(fields) != ncols:
            what = "a blank line" if fields == [""] else f"{len(fields)} field(s)"
            raise InputError(path, ln, f"{ncols} tab-separated fields like the first row", what)
        sent = fields[s_col]
        label = fields[l_col].strip() if l_col is not None else None
        if not sent.strip():
            raise InputError(path, ln, "a non-empty sentence", "an empty field")
        if l_col is not None and not label:
            raise InputError(path, ln, "a non-empty label", "an empty field")
        rid = fields[i_col].strip() if i_col is not None else f"{path.name}:{ln}"
        out.append(RelExample(rid, sent, label, str(path), ln, rid))
    return out


def typed_markers(types: Iterable[str]) -> list[str]:
    """``[E1:t] [/E1:t] [E2:t] [/E2:t]`` for every entity type `t`, in a fixed order."""
    return [f"[{c}E{k}:{t}]" for t in types for k in (1, 2) for c in ("", "/")]


def mark(text: str, e1: tuple[int, int], e2: tuple[int, int], style: str,
         types: tuple[str, str] | None = None) -> tuple[str, tuple[int, int]]:
    """Mark two argument spans (exclusive ends) in `text`.

    Args:
        style: ``entity_markers`` (``[E1] x [/E1]``, nested/overlapping spans keep exact offsets),
            ``typed_markers`` (the same with the argument's type, ``[E1:drug] x [/E1:drug]``; untyped
            when `types` is None) or ``mask`` (each argument replaced by ``@DRUG$``; overlapping
            arguments by one ``@DRUG-DRUG$``).
        types: entity types of the two arguments, used by ``typed_markers``.

    Returns:
        The marked text and the positions where the first and second argument markers start.
    """
    if style == "mask":
        if e1[0] < e2[1] and e2[0] < e1[1]:  # overlap: one mask over the union
            a, b = min(e1[0], e2[0]), max(e1[1], e2[1])
            return text[:a] + OVERLAP_MASK + text[b:], (a, a)
        (a1, b1), (a2, b2) = sorted([e1, e2])
        out = text[:a1] + MASK + text[b1:a2] + MASK + text[b2:]
        first, second = a1, a1 + len(MASK) + (a2 - b1)
        return out, (first, second) if e1[0] <= e2[0] else (second, first)
    # (position, rank, arg, string): at one position closing markers come first (inner before
    # outer), then opening markers (outer before inner), so nested spans nest their markers
    ins = []
    for k, (a, b) in ((1, e1), (2, e2)):
        tag = f"E{k}:{types[k - 1]}" if style == "typed_markers" and types else f"E{k}"
        ins.append((a, 2, (a - b, k), k, f"[{tag}] "))
        ins.append((b, 1, (b - a, -k), k, f" [/{tag}]"))
    out, prev, starts = [], 0, [0, 0]
    length = 0
    for pos, rank, _, k, s in sorted(ins):
        out.append(text[prev:pos])
        length += pos - prev
        if rank == 2:
            starts[k - 1] = length
        out.append(s)
        length += len(s)
        prev = pos
    out.append(text[prev:])
    return "".join(out), (starts[0], starts[1])


def add_markers(tokenizer: Any, style: str = "entity_markers", types: Iterable[str] = DDI_TYPES) -> list[int]:
    """Add the marker tokens of `style` as special tokens: [E1] [/E1] [E2] [/E2], and for
    ``typed_markers`` also the typed pair of every declared type in `types` (declared, not seen,
    so that train and predict agree on the vocabulary). No-op for tokens already there (a saved run).

    Returns:
        The ids of the tokens added now (empty when all were there).
    """
    wanted = list(MARKERS) + (typed_markers(types) if style == "typed_markers" else [])
    missing = [m for m in wanted if m not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_tokens(missing, special_tokens=True)
    return tokenizer.convert_tokens_to_ids(missing)
