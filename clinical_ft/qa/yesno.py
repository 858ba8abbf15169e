"""The yes/no(/maybe) QA Task (format ``pubmedqa``: PubMedQA PQA-L, BioASQ yes/no in the same shape):
sequence classification over question + context. Long contexts are windowed (never truncated) and
window probabilities aggregated per class by the config's aggregation."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .. import encoders
from ..aggregation import aggregate
from ..chunking import fit_questions, tokenize_windows
from ..config import TaskCard, TrainConfig
from ..data import card_labels, feature_columns
from ..errors import InputError
from ..interpret.core import most_and_least
from ..taskapi import Encoded, Task
from .extractive import QAOptions
from .readers import YesNoExample, read_yesno
from .splits import yesno_split


class YesNoTask(Task):
    kind: ClassVar[str] = "qa"
    formats: ClassVar[tuple[str, ...]] = ("pubmedqa",)
    options: ClassVar[type] = QAOptions  # one config serves both qa heads; the span options are unused here
    score_keys: ClassVar[tuple[str, ...]] = ("accuracy", "macro_f1")
    metric_for_best_model: ClassVar[str] = "accuracy"

    def load_split(self, card: TaskCard, split: str, data_dir: str | Path | None) -> list[YesNoExample]:
        return yesno_split(card, split, data_dir)

    def read_file(self, card: TaskCard, path: Path) -> list[YesNoExample]:
        return read_yesno(path)

    def label_list(self, card: TaskCard, train_examples: list[YesNoExample]) -> list[str]:
        return card_labels(card, ((x.label, x.source, None, f"[{x.id!r}]") for x in train_examples if x.label is not None))

    def build_model(self, encoder: str, labels: list[str], cfg: TrainConfig) -> Any:
        from transformers import AutoModelForSequenceClassification

        return encoders.load_classifier(AutoModelForSequenceClassification, encoder, labels)

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
        return Encoded(Dataset.from_dict(cols), [w.doc_index for w in windows])

    def collator(self, tokenizer: Any) -> Any:
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(tokenizer)

    def reduce_logits(self, logits: Any, labels: Any) -> Any:
        import torch

        return torch.softmax((logits[0] if isinstance(logits, tuple) else logits).float(), dim=-1)

    def decode(self, examples: list[YesNoExample], encoded: Encoded, predictions: Any, labels: list[str],
               cfg: TrainConfig) -> list[dict]:
        """Per example: label, its probability, all class probabilities (windows aggregated per class
        with the config's aggregation, then renormalised) and the number of windows."""
        probs = np.asarray(predictions, dtype=np.float32)
        ids = [str(d) for d in encoded.meta]  # meta: the example index of each window
        per_class = [aggregate(ids, probs[:, c], cfg.aggregation, cfg.aggregation_c) for c in range(len(labels))] if ids else []
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

    def pick_examples(self, examples: list[YesNoExample], predictions: list[dict]) -> list[tuple[int, str]]:
        """The most and the least confident test questions."""
        return most_and_least([(float(p["probability"]), i, p["label"]) for i, p in enumerate(predictions)])

    def explain_section(self, run: Any, example: YesNoExample, n: int, folder: Path, *, attributions: bool,
                        n_steps: int = 50, tolerance: float = 0.05) -> str:
        from .yesno_explain import yesno_section

        return yesno_section(run, example, n, folder, attributions=attributions, n_steps=n_steps, tolerance=tolerance)


TASK = YesNoTask()
