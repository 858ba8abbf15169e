"""Domain-adaptive MLM pre-training: readers, MLM head initialisation, exclusion, output as --encoder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from clinical_ft import leakage
from clinical_ft.errors import ClinicalFTError, InputError
from clinical_ft.ner import main as ner_main
from clinical_ft.pretrain import main, pretrain, read_sources

CARD = "tests/fixtures/ncbi_mini.yaml"
DATA = "tests/fixtures"
# ncbi_mini's second test sentence, as raw (untokenised) abstract text
TEST_SENTENCE = ("Ataxia-telangiectasia (A-T) is a recessive multi-system disorder caused by mutations in the "
                 "ATM gene at 11q22-q23 (ref. 3).")


def _corpus(tmp: Path) -> Path:
    folder = tmp / "corpus"
    folder.mkdir()
    (folder / "abstracts.txt").write_text(
        "Familial adenomatous polyposis is an inherited cancer syndrome. It is caused by APC mutations.\n\n"
        "Myotonic dystrophy is the most common adult muscular dystrophy in families of European descent.\n")
    (folder / "notes.csv").write_text('row_id,transcription\n1,"Patient with type 2 diabetes, on metformin."\n'
                                      '2,"History of hypertension and chronic kidney disease, stage 3."\n')
    (folder / "pqa.json").write_text(json.dumps({"123": {"QUESTION": "q?", "CONTEXTS": [
        "Breast cancer risk rises with BRCA1 mutations.", "We studied 100 carriers."]}}))
    (folder / "squad.json").write_text(json.dumps({"data": [{"paragraphs": [
        {"context": "Coronavirus disease spreads by droplets in closed rooms.", "qas": []},
        {"context": "Coronavirus disease spreads by droplets in closed rooms.", "qas": []}]}]}))
    (folder / "README.md").write_text("not a text source: ignored by suffix\n")
    return folder


def test_readers_by_suffix_and_their_errors(tmp_path: Path) -> None:
    folder = _corpus(tmp_path)
    got = {p.name: docs for p, docs in read_sources([str(folder), "tests/fixtures/ncbi_mini/train.tsv"], "transcription")}
    assert sorted(got) == ["abstracts.txt", "notes.csv", "pqa.json", "squad.json", "train.tsv"]
    assert len(got["abstracts.txt"]) == 2 and len(got["notes.csv"]) == 2 and len(got["squad.json"]) == 1
    assert got["pqa.json"] == ["Breast cancer risk rises with BRCA1 mutations. We studied 100 carriers."]
    assert got["train.tsv"][0].startswith("Identification of APC2 , a homologue")
    with pytest.raises(InputError, match="column named 'text'.*transcription"):
        read_sources([str(folder / "notes.csv")])
    bad = tmp_path / "table.tsv"
    bad.write_text("sentence\tlabel\tx\nsome text\t1\n")
    with pytest.raises(InputError, match="--text-column"):
        read_sources([str(bad)])
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(InputError, match="SQuAD JSON"):
        read_sources([str(tmp_path / "list.json")])
    with pytest.raises(InputError, match="nothing at that path"):
        read_sources([str(tmp_path / "missing")])


def test_pretrain_two_steps_writes_an_encoder_the_ner_task_accepts(tiny_encoder: str, tmp_path: Path) -> None:
    from transformers import AutoModelForMaskedLM

    folder = _corpus(tmp_path)
    enc = tmp_path / "enc"
    rc = main(["--encoder", tiny_encoder, "--text", str(folder), "--text-column", "transcription", "--out", str(enc),
               "--max-steps", "2", "--max-length", "16", "--batch-size", "4", "--whole-word-masking",
               "--exclude-card", CARD, "--data-dir", DATA])
    assert rc == 0
    for f in ("model.safetensors", "config.json", "tokenizer.json", "README.md", leakage.MANIFEST, "pretrain_metrics.json"):
        assert (enc / f).is_file(), f
    assert not (enc / "checkpoints").exists() and not (tmp_path / "enc.tmp").exists()
    readme = (enc / "README.md").read_text()
    assert "has no MLM head" in readme and "tied to the input word embeddings" in readme
    m = json.loads((enc / "pretrain_metrics.json").read_text())
    assert m["tokens_seen"] == 2 * 4 * 16 and m["whole_word_masking"] is True
    manifest = json.loads((enc / leakage.MANIFEST).read_text())
    assert len(manifest["sources"]) == 4 and manifest["unit_hashes"]
    assert leakage.text_hash("Myotonic dystrophy is the most common adult muscular dystrophy in families of "
                             "European descent.") in manifest["unit_hashes"]
    mlm = AutoModelForMaskedLM.from_pretrained(enc)
    assert torch.equal(mlm.cls.predictions.decoder.weight, mlm.bert.embeddings.word_embeddings.weight)

    out = tmp_path / "ner"
    assert ner_main(["train", "--card", CARD, "--data-dir", DATA, "--out", str(out), "--encoder", str(enc),
                     "max_steps=1", "per_device_train_batch_size=2", "max_length=32", "stride=8", "eval_strategy=no"]) == 0
    assert (out / leakage.MANIFEST).is_file()  # the run carries the manifest for later evaluations
    assert ner_main(["evaluate", "--model", str(out), "--split", "test", "--data-dir", DATA]) == 0


def test_exclude_card_drops_documents_with_test_text_and_refuses_the_test_file(tiny_encoder: str, tmp_path: Path) -> None:
    corpus = tmp_path / "c.txt"
    corpus.write_text(f"An unrelated abstract about hereditary hearing loss in children.\nBackground. {TEST_SENTENCE}\n")
    m = pretrain(tiny_encoder, [str(corpus)], tmp_path / "enc", max_steps=1, max_length=16, batch_size=2,
                 exclude_cards=[CARD], data_dir=DATA)
    assert m["documents"] == 1
    manifest = json.loads((tmp_path / "enc" / leakage.MANIFEST).read_text())
    assert manifest["sources"][0]["documents_used"] == 1 and manifest["sources"][0]["documents"] == 2
    with pytest.raises(ClinicalFTError, match="is the test split of card 'ncbi_mini'"):
        pretrain(tiny_encoder, [f"{DATA}/ncbi_mini/test.tsv"], tmp_path / "enc2", max_steps=1, exclude_cards=[CARD],
                 data_dir=DATA)
    with pytest.raises(ClinicalFTError, match="already exists"):
        pretrain(tiny_encoder, [str(corpus)], tmp_path / "enc", max_steps=1)
