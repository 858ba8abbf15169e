"""MIMIC-III tables read robustly, and the report of every admission or note `prepare` leaves out.

Tables are read as UTF-8 with undecodable bytes kept as surrogates (never a raw
``UnicodeDecodeError``), so a bad byte in a column that is not used does not matter and one in a
used column is found and reported by row. Rows are numbered from 1, header excluded, as in
notes.py. The report lists what the ClinicalBERT protocol excludes (newborns, in-hospital deaths,
...) apart from what could not be used (no qualifying note, unreadable note text, ...); it holds
ids, rows and reasons, never note text.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .notes import NOT_UTF8, atomic_csv, malformed

PROTOCOL = "excluded by protocol"
SKIPPED = "skipped"
_READ = {"encoding": "utf-8", "encoding_errors": "surrogateescape"}


@dataclass
class Dropped:
    """One admission (ADMISSIONS row) or note (NOTEEVENTS row) that is in no prepared split, and why."""

    table: str
    row: int
    id: str
    reason: str
    kind: str  # PROTOCOL or SKIPPED


@dataclass
class MimicReport:
    """Everything `build_with_report` left out, with the reason of each."""

    dropped: list[Dropped] = field(default_factory=list)

    def add(self, table: str, frame: Any, reason: str, kind: str = SKIPPED) -> None:
        """Record every row of `frame` (columns CSV_ROW and HADM_ID) as dropped for `reason`."""
        self.dropped += [Dropped(table, int(r), str(i), reason, kind)
                         for r, i in zip(frame["CSV_ROW"], frame["HADM_ID"])]

    def counts(self, kind: str | None = None) -> dict[str, int]:
        """Reason -> number of rows, in the order reasons were first recorded (one `kind` or all)."""
        return dict(Counter(d.reason for d in self.dropped if kind in (None, d.kind)))

    def ids(self, reason: str) -> list[str]:
        """HADM_IDs dropped for `reason`."""
        return [d.id for d in self.dropped if d.reason == reason]

    def total(self, kind: str) -> int:
        return sum(d.kind == kind for d in self.dropped)

    def write(self, path: str | Path) -> Path:
        """``skipped.csv``: table, row, id (HADM_ID), kind, reason (header only when nothing was dropped)."""
        return atomic_csv(path, ["table", "row", "id", "kind", "reason"],
                          [[d.table, d.row, d.id, d.kind, d.reason]
                           for d in sorted(self.dropped, key=lambda d: (d.table, d.row))])


def header(path: Path) -> list[str]:
    """Column names of a CSV table."""
    return read_csv(path, nrows=0).columns.tolist()


def _errors(path: Path, exc: Exception) -> InputError:
    import pandas as pd

    if isinstance(exc, pd.errors.EmptyDataError):
        return InputError(path, 1, "a header row naming the MIMIC-III columns", "an empty file")
    if isinstance(exc, UnicodeError):  # surrogates in the header, which pandas cannot store
        return InputError(path, 1, "a UTF-8 header row", "bytes that are not UTF-8 (re-save the table as UTF-8)")
    return malformed(path, exc)


def read_csv(path: Path, columns: list[str] | None = None, **kw: Any) -> Any:
    """pandas.read_csv, text as ``object`` (pandas' own string type cannot hold undecoded bytes), then
    `columns` only. All columns are parsed, because with ``usecols`` pandas silently drops the extra
    fields of a ragged line. Decoding and parser errors become InputError naming the file."""
    import pandas as pd

    try:
        frame = pd.read_csv(path, dtype=object, **_READ, **kw)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeError) as exc:
        raise _errors(path, exc) from None
    return frame if columns is None or "chunksize" in kw else frame[columns]


def read_chunks(path: Path, chunksize: int, columns: list[str], **kw: Any) -> Iterator[Any]:
    """Blocks of `chunksize` rows of `columns` plus CSV_ROW (1-based data row); errors become InputError."""
    import pandas as pd

    reader = read_csv(path, chunksize=chunksize, **kw)
    while True:
        try:
            part = next(reader, None)
        except (pd.errors.ParserError, UnicodeError) as exc:
            raise _errors(path, exc) from None
        if part is None:
            return
        part = part[columns].copy()
        part["CSV_ROW"] = part.index + 1
        yield part


def not_utf8(series: Any) -> np.ndarray:
    """Boolean mask: values holding bytes that were not UTF-8 (surrogates; a Python scan, as pandas'
    string methods cannot handle them)."""
    return np.fromiter((isinstance(v, str) and NOT_UTF8.search(v) is not None for v in series), bool, len(series))


def scrub(frame: Any, columns: list[str]) -> None:
    """Replace bytes that were not UTF-8 in `columns` by U+FFFD, in place, so pandas can handle the text."""
    import pandas as pd

    for c in columns:
        bad = not_utf8(frame[c])
        if bad.any():
            frame[c] = pd.Series([NOT_UTF8.sub("\ufffd", v) if b else v for v, b in zip(frame[c], bad)],
                                 index=frame.index, dtype=object)


def check_utf8(frame: Any, columns: list[str], path: Path) -> None:
    """InputError naming the first row whose `columns` hold bytes that were not UTF-8."""
    for c in columns:
        bad = not_utf8(frame[c])
        if bad.any():
            raise InputError(f"{path}, row {int(frame['CSV_ROW'][bad].iloc[0])}", None,
                             f"UTF-8 text in column {c}", "bytes that are not UTF-8 (re-save the table as UTF-8)")


def int_ids(frame: Any, column: str, path: Path) -> Any:
    """`column` of `frame` (read as text) as int64; the first value that is not a whole number is an InputError."""
    import pandas as pd

    text = frame[column].astype(str).str.strip()
    num = pd.to_numeric(text, errors="coerce")
    bad = (num.isna() | (num % 1 != 0)).to_numpy()
    if bad.any():
        value = text[bad].iloc[0]
        found = repr(value) if len(value) <= 20 else f"a {len(value)}-character value (not shown)"
        raise InputError(f"{path}, row {int(frame['CSV_ROW'][bad].iloc[0])}", None,
                         f"{column} as a whole number", found if value else "an empty value")
    return num.astype("int64")
