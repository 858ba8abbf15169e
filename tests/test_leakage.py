"""The engine refuses a benchmark whose test text was in the encoder's pre-training corpus."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from clinical_ft import engine, leakage
from clinical_ft.config import TaskCard, TrainConfig, load
from clinical_ft.errors import ClinicalFTError
from clinical_ft.ner import TASK

CARD = "tests/fixtures/ncbi_mini.yaml"
DATA = "tests/fixtures"
RAW_TEST = "Clustering of missense mutations in the ataxia-telangiectasia gene in a sporadic T-cell leukaemia."


def test_canonical_hash_ignores_tokenisation_whitespace_and_case() -> None:
    conll = "Clustering of missense mutations in the ataxia - telangiectasia gene in a sporadic T - cell leukaemia ."
    assert leakage.text_hash(conll) == leakage.text_hash(RAW_TEST.upper())
    assert leakage.text_hash("Results .") is None  # too short to count
    assert leakage.sentences("First one here. Second (A) one! 3 more? x") == ["First one here.", "Second (A) one!", "3 more? x"]
    doc = f"Background: a study. {RAW_TEST} Conclusion follows here."
    assert leakage.text_hash(RAW_TEST) in leakage.unit_hashes(doc)


def _encoder_with_manifest(tiny: str, tmp: Path, texts: list[str], files: list[str] = ()) -> Path:
    enc = tmp / "enc"
    shutil.copytree(tiny, enc)
    hashes = set().union(*(leakage.unit_hashes(t) for t in texts))
    sources = [{"path": f, "sha256": leakage.file_sha256(f)} for f in files]
    (enc / leakage.MANIFEST).write_text(json.dumps({"sources": sources, "unit_hashes": sorted(hashes)}))
    return enc


def _cfg(encoder: Path) -> TrainConfig:
    return TrainConfig(encoder=str(encoder), max_steps=1, per_device_train_batch_size=2, max_length=32, stride=8,
                       eval_strategy="no")


def test_train_refuses_an_encoder_pretrained_on_test_text(tiny_encoder: str, tmp_path: Path) -> None:
    enc = _encoder_with_manifest(tiny_encoder, tmp_path, [f"Some abstract. {RAW_TEST}"])
    with pytest.raises(ClinicalFTError, match=r"pre-trained on text of the test split of card 'ncbi_mini'.*1 of its 3"):
        engine.train(TASK, load(TaskCard, CARD), _cfg(enc), tmp_path / "run", data_dir=DATA)
    assert not (tmp_path / "run").exists()


def test_train_refuses_an_encoder_pretrained_on_the_test_file(tiny_encoder: str, tmp_path: Path) -> None:
    enc = _encoder_with_manifest(tiny_encoder, tmp_path, [], [f"{DATA}/ncbi_mini/test.tsv"])
    with pytest.raises(ClinicalFTError, match="which is the test file of card 'ncbi_mini'"):
        engine.train(TASK, load(TaskCard, CARD), _cfg(enc), tmp_path / "run", data_dir=DATA)


def test_clean_encoder_is_accepted_and_evaluation_checks_the_run_manifest(tiny_encoder: str, tmp_path: Path) -> None:
    train_text = "Identification of APC2, a homologue of the adenomatous polyposis coli tumour suppressor."
    enc = _encoder_with_manifest(tiny_encoder, tmp_path, [train_text], [f"{DATA}/ncbi_mini/train.tsv"])
    engine.train(TASK, load(TaskCard, CARD), _cfg(enc), tmp_path / "run", data_dir=DATA)  # train text is fine
    run = engine.load_run(TASK, tmp_path / "run")
    assert engine.evaluate(TASK, run, "test", DATA)["examples"] == 3
    # the run carries its own copy: a leaked copy is refused even if the encoder directory is gone
    shutil.rmtree(enc)
    manifest = json.loads((tmp_path / "run" / leakage.MANIFEST).read_text())
    manifest["unit_hashes"].append(leakage.text_hash(RAW_TEST))
    (tmp_path / "run" / leakage.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ClinicalFTError, match="test split"):
        engine.evaluate(TASK, run, "test", DATA)
    assert engine.evaluate(TASK, run, "validation", DATA)["examples"] > 0  # only test text is guarded


def test_texts_are_taken_from_the_task_examples_not_only_the_test_file(tiny_encoder: str, tmp_path: Path) -> None:
    """PubMedQA's test file holds only ids and labels; its contexts live in another file. The check
    must see the contexts the task evaluates on."""
    from clinical_ft.registry import for_card as task_for

    card = load(TaskCard, "tests/fixtures/qa/pubmedqa_mini.yaml")
    task = task_for(card)
    test_examples = task.load_split(card, "test", "tests/fixtures/qa")
    context = next(t for t in leakage.example_texts(test_examples[:1])[0] if len(t) > 200)
    enc = _encoder_with_manifest(tiny_encoder, tmp_path, [context])
    cfg = TrainConfig(encoder=str(enc), max_steps=1, per_device_train_batch_size=2, max_length=64, stride=16,
                      eval_strategy="no")
    with pytest.raises(ClinicalFTError, match="pre-trained on text of the test split of card"):
        engine.train(task, card, cfg, tmp_path / "run", data_dir="tests/fixtures/qa")


def test_glob_splits_and_test_files_shared_with_train(tiny_encoder: str, tmp_path: Path) -> None:
    """BioASQ's test split is a glob of batch files; COVID-QA's test articles live in the training file."""
    from clinical_ft.registry import for_card as task_for

    qa = "tests/fixtures/qa"
    bioasq = load(TaskCard, f"{qa}/bioasq_mini.yaml")
    batch = f"{qa}/bioasq_mini/test_batch1.json"
    paths, shas, _ = leakage.split_fingerprint(bioasq, "test", qa)
    assert paths == [Path(batch)] and shas == [leakage.file_sha256(batch)]
    with pytest.raises(ClinicalFTError, match="which is the test file of card 'bioasq_mini'"):
        leakage.check(bioasq, [_encoder_with_manifest(tiny_encoder, tmp_path / "a", [], [batch])], qa)
    with pytest.raises(ClinicalFTError, match=r"no file matches .*test_batch\*\.json"):
        leakage.check(bioasq, [tmp_path / "a" / "enc"], tmp_path)

    covid = load(TaskCard, f"{qa}/covid_mini.yaml")
    task = task_for(covid)
    test = task.load_split(covid, "test", qa)
    train = [e.context for e in task.load_split(covid, "train", qa)]
    shared = f"{qa}/covid_mini/covid_mini.json"
    enc = _encoder_with_manifest(tiny_encoder, tmp_path / "b", train, [shared])  # pre-trained on its train articles

    def texts() -> list[list[str]]:
        return leakage.example_texts(test)

    leakage.check(covid, [enc], qa, texts_fn=texts)  # the shared file alone is no leak
    leaked = _encoder_with_manifest(tiny_encoder, tmp_path / "c", train + [test[0].context], [shared])
    with pytest.raises(ClinicalFTError, match="pre-trained on text of the test split of card 'covid_mini'"):
        leakage.check(covid, [leaked], qa, texts_fn=texts)
