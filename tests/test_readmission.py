"""Readmission: metrics against hand-computed curves, chunk offsets, aggregation through the full
predict path, and bad notes input (errors or reported skips, never lost rows)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from clinical_ft import encoders
from clinical_ft.chunking import tokenize_windows
from clinical_ft.config import TaskCard, TrainConfig, from_dict
from clinical_ft.engine import Run
from clinical_ft.errors import InputError
from clinical_ft.readmission import infer
from clinical_ft.readmission.metrics import plot_curves, readmission_metrics
from clinical_ft.readmission.notes import GROUP_COLUMNS, Note, iter_blocks, load_notes
from clinical_ft.readmission.prepare import prepare
from clinical_ft.readmission.task import TASK

LONG = " ".join(f"Day {i}: patient reports dyspnea ({i % 7} episodes), weight {70 + i % 5}.2 kg; plan diuresis."
                for i in range(60))


def test_metrics_match_hand_computed_curves(tmp_path: Path) -> None:
    y = [1, 0, 1, 1, 0, 0]
    s = [0.9, 0.8, 0.7, 0.6, 0.3, 0.1]
    m = readmission_metrics(y, s)
    # PR points (recall, precision) down the ranking: (1/3, 1), (1/3, 1/2), (2/3, 2/3), (1, 3/4)
    assert m["auroc"] == pytest.approx(7 / 9)  # 7 of 9 positive-negative pairs ranked right
    assert m["auprc_avg_precision"] == pytest.approx(1 / 3 * 1 + 1 / 3 * 2 / 3 + 1 / 3 * 3 / 4)
    trapezoid = 1 / 3 * 1 + 1 / 3 * (1 / 2 + 2 / 3) / 2 + 1 / 3 * (2 / 3 + 3 / 4) / 2
    assert m["auprc_trapezoid"] == pytest.approx(trapezoid)
    assert m["rp80"] == pytest.approx(1 / 3)  # only the top-1 cut reaches precision >= 0.8
    assert readmission_metrics([0, 1], [0.9, 0.1])["rp80"] == 0.0
    assert readmission_metrics([1, 0, 1, 0], [0.9, 0.1, 0.8, 0.2])["rp80"] == 1.0
    assert math.isnan(readmission_metrics([1, 1], [0.2, 0.3])["auroc"])
    paths = plot_curves(y, s, tmp_path, "test")
    assert [p.name for p in paths] == ["roc_test.png", "pr_test.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in paths)


def test_window_offsets_round_trip_to_the_text(tiny_encoder: str) -> None:
    tok = encoders.load_tokenizer(tiny_encoder)
    wins = tokenize_windows(tok, [LONG], max_length=64, stride=16, doc_ids=["a"])
    assert len(wins) > 5
    covered = np.zeros(len(LONG), dtype=bool)
    for w in wins:
        spans = [o for o in w.offsets if o is not None]
        ids = [i for i, o in zip(w.input_ids, w.offsets) if o is not None]
        assert (w.char_start, w.char_end) == (spans[0][0], spans[-1][1])
        for (a, b), piece in zip(spans, tok.convert_ids_to_tokens(ids)):
            assert piece.removeprefix("##") == LONG[a:b].lower()  # every token maps back to its characters
            covered[a:b] = True
    assert all(covered[i] for i, ch in enumerate(LONG) if not ch.isspace())
    for prev, nxt in zip(wins, wins[1:]):
        assert nxt.char_start < prev.char_end  # stride overlap
    assert wins[0].char_start == 0 and wins[-1].char_end == len(LONG)


def _run(tiny_encoder: str, **cfg: object) -> Run:
    card = from_dict(TaskCard, {"name": "t", "version": 1, "kind": "readmission", "metric": "auroc",
                                "data": {"format": "notes_csv", "files": {"test": "x.csv"}}}, "test card")
    conf = TrainConfig(encoder=tiny_encoder, max_length=48, stride=8, **cfg)
    model = TASK.build_model(tiny_encoder, ["no", "yes"], conf)
    return Run(Path("."), card, conf, ["no", "yes"], model, encoders.load_tokenizer(tiny_encoder))


def _window_prob_alone(run: Run, ids: list[int]) -> float:
    import torch

    with torch.inference_mode():
        return float(run.model(input_ids=torch.tensor([ids])).logits.softmax(-1)[0, 1])


@pytest.mark.parametrize("method", ["clinicalbert", "max", "mean"])
def test_aggregation_through_the_full_predict_path(method: str, tiny_encoder: str, tmp_path: Path) -> None:
    run = _run(tiny_encoder, aggregation=method, aggregation_c=3.0, per_device_eval_batch_size=3)
    texts = {"a": LONG, "b": "short note, stable for discharge.", "c": LONG[:700]}
    notes = tmp_path / "notes.csv"
    with notes.open("w", newline="") as fh:
        csv.writer(fh).writerows([["admission_id", "text"], *texts.items()])
    s = infer.predict_csv(run, notes, tmp_path / "risk.csv", block_size=2, progress=False)
    assert s.scored == 3 and not s.skips
    rows = {r["admission_id"]: r for r in csv.DictReader((tmp_path / "risk.csv").open())}
    for doc, text in texts.items():
        # expected: every window alone (no padding, one at a time), then the formula by hand
        p = np.array([_window_prob_alone(run, w.input_ids) for w in
                      tokenize_windows(run.tokenizer, [text], max_length=48, stride=8)])
        n = len(p)
        want = {"clinicalbert": (p.max() + p.mean() * n / 3.0) / (1 + n / 3.0), "max": p.max(), "mean": p.mean()}[method]
        row = rows[doc]
        assert float(row["risk"]) == pytest.approx(want, abs=1e-5)
        assert int(row["n_chunks"]) == n and row["aggregation"] == method and float(row["aggregation_c"]) == 3.0
        top = int(np.argmax(p))
        win = tokenize_windows(run.tokenizer, [text], max_length=48, stride=8)[top]
        assert (int(row["top_chunk_start"]), int(row["top_chunk_end"])) == (win.char_start, win.char_end)


def test_bad_rows_are_skipped_with_reasons_and_nothing_is_lost(tiny_encoder: str, tmp_path: Path) -> None:
    run = _run(tiny_encoder)
    notes = tmp_path / "notes.csv"
    huge = ("patient left against medical advice. " * 6000)[:200_000]
    body = (f"admission_id,text\n1,first note\n,no id\n3,   \n1,duplicate id\n5,\"{huge}\"\n6,\"multi\nline\"\n"
            ).encode() + b"7,caf\xe9 latin-1\n8,last\n"
    notes.write_bytes(body)
    s = infer.predict_csv(run, notes, tmp_path / "out" / "risk.csv", batch_size=16, progress=False)
    scored = [r["admission_id"] for r in csv.DictReader((tmp_path / "out" / "risk.csv").open())]
    skipped = list(csv.DictReader((tmp_path / "out" / "risk.skipped.csv").open()))
    assert scored == ["1", "5", "6", "8"]
    assert [(r["row"], r["id"]) for r in skipped] == [("2", ""), ("3", "3"), ("4", "1"), ("7", "7")]
    reasons = " | ".join(r["reason"] for r in skipped)
    assert "missing id" in reasons and "empty note" in reasons and "duplicate" in reasons and "not UTF-8" in reasons
    assert s.scored + len(s.skips) == 8
    assert not list((tmp_path / "out").glob("*.tmp"))
    other = tmp_path / "other.csv"  # a second predict into the same folder keeps its own skip report
    other.write_text("admission_id,text\n9,a note\n10,\n")
    s2 = infer.predict_csv(run, other, tmp_path / "out" / "risk2.csv", progress=False)
    assert s2.skipped_csv == tmp_path / "out" / "risk2.skipped.csv"
    assert [r["id"] for r in csv.DictReader(s2.skipped_csv.open())] == ["10"]
    assert len(list(csv.DictReader((tmp_path / "out" / "risk.skipped.csv").open()))) == 4


def test_missing_column_is_an_error_and_writes_nothing(tiny_encoder: str, tmp_path: Path) -> None:
    notes = tmp_path / "notes.csv"
    notes.write_text("hadm_id,text\n1,a note\n")
    with pytest.raises(InputError, match=r"admission_id.*header is \['hadm_id', 'text'\]"):
        infer.predict_csv(_run(tiny_encoder), notes, tmp_path / "risk.csv", progress=False)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.csv"]  # no risk.csv, risk.skipped.csv or .tmp
    assert [n.id for b, _ in iter_blocks(notes, {"id": "hadm_id"}) for n in b] == ["1"]


@pytest.mark.parametrize("body,found", [
    ("admission_id,text,label\n1,a,1\n2,b,\n", "row 2"),
    ("admission_id,text,label\n1,a,1\n1,b,0\n", "duplicate admission id"),
    ("admission_id,text,label\n1,a,yes please\n", "expected 0 or 1"),
])
def test_training_splits_are_strict(body: str, found: str, tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_text(body)
    with pytest.raises(InputError, match=found) as exc:
        load_notes(path)
    assert str(path) in str(exc.value)


def test_malformed_line_after_the_first_block_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "notes.csv"
    path.write_text("admission_id,text\n1,a note\n2,another note\n3,ragged,extra field\n4,last\n")
    blocks = iter_blocks(path, block_size=1)
    assert [n.id for n in next(blocks)[0]] == ["1"]  # the first block is fine; the error comes later
    with pytest.raises(InputError) as exc:
        list(blocks)
    assert exc.value.path == str(path) and exc.value.line == 4
    assert "as many fields as the header" in str(exc.value) and "Expected 2 fields in line 4, saw 3" in str(exc.value)


def test_notes_carry_the_group_columns_they_have(tmp_path: Path) -> None:
    path = tmp_path / "notes.csv"
    path.write_bytes(b"admission_id,text,label,gender,age_group,ward,ethnicity\n"
                     b"1,a note,1,F,65-79,7B,WHITE\n2,b note,0,, ,7C,ASIAN\n3,c note,0,M,80+,7D,caf\xe9\n")
    notes = load_notes(path)
    assert [n.attrs for n in notes] == [{"gender": "F", "age_group": "65-79", "ethnicity": "WHITE"},
                                        {"ethnicity": "ASIAN"},  # empty cells are not attributes
                                        {"gender": "M", "age_group": "80+", "ethnicity": "caf\ufffd"}]
    assert [n.attrs for b, _ in iter_blocks(path, labels="ignore", block_size=2) for n in b] == [n.attrs for n in notes]
    assert Note("9", "t", None, 1).attrs == {} and GROUP_COLUMNS[0] == "gender"
    plain = tmp_path / "plain.csv"
    plain.write_text("admission_id,text\n1,a note\n")
    assert load_notes(plain, labels="optional")[0].attrs == {}
    s = prepare(tmp_path / "out", notes=path, fractions=(1.0, 0.0, 0.0))
    assert s["group_columns"] == ["gender", "age_group", "ethnicity"]  # those the CSV has; "ward" is not one
    assert [n.attrs for n in load_notes(tmp_path / "out" / "train.csv")] == [n.attrs for n in notes]
