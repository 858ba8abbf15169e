"""QA task modules: readers and split protocol, window labels, train/save/reload/predict contract, CLI."""

import json
from pathlib import Path

import pytest

from clinical_ft import engine
from clinical_ft.config import TaskCard, TrainConfig, load
from clinical_ft.qa import EXTRACTIVE, YESNO
from clinical_ft.qa.cli import main
from clinical_ft.qa.readers import QAExample, read_squad
from clinical_ft.registry import for_card as task_for

FIX = "tests/fixtures/qa"
COVID, BIOASQ, PUBMEDQA = f"{FIX}/covid_mini.yaml", f"{FIX}/bioasq_mini.yaml", f"{FIX}/pubmedqa_mini.yaml"
SMALL = {"max_length": 96, "stride": 24}


def test_splits_follow_the_documented_protocol() -> None:
    covid = load(TaskCard, COVID)
    parts = {s: EXTRACTIVE.load_split(covid, s, FIX) for s in ("train", "validation", "test")}
    groups = {s: {e.group for e in ex} for s, ex in parts.items()}
    assert all(parts.values()) and sum(len(p) for p in parts.values()) == 13
    assert not (groups["train"] & groups["test"]) and not (groups["train"] & groups["validation"])
    assert parts["test"] == EXTRACTIVE.load_split(covid, "test", FIX)  # fixed seed, same split
    for ex in (e for p in parts.values() for e in p):  # every answer anchored on its text
        assert all(ex.context[s:s + len(t)] == t for t, s in ex.answers)

    bio = load(TaskCard, BIOASQ)
    test = EXTRACTIVE.load_split(bio, "test", FIX)
    train = EXTRACTIVE.load_split(bio, "train", FIX) + EXTRACTIVE.load_split(bio, "validation", FIX)
    assert {e.question_id for e in test} == {"5a6a3335b750ff4455000025", "5a7610af83b0d9ea6600001a"}
    assert not {e.question_id for e in train} & {e.question_id for e in test}  # 6b questions dropped from 7b
    assert test[0].answers is None and test[0].gold == ["emMAW"] and all(e.factoid for e in test)

    pub = load(TaskCard, PUBMEDQA)
    ptest = YESNO.load_split(pub, "test", FIX)
    assert [(x.id, x.label) for x in ptest] == [("12377809", "yes"), ("24577079", "no")]
    assert len(YESNO.load_split(pub, "train", FIX)) == 3 and len(YESNO.load_split(pub, "validation", FIX)) == 1


