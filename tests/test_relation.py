"""Relation task: metrics, entity-start head save/load, encoding, CLI train/evaluate/predict."""

import json
from pathlib import Path

import pytest
import torch
from test_relation_data import zip_ddi

from clinical_ft import engine
from clinical_ft.config import TrainConfig
from clinical_ft.errors import ConfigError, InputError
from clinical_ft.relation import TASK
from clinical_ft.relation.cli import main
from clinical_ft.relation.pairs import RelExample
from clinical_ft.relation.task import options

LABELS = ["false", "advise", "effect", "int", "mechanism"]


def _ex(label: str) -> RelExample:
    return RelExample("x", "t", label, "f", 1, "d")


def test_micro_f1_excludes_the_negative_class() -> None:
    gold = ["a", "b", "false", "a", "false", "b", "a"]
    pred = ["a", "false", "a", "b", "false", "b", "false"]
    m = TASK.score([_ex(g) for g in gold], [(p, 0.9) for p in pred], ["false", "a", "b"])
    # positives predicted: 0,2,3,5 (4); gold positives: 0,1,3,5,6 (5); correct: 0,5 (2)
    assert m["precision"] == pytest.approx(2 / 4) and m["recall"] == pytest.approx(2 / 5)
    assert m["f1"] == pytest.approx(2 * 0.5 * 0.4 / 0.9)
    assert m["accuracy"] == pytest.approx(3 / 7)  # the negative class counts only here
    assert m["a_precision"] == pytest.approx(1 / 2) and m["a_recall"] == pytest.approx(1 / 3)
    assert m["false_support"] == 2 and m["b_support"] == 2
    binary = TASK.score([_ex(g) for g in "1011"], ["1", "1", "0", "1"], ["0", "1"])
    assert binary["precision"] == pytest.approx(2 / 3) and binary["recall"] == pytest.approx(2 / 3)
    # predictions read back from predictions_test.jsonl (the benchmark's bootstrap): tuples became lists
    reread = json.loads(json.dumps([(p, 0.9) for p in pred]))
    assert TASK.score([_ex(g) for g in gold], reread, ["false", "a", "b"]) == m


def test_task_options_are_validated() -> None:
    assert options(TrainConfig()).pooling == "entity_start"
    with pytest.raises(ConfigError, match="pooling: expected one of"):
        options(TrainConfig(task_options={"pooling": "mean"}))
    with pytest.raises(ConfigError, match="markers: unknown key"):
        options(TrainConfig(task_options={"markers": "mask"}))
    assert options(TrainConfig(task_options={"marker": "typed_markers"})).entity_types == ["drug", "brand", "group", "drug_n"]
    with pytest.raises(ConfigError, match="entity_types: expected lower-case names.*'Drug X'"):
        options(TrainConfig(task_options={"entity_types": ["drug", "Drug X"]}))
    from clinical_ft.config import load

    for shipped in ("configs/relation/minilm.yaml", "configs/relation/bert_base.yaml"):
        assert options(load(TrainConfig, shipped)).entity_types == ["drug", "brand", "group", "drug_n"]


def test_entity_start_head_round_trip(tiny_encoder: str, tmp_path: Path) -> None:
    from clinical_ft.encoders import load_tokenizer
    from clinical_ft.relation.model import EntityStartClassifier

    cfg = TrainConfig(max_length=64, stride=8, task_options={"pooling": "entity_start", "marker": "entity_markers"})
    model = TASK.build_model(tiny_encoder, LABELS, cfg).eval()
    tok = load_tokenizer(tiny_encoder)
    assert isinstance(model, EntityStartClassifier)
    assert model.get_input_embeddings().num_embeddings == tok.vocab_size + 4  # markers added
    ex = RelExample("p", "Milk may impair the absorption of EMCYT.", "mechanism", "f", None, "d", ((0, 4), (34, 39)))
    enc = TASK.encode(tok, [ex], cfg, LABELS)
    row = enc.dataset[0]
    pieces = tok.convert_ids_to_tokens(row["input_ids"])
    assert [pieces[p] for p in row["entity_positions"]] == ["[E1]", "[E2]"] and row["labels"] == 4
    batch = {k: torch.tensor([row[k]]) for k in ("input_ids", "attention_mask", "token_type_ids", "entity_positions")}
    with torch.no_grad():
        logits = model(**batch).logits
        moved = model(**{**batch, "entity_positions": torch.tensor([[0, 1]])}).logits
    assert logits.shape == (1, 5) and not torch.allclose(logits, moved)  # pooling reads those positions
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / "model.safetensors").is_file()
    again = TASK.build_model(str(tmp_path / "m"), LABELS, cfg).eval()
    with torch.no_grad():
        assert torch.allclose(again(**batch).logits, logits, atol=1e-6)
    assert again.config.id2label[4] == "mechanism"


