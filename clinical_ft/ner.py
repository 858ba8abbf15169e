"""Named-entity recognition: BIO tagging with first-subword labels, windowed long sentences,
entity-level seqeval P/R/F1. Run as ``python -m clinical_ft.ner train|evaluate|predict``."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from . import encoders, engine, taskcli
from .chunking import Window, best_window_per_word, tokenize_windows
from .config import TaskCard, TrainConfig
from .conll import Sentence, read_conll, write_conll
from .data import carve, split_path
from .errors import InputError
from .interpret import cli as interpret_cli
from .taskapi import Encoded

log = logging.getLogger("clinical_ft.ner")


def _typed(tag: str) -> str:
    """Untyped B/I tags become B-bio/I-bio for seqeval, as BioBERT does."""
    return tag + "-bio" if tag in ("B", "I") else tag


def _repair_note(path: str | Path, lines: list[int], limit: int = 50) -> str:
    """A line saying which gold I- tags opened a chunk and were read as B- (IOB2); "" when none."""
    if not lines:
        return ""
    shown = ", ".join(map(str, lines[:limit])) + (f", ... ({len(lines) - limit} more)" if len(lines) > limit else "")
    return f"{path}: {len(lines)} I- tags did not continue a chunk and were read as B- (IOB2), lines {shown}"


def first_subwords(win: Window, prev: Window | None) -> set[int]:
    """Token positions of `win` that carry a word's label: the first token of each word id.

    The window's first word is left out when it continues from `prev` (the previous window of the
    same sentence), i.e. when `prev` holds a piece of that word starting at an earlier character.
    Offsets are only compared within one word, so a word whose first subword does not start at
    character 0 (a leading zero-width space or combining accent) still gets its label.
    """
    firsts: dict[int, int] = {}
    for p, w in enumerate(win.word_ids or []):
        if w is not None:
            firsts.setdefault(w, p)
    if firsts and prev is not None and prev.doc_index == win.doc_index:
        w0, p0 = next(iter(firsts.items()))
        start = (win.offsets[p0] or (0, 0))[0]
        if any(w == w0 and (o or (0, 0))[0] < start for w, o in zip(prev.word_ids or [], prev.offsets)):
            del firsts[w0]
    return set(firsts.values())


class NerTask:
    kind = "ner"
    metric_for_best_model = "f1"

    def load_split(self, card: TaskCard, split: str, data_dir: str | Path | None) -> list[Sentence]:
        path = split_path(card, split, data_dir)
        if path is None:  # validation carved from train
            train = self.load_split(card, "train", data_dir)
            return carve(train, card.data.dev_fraction or 0.1, card.data.split_seed, split)
        sentences, report = read_conll(path)
        if report.iob_repairs:
            log.warning("%s", _repair_note(path, report.iob_repairs))
        if split == "train" and card.data.dev_fraction is not None and "validation" not in card.data.files:
            return carve(sentences, card.data.dev_fraction, card.data.split_seed, "train")
        return sentences

    def label_list(self, card: TaskCard, train_examples: list[Sentence]) -> list[str]:
        seen = {t for s in train_examples for t in (s.tags or [])}
        if card.labels:
            unknown = seen - set(card.labels)
            if unknown:
                bad, i = next((s, i) for s in train_examples for i, t in enumerate(s.tags or []) if t in unknown)
                raise InputError(bad.source, bad.line + i, f"tags from the card's labels {card.labels}",
                                 f"{bad.tags[i]!r} (all unknown tags: {sorted(unknown)})")
            return list(card.labels)
        return ["O"] + sorted(seen - {"O"}, key=lambda t: (t[2:], t[0]))

    def build_model(self, encoder: str, labels: list[str], cfg: TrainConfig) -> Any:
        from transformers import AutoModelForTokenClassification

        return encoders.load_model(AutoModelForTokenClassification, encoder, num_labels=len(labels),
                                   id2label=dict(enumerate(labels)), label2id={t: i for i, t in enumerate(labels)})

    def encode(self, tokenizer: Any, examples: list[Sentence], cfg: TrainConfig, labels: list[str]) -> Encoded:
        from datasets import Dataset

        label2id = {t: i for i, t in enumerate(labels)}
        windows = tokenize_windows(tokenizer, [s.words for s in examples], max_length=cfg.max_length,
                                   stride=cfg.stride, doc_ids=[s.doc_id for s in examples], is_split_into_words=True)
        cols: dict[str, list] = {"input_ids": [], "token_type_ids": [], "attention_mask": [], "length": []}
        with_labels = bool(examples) and all(s.tags is not None for s in examples)
        if with_labels:
            cols["labels"] = []
        for k, win in enumerate(windows):
            cols["input_ids"].append(win.input_ids)
            cols["token_type_ids"].append(win.token_type_ids)
            cols["attention_mask"].append([1] * len(win.input_ids))
            cols["length"].append(len(win.input_ids))
            if with_labels:
                s = examples[win.doc_index]
                firsts = first_subwords(win, windows[k - 1] if k else None)
                for p in firsts:
                    if s.tags[win.word_ids[p]] not in label2id:
                        w = win.word_ids[p]
                        raise InputError(s.source, s.line + w, f"a tag the model knows: {labels}", repr(s.tags[w]))
                cols["labels"].append([label2id[s.tags[w]] if p in firsts else -100 for p, w in enumerate(win.word_ids)])
        return Encoded(Dataset.from_dict(cols), windows)

    def collator(self, tokenizer: Any) -> Any:
        from transformers import DataCollatorForTokenClassification

        return DataCollatorForTokenClassification(tokenizer)

    def reduce_logits(self, logits: Any, labels: Any) -> Any:
        return logits.argmax(dim=-1)

    def decode(self, examples: list[Sentence], encoded: Encoded, predictions: Any, labels: list[str]) -> list[list[str]]:
        """One tag per input word, from the window where the word's first subword is most central.
        A word that yields no subword at all (e.g. only control characters) is tagged O and counted."""
        preds = np.asarray(predictions)
        by_doc: dict[int, list[int]] = {}
        for fi, win in enumerate(encoded.meta):
            by_doc.setdefault(win.doc_index, []).append(fi)
        out, unaligned = [], 0
        for di, sent in enumerate(examples):
            feats = by_doc.get(di, [])
            best = best_window_per_word([encoded.meta[f] for f in feats])
            tags = []
            for w in range(len(sent.words)):
                if w in best:
                    k, p = best[w]
                    tags.append(labels[int(preds[feats[k], p])])
                else:
                    unaligned += 1
                    tags.append("O")
            out.append(tags)
        if unaligned:
            log.warning("%d input tokens produced no subword (e.g. control characters) and were tagged O", unaligned)
        return out

    def input_report(self, examples: list[Sentence]) -> dict[str, Any]:
        """What reading changed in the gold tags: I- tags read as B- (IOB2), with their lines."""
        lines = sorted({(s.source, ln) for s in examples for ln in s.iob_repairs})
        return {"iob_repairs": len(lines), "iob_repair_lines": [f"{Path(f).name}:{ln}" for f, ln in lines]}

    def score(self, examples: list[Sentence], predictions: list[list[str]], labels: list[str]) -> dict[str, float]:
        from seqeval.metrics import classification_report, f1_score, precision_score, recall_score

        gold = [[_typed(t) for t in s.tags or []] for s in examples]
        pred = [[_typed(t) for t in p] for p in predictions]
        out = {"precision": precision_score(gold, pred), "recall": recall_score(gold, pred), "f1": f1_score(gold, pred)}
        report = classification_report(gold, pred, output_dict=True, zero_division=0)
        for typ, vals in report.items():
            if typ not in ("micro avg", "macro avg", "weighted avg"):
                out.update({f"{typ}_{m}": float(vals[m]) for m in ("precision", "recall", "f1-score")})
                out[f"{typ}_support"] = float(vals["support"])
        return {k.replace("f1-score", "f1"): float(v) for k, v in out.items()}

    def score_counts(self, examples: list[Sentence], predictions: list[list[str]], labels: list[str],
                     key: str) -> tuple[np.ndarray, Callable[[np.ndarray], float]] | None:
        """Per-sentence (true positives, predicted, gold) entity counts for `key` (``f1``, ``precision``,
        ``recall``, or ``<Type>_f1`` etc.), and the function of their sums that gives `score`'s value.

        Entity-level micro scores are sums over sentences (seqeval never lets an entity cross a
        sentence), so a bootstrap can resample these rows instead of re-running seqeval each time."""
        from seqeval.metrics.sequence_labeling import get_entities

        typ, _, metric = key.rpartition("_")  # "f1" -> ("", "", "f1"); "Disease_f1" -> ("Disease", "_", "f1")
        if metric not in ("f1", "precision", "recall"):
            return None
        if len(predictions) != len(examples):
            raise ValueError(f"{len(predictions)} predictions for {len(examples)} sentences")
        rows = np.zeros((len(examples), 3), dtype=np.int64)
        for i, (sent, pred) in enumerate(zip(examples, predictions)):
            tags = sent.tags or []
            if len(pred) != len(tags):
                raise ValueError(f"sentence {i}: {len(pred)} predicted tags for {len(tags)} gold tags")
            gold = {e for e in get_entities([_typed(t) for t in tags]) if not typ or e[0] == typ}
            got = {e for e in get_entities([_typed(t) for t in pred]) if not typ or e[0] == typ}
            rows[i] = len(gold & got), len(got), len(gold)

        def value(sums: np.ndarray) -> float:
            tp, n_pred, n_gold = (float(x) for x in sums)
            p = tp / n_pred if n_pred else 0.0
            r = tp / n_gold if n_gold else 0.0
            return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}[metric]

        return rows, value


TASK = NerTask()


def raw_text_sentences(path: str | Path, tokenizer: Any) -> tuple[list[Sentence], list[list[tuple[int, int]]], list[str]]:
    """One document per line of a UTF-8 text file, split into words with character offsets
    by the encoder's own pre-tokenizer. Blank lines are kept as documents with no words."""
    path = Path(path)
    texts = []
    for ln, bline in enumerate(path.read_bytes().split(b"\n"), start=1):
        try:
            texts.append(bline.decode("utf-8").rstrip("\r"))
        except UnicodeDecodeError as exc:
            raise InputError(path, ln, "UTF-8 text", f"byte 0x{bline[exc.start]:02x}") from None
    if texts and texts[-1] == "":
        texts.pop()
    pre = tokenizer.backend_tokenizer.pre_tokenizer
    sents, spans = [], []
    for ln, text in enumerate(texts, start=1):
        pieces = pre.pre_tokenize_str(text)
        sents.append(Sentence([w for w, _ in pieces], None, str(path), ln, f"{path.name}:{ln}"))
        spans.append([tuple(o) for _, o in pieces])
    return sents, spans, texts


