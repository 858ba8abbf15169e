"""Write a prepared readmission folder: train/validation/test CSVs plus a ``card.yaml`` TaskCard.

Input is either MIMIC-III tables (see mimic.py) or a plain notes CSV (id, text, label and an
optional patient column). Every input row that is in no split is listed in ``skipped.csv`` with its
reason: for a notes CSV (row, id, reason) the rows that cannot be used; for MIMIC tables (table,
row, id, kind, reason) the admissions and notes excluded by protocol (newborns, in-hospital deaths,
...) and those skipped (no qualifying note, unreadable text, ...).

The split CSVs also carry the admission attributes subgroup evaluation reads by name
(notes.GROUP_COLUMNS: gender, age_group, admission_type, insurance, ethnicity; empty = unknown):
all five from MIMIC tables, those a notes CSV has from a notes CSV. The card's ``columns`` maps
only the note roles; its description names the group columns the splits carry.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_path
from ..config import TaskCard, dump_yaml, load
from ..errors import ClinicalFTError
from ..taskapi import check_card
from .mimic import build_with_report, split_by_patient
from .mimic_io import PROTOCOL, SKIPPED
from .notes import GROUP_COLUMNS, LABEL_NAMES, column_map, iter_blocks, write_skips
from .task import TASK

log = logging.getLogger("clinical_ft.readmission")
SPLITS = ("train", "validation", "test")
REFERENCES = [
    {"model": "ClinicalBERT (discharge summaries, CHIL'20 corrected)", "score": 0.714, "metric": "AUROC",
     "source": "Huang et al. 2019/2020, ClinicalBERT arXiv:1904.05342 v3"},
    {"model": "ClinicalBERT (discharge summaries, CHIL'20 corrected)", "score": 0.701, "metric": "AUPRC",
     "source": "Huang et al., ClinicalBERT arXiv:1904.05342 v3"},
    {"model": "ClinicalBERT (discharge summaries, CHIL'20 corrected)", "score": 0.242, "metric": "RP80",
     "source": "Huang et al., ClinicalBERT arXiv:1904.05342 v3"},
    {"model": "Bag-of-words + logistic regression", "score": 0.684, "metric": "AUROC",
     "source": "Huang et al., ClinicalBERT arXiv:1904.05342 v3"},
    {"model": "Bag-of-words + logistic regression", "score": 0.674, "metric": "AUPRC",
     "source": "Huang et al., ClinicalBERT arXiv:1904.05342 v3"},
    {"model": "Bag-of-words + logistic regression", "score": 0.217, "metric": "RP80",
     "source": "Huang et al., ClinicalBERT arXiv:1904.05342 v3"},
]


def from_notes_csv(path: str | Path, columns: dict[str, str] | None, out: Path) -> tuple[Any, dict[str, int]]:
    """A labelled notes CSV as an admission frame (with the GROUP_COLUMNS the CSV fills) and
    {reason: count}; unusable rows go to ``out/skipped.csv``."""
    import pandas as pd

    rows, skips = [], []
    for notes, sk in iter_blocks(path, columns, labels="required"):
        rows.extend({**n.attrs, "admission_id": n.id, "text": n.text, "label": n.label,
                     "subject_id": n.subject or n.id} for n in notes)
        skips.extend(sk)
    groups = [c for c in GROUP_COLUMNS if any(c in r for r in rows)]
    out.mkdir(parents=True, exist_ok=True)
    write_skips(out / "skipped.csv", skips)
    if skips:
        log.warning("%d rows of %s skipped; see %s", len(skips), path, out / "skipped.csv")
    why = Counter(k.reason.split(" (")[0].split(" in column")[0] for k in skips)
    frame = pd.DataFrame(rows, columns=["admission_id", "text", "label", "subject_id", *groups])
    return frame.fillna({c: "" for c in groups}), dict(why)


def from_mimic(mimic_dir: str | Path, setting: str, days: int, out: Path) -> tuple[Any, dict[str, dict[str, int]]]:
    """MIMIC-III tables as an admission frame; what is left out goes to ``out/skipped.csv``.

    Returns:
        The frame, and {kind: {reason: count}} for kinds PROTOCOL and SKIPPED.
    """
    df, report = build_with_report(mimic_dir, setting, days)
    out.mkdir(parents=True, exist_ok=True)
    report.write(out / "skipped.csv")
    return df, {kind: report.counts(kind) for kind in (PROTOCOL, SKIPPED)}


def _balance(df: Any, seed: int) -> Any:
    """ClinicalBERT's balanced test: all positives and as many randomly chosen negatives."""
    pos = df[df["label"] == 1]
    neg = df[df["label"] == 0]
    neg = neg.sample(n=min(len(pos), len(neg)), random_state=seed)
    return df.loc[sorted(list(pos.index) + list(neg.index))]