def test_typed_markers_pool_at_typed_starts_and_unknown_types_fall_back(
        tiny_encoder: str, caplog: pytest.LogCaptureFixture) -> None:
    from clinical_ft.encoders import load_tokenizer

    cfg = TrainConfig(max_length=64, stride=8, task_options={"marker": "typed_markers"})
    tok = load_tokenizer(tiny_encoder)
    model = TASK.build_model(tiny_encoder, LABELS, cfg)
    assert model.get_input_embeddings().num_embeddings == tok.vocab_size + 4 + 16  # untyped + 4 types x 4
    text = "Milk may impair the absorption of EMCYT."
    typed = RelExample("p", text, None, "f", None, "d", ((0, 4), (34, 39)), ("group", "brand"))
    odd = RelExample("q", text, None, "f", None, "d", ((0, 4), (34, 39)), ("drug", "metabolite"))
    enc = TASK.encode(tok, [typed, odd], cfg, LABELS)
    starts = [tok.convert_ids_to_tokens([r["input_ids"][p] for p in r["entity_positions"]]) for r in enc.dataset]
    assert starts == [["[E1:group]", "[E2:brand]"], ["[E1]", "[E2]"]]
    assert "1 of 2 pairs have an entity type outside task_options.entity_types" in caplog.text
    assert "pair q" in caplog.text and "metabolite" in caplog.text
    with pytest.raises(InputError, match="a label on every pair.*pair p without one"):
        TASK.encode(tok, [typed, RelExample("r", text, "false", "f", None, "d", ((0, 4), (34, 39)))], cfg, LABELS)


def test_long_pair_gets_the_window_holding_both_markers(tiny_encoder: str) -> None:
    from clinical_ft.encoders import load_tokenizer

    tok = load_tokenizer(tiny_encoder)
    cfg = TrainConfig(max_length=32, stride=8, task_options={"marker": "mask"})
    filler = "word " * 60
    text = filler + "aspirin and warfarin interact."
    a = text.index("aspirin")
    ex = RelExample("p", text, None, "f", None, "d", ((a, a + 7), (a + 12, a + 20)))
    row = TASK.encode(tok, [ex], cfg, LABELS).dataset[0]
    pieces = tok.convert_ids_to_tokens(row["input_ids"])
    assert len(pieces) <= 32 and [pieces[p] for p in row["entity_positions"]] == ["@", "@"]
    assert "labels" not in row