def predict(run: engine.Run, sentences: list[Sentence]) -> list[list[str]]:
    """Tags for every word of every sentence (empty sentences get empty tag lists)."""
    idx = [i for i, s in enumerate(sentences) if s.words]
    kept = [sentences[i] for i in idx]
    encoded = TASK.encode(run.tokenizer, kept, run.cfg, run.labels)
    tags = TASK.decode(kept, encoded, engine.predict_raw(TASK, run, encoded), run.labels) if kept else []
    out: list[list[str]] = [[] for _ in sentences]
    for i, t in zip(idx, tags):
        out[i] = t
    return out


def _predict_cmd(task: NerTask, args: Any) -> int:
    from seqeval.metrics.sequence_labeling import get_entities

    run = engine.load_run(task, args.model)
    inp = Path(args.input)
    fmt = args.format or ("text" if inp.suffix in (".txt", ".text") else "conll")
    if fmt == "conll":
        sents, report = read_conll(inp, require_tags=False)
        tags = predict(run, sents)
        write_conll(args.out, sents, tags)  # every input line kept, the prediction appended as a last column
        print(f"{report.sentences} sentences, {report.tokens} tokens tagged -> {args.out}")
        if report.iob_repairs:  # the output keeps the input's tags as written
            print(_repair_note(inp, report.iob_repairs))
        return 0
    sents, spans, texts = raw_text_sentences(inp, run.tokenizer)
    tags = predict(run, sents)
    tmp = Path(args.out + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for sent, sp, text, tg in zip(sents, spans, texts, tags):
            ents = []
            for typ, a, b in get_entities([_typed(t) for t in tg]):
                start, end = sp[a][0], sp[b][1]
                ents.append({"type": typ, "start": start, "end": end, "text": text[start:end]})
            fh.write(json.dumps({"line": sent.line, "entities": ents,
                                 "tokens": [[s, e, t] for (s, e), t in zip(sp, tg)]}) + "\n")
    tmp.replace(args.out)
    print(f"{len(sents)} documents, {sum(len(s.words) for s in sents)} tokens tagged -> {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p, sub = taskcli.parser("python -m clinical_ft.ner", __doc__ or "")
    pr = sub.add_parser("predict", help="tag a CoNLL file (every line kept, prediction appended as the last "
                                         "column) or raw text (one document per line)")
    pr.add_argument("--model", required=True, help="run directory written by train")
    pr.add_argument("--input", required=True, help="CoNLL file (token[<TAB>tag] lines) or .txt, one document per line")
    pr.add_argument("--out", required=True, help="CoNLL output, or JSON lines with entities and offsets for text")
    pr.add_argument("--format", choices=["conll", "text"], help="input format (default: by file suffix)")
    ex = sub.add_parser("explain", help="HTML report: predicted entities, their attributions and attention")
    interpret_cli.add_ner_explain_args(ex)
    return taskcli.run(TASK, p, argv, {"predict": _predict_cmd, "explain": interpret_cli.ner_explain_cmd})


if __name__ == "__main__":
    raise SystemExit(main())
