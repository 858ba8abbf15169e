import json
from pathlib import Path

import pytest

from clinical_ft import engine
from clinical_ft.ner import TASK
from clinical_ft.ner.cli import main
from clinical_ft.ner.conll import Sentence

CARD = "tests/fixtures/ncbi_mini.yaml"


def test_seqeval_scores_match_hand_computed_values() -> None:
    gold = [Sentence(["a", "b", "c", "d", "e"], ["B-D", "I-D", "O", "B-C", "O"], "f", 1),
            Sentence(["x", "y"], ["B", "I"], "f", 7)]
    pred = [["B-D", "I-D", "O", "B-D", "O"], ["B", "O"]]
    m = TASK.score(gold, pred, [])
    # gold entities: D(0-1), C(3), bio(0-1); predicted: D(0-1), D(3), bio(0) -> 1 correct of 3 each way
    assert m["precision"] == pytest.approx(1 / 3) and m["recall"] == pytest.approx(1 / 3)
    assert m["D_precision"] == pytest.approx(0.5) and m["D_recall"] == pytest.approx(1.0)
    assert m["C_recall"] == 0.0 and m["bio_f1"] == 0.0 and m["C_support"] == 1


def test_label_alignment_first_subword_only(tiny_encoder: str) -> None:
    from clinical_ft.config import TrainConfig
    from clinical_ft.encoders import load_tokenizer

    tok = load_tokenizer(tiny_encoder)
    sent = Sentence(["Hyperlipoproteinemia", "is", "rare"], ["B-Disease", "O", "O"], "f", 1)
    enc = TASK.encode(tok, [sent], TrainConfig(max_length=32, stride=8), ["O", "B-Disease", "I-Disease"])
    labels = enc.dataset["labels"][0]
    ids = enc.dataset["input_ids"][0]
    pieces = tok.convert_ids_to_tokens(ids)
    assert labels[0] == -100 and labels[-1] == -100  # [CLS], [SEP]
    assert labels[1] == 1 and pieces[2].startswith("##") and labels[2] == -100
    assert [lab for lab in labels if lab != -100] == [1, 0, 0]


def test_words_whose_first_subword_is_not_at_char_0_keep_their_label(tiny_encoder: str) -> None:
    """A leading zero-width space or combining accent is dropped by the normalizer: the first
    subword then starts at character 1, and the word still carries its label."""
    from clinical_ft.config import TrainConfig
    from clinical_ft.encoders import load_tokenizer

    tok = load_tokenizer(tiny_encoder)
    sent = Sentence(["\u200bcancer", "is", "\u0301ataxia"], ["B-Disease", "O", "B-Disease"], "f", 1)
    enc = TASK.encode(tok, [sent], TrainConfig(max_length=32, stride=8), ["O", "B-Disease", "I-Disease"])
    offsets = enc.meta[0].offsets
    assert offsets[1][0] == 1  # the first subword of the first word starts after the zero-width space
    assert [lab for lab in enc.dataset["labels"][0] if lab != -100] == [1, 0, 1]


def test_each_word_is_labelled_once_per_window_where_its_first_subword_is(tiny_encoder: str) -> None:
    """Windows overlap and may start inside a word: a continued word gets no label there."""
    from clinical_ft.config import TrainConfig
    from clinical_ft.encoders import load_tokenizer

    tok = load_tokenizer(tiny_encoder)
    words = ["\u200bcancer", "is", "Hyperlipoproteinemia"] * 4
    sent = Sentence(words, ["B-Disease", "O", "B-Disease"] * 4, "f", 1)
    enc = TASK.encode(tok, [sent], TrainConfig(max_length=10, stride=3), ["O", "B-Disease", "I-Disease"])
    labelled: dict[int, int] = {}
    for win, labels in zip(enc.meta, enc.dataset["labels"]):
        for p, lab in enumerate(labels):
            if lab != -100:
                w = win.word_ids[p]
                starts = [o[0] for o, v in zip(win.offsets, win.word_ids) if v == w]
                assert win.offsets[p][0] == min(starts)
                assert p == 1 or win.word_ids[p - 1] != w  # the first piece of the word in this window
                labelled[w] = labelled.get(w, 0) + 1
    assert sorted(labelled) == list(range(len(words)))  # every word is labelled somewhere
    continued = [win for win in enc.meta if win.window_index and win.offsets[1][0] > 1]
    assert continued, "the fixture should start a window inside a long word"
    assert all(lab == -100 for win in continued for lab in [enc.dataset["labels"][enc.meta.index(win)][1]])


