"""ClinicalBERT's label protocol on a hand-written synthetic MIMIC-shaped fixture, and patient-level splits."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from clinical_ft.errors import InputError
from clinical_ft.readmission import mimic, synthetic
from clinical_ft.readmission.prepare import prepare

FIX = Path(__file__).parent / "fixtures" / "readmission"


def test_labels_skip_elective_and_drop_newborns_and_deaths() -> None:
    adm = mimic.label_admissions(mimic.read_admissions(FIX / "ADMISSIONS.csv"))
    labels = dict(zip(adm["HADM_ID"], adm["LABEL"]))
    # see tests/fixtures/readmission/README.md for the timeline behind each expectation
    assert labels == {101: 1, 102: 1, 103: 0, 201: 0, 202: 0, 401: 0, 501: 1, 502: 0, 601: 0, 602: 0}
    assert 301 not in labels and 402 not in labels  # newborn, in-hospital death


def test_discharge_setting_uses_last_summary_and_cleans_text() -> None:
    df = mimic.build_from_mimic(FIX, "discharge").set_index("admission_id")
    assert sorted(df.index) == [101, 102, 103, 201, 202, 401, 501, 502, 601, 602]
    assert df.loc[601, "text"] == "synthetic last summary 601."
    text = df.loc[101, "text"]
    assert "[**" not in text and "2101-1-1" not in text
    assert "1." not in text.split() and "heart failure exacerbation." in text and "1.5" in text  # decimals kept
    assert "seen by ." in df.loc[201, "text"]


def test_early_setting_keeps_first_days_without_discharge_summaries_or_errors() -> None:
    df = mimic.build_from_mimic(FIX, "early", days=2)
    assert df["admission_id"].tolist() == [601]
    assert df["text"].iloc[0] == "synthetic nursing note 601 day one."


def test_missing_columns_name_the_file() -> None:
    with pytest.raises(InputError, match="ADMISSION_TYPE"):
        mimic.read_admissions(FIX / "NOTEEVENTS.csv")


def test_prepare_splits_by_patient_and_writes_a_card(tmp_path: Path) -> None:
    syn = synthetic.generate(tmp_path / "syn", 60, seed=3, words=80)
    s = prepare(tmp_path / "out", mimic_dir=syn["out"], balanced_test=True)
    frames = {k: pd.read_csv(tmp_path / "out" / f"{k}.csv") for k in ("train", "validation", "test_natural")}
    subjects = {k: set(f["subject_id"]) for k, f in frames.items()}
    assert not subjects["train"] & subjects["validation"]
    assert not subjects["train"] & subjects["test_natural"]
    assert not subjects["validation"] & subjects["test_natural"]
    ids = pd.concat(frames.values())["admission_id"]
    assert ids.is_unique
    expected = mimic.build_from_mimic(syn["out"])
    assert set(ids) == set(expected["admission_id"])  # every admission in exactly one split
    test = pd.read_csv(tmp_path / "out" / "test.csv")
    assert test["label"].sum() * 2 == len(test)  # balanced copy; natural prevalence kept beside it
    assert s["splits"]["test"]["admissions"] == len(test)
    assert (tmp_path / "out" / "card.yaml").is_file()


def test_prepare_from_notes_csv_reports_bad_rows(tmp_path: Path) -> None:
    notes = tmp_path / "n.csv"
    notes.write_text("hadm,body,y\n1,fine note,1\n2,other note,0\n3,,1\n4,text,maybe\n5,text,\n")
    s = prepare(tmp_path / "out", notes=notes, columns={"id": "hadm", "text": "body", "label": "y"})
    skipped = pd.read_csv(tmp_path / "out" / "skipped.csv")
    assert skipped["row"].tolist() == [3, 4, 5] and s["skipped"] == 3
    assert "empty note" in skipped["reason"][0] and "expected 0 or 1" in skipped["reason"][1]
    total = sum(v["admissions"] for v in s["splits"].values())
    assert total == 2
