from transformers import AutoTokenizer

from clinical_ft.chunking import best_window_per_word, tokenize_windows
from clinical_ft.encoders import bundled_minilm

TOK = AutoTokenizer.from_pretrained(bundled_minilm())


def test_600_token_sentence_every_word_predicted_exactly_once() -> None:
    words = [f"hyperlipoproteinemia{i}" if i % 7 == 0 else f"w{i}" for i in range(600)]
    wins = tokenize_windows(TOK, [words], max_length=64, stride=16, is_split_into_words=True)
    assert len(wins) > 10 and all(len(w.input_ids) <= 64 for w in wins)
    best = best_window_per_word(wins)
    assert sorted(best) == list(range(600))
    for w, (k, p) in best.items():
        win = wins[k]
        assert win.word_ids[p] == w and win.offsets[p][0] == 0  # the word's first subword
    # chosen windows keep words away from window edges where another window offers more context
    inner = [p for w, (k, p) in best.items() if 50 < w < 550]
    assert min(inner) >= 4


def test_text_windows_carry_doc_ids_and_char_offsets_that_round_trip() -> None:
    text = " ".join(f"patient{i} has chest pain" for i in range(200))
    wins = tokenize_windows(TOK, [text, "short note"], doc_ids=["adm1", "adm2"], max_length=48, stride=12)
    assert [w.doc_id for w in wins].count("adm2") == 1
    first = [w for w in wins if w.doc_id == "adm1"]
    assert [w.window_index for w in first] == list(range(len(first)))
    assert first[0].char_start == 0 and first[-1].char_end == len(text)
    covered = set()
    for w in first:
        for o in w.offsets:
            if o is not None and o[1] > o[0]:
                covered.update(range(*o))
        # every token's text is exactly the note's characters at its offsets
        pieces = TOK.convert_ids_to_tokens(w.input_ids)
        for piece, o in zip(pieces, w.offsets):
            if o is not None and o[1] > o[0]:
                assert text[o[0]:o[1]].lower() == piece.removeprefix("##")
    assert covered == {i for i, c in enumerate(text) if not c.isspace()}
    # consecutive windows overlap by `stride` tokens
    assert first[0].input_ids[-1 - 12:-1] == first[1].input_ids[1:13]


def test_question_context_windows_only_cut_the_context() -> None:
    ctx = "word " * 300
    wins = tokenize_windows(TOK, [ctx], questions=["what is it?"], max_length=64, stride=16)
    assert len(wins) > 3
    for w in wins:
        assert w.sequence_ids.count(0) == len(TOK("what is it?", add_special_tokens=False)["input_ids"])
        assert all(o is None for o, s in zip(w.offsets, w.sequence_ids) if s != 1)
