from pathlib import Path

import pytest

from clinical_ft.errors import InputError
from clinical_ft.ner.conll import read_conll, write_conll


def _w(tmp_path: Path, text: str | bytes) -> Path:
    p = tmp_path / "x.tsv"
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return p


def test_reads_typed_tab_and_untyped_space(tmp_path: Path) -> None:
    sents, rep = read_conll(_w(tmp_path, "a\tO\nb\tB-Disease\nc\tI-Disease\n\nd\tO\n"))
    assert [s.words for s in sents] == [["a", "b", "c"], ["d"]]
    assert sents[0].tags == ["O", "B-Disease", "I-Disease"] and sents[1].line == 5
    sents, _ = read_conll(_w(tmp_path, "a B\nb I\n\n\n-DOCSTART- O\n\nc O\n"))
    assert [s.tags for s in sents] == [["B", "I"], ["O"]]


def test_i_after_o_is_repaired_under_iob2_and_reported(tmp_path: Path) -> None:
    sents, rep = read_conll(_w(tmp_path, "a\tO\nb\tI-X\nc\tI-X\nd\tI-Y\n"))
    assert sents[0].tags == ["O", "B-X", "I-X", "B-Y"]
    assert rep.iob_repairs == [2, 4]


@pytest.mark.parametrize(
    "text,line,expected",
    [
        ("a\tO\nb\tO\textra\n", 2, "2 columns"),
        ("a\tO\nb\tBX\n", 2, "an IOB tag"),
        (b"a\tO\nb\xff\tO\n", 2, "UTF-8"),
        ("\n\n", None, "at least one sentence"),
        ("", None, "at least one sentence"),
    ],
)
def test_malformed_input_names_file_line_and_expectation(tmp_path: Path, text, line, expected) -> None:
    p = _w(tmp_path, text)
    with pytest.raises(InputError) as exc:
        read_conll(p)
    assert exc.value.line == line and expected in str(exc.value) and str(p) in str(exc.value)


def test_tokens_only_input_and_round_trip(tmp_path: Path) -> None:
    sents, _ = read_conll(_w(tmp_path, "a\nb\n\nc\n"), require_tags=False)
    assert sents[0].tags is None
    out = tmp_path / "o.conll"
    write_conll(out, sents, [["O", "B-X"], ["O"]])
    assert out.read_text() == "a\tO\nb\tB-X\n\nc\tO\n"


def test_bom_is_not_part_of_the_first_token(tmp_path: Path) -> None:
    sents, _ = read_conll(_w(tmp_path, b"\xef\xbb\xbfFamilial\tB-Disease\npolyposis\tI-Disease\n"))
    assert sents[0].words == ["Familial", "polyposis"]


def test_repairs_are_recorded_per_sentence(tmp_path: Path) -> None:
    sents, rep = read_conll(_w(tmp_path, "a\tI-X\n\nb\tO\nc\tI-Y\n"))
    assert [s.iob_repairs for s in sents] == [[1], [4]] and rep.iob_repairs == [1, 4]


def test_write_keeps_every_input_line_and_appends_the_prediction(tmp_path: Path) -> None:
    text = ("-DOCSTART- -X- -X- O\n\n"
            "Familial JJ B-NP I-Disease\nFAP NN I-NP O\n\n"  # gold I- opens a chunk: kept as written
            "-DOCSTART- -X- -X- O\n\nAPC NN B-NP B-Disease\n")
    sents, rep = read_conll(_w(tmp_path, text), require_tags=False)
    assert rep.iob_repairs == [3] and rep.docstart_lines == 2
    out = tmp_path / "o.conll"
    write_conll(out, sents, [["B-Disease", "O"], ["B-Disease"]])
    assert out.read_text() == (
        "-DOCSTART- -X- -X- O O\n\n"
        "Familial JJ B-NP I-Disease B-Disease\nFAP NN I-NP O O\n\n"
        "-DOCSTART- -X- -X- O O\n\nAPC NN B-NP B-Disease B-Disease\n")
    again, _ = read_conll(out)  # the output reads back: same tokens, prediction as the last column
    assert [s.words for s in again] == [s.words for s in sents] and again[0].tags == ["B-Disease", "O"]


def test_write_keeps_tabs_crlf_and_a_missing_final_newline(tmp_path: Path) -> None:
    sents, _ = read_conll(_w(tmp_path, "a\tNN\tO\r\nb\tNN\tO\r\n\r\nc\tNN\tO"))
    out = tmp_path / "o.conll"
    write_conll(out, sents, [["O", "B-X"], ["O"]])
    assert out.read_bytes() == b"a\tNN\tO\tO\r\nb\tNN\tO\tB-X\r\n\r\nc\tNN\tO\tO"


def test_write_refuses_mismatched_predictions(tmp_path: Path) -> None:
    sents, _ = read_conll(_w(tmp_path, "a\tO\nb\tO\n"))
    with pytest.raises(ValueError, match="1 predictions for 2 tokens"):
        write_conll(tmp_path / "o.conll", sents, [["O"]])
