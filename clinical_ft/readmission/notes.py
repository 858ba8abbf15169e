"""Notes CSVs: column mapping, row checks, streaming in bounded memory, reports of skipped rows.

One reader serves training splits (strict: any bad row is an :class:`InputError` naming file, row
and what was expected) and prediction (lenient: a bad row becomes a :class:`Skip` with a reason,
reported in ``<out stem>.skipped.csv`` beside the predictions, or ``skipped.csv`` in a prepared
folder). Rows are numbered from 1, header excluded (a quoted note may span several physical lines,
so rows are not lines). The admission attributes of :data:`GROUP_COLUMNS`, when the CSV has them
(``prepare`` writes them from MIMIC-III), are read by name into ``Note.attrs``; other columns are
ignored.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..atomic import atomic_open
from ..errors import InputError

DEFAULT_COLUMNS = {"id": "admission_id", "text": "text", "label": "label", "subject": "subject_id"}
LABEL_NAMES = ["not_readmitted", "readmitted"]
NOTE_COLUMNS = tuple(DEFAULT_COLUMNS)  # the column roles a card or the command line may rename
GROUP_COLUMNS = ("gender", "age_group", "admission_type", "insurance", "ethnicity")  # subgroups, read by name
AGE_GROUPS = ("<18", "18-39", "40-64", "65-79", "80+")  # the age_group values prepare writes
_LABELS = {"0": 0, "1": 1, "0.0": 0, "1.0": 1, "false": 0, "true": 1, "no": 0, "yes": 1}
NOT_UTF8 = re.compile("[\udc80-\udcff]")  # bytes that were not UTF-8, kept as surrogates
_PARSER_LINE = re.compile(r"line (\d+)")


@dataclass
class Note:
    """One admission's note text. `label` is 1 (readmitted within 30 days), 0, or None (unlabelled).

    `attrs`: the admission's non-empty :data:`GROUP_COLUMNS` values (e.g. ``{"gender": "F"}``).
    """

    id: str
    text: str
    label: int | None
    row: int
    subject: str | None = None
    attrs: dict[str, str] = field(default_factory=dict)


@dataclass
class Skip:
    """A row that could not be scored, and why."""

    row: int
    id: str
    reason: str


def column_map(columns: dict[str, str] | None) -> dict[str, str]:
    """Role -> CSV column name: defaults (admission_id, text, label, subject_id) updated by `columns`."""
    out = dict(DEFAULT_COLUMNS)
    for role, name in (columns or {}).items():
        if role not in DEFAULT_COLUMNS:
            raise InputError("columns", None, f"roles {sorted(DEFAULT_COLUMNS)}", repr(role))
        out[role] = name
    return out


def parse_label(value: str) -> int | None:
    """0/1 (also 0.0/1.0, true/false, yes/no); None for anything else."""
    return _LABELS.get(str(value).strip().lower())


def iter_blocks(path: str | Path, columns: dict[str, str] | None = None, *, labels: str = "optional",
                strict: bool = False, block_size: int = 1000) -> Iterator[tuple[list[Note], list[Skip]]]:
    """Read a notes CSV in blocks of `block_size` rows (bounded memory for any file size).

    Args:
        path: CSV with a header row.
        columns: role -> column name overrides (see :data:`DEFAULT_COLUMNS`).
        labels: ``required`` (a 0/1 label per row), ``optional`` (read when the column exists,
            unknown values become None) or ``ignore``.
        strict: raise :class:`InputError` on the first bad row instead of reporting a :class:`Skip`.
        block_size: rows per block.

    Yields:
        (notes, skips) per block. Every row lands in exactly one of the two lists.

    Raises:
        InputError: a missing file or column; a line pandas cannot parse (e.g. more fields than the
            header), in whichever block it falls; any bad row when `strict`.
    """
    import pandas as pd

    path = Path(path)
    cols = column_map(columns)
    if not path.is_file():
        raise InputError(path, None, "an existing notes CSV file", "no such file")
    try:
        reader = pd.read_csv(path, dtype=object, keep_default_na=False, chunksize=block_size,
                             encoding="utf-8", encoding_errors="surrogateescape")
        first = next(iter(reader), None)
    except pd.errors.EmptyDataError:
        raise InputError(path, 1, "a header row naming the columns", "an empty file") from None
    except pd.errors.ParserError as exc:
        raise malformed(path, exc) from None
    if first is None:
        return
    header = [str(c) for c in first.columns]
    need = ["id", "text"] + (["label"] if labels == "required" else [])
    missing = [cols[r] for r in need if cols[r] not in header]
    if missing:
        raise InputError(path, 1, f"columns {[cols[r] for r in need]} in the header (rename with "
                         f"--id-column/--text-column/--label-column)", f"no {missing}; header is {header}")
    use_label = labels != "ignore" and cols["label"] in header
    use_subject = cols["subject"] in header
    groups = [c for c in GROUP_COLUMNS if c in header]
    seen: dict[str, int] = {}

    def bad(row: int, rid: str, reason: str, skips: list[Skip]) -> None:
        if strict:
            raise InputError(f"{path}, row {row}", None, "a scorable note", f"{reason} (admission id {rid!r})")
        skips.append(Skip(row, rid, reason))

    block = first
    while block is not None:
        notes: list[Note] = []
        skips: list[Skip] = []
        for i, rec in zip(block.index, block.to_dict("records")):
            row = int(i) + 1
            rid = str(rec[cols["id"]]).strip()
            text = str(rec[cols["text"]])
            why = row_problem(rid, text, cols["id"], f"row {seen[rid]}" if rid in seen else None)
            if why:
                bad(row, NOT_UTF8.sub("?", rid), why, skips)
            else:
                label = parse_label(rec[cols["label"]]) if use_label else None
                if labels == "required" and label is None:
                    bad(row, rid, f"label in column {cols['label']!r} is {str(rec[cols['label']])!r}, "
                                  "expected 0 or 1", skips)
                    continue
                seen[rid] = row
                subject = (str(rec[cols["subject"]]).strip() or None) if use_subject else None
                notes.append(Note(rid, text, label, row, subject, _attrs(rec, groups)))
        yield notes, skips
        try:
            block = next(reader, None)
        except pd.errors.ParserError as exc:
            raise malformed(path, exc) from None


def row_problem(rid: str, text: str, id_column: str, first_seen: str | None = None) -> str | None:
    """Why a row cannot be scored, or None: a missing id, bytes that are not UTF-8, an id already seen
    (`first_seen` says where, e.g. ``row 3``), an empty note. Shared by every reader of notes to score."""
    if not rid:
        return f"missing id in column {id_column!r}"
    if NOT_UTF8.search(rid) or NOT_UTF8.search(text):
        return "unreadable text: bytes that are not UTF-8"
    if first_seen is not None:
        return f"duplicate admission id (first at {first_seen})"
    if not text.strip():
        return "empty note (no text)"
    return None


def _attrs(rec: dict[str, object], groups: list[str]) -> dict[str, str]:
    """The non-empty group values of a row; bytes that were not UTF-8 become U+FFFD."""
    values = ((c, NOT_UTF8.sub("\ufffd", str(rec[c]).strip())) for c in groups)
    return {c: v for c, v in values if v}


def malformed(path: Path, exc: Exception) -> InputError:
    """The InputError for a CSV pandas cannot parse, at the physical line pandas names when it does."""
    m = _PARSER_LINE.search(str(exc))
    return InputError(path, int(m.group(1)) if m else None,
                      "a well-formed CSV: every row with as many fields as the header (quote text that holds "
                      "commas or line breaks)", str(exc).removeprefix("Error tokenizing data. C error: "))


def load_notes(path: str | Path, columns: dict[str, str] | None = None, *, labels: str = "required") -> list[Note]:
    """All rows of a labelled notes CSV (a training/evaluation split); any bad row raises InputError."""
    return [n for notes, _ in iter_blocks(path, columns, labels=labels, strict=True) for n in notes]


def atomic_csv(path: str | Path, header: list[str], rows: list[list[object]]) -> Path:
    """Write a small CSV atomically (temporary file, then rename)."""
    with atomic_open(path, newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return Path(path)


def write_skips(path: str | Path, skips: list[Skip]) -> Path:
    """A skipped-rows CSV: row, id, reason (header only when nothing was skipped)."""
    return atomic_csv(path, ["row", "id", "reason"], [[s.row, s.id, s.reason] for s in skips])
