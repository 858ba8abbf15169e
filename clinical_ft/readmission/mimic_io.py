"""MIMIC-III tables read robustly, and the report of every admission or note `prepare` leaves out.

Tables are read as UTF-8 with undecodable bytes kept as surrogates (never a raw
``UnicodeDecodeError``), so a bad byte in a column that is not used does not matter and one in a
used column is found and reported by row. Rows are numbered from 1, header excluded, as in
notes.py. The report lists what the ClinicalBERT protocol excludes (newborns, in-hospital deaths,
...) apart from what could not be used (no qualifying note, unreadable note text, ...); it holds
ids, rows and reasons, never note text.

PATIENTS (optional) gives each admission's ``gender`` and ``age_group`` (:func:`read_patients`,
:func:`age_groups`): ages are whole years at ADMITTIME, computed from calendar dates so that the DOB
MIMIC shifts to ~300 years before admission for patients over 89 (outside pandas' timestamps) is
read and banded "80+".
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .notes import AGE_GROUPS, NOT_UTF8, atomic_csv, malformed

PROTOCOL = "excluded by protocol"
SKIPPED = "skipped"
_READ = {"encoding": "utf-8", "encoding_errors": "surrogateescape"}
_DATE = re.compile(r"\s*(\d{4})-(\d{1,2})-(\d{1,2})(?:[ T]\d{1,2}:\d{2}(?::\d{2}(?:\.\d*)?)?)?\s*")
_BANDS = ((18, AGE_GROUPS[0]), (40, AGE_GROUPS[1]), (65, AGE_GROUPS[2]), (80, AGE_GROUPS[3]))


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


def calendar_date(value: str) -> dt.date | None:
    """``YYYY-MM-DD`` with an optional ``HH:MM[:SS]`` as a date (any year 1-9999); None if it is not one."""
    m = _DATE.fullmatch(value)
    try:
        return dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else None
    except ValueError:  # month 13, 30 February, year 0
        return None


def read_patients(path: Path) -> Any:
    """PATIENTS as SUBJECT_ID (int64), GENDER (stripped; "" when the column is missing), DOB_DATE
    (a ``datetime.date``, or None when empty or the column is missing) and CSV_ROW.

    Raises:
        InputError: no SUBJECT_ID column, a malformed line, a non-numeric or duplicate SUBJECT_ID, a
            DOB that is not a date, or bytes that are not UTF-8 in a used column; each names the
            file and row (never the value of a DOB).
    """
    head = header(path)
    if "SUBJECT_ID" not in head:
        raise InputError(path, 1, "MIMIC-III columns ['SUBJECT_ID', 'GENDER', 'DOB']",
                         f"no ['SUBJECT_ID']; header is {head}")
    used = ["SUBJECT_ID"] + [c for c in ("GENDER", "DOB") if c in head]
    pat = read_csv(path, used, keep_default_na=False)
    pat["CSV_ROW"] = np.arange(1, len(pat) + 1)
    check_utf8(pat, used, path)
    pat["SUBJECT_ID"] = int_ids(pat, "SUBJECT_ID", path)
    dup = pat["SUBJECT_ID"].duplicated()
    if dup.any():
        raise InputError(f"{path}, row {int(pat['CSV_ROW'][dup].iloc[0])}", None, "one row per SUBJECT_ID",
                         f"duplicate SUBJECT_ID {pat['SUBJECT_ID'][dup].iloc[0]}")
    pat["GENDER"] = pat["GENDER"].str.strip() if "GENDER" in pat else ""
    given = [str(v) for v in pat["DOB"]] if "DOB" in pat else [""] * len(pat)
    dates = [calendar_date(v) for v in given]
    for row, (value, date) in enumerate(zip(given, dates), start=1):
        if date is None and value.strip():
            raise InputError(f"{path}, row {row}", None, "DOB as YYYY-MM-DD HH:MM:SS (or empty)", "a bad value")
    pat["DOB_DATE"] = dates
    return pat.drop(columns="DOB", errors="ignore")


def age_group(age: int) -> str:
    """The band of an age in whole years: "<18", "18-39", "40-64", "65-79", "80+" ("" below 0)."""
    if age < 0:
        return ""
    return next((name for upper, name in _BANDS if age < upper), AGE_GROUPS[-1])


def age_groups(admit: Sequence[Any], dob: Sequence[Any]) -> tuple[list[str], int]:
    """Age bands at admission (datetimes `admit`; dates or None `dob`): "" without a DOB, or with a
    DOB after the admission; returns the bands and how many DOBs came after their admission."""
    out, after = [], 0
    for t, d in zip(admit, dob):
        if not isinstance(d, dt.date):
            out.append("")
            continue
        age = t.year - d.year - ((t.month, t.day) < (d.month, d.day))
        after += age < 0
        out.append(age_group(age))
    return out, after
