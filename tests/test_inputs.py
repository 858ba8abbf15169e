"""Inputs that used to be dropped, refused or left unexplained: BioASQ test batches with empty answer
lists, absolute/glob split paths, unknown gold tags at NER predict, relation rows the model cannot read
as two marked arguments, and the encoder error when downloads are allowed but fail."""

import json
import shutil
from pathlib import Path

import pytest

from clinical_ft import encoders
from clinical_ft.config import TaskCard, load
from clinical_ft.errors import EncoderNotFound, InputError
from clinical_ft.ner import TASK as NER
from clinical_ft.qa import EXTRACTIVE

QA_FIX = Path("tests/fixtures/qa")
BIOASQ = QA_FIX / "bioasq_mini.yaml"
NCBI = Path("tests/fixtures/ncbi_mini.yaml")
GAD = "tests/fixtures/relation/gad_mini.yaml"
GOLD = {"5a6a3335b750ff4455000025": ["emMAW"], "5a7610af83b0d9ea6600001a": ["Janus kinase 3 (JAK3)"]}


def _bioasq_copy(tmp_path: Path, answers: list | None = None) -> Path:
    """The bioasq_mini data under tmp_path/bioasq_mini, every test question given `answers`
    (BioBERT's conversion of the official test batches writes ``"answers": []``)."""
    data = tmp_path / "bioasq_mini"
    shutil.copytree(QA_FIX / "bioasq_mini", data)
    batch = data / "test_batch1.json"
    doc = json.loads(batch.read_text())
    for par in doc["data"][0]["paragraphs"]:
        for qa in par["qas"]:
            qa["answers"] = [] if answers is None else answers
    batch.write_text(json.dumps(doc))
    return data


def _gold(examples: list) -> dict[str, list[str]]:
    return {e.question_id: e.gold for e in examples}


# (4) BioASQ gold comes from the golden files whenever the card names them


def test_bioasq_empty_answer_lists_take_the_golden_answers(tmp_path: Path) -> None:
    _bioasq_copy(tmp_path)
    test = EXTRACTIVE.load_split(load(TaskCard, BIOASQ), "test", tmp_path)
    assert _gold(test) == GOLD and all(e.factoid for e in test)
    assert all(e.answers is None for e in test)  # an empty list is "no answers given", not "no answer"


def test_bioasq_question_without_any_gold_is_an_input_error(tmp_path: Path) -> None:
    data = _bioasq_copy(tmp_path)
    golden = data / "golden_batch1.json"
    doc = json.loads(golden.read_text())
    doc["questions"] = [q for q in doc["questions"] if q["id"] != "5a7610af83b0d9ea6600001a"]
    golden.write_text(json.dumps(doc))
    with pytest.raises(InputError) as exc:
        EXTRACTIVE.load_split(load(TaskCard, BIOASQ), "test", tmp_path)
    assert "test_batch1.json" in str(exc.value) and "5a7610af83b0d9ea6600001a" in str(exc.value)


# (9) absolute paths and globs work for every split role


def _card_copy(src: Path, tmp_path: Path, files: dict[str, str]) -> TaskCard:
    text = src.read_text()
    for role, path in files.items():
        head, sep, rest = text.partition(f"    {role}: ")
        assert sep, role
        text = head + sep + path + rest[rest.index("\n"):]
    card = tmp_path / src.name
    card.write_text(text)
    return load(TaskCard, card)


