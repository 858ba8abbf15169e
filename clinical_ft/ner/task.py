"""The NER Task: BIO tagging with first-subword labels, windowed long sentences, entity-level
seqeval P/R/F1 (overall and per type)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .. import encoders
from ..chunking import Window, best_window_per_word, tokenize_windows
from ..config import TaskCard, TrainConfig
from ..data import card_labels, feature_columns, read_split
from ..errors import InputError
from ..taskapi import Encoded, Task
from .conll import Sentence, read_conll, typed

log = logging.getLogger("clinical_ft.ner")


def repair_note(path: str | Path, lines: list[int], limit: int = 50) -> str:
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


def _read(path: Path) -> list[Sentence]:
    sentences, report = read_conll(path)
    if report.iob_repairs:
        log.warning("%s", repair_note(path, report.iob_repairs))
    return sentences


class NerTask(Task):
    kind: ClassVar[str] = "ner"
    formats: ClassVar[tuple[str, ...]] = ("conll",)
    score_keys: ClassVar[tuple[str, ...]] = ("precision", "recall", "f1")
    per_label_scores: ClassVar[bool] = True
    metric_for_best_model: ClassVar[str] = "f1"

    def load_split(self, card: TaskCard, split: str, data_dir: str | Path | None) -> list[Sentence]:
        return read_split(card, split, data_dir, _read)

    def read_file(self, card: TaskCard, path: Path) -> list[Sentence]:
        return _read(path)

    def label_list(self, card: TaskCard, train_examples: list[Sentence]) -> list[str]:
        observed = ((t, s.source, s.line + i, "") for s in train_examples for i, t in enumerate(s.tags or []))
        return card_labels(card, observed, order=lambda seen: ["O"] + sorted(seen - {"O"}, key=lambda t: (t[2:], t[0])))

    def input_report(self, examples: list[Sentence]) -> dict[str, Any]:
        """What reading changed in the gold tags: I- tags read as B- (IOB2), with their lines."""
        lines = sorted({(s.source, ln) for s in examples for ln in s.iob_repairs})
        return {"iob_repairs": len(lines), "iob_repair_lines": [f"{Path(f).name}:{ln}" for f, ln in lines]}

    def build_model(self, encoder: str, labels: list[str], cfg: TrainConfig) -> Any:
        from transformers import AutoModelForTokenClassification

        return encoders.load_classifier(AutoModelForTokenClassification, encoder, labels)

    def encode(self, tokenizer: Any, examples: list[Sentence], cfg: TrainConfig, labels: list[str]) -> Encoded:
        from datasets import Dataset

        label2id = {t: i for i, t in enumerate(labels)}
        windows = tokenize_windows(tokenizer, [s.words for s in examples], max_length=cfg.max_length,
                                   stride=cfg.stride, doc_ids=[s.doc_id for s in examples], is_split_into_words=True)
        cols = feature_columns(windows)
        if examples and all(s.tags is not None for s in examples):
            cols["labels"] = []
            for k, win in enumerate(windows):
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

    def decode(self, examples: list[Sentence], encoded: Encoded, predictions: Any, labels: list[str],
               cfg: TrainConfig) -> list[list[str]]:
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

    def score(self, examples: list[Sentence], predictions: list[list[str]], labels: list[str]) -> dict[str, float]:
        from seqeval.metrics import classification_report, f1_score, precision_score, recall_score

        gold = [[typed(t) for t in s.tags or []] for s in examples]
        pred = [[typed(t) for t in p] for p in predictions]
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
            gold = {e for e in get_entities([typed(t) for t in tags]) if not typ or e[0] == typ}
            got = {e for e in get_entities([typed(t) for t in pred]) if not typ or e[0] == typ}
            rows[i] = len(gold & got), len(got), len(gold)

        def value(sums: np.ndarray) -> float:
            tp, n_pred, n_gold = (float(x) for x in sums)
            p = tp / n_pred if n_pred else 0.0
            r = tp / n_gold if n_gold else 0.0
            return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}[metric]

        return rows, value

    def pick_examples(self, examples: list[Sentence], predictions: list[list[str]]) -> list[tuple[int, str]]:
        """The two test sentences with the most predicted entities."""
        counts = sorted((-sum(t.startswith("B") for t in p), i) for i, p in enumerate(predictions))
        return [(i, f"{-c} predicted entit{'y' if c == -1 else 'ies'}") for c, i in counts[:2]]

    def explain_section(self, run: Any, example: Sentence, n: int, folder: Path, *, attributions: bool,
                        n_steps: int = 50, tolerance: float = 0.05) -> str:
        from .explain import ner_section

        return ner_section(run, f"{example.source}:{example.line}", " ".join(example.words), n, folder,
                           attributions=attributions, n_steps=n_steps, tolerance=tolerance)


TASK = NerTask()