def test_reanchoring_and_bad_json_are_reported(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    src = json.loads(Path(f"{FIX}/covid_mini/covid_mini.json").read_text())
    qa = src["data"][2]["paragraphs"][0]["qas"][2]
    assert qa["id"] == 507  # real COVID-QA answer whose text is padded with spaces
    ex = [e for e in read_squad(f"{FIX}/covid_mini/covid_mini.json") if e.id == "507"][0]
    (text, start), = ex.answers
    assert text == qa["answers"][0]["text"].strip() != qa["answers"][0]["text"]
    assert ex.context[start:start + len(text)] == text
    assert "re-anchored" in caplog.text
    bad = tmp_path / "bad.json"
    bad.write_text('{"data": [{"paragraphs": [{"context": "c", "qas": [{"id": 1}]}]}]}')
    with pytest.raises(Exception, match=r"data\[0\]\.paragraphs\[0\]\.qas\[0\]: an object with id and question"):
        read_squad(bad)


def test_malformed_articles_contexts_and_golden_questions_name_their_location(tmp_path: Path) -> None:
    from clinical_ft.errors import InputError
    from clinical_ft.qa.readers import read_bioasq_golden, read_yesno

    bad = tmp_path / "bad.json"
    ok = {"paragraphs": [{"context": "c", "qas": []}]}
    for art, where in (("not an article", r"data\[1\]: an article object"), ({"title": "t"}, r"data\[1\]: an article"),
                       ({"paragraphs": [{"context": "c", "qas": {}}]}, r"data\[1\]\.paragraphs\[0\]\.qas: a list")):
        bad.write_text(json.dumps({"data": [ok, art]}))
        with pytest.raises(InputError, match=where) as exc:
            read_squad(bad)
        assert exc.value.path == str(bad)
    bad.write_text(json.dumps({"1": {"QUESTION": "q?", "final_decision": "yes"}}))
    with pytest.raises(InputError, match=r"\['1'\]\.CONTEXTS: a list of strings.*found none"):
        read_yesno(bad)
    bad.write_text(json.dumps({"1": {"QUESTION": "q?", "CONTEXTS": ["a", 2], "final_decision": "yes"}}))
    with pytest.raises(InputError, match=r"\['1'\]\.CONTEXTS"):
        read_yesno(bad)
    bad.write_text(json.dumps({"questions": [{"type": "yesno"}, {"type": "factoid", "exact_answer": [["x"]]}]}))
    with pytest.raises(InputError, match=r"bad\.json: expected questions\[1\]\.id"):
        read_bioasq_golden([bad])
    bad.write_text(json.dumps({"questions": [{"id": "q1", "type": "factoid", "exact_answer": [["x", "y"]]}]}))
    assert read_bioasq_golden([bad]) == {"q1": ["x", "y"]}


def test_window_labels_point_at_cls_when_the_answer_is_outside(tiny_encoder: str) -> None:
    from clinical_ft.encoders import load_tokenizer

    tok = load_tokenizer(tiny_encoder)
    context = " ".join(f"word{i}" for i in range(200)) + " the answer is interleukin six here"
    ex = QAExample("q", "what is it?", context, [("interleukin six", context.index("interleukin"))], split="validation")
    enc = EXTRACTIVE.encode(tok, [ex], TrainConfig(max_length=48, stride=12), [])
    starts, ends = enc.dataset["start_positions"], enc.dataset["end_positions"]
    assert len(starts) > 5  # windowed, nothing truncated
    inside = [i for i, s in enumerate(starts) if s != 0]
    assert inside and all(starts[i] == ends[i] == 0 for i in range(len(starts)) if i not in inside)
    for i in inside:
        offs = enc.meta.offsets[i]
        assert context[offs[starts[i]][0]:offs[ends[i]][1]] == "interleukin six"
    # training windows without the answer can be subsampled; evaluation keeps them all
    ex.split = "train"
    cfg = TrainConfig(max_length=48, stride=12, task_options={"train_negative_fraction": 0.0})
    assert len(EXTRACTIVE.encode(tok, [ex], cfg, []).dataset) == len(inside)


@pytest.mark.parametrize("card_path", [COVID, BIOASQ, PUBMEDQA], ids=["squad", "bioasq", "pubmedqa"])
def test_trains_saves_reloads_predicts(card_path: str, tiny_encoder: str, tmp_path: Path) -> None:
    card = load(TaskCard, card_path)
    task = task_for(card)
    cfg = TrainConfig(encoder=tiny_encoder, max_steps=2, per_device_train_batch_size=2, eval_strategy="no", **SMALL)
    metrics = engine.train(task, card, cfg, tmp_path / "run", data_dir=FIX)
    assert metrics["global_steps"] == 2 and metrics["limited"] is True
    run = engine.load_run(task, tmp_path / "run")
    examples = task.load_split(run.card, "test", FIX)
    encoded = task.encode(run.tokenizer, examples, run.cfg, run.labels)
    preds = task.decode(examples, encoded, engine.predict_raw(task, run, encoded), run.labels, run.cfg)
    assert len(preds) == len(examples)
    scores = task.score(examples, preds, run.labels)
    assert task.metric_for_best_model in scores
    if card.data.format == "bioasq":
        assert {"strict_acc", "lenient_acc", "mrr"} <= set(scores) and scores["questions"] == 2
    if task is EXTRACTIVE:
        for ex, cands in zip(examples, preds):
            assert all(ex.context[c["start"]:c["end"]] == c["text"] for c in cands)
    else:
        assert all(abs(sum(p["probabilities"].values()) - 1) < 1e-5 for p in preds)


def test_cli_extractive_train_evaluate_predict(tiny_encoder: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(["train", "--card", COVID, "--out", str(out), "--data-dir", FIX, "--encoder", tiny_encoder,
                 "max_steps=2", "per_device_train_batch_size=2", "max_length=96", "stride=24", "logging_steps=1",
                 "task_options.n_best_size=5", "eval_strategy=steps", "eval_steps=1"]) == 0
    assert "f1" in json.loads((out / "metrics.json").read_text())["validation"]
    assert main(["evaluate", "--model", str(out), "--data-dir", FIX]) == 0
    ev = json.loads((out / "eval_test.json").read_text())
    assert ev["examples"] == 3 and 0 <= ev["exact_match"] <= ev["f1"] <= 1

    # SQuAD-style input without answers, one question over a context much longer than a window
    long_ctx = " ".join(["Coronaviruses are enveloped RNA viruses."] * 300) + " The genome is 30 kb long."
    src = tmp_path / "in.json"
    src.write_text(json.dumps({"data": [{"paragraphs": [{"context": long_ctx, "qas": [{"id": "a", "question": "How long is the genome?"}]},
                                                        {"context": "", "qas": [{"id": "b", "question": "Empty?"}]}]}]}))
    assert main(["predict", "--model", str(out), "--input", str(src), "--out", str(tmp_path / "p.jsonl")]) == 0
    rows = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["a", "b"]
    assert long_ctx[rows[0]["start"]:rows[0]["end"]] == rows[0]["answer"] and 0 < rows[0]["probability"] <= 1
    assert len(rows[0]["nbest"]) == 5 and rows[1]["answer"] == "" and "reason" in rows[1]
    capsys.readouterr()
    # one question token and one context token: 5 positions, so the top-5 starts and ends always hold
    # the context token and any model answers with it (a longer context may leave a random model none)
    assert main(["predict", "--model", str(out), "--question", "What", "--context", "Spike"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert (row["answer"], row["start"], row["end"]) == ("Spike", 0, 5) and 0 < row["probability"] <= 1
    assert row["nbest"] and "reason" not in row

    assert main(["predict", "--model", str(out), "--question", "What?"]) == 2
    assert "needs --input FILE" in capsys.readouterr().err
    assert main(["predict", "--model", str(out), "--input", str(tmp_path / "missing.json")]) == 2
    assert "missing.json: expected a readable JSON file" in capsys.readouterr().err
    assert main(["train", "--card", COVID, "--out", str(tmp_path / "r2"), "--data-dir", FIX, "--encoder", tiny_encoder,
                 "task_options.n_best_size=50"]) == 2
    assert "n_best_size: expected 1..20" in capsys.readouterr().err


def test_cli_yesno_train_predict(tiny_encoder: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(["train", "--card", PUBMEDQA, "--out", str(out), "--data-dir", FIX, "--encoder", tiny_encoder,
                 "max_steps=2", "per_device_train_batch_size=2", "max_length=96", "stride=24"]) == 0
    assert (out / "labels.json").read_text().split() == ['[', '"yes",', '"no",', '"maybe"', ']']
    assert main(["evaluate", "--model", str(out), "--data-dir", FIX]) == 0
    ev = json.loads((out / "eval_test.json").read_text())
    assert ev["examples"] == 2 and {"accuracy", "macro_f1"} <= set(ev)
    capsys.readouterr()
    assert main(["predict", "--model", str(out), "--input", f"{FIX}/pubmedqa_mini/ori_pqal.json"]) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert len(rows) == 6 and all(r["label"] in ("yes", "no", "maybe") for r in rows)
    assert all(r["windows"] >= 2 for r in rows)  # abstracts longer than 96 tokens are windowed, not cut
    bad = tmp_path / "bad.yaml"
    bad.write_text(Path(PUBMEDQA).read_text().replace("format: pubmedqa", "format: csv"))
    assert main(["train", "--card", str(bad), "--out", str(tmp_path / "r"), "--encoder", tiny_encoder]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml" in err and "data.format: expected one of ['squad', 'bioasq', 'pubmedqa'] for kind qa" in err


def test_overlong_questions_are_cut_not_crashing(tiny_encoder: str, caplog: pytest.LogCaptureFixture) -> None:
    from clinical_ft.encoders import load_tokenizer

    tok = load_tokenizer(tiny_encoder)
    ex = QAExample("q", " ".join(["why"] * 80), "some context here " * 50, None)
    enc = EXTRACTIVE.encode(tok, [ex], TrainConfig(max_length=96, stride=24), [])
    assert max(enc.dataset["length"]) <= 96 and "1 questions longer than 48 tokens were cut" in caplog.text
