"""The readmission Task: sequence classification (2 labels) on token windows of long notes.

Training: every window of an admission's note carries the admission's label (as in ClinicalBERT).
Decoding: window probabilities of the positive class are aggregated per admission with
`clinical_ft.aggregation` (ClinicalBERT's formula with ``aggregation_c``, max or mean), so
validation (best checkpoint), evaluation and prediction all score admissions, not windows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import encoders
from ..aggregation import aggregate
from ..chunking import tokenize_windows
from ..config import TaskCard, TrainConfig
from ..data import carve, split_path
from ..errors import InputError
from ..taskapi import Encoded
from .metrics import readmission_metrics
from .notes import LABEL_NAMES, Note, load_notes

TOKENIZE_BLOCK = 256  # notes tokenized at once; windows keep only doc index and character span


@dataclass
class WindowMeta:
    """Per window: which note (index into the examples) and which characters it covers."""

    doc_index: np.ndarray
    char_start: np.ndarray
    char_end: np.ndarray
    aggregation: str
    c: float


@dataclass
class Risk:
    """One admission's aggregated risk, its number of windows and the span of its top window."""

    risk: float
    n_chunks: int
    top_start: int
    top_end: int
    top_prob: float


def encode_windows(tokenizer: Any, notes: list[Note], cfg: TrainConfig) -> tuple[dict[str, list], WindowMeta]:
    """Token windows of `max_length` with `stride` overlap for every note (chunking.tokenize_windows)."""
    cols: dict[str, list] = {"input_ids": [], "attention_mask": [], "length": []}
    doc, start, end = [], [], []
    for b in range(0, len(notes), TOKENIZE_BLOCK):
        block = notes[b:b + TOKENIZE_BLOCK]
        for w in tokenize_windows(tokenizer, [n.text for n in block], max_length=cfg.max_length,
                                  stride=cfg.stride, doc_ids=[n.id for n in block]):
            cols["input_ids"].append(w.input_ids)
            cols["attention_mask"].append([1] * len(w.input_ids))
            cols["length"].append(len(w.input_ids))
            doc.append(b + w.doc_index)
            start.append(w.char_start)
            end.append(w.char_end)
    meta = WindowMeta(np.asarray(doc, dtype=np.int64), np.asarray(start, dtype=np.int64),
                      np.asarray(end, dtype=np.int64), cfg.aggregation, cfg.aggregation_c)
    return cols, meta


def aggregate_windows(n_notes: int, meta: WindowMeta, probs: Any) -> list[Risk]:
    """Admission risks from window probabilities (same order as `meta`), via aggregation.aggregate."""
    p = np.asarray(probs, dtype=np.float64).reshape(-1)
    if len(p) != len(meta.doc_index):
        raise ValueError(f"{len(p)} window scores for {len(meta.doc_index)} windows")
    agg = aggregate([str(d) for d in meta.doc_index], p, meta.aggregation, meta.c)
    out = []
    for i in range(n_notes):
        score, n, top = agg[str(i)]
        out.append(Risk(score, n, int(meta.char_start[top]), int(meta.char_end[top]), float(p[top])))
    return out


class ReadmissionTask:
    kind = "readmission"
    metric_for_best_model = "auroc"

    def load_split(self, card: TaskCard, split: str, data_dir: str | Path | None) -> list[Note]:
        if card.data.format != "notes_csv":
            raise InputError(f"card {card.name}", None, "data.format: notes_csv (run `prepare` for MIMIC tables)",
                             repr(card.data.format))
        path = split_path(card, split, data_dir)
        if path is None:  # validation carved from train, by patient when known
            train = load_notes(split_path(card, "train", data_dir), card.columns)
            return carve(train, card.data.dev_fraction or 0.1, card.data.split_seed, split,
                         group=lambda n: n.subject or n.id)
        notes = load_notes(path, card.columns)
        if split == "train" and card.data.dev_fraction is not None and "validation" not in card.data.files:
            return carve(notes, card.data.dev_fraction, card.data.split_seed, split, group=lambda n: n.subject or n.id)
        return notes

    def label_list(self, card: TaskCard, train_examples: list[Note]) -> list[str]:
        if card.labels and len(card.labels) != 2:
            raise InputError(f"card {card.name}", None, "labels: two names [negative, positive]", str(card.labels))
        return list(card.labels or LABEL_NAMES)

    def build_model(self, encoder: str, labels: list[str], cfg: TrainConfig) -> Any:
        from transformers import AutoModelForSequenceClassification

        return encoders.load_model(AutoModelForSequenceClassification, encoder, num_labels=2,
                                   id2label=dict(enumerate(labels)), label2id={t: i for i, t in enumerate(labels)})

    def encode(self, tokenizer: Any, examples: list[Note], cfg: TrainConfig, labels: list[str]) -> Encoded:
        from datasets import Dataset

        cols, meta = encode_windows(tokenizer, examples, cfg)
        if examples and all(n.label is not None for n in examples):
            cols["labels"] = [int(examples[d].label) for d in meta.doc_index]
        return Encoded(Dataset.from_dict(cols), meta)

    def collator(self, tokenizer: Any) -> Any:
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(tokenizer)

    def reduce_logits(self, logits: Any, labels: Any) -> Any:
        """Positive-class probability of each window (softmax over the two logits)."""
        return logits.float().softmax(dim=-1)[:, 1]

    def decode(self, examples: list[Note], encoded: Encoded, predictions: Any, labels: list[str]) -> list[Risk]:
        return aggregate_windows(len(examples), encoded.meta, predictions)

    def score(self, examples: list[Note], predictions: list[Risk], labels: list[str]) -> dict[str, float]:
        return readmission_metrics([n.label for n in examples], [r.risk for r in predictions])


TASK = ReadmissionTask()