def test_unknown_tag_error_names_the_tag_line() -> None:
    from clinical_ft.config import TaskCard, load
    from clinical_ft.errors import InputError

    card = load(TaskCard, CARD)
    sents = [Sentence(["a"], ["O"], "train.tsv", 1), Sentence(["b", "c", "d"], ["O", "O", "B-Chemical"], "train.tsv", 3)]
    with pytest.raises(InputError) as exc:
        TASK.label_list(card, sents)
    assert exc.value.line == 5 and "'B-Chemical'" in str(exc.value)


def test_train_evaluate_predict_cli(tiny_encoder: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    rc = main(["train", "--card", CARD, "--data-dir", "tests/fixtures", "--out", str(out), "--encoder", tiny_encoder,
               "max_steps=2", "per_device_train_batch_size=2", "max_length=32", "stride=8", "eval_strategy=steps",
               "eval_steps=1", "logging_steps=1"])
    assert rc == 0
    for f in ("model.safetensors", "run.yaml", "labels.json", "metrics.json", "README.md", "tokenizer.json"):
        assert (out / f).is_file(), f
    assert not (out / "checkpoints").exists()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["limited"] is True and "f1" in metrics["validation"] and metrics["train_tokens_per_second"] > 0
    # a finished run is not silently overwritten
    assert main(["train", "--card", CARD, "--data-dir", "tests/fixtures", "--out", str(out), "--encoder", tiny_encoder]) == 2
    assert "already holds a finished run" in capsys.readouterr().err

    assert main(["evaluate", "--model", str(out), "--split", "test", "--data-dir", "tests/fixtures"]) == 0
    ev = json.loads((out / "eval_test.json").read_text())
    assert ev["examples"] == 3 and 0.0 <= ev["f1"] <= 1.0
    assert ev["iob_repairs"] == len(ev["iob_repair_lines"])  # what reading the gold tags changed, by line

    # CoNLL predict keeps every input token, including a 600-token sentence longer than the window
    src = tmp_path / "in.conll"
    long = "\n".join(f"tok{i}" for i in range(600))
    src.write_text("Familial\nadenomatous\npolyposis\n\n" + long + "\n")
    assert main(["predict", "--model", str(out), "--input", str(src), "--out", str(tmp_path / "p.conll")]) == 0
    lines = (tmp_path / "p.conll").read_text().split("\n\n")
    assert [len(block.strip().splitlines()) for block in lines if block.strip()] == [3, 600]
    # every input line is kept as it was (DOCSTART, POS column, gold tag as written); the prediction is appended
    src.write_text("-DOCSTART-\tO\n\nFamilial\tJJ\tI-Disease\npolyposis\tNN\tI-Disease\n\nruns\tVBZ\tO\n")
    capsys.readouterr()
    assert main(["predict", "--model", str(out), "--input", str(src), "--out", str(tmp_path / "p.conll")]) == 0
    printed = capsys.readouterr().out
    assert "2 sentences, 3 tokens tagged" in printed and "1 I- tags did not continue a chunk" in printed
    assert printed.rstrip().endswith("lines 3")
    got = (tmp_path / "p.conll").read_text().splitlines()
    want = src.read_text().splitlines()
    assert len(got) == len(want) and got[0] == "-DOCSTART-\tO\tO" and got[1] == got[4] == ""
    for g, w in zip(got, want):
        assert g == w if not w else g.rsplit("\t", 1)[0] == w and g.rsplit("\t", 1)[1] in json.loads((out / "labels.json").read_text())

    # raw text: one document per line, entities with character offsets into the line
    txt = tmp_path / "in.txt"
    txt.write_text("Familial adenomatous polyposis runs in families.\n\nSecond note.\n")
    assert main(["predict", "--model", str(out), "--input", str(txt), "--out", str(tmp_path / "p.jsonl")]) == 0
    rows = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert [r["line"] for r in rows] == [1, 2, 3]
    text = txt.read_text().splitlines()[0]
    assert [text[s:e] for s, e, _ in rows[0]["tokens"]] == ["Familial", "adenomatous", "polyposis", "runs", "in", "families", "."]
    for ent in rows[0]["entities"]:
        assert text[ent["start"]:ent["end"]] == ent["text"]


def test_bad_inputs_fail_clearly(tiny_encoder: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(Path(CARD).read_text().replace("path: ncbi_mini", "path: nowhere"))
    rc = main(["train", "--card", str(bad), "--data-dir", "tests/fixtures", "--out", str(tmp_path / "r"), "--encoder", tiny_encoder])
    assert rc == 2 and "not found. Pass --data-dir" in capsys.readouterr().err
    rc = main(["train", "--card", CARD, "--data-dir", "tests/fixtures", "--out", str(tmp_path / "r"), "--encoder", "no-such-org/no-such-model"])
    assert rc == 2 and "not available offline" in capsys.readouterr().err
    rc = main(["train", "--card", CARD, "--out", str(tmp_path / "r"), "lerning_rate=1"])
    assert rc == 2 and "lerning_rate: unknown key" in capsys.readouterr().err


def test_resume_after_interruption(tiny_encoder: str, tmp_path: Path) -> None:
    """Train stops after a checkpoint (simulated crash); running again resumes from it."""
    from transformers import TrainerCallback

    from clinical_ft.config import TaskCard, TrainConfig, load

    class Crash(TrainerCallback):
        def on_save(self, args, state, control, **kw):
            raise KeyboardInterrupt

    card = load(TaskCard, CARD)
    cfg = TrainConfig(encoder=tiny_encoder, max_length=32, stride=8, num_train_epochs=3, per_device_train_batch_size=2)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        engine.train(TASK, card, cfg, out, data_dir="tests/fixtures", callbacks=[Crash()])
    assert list((out / "checkpoints").glob("checkpoint-*"))
    first_ckpt = int(sorted((out / "checkpoints").glob("checkpoint-*"))[-1].name.split("-")[1])
    metrics = engine.train(TASK, card, cfg, out, data_dir="tests/fixtures")
    # crashed right after the first epoch's checkpoint; resumed for the remaining two epochs
    assert metrics["global_steps"] == 3 * first_ckpt and (out / "metrics.json").exists()
    assert metrics["train_runtime_s"] < 60


def test_overwrite_starts_afresh_instead_of_resuming(tiny_encoder: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from transformers import TrainerCallback

    from clinical_ft.config import TaskCard, TrainConfig, load

    class Crash(TrainerCallback):
        def on_save(self, args, state, control, **kw):
            raise KeyboardInterrupt

    card = load(TaskCard, CARD)
    cfg = TrainConfig(encoder=tiny_encoder, max_length=32, stride=8, num_train_epochs=1, per_device_train_batch_size=2)
    with pytest.raises(KeyboardInterrupt):
        engine.train(TASK, card, cfg, tmp_path / "run", data_dir="tests/fixtures", callbacks=[Crash()])
    with caplog.at_level("WARNING", logger="clinical_ft"):
        engine.train(TASK, card, cfg, tmp_path / "run", data_dir="tests/fixtures", overwrite=True)
    assert "resuming" not in caplog.text
    assert not (tmp_path / "run" / "checkpoints").exists()
