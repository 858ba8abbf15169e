"""`prepare`: admission-level readmission datasets from MIMIC-III tables, following ClinicalBERT.

Protocol (kexinhuang12345/clinicalBERT ``preprocess.py``; DESIGN.md section 5):

- label 1 when the next *non-elective* admission of the same patient starts less than 30 days
  after this discharge (elective next admissions are skipped: the one after them counts);
- newborn admissions and in-hospital deaths are removed (after labels are computed);
- discharge setting: the last discharge summary of the admission; early setting: the notes
  charted within `days` days of admission (discharge summaries excluded, admissions that lasted
  less than `days` days removed, so the prediction is made before discharge), concatenated;
- cleaning: lowercase, ``[** ... **]`` de-identification brackets and list numbering removed;
- splits by patient (a patient never crosses splits), 80/10/10 by default; the test split keeps
  its natural prevalence unless ``balanced_test`` (ClinicalBERT's 50/50 subsampling).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..errors import InputError

DEID = re.compile(r"\[\*\*.*?\*\*\]")
LIST_NUMBER = re.compile(r"(?:(?<=\s)|^)\d+\.(?=\s)")  # "1. " list items; decimals such as 98.6 stay
SPACES = re.compile(r"\s+")
ADM_COLS = ["SUBJECT_ID", "HADM_ID", "ADMITTIME", "DISCHTIME", "DEATHTIME", "ADMISSION_TYPE"]
NOTE_COLS = ["SUBJECT_ID", "HADM_ID", "CHARTDATE", "CATEGORY", "TEXT"]


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


def _check(df_cols: list[str], need: list[str], path: Path) -> None:
    missing = [c for c in need if c not in df_cols]
    if missing:
        raise InputError(path, 1, f"MIMIC-III columns {need}", f"no {missing}; header is {list(df_cols)}")


def read_admissions(path: Path) -> object:
    import pandas as pd

    head = pd.read_csv(path, nrows=0).columns.tolist()
    _check(head, ADM_COLS, path)
    extra = ["HOSPITAL_EXPIRE_FLAG"] if "HOSPITAL_EXPIRE_FLAG" in head else []
    adm = pd.read_csv(path, usecols=ADM_COLS + extra)
    for c in ("ADMITTIME", "DISCHTIME", "DEATHTIME"):
        adm[c] = pd.to_datetime(adm[c], errors="coerce")
    bad = adm["ADMITTIME"].isna() | adm["DISCHTIME"].isna() | adm["HADM_ID"].isna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0]) + 1
        raise InputError(f"{path}, row {row}", None, "HADM_ID, ADMITTIME and DISCHTIME as YYYY-MM-DD HH:MM:SS", "a missing or bad value")
    if adm["HADM_ID"].duplicated().any():
        row = int(np.flatnonzero(adm["HADM_ID"].duplicated().to_numpy())[0]) + 1
        raise InputError(f"{path}, row {row}", None, "one row per HADM_ID", f"duplicate HADM_ID {adm['HADM_ID'].iloc[row - 1]}")
    return adm


def label_admissions(adm: object) -> object:
    """Add NEXT_ADMITTIME, DAYS_NEXT_ADMIT and LABEL; then drop newborns and in-hospital deaths."""
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
        died |= adm["HOSPITAL_EXPIRE_FLAG"].fillna(0).astype(int) == 1
    keep = (adm["ADMISSION_TYPE"].astype(str).str.upper() != "NEWBORN") & ~died
    return adm[keep].reset_index(drop=True)


def admission_notes(notes_path: Path, adm: object, setting: str, days: int, chunksize: int = 100_000) -> object:
    """One cleaned text per admission for the setting, streaming NOTEEVENTS in chunks."""
    import pandas as pd

    head = pd.read_csv(notes_path, nrows=0).columns.tolist()
    _check(head, NOTE_COLS, notes_path)
    extra = [c for c in ("CHARTTIME", "ISERROR") if c in head]
    wanted = set(adm["HADM_ID"].astype("int64"))
    admit_day = adm.set_index("HADM_ID")["ADMITTIME"].dt.normalize()
    keep_parts = []
    order = 0
    for part in pd.read_csv(notes_path, usecols=NOTE_COLS + extra, chunksize=chunksize, dtype={"TEXT": object}):
        part = part[part["HADM_ID"].notna()].copy()
        part["HADM_ID"] = part["HADM_ID"].astype("int64")
        part = part[part["HADM_ID"].isin(wanted) & part["TEXT"].notna()]
        if "ISERROR" in part:
            part = part[part["ISERROR"].fillna(0).astype(str).str.strip().isin(["0", "0.0", ""])]
        is_ds = part["CATEGORY"].astype(str).str.strip().str.lower() == "discharge summary"
        part = part[is_ds] if setting == "discharge" else part[~is_ds]
        part["CHARTDATE"] = pd.to_datetime(part["CHARTDATE"], errors="coerce")
        if setting == "early":
            age = (part["CHARTDATE"] - part["HADM_ID"].map(admit_day)).dt.total_seconds() / 86400
            part = part[age < days]
        part["ORDER"] = np.arange(order, order + len(part))
        order += len(part)
        keep_parts.append(part.drop(columns=[c for c in ("ISERROR", "CATEGORY") if c in part]))
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


def build_from_mimic(mimic_dir: str | Path, setting: str = "discharge", days: int = 3) -> object:
    """Admission-level frame (admission_id, text, label, subject_id) from ADMISSIONS + NOTEEVENTS."""
    folder = Path(mimic_dir)
    adm = label_admissions(read_admissions(find_table(folder, "ADMISSIONS")))
    if setting == "early":
        stay = (adm["DISCHTIME"] - adm["ADMITTIME"]).dt.total_seconds() / 86400
        adm = adm[stay >= days]
    text = admission_notes(find_table(folder, "NOTEEVENTS"), adm, setting, days)
    adm = adm[adm["HADM_ID"].isin(text.index)].copy()
    adm["text"] = adm["HADM_ID"].map(text)
    adm = adm[adm["text"].str.len() > 0]
    return adm.rename(columns={"HADM_ID": "admission_id", "SUBJECT_ID": "subject_id", "LABEL": "label"})[
        ["admission_id", "text", "label", "subject_id"]]