def test_absolute_glob_test_files_for_bioasq(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(QA_FIX / "bioasq_mini" / "test_batch1.json", elsewhere / "6B1_golden_test.json")
    shutil.copy(QA_FIX / "bioasq_mini" / "golden_batch1.json", elsewhere / "6B1_golden.json")
    card = _card_copy(BIOASQ, tmp_path, {"test": f"{elsewhere}/*_golden_test.json",
                                         "golden": f"{elsewhere}/6B?_golden.json",
                                         "train": str((QA_FIX / "bioasq_mini" / "train.json").resolve())})
    assert _gold(EXTRACTIVE.load_split(card, "test", tmp_path / "no-data-root")) == GOLD
    train = EXTRACTIVE.load_split(card, "train", tmp_path / "no-data-root")
    assert train and not {e.question_id for e in train} & set(GOLD)


def test_home_and_variables_in_split_paths_are_expanded_like_data_path(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = tmp_path / "home" / "bioasq"
    elsewhere.mkdir(parents=True)
    shutil.copy(QA_FIX / "bioasq_mini" / "test_batch1.json", elsewhere / "6B1_golden_test.json")
    shutil.copy(QA_FIX / "bioasq_mini" / "golden_batch1.json", elsewhere / "6B1_golden.json")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("BIOASQ_GOLDEN", str(elsewhere))
    card = _card_copy(BIOASQ, tmp_path, {"test": "~/bioasq/*_golden_test.json", "golden": "$BIOASQ_GOLDEN/6B?_golden.json"})
    assert _gold(EXTRACTIVE.load_split(card, "test", QA_FIX)) == GOLD


def test_absolute_and_relative_paths_with_and_without_globs_for_ner(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for part in ("a", "b"):
        shutil.copy("tests/fixtures/ncbi_mini/test.tsv", elsewhere / f"test_{part}.tsv")
    one = len(NER.load_split(load(TaskCard, NCBI), "test", "tests/fixtures"))
    card = _card_copy(NCBI, tmp_path, {"test": f"{elsewhere}/test_*.tsv", "validation": str(elsewhere / "test_a.tsv"),
                                       "train": "train*.tsv"})
    assert len(NER.load_split(card, "test", "tests/fixtures")) == 2 * one
    assert len(NER.load_split(card, "validation", "tests/fixtures")) == one
    assert NER.load_split(card, "train", "tests/fixtures") == NER.load_split(load(TaskCard, NCBI), "train", "tests/fixtures")


# (10) NER predict keeps a gold column with tags the model does not know


def test_ner_predict_keeps_a_gold_column_with_unknown_tags(tiny_encoder: str, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    from clinical_ft.ner.cli import main

    out = tmp_path / "run"
    assert main(["train", "--card", str(NCBI), "--data-dir", "tests/fixtures", "--out", str(out), "--encoder", tiny_encoder,
                 "max_steps=2", "per_device_train_batch_size=2", "max_length=32", "stride=8", "eval_strategy=no"]) == 0
    src = tmp_path / "chem.conll"
    src.write_text("Aspirin\tB-Chemical\ncauses\tO\nulcers\tB-Disease\n\nNaloxone\tB-Chemical\n")
    pred = tmp_path / "p.conll"
    assert main(["predict", "--model", str(out), "--input", str(src), "--out", str(pred)]) == 0
    assert "2 sentences, 4 tokens tagged" in capsys.readouterr().out
    labels = json.loads((out / "labels.json").read_text())
    got, want = pred.read_text().splitlines(), src.read_text().splitlines()
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g == w if not w else g.rsplit("\t", 1)[0] == w and g.rsplit("\t", 1)[1] in labels


# (11) relation predict says why a row was not read as two marked arguments


def test_relation_predict_notes_rows_without_two_argument_markers(tiny_encoder: str, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from clinical_ft.relation.cli import main

    out = tmp_path / "run"
    assert main(["train", "--card", GAD, "--data-dir", "tests/fixtures", "--out", str(out), "--encoder", tiny_encoder,
                 "max_steps=2", "max_length=32", "stride=8", "eval_strategy=no"]) == 0
    far = "@GENE$ " + " ".join(["word"] * 80) + " @DISEASE$ ."
    src = tmp_path / "in.tsv"
    src.write_text("index\tsentence\n"
                   "ok\tVariants of @GENE$ were linked to @DISEASE$ .\n"
                   "none\tVariants of BRCA1 were linked to cancer .\n"
                   "one\tThe @GENE-DISEASE$ locus was studied .\n"
                   f"far\t{far}\n"
                   "marked\t[E1] BRCA1 [/E1] variants were linked to [E2] cancer [/E2] .\n"
                   "half\t[E1] BRCA1 [/E1] variants were linked to cancer .\n")
    pred = tmp_path / "p.tsv"
    capsys.readouterr()
    assert main(["predict", "--model", str(out), "--input", str(src), "--out", str(pred)]) == 0
    rows = {r.split("\t")[0]: r.split("\t") for r in pred.read_text().splitlines()[1:]}
    assert set(rows) == {"ok", "none", "one", "far", "marked", "half"} and all(r[1] in ("0", "1") for r in rows.values())
    assert rows["ok"][3] == rows["marked"][3] == ""  # [E1]/[E2] rows are read as explain reads them
    assert rows["half"][3].startswith("argument markers not read (the sentence lacks [E2]...[/E2]")
    assert rows["none"][3] == "no argument marker: pooled at [CLS]"
    assert rows["one"][3] == "one argument mask: read as overlapping arguments"
    assert "outside the model's window" in rows["far"][3] and "pooled at [CLS]" in rows["far"][3]
    printed = capsys.readouterr().out
    assert "6 pairs predicted, 4 with a note, 0 skipped with a reason" in printed
    assert "  1 pair: one argument mask: read as overlapping arguments" in printed
    assert "Variants" not in printed and "BRCA1" not in printed  # counts, never sentence text


# (12) the encoder error says what failed when downloads are allowed


def _failing_loader(calls: list) -> type:
    class Loader:
        @staticmethod
        def from_pretrained(target: str, **kwargs: object) -> None:
            calls.append(kwargs)
            raise OSError("We couldn't connect to 'https://huggingface.co' to load this file")

    return Loader


def test_encoder_error_when_the_download_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv(encoders.DOWNLOAD_ENV, "1")
    calls: list = []
    with pytest.raises(EncoderNotFound) as exc:
        encoders.load_model(_failing_loader(calls), "biobert")
    msg = str(exc.value)
    assert calls and calls[0]["local_files_only"] is False
    assert "'biobert'" in msg and "dmis-lab/biobert-base-cased-v1.2" in msg
    assert "download" in msg and "failed" in msg and "no network" in msg and "no such repository" in msg
    assert "--encoder DIR" in msg and "huggingface-cli download" in msg
    assert f"set {encoders.DOWNLOAD_ENV}=1" not in msg


def test_encoder_error_offline_is_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv(encoders.DOWNLOAD_ENV, raising=False)
    calls: list = []
    with pytest.raises(EncoderNotFound) as exc:
        encoders.load_model(_failing_loader(calls), "biobert")
    assert calls[0]["local_files_only"] is True
    assert str(exc.value) == (
        "encoder 'biobert' (dmis-lab/biobert-base-cased-v1.2) is not available offline. Either download it once "
        "where the hub is reachable (`huggingface-cli download dmis-lab/biobert-base-cased-v1.2 --local-dir DIR`) "
        f"and pass `--encoder DIR` (or `encoder=DIR`), or set {encoders.DOWNLOAD_ENV}=1 to let clinical_ft fetch it.")
