"""`prepare`: admission-level readmission datasets from MIMIC-III tables, following ClinicalBERT.

Protocol (kexinhuang12345/clinicalBERT ``preprocess.py``; DESIGN.md section 5):

- label 1 when the next *non-elective* admission of the same patient starts less than 30 days
  after this discharge (elective next admissions are skipped: the one after them counts);
- newborn admissions and in-hospital deaths are removed (after labels are computed);
  ``build_with_report`` lists them, and everything else left out, with its reason;
- discharge setting: the last discharge summary of the admission; early setting: the notes
  charted within `days` days of admission (discharge summaries excluded, admissions that lasted
  less than `days` days removed, so the prediction is made before discharge), concatenated;
- cleaning: lowercase, ``[** ... **]`` de-identification brackets and list numbering removed;
- splits by patient (a patient never crosses splits), 80/10/10 by default; the test split keeps
  its natural prevalence unless ``balanced_test`` (ClinicalBERT's 50/50 subsampling).

Every admission keeps the attributes subgroup evaluation reads (notes.GROUP_COLUMNS): ``gender``
and ``age_group`` from PATIENTS (optional table: without it both are empty), ``admission_type``,
``insurance`` and ``ethnicity`` from ADMISSIONS (INSURANCE and ETHNICITY optional columns).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from . import mimic_io
from .mimic_io import PROTOCOL, MimicReport
from .notes import GROUP_COLUMNS

DEID = re.compile(r"\[\*\*.*?\*\*\]")
LIST_NUMBER = re.compile(r"(?:(?<=\s)|^)\d+\.(?=\s)")  # "1. " list items; decimals such as 98.6 stay
SPACES = re.compile(r"\s+")
ADM_COLS = ["SUBJECT_ID", "HADM_ID", "ADMITTIME", "DISCHTIME", "DEATHTIME", "ADMISSION_TYPE"]
NOTE_COLS = ["SUBJECT_ID", "HADM_ID", "CHARTDATE", "CATEGORY", "TEXT"]
ADM_OPTIONAL = ["HOSPITAL_EXPIRE_FLAG", "INSURANCE", "ETHNICITY"]  # read when present
NEWBORN, DEATH = "newborn admission", "in-hospital death"
FROM_ADMISSIONS = {"admission_type": "ADMISSION_TYPE", "insurance": "INSURANCE", "ethnicity": "ETHNICITY"}
log = logging.getLogger("clinical_ft.readmission")


def clean_text(text: str) -> str:
    """ClinicalBERT-style cleaning: lowercase, drop de-id brackets and list numbers, collapse whitespace."""
    text = DEID.sub(" ", str(text).lower())
    text = LIST_NUMBER.sub(" ", text)
    return SPACES.sub(" ", text).strip()


def find_table(folder: Path, name: str) -> Path:
    """``NAME.csv`` (or ``.csv.gz``, or the synthetic generator's ``NAME_SYNTHETIC.csv``) in `folder`."""
    for cand in (f"{name}.csv", f"{name}.csv.gz", f"{name}_SYNTHETIC.csv"):
        if (folder / cand).is_file():
            return folder / cand
    raise InputError(folder, None, f"{name}.csv (MIMIC-III table; credentialed, bring your own)", "no such file")


def optional_table(folder: Path, name: str) -> Path | None:
    """:func:`find_table`, or None when the table is not in `folder`."""
    try:
        return find_table(folder, name)
    except InputError:
        return None


def _check(df_cols: list[str], need: list[str], path: Path) -> None:
    missing = [c for c in need if c not in df_cols]
    if missing:
        raise InputError(path, 1, f"MIMIC-III columns {need}", f"no {missing}; header is {list(df_cols)}")


def read_admissions(path: Path) -> Any:
    """ADMISSIONS with int64 ids, parsed times and CSV_ROW (the 1-based data row); INSURANCE and
    ETHNICITY are "" when the table lacks them.

    Raises:
        InputError: missing columns, a malformed line, a non-numeric or duplicate HADM_ID, a bad time,
            or bytes that are not UTF-8 in a column that is used; each names the file and row.
    """
    import pandas as pd

    head = mimic_io.header(path)
    _check(head, ADM_COLS, path)
    extra = [c for c in ADM_OPTIONAL if c in head]
    adm = mimic_io.read_csv(path, ADM_COLS + extra, keep_default_na=False)
    adm["CSV_ROW"] = np.arange(1, len(adm) + 1)
    mimic_io.check_utf8(adm, ADM_COLS + extra, path)
    for c in ("INSURANCE", "ETHNICITY"):
        adm[c] = adm[c].str.strip() if c in adm else ""
    for c in ("SUBJECT_ID", "HADM_ID"):
        adm[c] = mimic_io.int_ids(adm, c, path)
    for c in ("ADMITTIME", "DISCHTIME", "DEATHTIME"):
        given = adm[c].str.strip() != ""
        adm[c] = pd.to_datetime(adm[c], errors="coerce", format="ISO8601")
        bad = adm[c].isna() & (given | (c != "DEATHTIME"))
        if bad.any():
            row = int(adm["CSV_ROW"][bad].iloc[0])
            raise InputError(f"{path}, row {row}", None, f"{c} as YYYY-MM-DD HH:MM:SS"
                             + (" (or empty)" if c == "DEATHTIME" else ""), "a missing or bad value")
    dup = adm["HADM_ID"].duplicated()
    if dup.any():
        raise InputError(f"{path}, row {int(adm['CSV_ROW'][dup].iloc[0])}", None, "one row per HADM_ID",
                         f"duplicate HADM_ID {adm['HADM_ID'][dup].iloc[0]}")
    return adm


def add_groups(adm: Any, folder: Path) -> Any:
    """`adm` (from :func:`read_admissions`) with the GROUP_COLUMNS; gender and age_group come from
    the folder's PATIENTS table when there is one (empty otherwise, and for subjects it lacks).

    Raises:
        InputError: a PATIENTS table that cannot be read (see mimic_io.read_patients).
    """
    adm = adm.copy()
    for col, source in FROM_ADMISSIONS.items():
        adm[col] = adm[source].astype(str).str.strip()
    adm["gender"], adm["age_group"] = "", ""
    path = optional_table(folder, "PATIENTS")
    if path is None:
        log.info("no PATIENTS table in %s: gender and age_group are empty", folder)
        return adm
    pat = mimic_io.read_patients(path).set_index("SUBJECT_ID")
    known = adm["SUBJECT_ID"].isin(pat.index)
    adm["gender"] = adm["SUBJECT_ID"].map(pat["GENDER"]).where(known, "")
    adm["age_group"], after = mimic_io.age_groups(adm["ADMITTIME"], adm["SUBJECT_ID"].map(pat["DOB_DATE"]))
    if (~known).any():
        log.warning("%d of %d admissions have no row in %s: their gender and age_group are empty",
                    int((~known).sum()), len(adm), path.name)
    if after:
        log.warning("%d admissions start before the patient's DOB in %s: their age_group is empty", after, path.name)
    return adm


def label_all(adm: Any) -> Any:
    """Add NEXT_ADMITTIME, DAYS_NEXT_ADMIT, LABEL, and EXCLUDED (NEWBORN, DEATH or "") to every admission."""
    import pandas as pd

    adm = adm.sort_values(["SUBJECT_ID", "ADMITTIME"]).reset_index(drop=True)
    g = adm.groupby("SUBJECT_ID")
    nxt_time = g["ADMITTIME"].shift(-1)
    nxt_type = g["ADMISSION_TYPE"].shift(-1)
    elective = nxt_type.astype(str).str.upper() == "ELECTIVE"
    nxt_time = nxt_time.mask(elective)  # an elective next admission does not count ...
    adm["NEXT_ADMITTIME"] = nxt_time.groupby(adm["SUBJECT_ID"]).bfill()  # ... the one after it does
    adm["DAYS_NEXT_ADMIT"] = (adm["NEXT_ADMITTIME"] - adm["DISCHTIME"]).dt.total_seconds() / 86400
    adm["LABEL"] = (adm["DAYS_NEXT_ADMIT"] < 30).astype(int)
    died = adm["DEATHTIME"].notna()
    if "HOSPITAL_EXPIRE_FLAG" in adm:
        died |= pd.to_numeric(adm["HOSPITAL_EXPIRE_FLAG"], errors="coerce").fillna(0) == 1
    newborn = adm["ADMISSION_TYPE"].astype(str).str.strip().str.upper() == "NEWBORN"
    adm["EXCLUDED"] = np.where(newborn, NEWBORN, np.where(died, DEATH, ""))
    return adm


def label_admissions(adm: Any) -> Any:
    """Add NEXT_ADMITTIME, DAYS_NEXT_ADMIT and LABEL; then drop newborns and in-hospital deaths."""
    adm = label_all(adm)
    return adm[adm["EXCLUDED"] == ""].drop(columns="EXCLUDED").reset_index(drop=True)


def admission_notes(notes_path: Path, adm: Any, setting: str, days: int, chunksize: int = 100_000,
                    report: MimicReport | None = None) -> Any:
    """One cleaned text per admission for the setting, streaming NOTEEVENTS in chunks.

    Notes of the admissions in `adm` that are left out (marked ISERROR, text that is not UTF-8, no
    CHARTDATE in the early setting) are recorded in `report` when one is given.

    Raises:
        InputError: missing columns, a malformed line or a HADM_ID that is not a number (file and row).
    """
    import pandas as pd

    report = report if report is not None else MimicReport()
    table = notes_path.name
    head = mimic_io.header(notes_path)
    _check(head, NOTE_COLS, notes_path)
    extra = [c for c in ("CHARTTIME", "ISERROR") if c in head]
    wanted = set(adm["HADM_ID"].astype("int64"))
    admit_day = adm.set_index("HADM_ID")["ADMITTIME"].dt.normalize()
    keep_parts = []
    order = 0
    for part in mimic_io.read_chunks(notes_path, chunksize, NOTE_COLS + extra):
        part["BAD_BYTES"] = mimic_io.not_utf8(part["TEXT"])
        mimic_io.scrub(part, NOTE_COLS + extra)  # the text of BAD_BYTES rows is never used
        part = part[part["HADM_ID"].notna() & (part["HADM_ID"].str.strip() != "")].copy()  # no admission
        part["HADM_ID"] = mimic_io.int_ids(part, "HADM_ID", notes_path)
        part = part[part["HADM_ID"].isin(wanted) & part["TEXT"].notna()]
        is_ds = part["CATEGORY"].astype(str).str.strip().str.lower() == "discharge summary"
        part = part[is_ds] if setting == "discharge" else part[~is_ds]
        if "ISERROR" in part:
            err = ~part["ISERROR"].fillna(0).astype(str).str.strip().isin(["0", "0.0", ""])
            report.add(table, part[err], "note marked as an error (ISERROR)", PROTOCOL)
            part = part[~err]
        report.add(table, part[part["BAD_BYTES"]], "note TEXT has bytes that are not UTF-8")
        part = part[~part["BAD_BYTES"]].copy()
        part["CHARTDATE"] = pd.to_datetime(part["CHARTDATE"], errors="coerce", format="ISO8601")
        if setting == "early":
            undated = part["CHARTDATE"].isna()
            report.add(table, part[undated], "CHARTDATE is not a date (the early setting needs it)")
            age = (part["CHARTDATE"] - part["HADM_ID"].map(admit_day)).dt.total_seconds() / 86400
            part = part[~undated & (age < days)]
        part["ORDER"] = np.arange(order, order + len(part))
        order += len(part)
        keep_parts.append(part.drop(columns=[c for c in ("ISERROR", "CATEGORY", "CSV_ROW", "BAD_BYTES") if c in part]))
    notes = pd.concat(keep_parts) if keep_parts else pd.DataFrame(columns=NOTE_COLS + ["ORDER"])
    sort = ["HADM_ID", "CHARTDATE"] + (["CHARTTIME"] if "CHARTTIME" in notes else []) + ["ORDER"]
    notes = notes.sort_values(sort)
    if setting == "discharge":
        text = notes.groupby("HADM_ID")["TEXT"].last()
    else:
        text = notes.groupby("HADM_ID")["TEXT"].agg(" ".join)
    return text.map(clean_text)


def split_by_patient(subjects: np.ndarray, fractions: tuple[float, float, float], seed: int) -> np.ndarray:
    """'train'/'validation'/'test' per row; all rows of a patient get the same split."""
    uniq = np.unique(subjects)
    rng = np.random.default_rng(seed)
    rng.shuffle(uniq)
    n_tr = int(round(fractions[0] * len(uniq)))
    n_va = int(round(fractions[1] * len(uniq)))
    which = {s: ("train" if i < n_tr else "validation" if i < n_tr + n_va else "test") for i, s in enumerate(uniq)}
    return np.asarray([which[s] for s in subjects])


def build_with_report(mimic_dir: str | Path, setting: str = "discharge", days: int = 3) -> tuple[Any, MimicReport]:
    """Admission-level frame (admission_id, text, label, subject_id and the GROUP_COLUMNS) and the
    report of every admission or note left out, by reason: protocol exclusions apart from rows that
    could not be used."""
    folder = Path(mimic_dir)
    report = MimicReport()
    adm_path = find_table(folder, "ADMISSIONS")
    adm = label_all(add_groups(read_admissions(adm_path), folder))
    for reason in (NEWBORN, DEATH):
        report.add(adm_path.name, adm[adm["EXCLUDED"] == reason], reason, PROTOCOL)
    adm = adm[adm["EXCLUDED"] == ""]
    if setting == "early":
        short = (adm["DISCHTIME"] - adm["ADMITTIME"]).dt.total_seconds() / 86400 < days
        report.add(adm_path.name, adm[short], f"stay shorter than {days} days (early setting)", PROTOCOL)
        adm = adm[~short]
    text = admission_notes(find_table(folder, "NOTEEVENTS"), adm, setting, days, report=report)
    has_note = adm["HADM_ID"].isin(text.index)
    none = "no discharge summary" if setting == "discharge" else f"no note charted in the first {days} days"
    report.add(adm_path.name, adm[~has_note], none)
    adm = adm[has_note].copy()
    adm["text"] = adm["HADM_ID"].map(text).astype(object)
    empty = adm["text"].str.len() == 0
    report.add(adm_path.name, adm[empty], "note text empty after cleaning")
    adm = adm[~empty]
    df = adm.rename(columns={"HADM_ID": "admission_id", "SUBJECT_ID": "subject_id", "LABEL": "label"})
    return df[["admission_id", "text", "label", "subject_id", *GROUP_COLUMNS]], report


def build_from_mimic(mimic_dir: str | Path, setting: str = "discharge", days: int = 3) -> Any:
    """Admission-level frame (admission_id, text, label, subject_id, GROUP_COLUMNS) from ADMISSIONS +
    NOTEEVENTS (+ PATIENTS when present).

    What is left out, and why, is returned by :func:`build_with_report` (`prepare` writes it).
    """
    return build_with_report(mimic_dir, setting, days)[0]
