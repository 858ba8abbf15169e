"""Domain-adaptive MLM pre-training: readers, MLM head initialisation, exclusion, output as --encoder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from clinical_ft import leakage
from clinical_ft.config import TaskCard, load
from clinical_ft.errors import ClinicalFTError, InputError
from clinical_ft.ner.cli import main as ner_main
from clinical_ft.pretrain.cli import main
from clinical_ft.pretrain.mlm import _blocks, _excluded, load_mlm, pretrain
from clinical_ft.pretrain.text import read_sources

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


def test_whole_word_masking_masks_every_subword_of_a_chosen_word(tiny_encoder: str) -> None:
    from transformers import AutoTokenizer, DataCollatorForLanguageModeling

    tok = AutoTokenizer.from_pretrained(tiny_encoder)
    doc = "ataxia telangiectasia with immunodeficiency and hyperphenylalaninemia in siblings " * 3
    words = tok(doc).word_ids()  # word index of every token ([CLS] ... [SEP])
    blocks = _blocks(tok, [doc], len(words))  # one block holding the whole document
    rows = [{k: v[0] for k, v in blocks.items()}] * 32
    multi = {w for w in set(words) - {None} if words.count(w) > 1}
    assert len(multi) >= 9  # telangiectasia, immunodeficiency, hyperphenylalaninemia, x 3

    def split_words(whole: bool) -> tuple[int, int]:
        """(multi-subword words with some subword masked, those with only some masked)."""
        collate = DataCollatorForLanguageModeling(tok, mlm_probability=0.3, whole_word_mask=whole, seed=0)
        masked = collate(rows)["labels"] != -100  # (32, T)
        hit = part = 0
        for row in masked.tolist():
            for w in multi:
                flags = [row[i] for i, x in enumerate(words) if x == w]
                hit += any(flags)
                part += any(flags) and not all(flags)
        return hit, part

    hit, part = split_words(True)
    assert hit > 20 and part == 0
    assert split_words(False)[1] > 0  # token-level masking does split words: the check can fail


def test_missing_mlm_head_is_initialised_and_tied(tiny_encoder: str) -> None:
    model, note = load_mlm(tiny_encoder)
    decoder, emb = model.get_output_embeddings(), model.get_input_embeddings()
    assert decoder.weight.data_ptr() == emb.weight.data_ptr() and "has no MLM head" in note
    head = model.cls.predictions
    assert torch.equal(head.transform.LayerNorm.weight, torch.ones(32))
    assert torch.equal(head.transform.LayerNorm.bias, torch.zeros(32)) and torch.equal(head.bias, torch.zeros(len(head.bias)))
    dense = head.transform.dense
    assert abs(dense.weight.std().item() - model.config.initializer_range) < 0.004  # N(0, 0.02), 32x32 draws
    assert abs(dense.weight.mean().item()) < 0.003 and torch.equal(dense.bias, torch.zeros(32))


def test_pretrain_two_steps_writes_an_encoder_the_ner_task_accepts(tiny_encoder: str, tmp_path: Path) -> None:
    from transformers import AutoModel, AutoModelForSequenceClassification

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
    assert m["tokens_seen"] == 2 * 4 * 16
    manifest = json.loads((enc / leakage.MANIFEST).read_text())
    assert len(manifest["sources"]) == 4 and manifest["unit_hashes"]
    assert leakage.text_hash("Myotonic dystrophy is the most common adult muscular dystrophy in families of "
                             "European descent.") in manifest["unit_hashes"]
    # the base pooler (which BertForMaskedLM drops) is saved, unchanged, for sequence-classification heads
    assert "pooler was copied unchanged" in readme
    base, adapted = AutoModel.from_pretrained(tiny_encoder), AutoModel.from_pretrained(enc)
    assert torch.equal(adapted.pooler.dense.weight, base.pooler.dense.weight)
    assert not torch.equal(adapted.embeddings.word_embeddings.weight, base.embeddings.word_embeddings.weight)
    _, info = AutoModelForSequenceClassification.from_pretrained(enc, num_labels=2, output_loading_info=True)
    assert not [k for k in info["missing_keys"] if "pooler" in k]

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


def test_exclude_card_reads_the_test_split_as_its_task_does(tiny_encoder: str, tmp_path: Path) -> None:
    """PubMedQA's test file holds only ids, the DDI zip and COVID-QA's file also hold the training split,
    BioASQ's test split is a glob: each exclusion comes from the test examples' own text."""
    from test_relation_data import zip_ddi

    from clinical_ft.registry import for_card as task_for
    from clinical_ft.relation import TASK as REL

    qa = "tests/fixtures/qa"
    pub = load(TaskCard, f"{qa}/pubmedqa_mini.yaml")
    shas, units = _excluded([f"{qa}/pubmedqa_mini.yaml"], qa)
    assert list(shas.values()) == ["pubmedqa_mini"]  # the ground-truth file itself is refused
    docs = read_sources([f"{qa}/pubmedqa_mini/ori_pqal.json"])[0][1]
    dropped = [d for d in docs if leakage.unit_hashes(d) & units]
    assert len(docs) == 6 and len(dropped) == len(task_for(pub).load_split(pub, "test", qa)) == 2

    shas, _ = _excluded([f"{qa}/covid_mini.yaml", f"{qa}/bioasq_mini.yaml"], qa)
    assert list(shas.values()) == ["bioasq_mini"]  # covid_mini.json holds train too: not refused
    assert len(leakage.split_files(load(TaskCard, f"{qa}/bioasq_mini.yaml"), "test", qa)) == 1  # the glob

    data = tmp_path / "data"
    zpath = zip_ddi(data / "ddi_mini" / "DDICorpus-mini.zip")
    shutil.copytree(f"{qa}/covid_mini", data / "covid_mini")
    ddi, covid = "tests/fixtures/relation/ddi_mini.yaml", f"{qa}/covid_mini.yaml"
    pretrain(tiny_encoder, [str(zpath), str(data / "covid_mini")], tmp_path / "enc", max_steps=1, max_length=16,
             batch_size=2, exclude_cards=[ddi, covid], data_dir=str(data))
    sources = json.loads((tmp_path / "enc" / leakage.MANIFEST).read_text())["sources"]
    used = {Path(s["path"]).name: (s["documents_used"], s["documents"]) for s in sources}
    sentences = read_sources([str(zpath)])[0][1]  # one document per sentence, train and test parts
    test_pairs = {e.text.strip() for e in REL.load_split(load(TaskCard, ddi), "test", data)}
    assert used["DDICorpus-mini.zip"] == (sum(s not in test_pairs for s in sentences), len(sentences))
    assert 0 < len(test_pairs) < len(sentences)
    covid_used, covid_all = used["covid_mini.json"]
    assert 0 < covid_used < covid_all  # only the held-out articles are dropped