def write_prepared(df: Any, out: str | Path, *, name: str, description: str, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
                   seed: int = 1, balanced_test: bool = False) -> dict[str, Any]:
    """Split `df` by patient and write the split CSVs and ``card.yaml`` into `out`.

    Returns:
        Summary: admissions and positives per split, paths written, ``group_columns`` (the
        GROUP_COLUMNS the splits carry).
    """
    out = Path(out).resolve()
    if len(df) == 0:
        raise ClinicalFTError("no admission with a usable note was found; nothing to write")
    out.mkdir(parents=True, exist_ok=True)
    df = df.reset_index(drop=True)
    df["subject_id"] = df["subject_id"].astype(str)
    which = split_by_patient(df["subject_id"].to_numpy(), fractions, seed)
    files = {s: f"{s}.csv" for s in SPLITS}
    summary: dict[str, Any] = {"out": str(out), "splits": {}}
    for split in SPLITS:
        part = df[which == split]
        if split == "test" and balanced_test:
            with atomic_path(out / "test_natural.csv") as tmp:
                part.to_csv(tmp, index=False)
            files["test_natural"] = "test_natural.csv"
            part = _balance(part, seed)
        with atomic_path(out / files[split]) as tmp:
            part.to_csv(tmp, index=False)
        summary["splits"][split] = {"admissions": len(part), "positives": int(part["label"].sum()),
                                    "patients": int(part["subject_id"].nunique())}
    groups = [c for c in GROUP_COLUMNS if c in df.columns]
    if groups:
        description += (f". The splits carry the admission attributes {', '.join(groups)} (subgroup "
                        "columns, read by name; empty = unknown)")
    card = {
        "name": name, "version": 1, "kind": "readmission", "description": description,
        "data": {"format": "notes_csv", "path": str(out), "files": files},
        "labels": LABEL_NAMES,
        "columns": {k: v for k, v in column_map(None).items()},
        "metric": "auroc",  # admission level; evaluate also reports both AUPRCs and RP80
        "references": REFERENCES,
    }
    header = ("# Readmission card written by `python -m clinical_ft.readmission prepare`.\n"
              f"# Used by: python -m clinical_ft.readmission train --data {out} --config readmission/minilm --out runs/readmit\n"
              + (f"# Subgroup columns in the splits (read by name, not listed under columns): {', '.join(groups)}\n"
                 if groups else ""))
    dump_yaml(card, out / "card.yaml", header)
    summary["card"] = str(out / "card.yaml")
    summary["group_columns"] = groups
    return summary


def prepare(out: str | Path, *, mimic_dir: str | Path | None = None, notes: str | Path | None = None,
            columns: dict[str, str] | None = None, setting: str = "discharge", days: int = 3, seed: int = 1,
            balanced_test: bool = False, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> dict[str, Any]:
    """Build and write a prepared folder from MIMIC-III tables (`mimic_dir`) or a notes CSV (`notes`).

    Returns:
        The summary of :func:`write_prepared`, plus ``skipped`` (rows that could not be used),
        ``excluded`` (rows the protocol removes; MIMIC only), ``reasons`` ({kind: {reason: count}}),
        ``skipped_csv`` (the path of the report) and ``prevalence``.
    """
    out = Path(out)
    if (mimic_dir is None) == (notes is None):
        raise ClinicalFTError("give exactly one of --mimic-dir (ADMISSIONS.csv + NOTEEVENTS.csv) or --notes (a notes CSV)")
    if mimic_dir is not None:
        df, reasons = from_mimic(mimic_dir, setting, days, out)
        where = "discharge summaries" if setting == "discharge" else f"notes of the first {days} days"
        name = "readmit_discharge" if setting == "discharge" else f"readmit_early_{days}d"
        desc = f"30-day readmission from {where} (ClinicalBERT protocol), prepared from {Path(mimic_dir).resolve()}"
    else:
        df, why = from_notes_csv(notes, columns, out)
        reasons = {PROTOCOL: {}, SKIPPED: why}
        name, desc = "readmit_notes", f"30-day readmission from the notes CSV {Path(notes).resolve()}"
    summary = write_prepared(df, out, name=name, description=desc, fractions=fractions, seed=seed,
                             balanced_test=balanced_test)
    summary["skipped"] = sum(reasons[SKIPPED].values())
    summary["excluded"] = sum(reasons[PROTOCOL].values())
    summary["reasons"] = reasons
    summary["skipped_csv"] = str(Path(summary["out"]) / "skipped.csv")
    summary["prevalence"] = float(np.mean(df["label"])) if len(df) else 0.0
    return summary


def card_from_data(data: str | Path) -> TaskCard:
    """The card a `prepare` folder carries (validated against the readmission task), with its data
    path pointing at the folder wherever it now is."""
    folder = Path(data)
    if not (folder / "card.yaml").is_file():
        raise ClinicalFTError(f"{folder} holds no card.yaml; create it with "
                              f"`python -m clinical_ft.readmission prepare ... --out {folder}`")
    card = load(TaskCard, folder / "card.yaml", checks=lambda c: check_card(TASK, c) if c.data else [])
    card.data.path = str(folder.resolve())
    return card
