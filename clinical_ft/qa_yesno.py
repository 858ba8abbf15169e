"""Yes/no(/maybe) question answering (PubMedQA PQA-L, BioASQ yes/no in the same shape) as sequence
classification over question + context. Long contexts are windowed (never truncated) and window
probabilities aggregated per class by the config's aggregation. Used through ``python -m clinical_ft.qa``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import encoders
from .aggregation import aggregate
from .chunking import tokenize_windows
from .config import TaskCard, TrainConfig
from .errors import InputError
from .qa_data import YesNoExample, feature_columns, fit_questions, yesno_split
from .taskapi import Encoded


@dataclass
class ClassMeta:
    doc_index: list[int]
    aggregation: str
    c: float


class YesNoTask:
    kind = "qa"
    metric_for_best_model = "accuracy"

    def load_split(self, card: TaskCard, split: str, data_dir: str | Path | None) -> list[YesNoExample]:
        return yesno_split(card, split, data_dir)

    def label_list(self, card: TaskCard, train_examples: list[YesNoExample]) -> list[str]:
        seen = {x.label for x in train_examples if x.label is not None}
        if card.labels:
            bad = next((x for x in train_examples if x.label not in card.labels), None)
            if bad is not None:
                raise InputError(bad.source, None, f"[{bad.id!r}]: a label from the card's labels {card.labels}", repr(bad.label))
            return list(card.labels)
        return sorted(seen)

    def build_model(self, encoder: str, labels: list[str], cfg: TrainConfig) -> Any:
        from transformers import AutoModelForSequenceClassification

        return encoders.load_model(AutoModelForSequenceClassification, encoder, num_labels=len(labels),
                                   id2label=dict(enumerate(labels)), label2id={t: i for i, t in enumerate(labels)})

    def encode(self, tokenizer: Any, examples: list[YesNoExample], cfg: TrainConfig, labels: list[str]) -> Encoded:
        """Question + context windows; each window carries its example's label; long contexts are
        windowed (never truncated) and window probabilities aggregated in decode."""
        from datasets import Dataset

        label2id = {t: i for i, t in enumerate(labels)}
        windows = tokenize_windows(tokenizer, [x.context for x in examples], max_length=cfg.max_length, stride=cfg.stride,
                                   doc_ids=[x.id for x in examples],
                                   questions=fit_questions(tokenizer, [x.question for x in examples], cfg.max_length, cfg.stride))
        cols = feature_columns(windows)
        if examples and all(x.label is not None for x in examples):
            for x in examples:
                if x.label not in label2id:
                    raise InputError(x.source, None, f"[{x.id!r}]: a label the model knows: {labels}", repr(x.label))
            cols["labels"] = [label2id[examples[w.doc_index].label] for w in windows]
        return Encoded(Dataset.from_dict(cols), ClassMeta([w.doc_index for w in windows], cfg.aggregation, cfg.aggregation_c))

    def collator(self, tokenizer: Any) -> Any:
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(tokenizer)

    def reduce_logits(self, logits: Any, labels: Any) -> Any:
        import torch

        return torch.softmax((logits[0] if isinstance(logits, tuple) else logits).float(), dim=-1)

    def decode(self, examples: list[YesNoExample], encoded: Encoded, predictions: Any, labels: list[str]) -> list[dict]:
        """Per example: label, its probability, all class probabilities (windows aggregated per class
        with the config's aggregation, then renormalised) and the number of windows."""
        probs = np.asarray(predictions, dtype=np.float32)
        meta: ClassMeta = encoded.meta
        ids = [str(d) for d in meta.doc_index]
        per_class = [aggregate(ids, probs[:, c], meta.aggregation, meta.c) for c in range(len(labels))] if ids else []
        out = []
        for i in range(len(examples)):
            p = np.array([agg[str(i)][0] for agg in per_class])
            p = p / p.sum()
            best = int(np.argmax(p))
            out.append({"label": labels[best], "probability": float(p[best]),
                        "probabilities": {t: float(v) for t, v in zip(labels, p)}, "windows": per_class[0][str(i)][1]})
        return out

    def score(self, examples: list[YesNoExample], predictions: list[dict], labels: list[str]) -> dict[str, float]:
        from sklearn.metrics import accuracy_score, f1_score

        gold = [x.label for x in examples]
        pred = [p["label"] for p in predictions]
        return {"accuracy": float(accuracy_score(gold, pred)),
                "macro_f1": float(f1_score(gold, pred, labels=labels, average="macro", zero_division=0))}
