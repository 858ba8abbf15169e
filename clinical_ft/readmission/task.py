"""The readmission Task: sequence classification (2 labels) on token windows of long notes.

Training: every window of an admission's note carries the admission's label (as in ClinicalBERT).
Decoding: window probabilities of the positive class are aggregated per admission with
`clinical_ft.aggregation` (ClinicalBERT's formula with ``aggregation_c``, max or mean, from the
config), so validation (best checkpoint), evaluation and prediction all score admissions, not windows.
A prediction is a dict with the columns of ``risk.csv``: ``risk``, ``n_chunks``, ``top_chunk_start``,
``top_chunk_end``, ``top_chunk_prob`` (the character span and probability of the top window).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .. import encoders
from ..aggregation import aggregate
from ..chunking import tokenize_windows
from ..config import TaskCard, TrainConfig
from ..data import feature_columns, read_split
from ..errors import InputError
from ..taskapi import Encoded, Task
from .metrics import plot_curves, readmission_metrics
from .notes import LABEL_NAMES, NOTE_COLUMNS, Note, load_notes

TITLE = "Readmission explanations"  # the explain reports' title
TOKENIZE_BLOCK = 256  # notes tokenized at once; windows keep only doc index and character span


@dataclass
class WindowMeta:
    """Per window: which note (index into the examples) and which characters it covers."""

    doc_index: np.ndarray
    char_start: np.ndarray
    char_end: np.ndarray


def encode_windows(tokenizer: Any, notes: list[Note], cfg: TrainConfig) -> tuple[dict[str, list], WindowMeta]:
    """Token windows of `max_length` with `stride` overlap for every note (chunking.tokenize_windows)."""
    cols: dict[str, list] = {}
    doc, start, end = [], [], []
    for b in range(0, len(notes), TOKENIZE_BLOCK):
        block = notes[b:b + TOKENIZE_BLOCK]
        windows = tokenize_windows(tokenizer, [n.text for n in block], max_length=cfg.max_length,
                                   stride=cfg.stride, doc_ids=[n.id for n in block])
        for k, v in feature_columns(windows).items():
            cols.setdefault(k, []).extend(v)
        doc += [b + w.doc_index for w in windows]
        start += [w.char_start for w in windows]
        end += [w.char_end for w in windows]
    meta = WindowMeta(np.asarray(doc, dtype=np.int64), np.asarray(start, dtype=np.int64), np.asarray(end, dtype=np.int64))
    return cols or feature_columns([]), meta


def aggregate_windows(n_notes: int, meta: WindowMeta, probs: Any, cfg: TrainConfig) -> list[dict[str, Any]]:
    """Admission risks from window probabilities (same order as `meta`), via aggregation.aggregate
    with the config's ``aggregation`` and ``aggregation_c``."""
    p = np.asarray(probs, dtype=np.float64).reshape(-1)
    if len(p) != len(meta.doc_index):
        raise ValueError(f"{len(p)} window scores for {len(meta.doc_index)} windows")
    agg = aggregate([str(d) for d in meta.doc_index], p, cfg.aggregation, cfg.aggregation_c)
    out = []
    for i in range(n_notes):
        score, n, top = agg[str(i)]
        out.append({"risk": float(score), "n_chunks": int(n), "top_chunk_start": int(meta.char_start[top]),
                    "top_chunk_end": int(meta.char_end[top]), "top_chunk_prob": float(p[top])})
    return out


class ReadmissionTask(Task):
    kind: ClassVar[str] = "readmission"
    formats: ClassVar[tuple[str, ...]] = ("notes_csv",)
    file_roles: ClassVar[tuple[str, ...]] = ("test_natural",)  # prepare --balanced-test keeps the natural test
    columns: ClassVar[tuple[str, ...]] = NOTE_COLUMNS
    score_keys: ClassVar[tuple[str, ...]] = ("auroc", "auprc_avg_precision", "auprc_trapezoid", "rp80")
    metric_for_best_model: ClassVar[str] = "auroc"

    def load_split(self, card: TaskCard, split: str, data_dir: str | Path | None) -> list[Note]:
        """Notes of one split; a carved validation split is cut by patient when patients are known."""
        return read_split(card, split, data_dir, lambda path: load_notes(path, card.columns),
                          group=lambda n: n.subject or n.id)

    def read_file(self, card: TaskCard, path: Path) -> list[Note]:
        return load_notes(path, card.columns)

    def label_list(self, card: TaskCard, train_examples: list[Note]) -> list[str]:
        if card.labels and len(card.labels) != 2:
            raise InputError(f"card {card.name}", None, "labels: two names [negative, positive]", str(card.labels))
        return list(card.labels or LABEL_NAMES)

    def build_model(self, encoder: str, labels: list[str], cfg: TrainConfig) -> Any:
        from transformers import AutoModelForSequenceClassification

        return encoders.load_classifier(AutoModelForSequenceClassification, encoder, labels)

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

    def decode(self, examples: list[Note], encoded: Encoded, predictions: Any, labels: list[str],
               cfg: TrainConfig) -> list[dict[str, Any]]:
        return aggregate_windows(len(examples), encoded.meta, predictions, cfg)

    def score(self, examples: list[Note], predictions: list[dict[str, Any]], labels: list[str]) -> dict[str, float]:
        return readmission_metrics([n.label for n in examples], [r["risk"] for r in predictions])

    def write_artifacts(self, run_dir: Path, split: str, examples: list[Note], predictions: list[dict[str, Any]],
                        labels: list[str], cfg: TrainConfig) -> dict[str, Any]:
        """ROC and PR curves (``roc_<split>.png``, ``pr_<split>.png``; none for a one-class split) and
        the aggregation the risks were computed with."""
        plots = plot_curves([n.label for n in examples], [r["risk"] for r in predictions], run_dir, split)
        return {"plots": [p.name for p in plots], "aggregation": cfg.aggregation, "aggregation_c": cfg.aggregation_c}

    def pick_examples(self, examples: list[Note], predictions: list[dict[str, Any]]) -> list[tuple[int, str]]:
        """The highest- and the lowest-risk test admissions."""
        scored = [(float(r["risk"]), i) for i, r in enumerate(predictions)]
        hi, lo = max(scored), min(scored)
        return [(hi[1], f"highest risk ({hi[0]:.3f})"), (lo[1], f"lowest risk ({lo[0]:.3f})")]

    def explain_section(self, run: Any, example: Note, n: int, folder: Path, *, attributions: bool,
                        n_steps: int = 50) -> str:
        from ..interpret.notes import note_sections

        return note_sections(run, [(example.id, example.text)], folder, attributions=attributions,
                             n_steps=n_steps, first_index=n)[0]


TASK = ReadmissionTask()
