"""ClinicalBERT's label protocol on a hand-written synthetic MIMIC-shaped fixture, and patient-level splits."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from clinical_ft import encoders, resources
from clinical_ft.errors import InputError
from clinical_ft.readmission import mimic, synthetic
from clinical_ft.readmission.cli import main
from clinical_ft.readmission.notes import GROUP_COLUMNS, load_notes
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


def _copy_fixture(tmp_path: Path) -> Path:
    out = tmp_path / "mimic"
    shutil.copytree(FIX, out, ignore=shutil.ignore_patterns("notes_mini*", "README.md"))
    return out


def _replace(path: Path, old: bytes, new: bytes) -> None:
    data = path.read_bytes()
    assert data.count(old) == 1, old
    path.write_bytes(data.replace(old, new))


def test_prepare_reports_every_dropped_admission_by_reason(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prepare", "--mimic-dir", str(FIX), "--setting", "early", "--days", "2",
                 "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    rep = pd.read_csv(tmp_path / "out" / "skipped.csv", dtype={"id": str})
    adm = rep[rep["table"] == "ADMISSIONS.csv"]
    kept = pd.read_csv(tmp_path / "out" / "train.csv")["admission_id"].tolist()
    assert kept == [601]
    assert sorted(adm["row"].tolist() + [11]) == list(range(1, 13))  # every ADMISSIONS row: kept or reported
    why = dict(zip(adm["id"], adm["reason"]))
    assert why["301"] == "newborn admission" and why["402"] == "in-hospital death"
    assert {why[i] for i in ("102", "202", "501")} == {"stay shorter than 2 days (early setting)"}
    assert {why[i] for i in ("101", "103", "201", "401", "502", "602")} == {"no note charted in the first 2 days"}
    kinds = dict(zip(rep["id"] + rep["table"], rep["kind"]))
    assert kinds["301ADMISSIONS.csv"] == kinds["402ADMISSIONS.csv"] == "excluded by protocol"
    assert kinds["101ADMISSIONS.csv"] == "skipped"
    notes = rep[rep["table"] == "NOTEEVENTS.csv"]
    assert notes[["row", "id", "kind"]].values.tolist() == [[15, "601", "excluded by protocol"]]  # ISERROR note
    assert "6 skipped, 6 excluded by protocol" in out and "1 newborn admission" in out
    assert "6 no note charted in the first 2 days" in out


def test_discharge_setting_counts_only_protocol_exclusions(tmp_path: Path) -> None:
    s = prepare(tmp_path / "out", mimic_dir=FIX)
    assert s["skipped"] == 0 and s["excluded"] == 2
    assert s["reasons"]["excluded by protocol"] == {"newborn admission": 1, "in-hospital death": 1}
    df, report = mimic.build_with_report(FIX)
    assert report.ids("newborn admission") == ["301"] and report.ids("in-hospital death") == ["402"]
    assert df.equals(mimic.build_from_mimic(FIX))  # the frame-only function is unchanged


def test_bad_note_rows_are_reported_not_lost(tmp_path: Path) -> None:
    folder = _copy_fixture(tmp_path)
    _replace(folder / "NOTEEVENTS.csv", b"Synthetic summary 103.", b"Synthetic caf\xe9 summary 103.")
    _replace(folder / "NOTEEVENTS.csv", b"13,6,601,2106-01-01,", b"13,6,601,01/xx/2106,")
    df, report = mimic.build_with_report(folder)
    assert 103 not in set(df["admission_id"])
    got = {(d.table, d.row, d.id): d.reason for d in report.dropped if d.kind == "skipped"}
    assert got == {("NOTEEVENTS.csv", 3, "103"): "note TEXT has bytes that are not UTF-8",
                   ("ADMISSIONS.csv", 3, "103"): "no discharge summary"}
    df, report = mimic.build_with_report(folder, "early", days=2)
    assert df.empty
    assert report.counts("skipped")["CHARTDATE is not a date (the early setting needs it)"] == 1
    assert "601" in report.ids("no note charted in the first 2 days")


@pytest.mark.parametrize("table,old,new,found", [
    ("ADMISSIONS.csv", b"3,1,103,", b"3,1,10x,", r"ADMISSIONS.csv, row 3: expected HADM_ID as a whole number; found '10x'"),
    ("ADMISSIONS.csv", b"URGENT", b"URG\xc9NT", r"ADMISSIONS.csv, row 9: expected UTF-8 text in column ADMISSION_TYPE"),
    ("ADMISSIONS.csv", b"2104-02-20 08:00:00,EMERGENCY", b"20th February,EMERGENCY", r"row 8: expected DEATHTIME"),
    ("NOTEEVENTS.csv", b"7,4,401,", b"7,4,four-oh-one,", r"NOTEEVENTS.csv, row 7: expected HADM_ID as a whole number"),
    ("NOTEEVENTS.csv", b"Synthetic summary 502.", b"Synthetic, summary 502.", r"NOTEEVENTS.csv, line \d+: expected a well-formed CSV"),
    ("PATIENTS.csv", b"2084-03-01 00:00:00", b"2084-02-30 00:00:00", r"PATIENTS.csv, row 2: expected DOB as "
                                                                   r"YYYY-MM-DD HH:MM:SS \(or empty\); found a bad value$"),
    ("PATIENTS.csv", b"\n6,6,M,", b"\n6,5,M,", r"PATIENTS.csv, row 6: expected one row per SUBJECT_ID"),
    ("PATIENTS.csv", b"\n3,3,F,", b"\n3,three,F,", r"PATIENTS.csv, row 3: expected SUBJECT_ID as a whole number"),
])
def test_malformed_tables_name_file_and_row(table: str, old: bytes, new: bytes, found: str, tmp_path: Path) -> None:
    folder = _copy_fixture(tmp_path)
    _replace(folder / table, old, new)
    with pytest.raises(InputError, match=found):
        mimic.build_with_report(folder)


def test_bytes_that_are_not_utf8_in_unused_columns_do_not_matter(tmp_path: Path) -> None:
    folder = _copy_fixture(tmp_path)
    lines = (folder / "ADMISSIONS.csv").read_bytes().split(b"\n")
    lines = [ln + (b",DIAGNOSIS" if i == 0 else b",CHF caf\xe9" if ln else b"") for i, ln in enumerate(lines)]
    (folder / "ADMISSIONS.csv").write_bytes(b"\n".join(lines))
    assert mimic.build_from_mimic(folder).equals(mimic.build_from_mimic(FIX))


def test_fallback_notes_carry_cues_only_where_placed_and_late_ones_after_token_512(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(resources.DATA_ENV, str(tmp_path / "no_shared_data"))  # no MTSamples: built-in filler
    assert synthetic.mtsamples_texts() == synthetic.filler_texts()
    risk = [mimic.clean_text(c) for c in synthetic.RISK]
    calm = [mimic.clean_text(c) for c in synthetic.CALM]
    assert not any(c in mimic.clean_text(t) for t in synthetic.filler_texts() for c in risk + calm)
    syn = synthetic.generate(tmp_path / "syn", 40, seed=0, words=400, late_fraction=1.0)
    assert "built-in neutral sentences" in (tmp_path / "syn" / "README_SYNTHETIC.md").read_text()
    df = mimic.build_from_mimic(syn["out"])
    tok = encoders.load_tokenizer("minilm")
    agree = 0
    for text, label in zip(df["text"], df["label"]):
        n_risk, n_calm = sum(text.count(c) for c in risk), sum(text.count(c) for c in calm)
        assert 3 <= n_risk + n_calm <= 5  # only the inserted cues: the filler adds none
        agree += (n_risk > n_calm) == bool(label)
        first = min(text.find(c) for c in risk + calm if c in text)
        offsets = tok(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        assert sum(a < first for a, _ in offsets) >= 512  # every cue beyond a first 512-token window
    assert agree >= 0.85 * len(df)  # labels follow content (up to the 5% label noise)


def _all_splits(out: Path) -> pd.DataFrame:
    frames = [pd.read_csv(out / f"{k}.csv", dtype=str, keep_default_na=False) for k in ("train", "validation", "test")]
    return pd.concat(frames).set_index("admission_id")


def test_prepare_keeps_the_admission_attributes_of_subgroups(tmp_path: Path) -> None:
    s = prepare(tmp_path / "out", mimic_dir=FIX)
    df = _all_splits(tmp_path / "out")
    assert list(df.columns) == ["text", "label", "subject_id", *GROUP_COLUMNS] and len(df) == 10
    got = {i: tuple(df.loc[i, list(GROUP_COLUMNS)]) for i in ("101", "103", "401", "501", "502", "601", "602")}
    # PATIENTS.csv: subject 1 born 2036-01-02 (64 on 2101-01-01, 65 a month later); subject 4's DOB
    # 1804-01-01 is MIMIC's over-89 shift (300 at admission); subject 5 has no DOB; subject 6 turns 18 on 2106-01-02
    assert got == {"101": ("M", "40-64", "EMERGENCY", "Medicare", "WHITE"),
                   "103": ("M", "65-79", "EMERGENCY", "Medicare", "WHITE"),
                   "401": ("F", "80+", "EMERGENCY", "Medicare", "ASIAN - CHINESE"),
                   "501": ("M", "", "URGENT", "Self Pay", "UNKNOWN/NOT SPECIFIED"),
                   "502": ("M", "", "EMERGENCY", "Government", ""),
                   "601": ("M", "<18", "EMERGENCY", "Medicaid", "HISPANIC OR LATINO"),
                   "602": ("M", "18-39", "EMERGENCY", "Private", "HISPANIC OR LATINO")}
    assert df.loc["201", "age_group"] == "18-39"  # 18th birthday on the day of admission
    assert s["group_columns"] == list(GROUP_COLUMNS)
    card = (tmp_path / "out" / "card.yaml").read_text()
    assert "gender, age_group, admission_type, insurance, ethnicity" in card
    assert card.count("admission_id") == 1  # `columns` maps the note roles only
    notes = {n.id: n for k in ("train", "validation", "test") for n in load_notes(tmp_path / "out" / f"{k}.csv")}
    assert notes["401"].attrs == dict(zip(GROUP_COLUMNS, got["401"]))
    assert notes["502"].attrs == {"gender": "M", "admission_type": "EMERGENCY", "insurance": "Government"}


def test_without_patients_or_optional_admission_columns_attributes_are_empty(tmp_path: Path) -> None:
    folder = _copy_fixture(tmp_path)
    (folder / "PATIENTS.csv").unlink()
    df = mimic.build_from_mimic(folder)
    assert set(df["gender"]) == set(df["age_group"]) == {""} and "WHITE" in set(df["ethnicity"])
    lines = (folder / "ADMISSIONS.csv").read_text().splitlines()
    (folder / "ADMISSIONS.csv").write_text("\n".join(",".join(ln.split(",")[:7] + ln.split(",")[9:]) for ln in lines))
    prepare(tmp_path / "out", mimic_dir=folder)
    got = _all_splits(tmp_path / "out")
    assert list(got.columns) == ["text", "label", "subject_id", *GROUP_COLUMNS]
    assert (got[["gender", "age_group", "insurance", "ethnicity"]] == "").all().all()
    assert got.loc["501", "admission_type"] == "URGENT"
    base = mimic.build_from_mimic(FIX)
    assert df[["admission_id", "text", "label"]].equals(base[["admission_id", "text", "label"]])


def test_patients_missing_a_subject_or_born_after_admission(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = _copy_fixture(tmp_path)
    _replace(folder / "PATIENTS.csv", b"2,2,F,2084-03-01 00:00:00,,,,0\n", b"")
    _replace(folder / "PATIENTS.csv", b"2088-01-02", b"2106-01-03")  # after 601's admission, before 602's
    with caplog.at_level("WARNING", logger="clinical_ft.readmission"):
        df = mimic.build_from_mimic(folder).set_index("admission_id")
    assert tuple(df.loc[201, ["gender", "age_group"]]) == ("", "")
    assert (df.loc[601, "age_group"], df.loc[602, "age_group"]) == ("", "<18")
    assert "2 of 12 admissions have no row in PATIENTS.csv" in caplog.text
    assert "1 admissions start before the patient's DOB" in caplog.text


def test_synthetic_tables_carry_patient_attributes_without_changing_labels(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(resources.DATA_ENV, str(tmp_path / "no_shared_data"))
    synthetic.generate(tmp_path / "a", 30, seed=5, words=60)
    synthetic.generate(tmp_path / "b", 30, seed=5, words=60)
    for name in ("PATIENTS_SYNTHETIC.csv", "ADMISSIONS_SYNTHETIC.csv", "NOTEEVENTS_SYNTHETIC.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()  # same seed, same tables
    pat = pd.read_csv(tmp_path / "a" / "PATIENTS_SYNTHETIC.csv", dtype=str)
    assert list(pat.columns) == ["ROW_ID", "SUBJECT_ID", "GENDER", "DOB", "SYNTHETIC"] and len(pat) == 30
    df = mimic.build_from_mimic(tmp_path / "a")
    assert (df[list(GROUP_COLUMNS)] != "").all().all()
    assert {"M", "F"} == set(df["gender"]) and "80+" in set(df["age_group"]) and pat["DOB"].min() < "1900"
    # the attributes come from a stream of their own: the labels are those written before they existed
    assert "".join(map(str, df["label"])) == "110000010001001010001000010000000000001010000"
