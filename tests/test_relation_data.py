"""Relation readers: marker insertion by character offsets, DDI XML (zip/folder/file), BLUE tsv."""

import re
import zipfile
from pathlib import Path

import pytest

from clinical_ft.errors import InputError
from clinical_ft.relation.ddi_xml import ddi_sentences, read_ddi
from clinical_ft.relation.pairs import (
    DDI_TYPES,
    RelExample,
    add_markers,
    mark,
    read_tsv,
)

FIX = Path("tests/fixtures/relation")
DDI = FIX / "ddi_mini"


def zip_ddi(dest: Path) -> Path:
    """Zip the fixture folder the way the official release is laid out (DDICorpus/Train/...)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(dest, "w") as zf:
        for p in sorted(DDI.rglob("*.xml")):
            zf.write(p, p.relative_to(DDI).as_posix())
        zf.writestr("DDICorpus/.DS_Store", b"\x00\x01")  # the release carries these; they are ignored
    return dest


def test_markers_inserted_at_character_offsets() -> None:
    text = "Milk may impair the absorption of EMCYT."
    out, starts = mark(text, (0, 4), (34, 39), "entity_markers")
    assert out == "[E1] Milk [/E1] may impair the absorption of [E2] EMCYT [/E2]."
    assert out[starts[0]:starts[0] + 4] == "[E1]" and out[starts[1]:starts[1] + 4] == "[E2]"
    out, starts = mark(text, (34, 39), (0, 4), "entity_markers")  # first argument after the second
    assert out == "[E2] Milk [/E2] may impair the absorption of [E1] EMCYT [/E1]."
    assert out[starts[0]:starts[0] + 4] == "[E1]" and out[starts[1]:starts[1] + 4] == "[E2]"
    out, starts = mark(text, (34, 39), (0, 4), "mask")
    assert out == "@DRUG$ may impair the absorption of @DRUG$." and starts == (36, 0) and out[36:] == "@DRUG$."


def test_nested_and_identical_spans_keep_markers_nested() -> None:
    text = "Potentiation occurs with ganglionic or peripheral adrenergic blocking drugs."
    # DDI-DrugBank.d231.s7: e0 "25-34;50-74" (full extent 25..75) contains e1 "39-74"
    out, starts = mark(text, (25, 75), (39, 75), "entity_markers")
    assert out == "Potentiation occurs with [E1] ganglionic or [E2] peripheral adrenergic blocking drugs [/E2] [/E1]."
    assert out[starts[1]:].startswith("[E2] peripheral")
    out, starts = mark(text, (39, 75), (25, 75), "entity_markers")  # inner span as first argument
    assert out == "Potentiation occurs with [E2] ganglionic or [E1] peripheral adrenergic blocking drugs [/E1] [/E2]."
    assert mark(text, (25, 75), (39, 75), "mask") == ("Potentiation occurs with @DRUG-DRUG$.", (25, 25))
    out, _ = mark("a drug b", (2, 6), (2, 6), "entity_markers")
    assert out == "a [E1] [E2] drug [/E2] [/E1] b"
    out, _ = mark("ab", (0, 1), (1, 2), "entity_markers")  # adjacent: E1 closes before E2 opens
    assert out == "[E1] a [/E1][E2] b [/E2]"


def test_ddi_zip_reader_reports_every_bad_pair(tmp_path: Path) -> None:
    zpath = zip_ddi(tmp_path / "DDICorpus-mini.zip")
    train_files = sorted((DDI / "DDICorpus/Train").rglob("*.xml"))
    n_pairs = sum(len(re.findall(r"<pair ", p.read_text())) for p in train_files)
    examples, report = read_ddi(zpath, "train")
    skipped = {pid: reason for _, pid, reason in report.skipped}
    assert skipped == {
        "DDI-DrugBank.d231.s7.p1": "pair refers to a missing entity",
        "DDI-DrugBank.d236.s29.p0": 'ddi="true" without a type',
        "DDI-DrugBank.d236.s29.p1": "argument offsets unreadable or outside the sentence",
        "DDI-DrugBank.d236.s29.p2": 'no ddi="true"/"false" attribute',
        "DDI-DrugBank.d236.s29.p3": 'no ddi="true"/"false" attribute',
    }
    assert report.first['no ddi="true"/"false" attribute'] == ["EdgeCases_ddi.xml DDI-DrugBank.d236.s29.p2",
                                                              "EdgeCases_ddi.xml DDI-DrugBank.d236.s29.p3"]
    assert report.skipped_docs == ["DDI-DrugBank.d231"] * 5  # the hand-made document's id
    assert len(examples) == n_pairs - 5  # nothing else dropped
    assert all(e.label is not None for e in examples)
    assert report.counts["discontinuous mention (marked by its full extent)"] == 1
    assert report.first["overlapping or nested arguments"] == ["EdgeCases_ddi.xml DDI-DrugBank.d231.s7.p0"]
    assert any("missing entity" in line and "d231.s7.p1" in line for line in report.lines())
    nested = next(e for e in examples if e.id == "DDI-DrugBank.d231.s7.p0")
    assert nested.label == "false" and nested.args == ((25, 75), (39, 75)) and nested.types == ("group", "group")
    assert {t for e in examples for t in e.types} == set(DDI_TYPES)  # drug, brand, group, drug_n
    labels = {e.label for e in examples}
    assert labels <= {"false", "advise", "effect", "int", "mechanism"} and "int" in labels
    assert all(e.doc_id.startswith("DDI-DrugBank.d") and "\r" not in e.text for e in examples)
    # the test part of the zip holds only the two test documents
    test, _ = read_ddi(zpath, "test")
    test_files = sorted((DDI / "DDICorpus/Test").rglob("*.xml"))
    assert len(test) == sum(len(re.findall(r"<pair ", p.read_text())) for p in test_files)
    assert {e.doc_id for e in test}.isdisjoint({e.doc_id for e in examples})


def test_unlabelled_documents_keep_their_pairs_for_predict(tmp_path: Path) -> None:
    examples, report = read_ddi(zip_ddi(tmp_path / "c.zip"), "train", require_labels=False)
    unlabelled = {e.id: e.label for e in examples if e.label is None}
    assert unlabelled == {"DDI-DrugBank.d236.s29.p2": None, "DDI-DrugBank.d236.s29.p3": None}
    assert len(report.skipped) == 3


def test_typed_markers_and_their_tokens(tiny_encoder: str) -> None:
    from transformers import AutoTokenizer

    text = "Milk may impair the absorption of EMCYT."
    ex = RelExample("p", text, "mechanism", "f", None, "d", ((0, 4), (34, 39)), ("group", "brand"))
    out, (s1, s2) = ex.marked("typed_markers")
    assert out == "[E1:group] Milk [/E1:group] may impair the absorption of [E2:brand] EMCYT [/E2:brand]."
    assert out[s1:].startswith("[E1:group]") and out[s2:].startswith("[E2:brand]")
    assert ex.marked("entity_markers")[0] == "[E1] Milk [/E1] may impair the absorption of [E2] EMCYT [/E2]."
    # an undeclared type falls back to the untyped markers
    assert ex.marked("typed_markers", known_types=["drug", "group"])[0] == ex.marked("entity_markers")[0]
    out, _ = mark("a drug b", (2, 6), (2, 6), "typed_markers", ("drug", "drug_n"))
    assert out == "a [E1:drug] [E2:drug_n] drug [/E2:drug_n] [/E1:drug] b"

    tok = AutoTokenizer.from_pretrained(tiny_encoder)
    n = len(tok)
    added = add_markers(tok, "typed_markers")
    assert len(added) == 4 + 4 * len(DDI_TYPES) and added == list(range(n, n + len(added)))
    assert add_markers(tok, "typed_markers") == []  # idempotent (a saved run's tokenizer)
    pieces = tok.tokenize(ex.marked("typed_markers")[0])
    assert pieces[0] == "[E1:group]" and "[/E2:brand]" in pieces  # one token each, case kept


def test_ddi_sentences_read_every_part_for_pretraining(tmp_path: Path) -> None:
    sents = ddi_sentences(zip_ddi(tmp_path / "c.zip"))
    n = sum(len(re.findall(r"<sentence ", p.read_text())) for p in DDI.rglob("*.xml"))
    assert len(sents) == n and all(s == s.strip() and s for s in sents)
    assert "Potentiation occurs with ganglionic or peripheral adrenergic blocking drugs." in sents


def test_ddi_folder_and_file_inputs_and_malformed_xml(tmp_path: Path) -> None:
    folder, _ = read_ddi(DDI / "DDICorpus/Test")
    one, _ = read_ddi(DDI / "DDICorpus/Test/Test for DDI Extraction task/DrugBank/Tigecycline.xml")
    assert 0 < len(one) < len(folder)
    text, starts = one[0].marked("entity_markers")
    assert text[starts[0]:starts[0] + 4] == "[E1]" and text[starts[1]:starts[1] + 4] == "[E2]"
    bad = tmp_path / "bad.xml"
    bad.write_text('<?xml version="1.0"?>\n<document id="d1">\n  <sentence id="s" text="x">\n</document>\n')
    with pytest.raises(InputError) as exc:
        read_ddi(bad)
    assert exc.value.path == str(bad) and exc.value.line == 4


def test_tsv_with_and_without_header_and_index() -> None:
    train = read_tsv(FIX / "gad_mini/train.tsv")  # no header: sentence, label
    assert len(train) == 12 and train[0].id == "train.tsv:1" and train[0].label == "1"
    assert train[0].marked("mask")[0] == train[0].text and "@GENE$" in train[0].text
    text, (s1, s2) = train[0].marked("entity_markers")
    assert text[s1:].startswith("@GENE$") and text[s2:].startswith("@DISEASE$")
    test = read_tsv(FIX / "gad_mini/test.tsv")  # header + index column
    assert len(test) == 6 and [e.id for e in test[:2]] == ["0", "1"] and test[0].line == 2
    blue = read_tsv(FIX / "chemprot_blue_mini.tsv")  # index column, no header
    assert len(blue) == 8 and blue[0].id == "10064839.T49.T56" and blue[0].label == "false"


def test_malformed_tsv_rows_name_file_and_line(tmp_path: Path) -> None:
    p = tmp_path / "bad.tsv"
    p.write_bytes(b"a @GENE$ b @DISEASE$\t1\r\nno label here\r\n")
    with pytest.raises(InputError) as exc:
        read_tsv(p)
    assert exc.value.line == 2 and str(p) in str(exc.value) and "1 field(s)" in str(exc.value)
    p.write_bytes(b"a @GENE$\t1\n\nb @GENE$\t0\n")
    with pytest.raises(InputError, match="line 2.*blank line"):
        read_tsv(p)
    p.write_bytes(b"a @GENE$\t\n")
    with pytest.raises(InputError, match="non-empty label"):
        read_tsv(p)
    p.write_bytes(b"one sentence per line\nanother\n")
    with pytest.raises(InputError, match="line 1"):
        read_tsv(p)  # training data needs labels
    assert [e.label for e in read_tsv(p, require_labels=False)] == [None, None]


def test_tsv_header_names_its_columns(tmp_path: Path) -> None:
    p = tmp_path / "in.tsv"
    p.write_text("index\tsentence\nq1\t@GENE$ causes @DISEASE$\nq2\tno @GENE$ in @DISEASE$\n")
    rows = read_tsv(p, require_labels=False)
    assert [(e.id, e.label) for e in rows] == [("q1", None), ("q2", None)] and rows[0].text.startswith("@GENE$")
    with pytest.raises(InputError, match="line 1"):
        read_tsv(p)  # labels required for training/evaluation
    p.write_text("sentence\tlabel\n@GENE$ x @DISEASE$\t1\n")
    assert [(e.id, e.label, e.line) for e in read_tsv(p)] == [("in.tsv:2", "1", 2)]