def test_ddi_train_evaluate_predict_cli(tiny_encoder: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    zpath = zip_ddi(tmp_path / "data" / "ddi_mini" / "DDICorpus-mini.zip")
    out = tmp_path / "run"
    rc = main(["train", "--card", "tests/fixtures/relation/ddi_mini.yaml", "--data-dir", str(tmp_path / "data"),
               "--out", str(out), "--encoder", tiny_encoder, "max_steps=2", "per_device_train_batch_size=4",
               "max_length=64", "stride=8", "eval_strategy=steps", "eval_steps=1", "logging_steps=1",
               "task_options.marker=typed_markers"])
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["global_steps"] == 2 and "f1" in metrics["validation"]
    assert json.loads((out / "config.json").read_text())["architectures"] == ["EntityStartClassifier"]
    assert main(["evaluate", "--model", str(out), "--data-dir", str(tmp_path / "data")]) == 0
    ev = json.loads((out / "eval_test.json").read_text())
    assert 0.0 <= ev["f1"] <= 1.0 and ev["artifacts"]["confusion_labels"] == LABELS
    assert sum(map(sum, ev["artifacts"]["confusion_matrix"])) == ev["examples"]
    assert (out / "confusion_test.png").read_bytes()[:4] == b"\x89PNG"
    assert ev["artifacts"]["skipped_pairs"] == 0 and ev["artifacts"]["skipped_by_reason"] == {}
    skipped = {}  # the 5 bad training pairs are counted in the carved split of their document
    for split in ("train", "validation"):
        assert main(["evaluate", "--model", str(out), "--split", split, "--data-dir", str(tmp_path / "data")]) == 0
        art = json.loads((out / f"eval_{split}.json").read_text())["artifacts"]
        assert art["skipped_pairs"] == sum(art["skipped_by_reason"].values())
        for reason, n in art["skipped_by_reason"].items():
            skipped[reason] = skipped.get(reason, 0) + n
    assert skipped == {"argument offsets unreadable or outside the sentence": 1, "pair refers to a missing entity": 1,
                       'ddi="true" without a type': 1, 'no ddi="true"/"false" attribute': 2}

    pred = tmp_path / "pred.tsv"
    assert main(["predict", "--model", str(out), "--input", str(zpath), "--part", "train", "--out", str(pred)]) == 0
    rows = [r.split("\t") for r in pred.read_text().splitlines()[1:]]
    train_ex = TASK.load_split(engine.load_run(TASK, out).card, "train", tmp_path / "data")
    dev_ex = TASK.load_split(engine.load_run(TASK, out).card, "validation", tmp_path / "data")
    unlabelled = {"DDI-DrugBank.d236.s29.p2", "DDI-DrugBank.d236.s29.p3"}  # predicted: labels are not needed
    assert len(rows) == len(train_ex) + len(dev_ex) + 2 + 3  # every pair: predicted, or skipped with a reason
    assert {r[0] for r in rows if r[1]} == {e.id for e in train_ex + dev_ex} | unlabelled
    notes = {r[0]: r[3] for r in rows if not r[1]}
    assert "without a type" in notes["DDI-DrugBank.d236.s29.p0"]
    assert all(r[1] in LABELS and 0.0 < float(r[2]) <= 1.0 for r in rows if r[1])


def test_dev_split_is_carved_by_document(tmp_path: Path) -> None:
    from clinical_ft.config import TaskCard, load

    zip_ddi(tmp_path / "ddi_mini" / "DDICorpus-mini.zip")
    card = load(TaskCard, "tests/fixtures/relation/ddi_mini.yaml")
    train = TASK.load_split(card, "train", tmp_path)
    dev = TASK.load_split(card, "validation", tmp_path)
    assert train and dev and {e.doc_id for e in train}.isdisjoint({e.doc_id for e in dev})
    assert [e.id for e in TASK.load_split(card, "validation", tmp_path)] == [e.id for e in dev]  # fixed seed


def test_tsv_predict_and_unknown_label(tiny_encoder: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(["train", "--card", "tests/fixtures/relation/gad_mini.yaml", "--data-dir", "tests/fixtures",
                 "--out", str(out), "--encoder", tiny_encoder, "max_steps=1", "max_length=64", "stride=8",
                 "eval_strategy=no", "task_options.pooling=cls", "task_options.marker=mask"]) == 0
    pred = tmp_path / "p.tsv"
    assert main(["predict", "--model", str(out), "--input", "tests/fixtures/relation/gad_mini/test.tsv",
                 "--out", str(pred)]) == 0
    rows = [r.split("\t") for r in pred.read_text().splitlines()]
    assert rows[0] == ["id", "label", "probability", "note"] and [r[0] for r in rows[1:]] == ["0", "1", "2", "3", "4", "5"]
    bad = tmp_path / "bad.tsv"
    bad.write_text("a @GENE$ b @DISEASE$\t1\nc @GENE$ d @DISEASE$\tmaybe\n")
    run = engine.load_run(TASK, out)
    from clinical_ft.relation.pairs import read_tsv

    with pytest.raises(InputError, match="line 2.*maybe"):
        TASK.encode(run.tokenizer, read_tsv(bad), run.cfg, run.labels)


@pytest.mark.slow
def test_minilm_entity_start_fits_the_training_pairs(tmp_path: Path) -> None:
    """Real MiniLM, new marker embeddings, entity-start head: it can fit a handful of real DDI pairs."""
    zip_ddi(tmp_path / "data" / "ddi_mini" / "DDICorpus-mini.zip")
    out = tmp_path / "run"
    assert main(["train", "--card", "tests/fixtures/relation/ddi_mini.yaml", "--config", "relation/minilm",
                 "--data-dir", str(tmp_path / "data"), "--out", str(out), "max_steps=40", "learning_rate=2e-4",
                 "per_device_train_batch_size=8", "warmup_ratio=0.0", "eval_strategy=no", "weight_decay=0.0"]) == 0
    assert main(["evaluate", "--model", str(out), "--split", "train", "--data-dir", str(tmp_path / "data")]) == 0
    ev = json.loads((out / "eval_train.json").read_text())
    assert ev["accuracy"] >= 0.9, ev  # memorised; a broken marker/pooling path cannot separate the pairs
