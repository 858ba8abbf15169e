"""The extractive QA Task (formats ``squad`` and ``bioasq``): doc-stride windows of the context,
start/end logits reduced to their top candidates, utils_qa-style n-best spans, SQuAD EM/F1 and BioASQ
factoid strict/lenient accuracy and MRR."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .. import encoders
from ..chunking import fit_questions, tokenize_windows
from ..config import TaskCard, TrainConfig
from ..data import feature_columns
from ..interpret.core import most_and_least
from ..taskapi import Encoded, Task, task_options
from .post import answer_token_span, best_spans, factoid_scores, merge_candidates, squad_scores
from .readers import QAExample, read_squad
from .splits import extractive_split

log = logging.getLogger("clinical_ft.qa")
TOP_K = 20  # start/end candidates kept per window by reduce_logits (bounds n_best_size)


@dataclass
class QAOptions:
    """``task_options`` of extractive QA (utils_qa.py defaults)."""

    n_best_size: int = 20
    max_answer_length: int = 30  # tokens
    train_negative_fraction: float = 1.0  # training windows without the answer kept (run_qa keeps all)

    def check(self, ok: Any) -> list[str]:
        problems = []
        if not 1 <= self.n_best_size <= TOP_K:
            problems.append(f"n_best_size: expected 1..{TOP_K}, found {self.n_best_size}")
        if self.max_answer_length < 1:
            problems.append(f"max_answer_length: expected >= 1, found {self.max_answer_length}")
        if not 0.0 <= self.train_negative_fraction <= 1.0:
            problems.append(f"train_negative_fraction: expected 0..1, found {self.train_negative_fraction}")
        return problems


@dataclass
class WindowMeta:
    """Only what decoding needs per window: its example and its context offsets."""

    doc_index: list[int]
    offsets: list[list[tuple[int, int] | None]]


class ExtractiveQATask(Task):
    kind: ClassVar[str] = "qa"
    formats: ClassVar[tuple[str, ...]] = ("squad", "bioasq")
    options: ClassVar[type] = QAOptions
    file_roles: ClassVar[tuple[str, ...]] = ("golden",)  # bioasq: official golden answer files
    score_keys: ClassVar[tuple[str, ...]] = ("exact_match", "f1", "strict_acc", "lenient_acc", "mrr")
    metric_for_best_model: ClassVar[str] = "f1"

    def load_split(self, card: TaskCard, split: str, data_dir: str | Path | None) -> list[QAExample]:
        return extractive_split(card, split, data_dir)

    def read_file(self, card: TaskCard, path: Path) -> list[QAExample]:
        """SQuAD-shaped questions with their answers (BioASQ: snippets scored per question)."""
        return read_squad(path, factoid=card.data.format == "bioasq")

    def label_list(self, card: TaskCard, train_examples: list[QAExample]) -> list[str]:
        return []  # spans, no label set

    def build_model(self, encoder: str, labels: list[str], cfg: TrainConfig) -> Any:
        from transformers import AutoModelForQuestionAnswering

        return encoders.load_model(AutoModelForQuestionAnswering, encoder)

    def encode(self, tokenizer: Any, examples: list[QAExample], cfg: TrainConfig, labels: list[str]) -> Encoded:
        """Question + context windows (only the context is windowed). Training labels are the answer's
        token span, or [CLS] for windows that do not hold the whole answer."""
        from datasets import Dataset

        opts = task_options(self, cfg)
        windows = tokenize_windows(tokenizer, [e.context for e in examples], max_length=cfg.max_length, stride=cfg.stride,
                                   doc_ids=[e.id for e in examples],
                                   questions=fit_questions(tokenizer, [e.question for e in examples], cfg.max_length, cfg.stride))
        with_labels = bool(examples) and all(e.answers is not None for e in examples)
        rng = random.Random(cfg.seed)
        kept, starts, ends = [], [], []
        for win in windows:
            ex = examples[win.doc_index]
            if with_labels:
                cls = win.input_ids.index(tokenizer.cls_token_id) if tokenizer.cls_token_id in win.input_ids else 0
                s = e = cls
                if ex.answers:
                    text, start = ex.answers[0]
                    s, e = answer_token_span(win.offsets, start, start + len(text), cls)
                if s == cls and ex.split == "train" and rng.random() >= opts.train_negative_fraction:
                    continue
                starts.append(s)
                ends.append(e)
            kept.append(win)
        cols = feature_columns(kept)
        if with_labels:
            cols |= {"start_positions": starts, "end_positions": ends}
        meta = WindowMeta([w.doc_index for w in kept], [w.offsets for w in kept])
        return Encoded(Dataset.from_dict(cols), meta)

    def collator(self, tokenizer: Any) -> Any:
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(tokenizer)

    def reduce_logits(self, logits: Any, labels: Any) -> Any:
        """(start, end) logits (B, L) -> (B, 4, TOP_K) float32: top start values, their positions,
        top end values, their positions (position -1 pads windows shorter than TOP_K)."""
        import torch

        start, end = (x.float() for x in logits[:2])
        k = min(TOP_K, start.shape[-1])
        sv, si = start.topk(k, dim=-1)
        ev, ei = end.topk(k, dim=-1)
        out = torch.stack([sv, si.float(), ev, ei.float()], dim=1)
        if k < TOP_K:
            pad = torch.tensor([-float("inf"), -1.0, -float("inf"), -1.0], device=out.device).view(1, 4, 1)
            out = torch.cat([out, pad.expand(out.shape[0], 4, TOP_K - k)], dim=-1)
        return out

    def decode(self, examples: list[QAExample], encoded: Encoded, predictions: Any, labels: list[str],
               cfg: TrainConfig) -> list[list[dict]]:
        """Per example, its n-best answers (text, character offsets, probability), best first."""
        preds = np.asarray(predictions, dtype=np.float32)
        meta: WindowMeta = encoded.meta
        by_doc: dict[int, list[int]] = {}
        for f, d in enumerate(meta.doc_index):
            by_doc.setdefault(d, []).append(f)
        opts = task_options(self, cfg)
        return [best_spans(ex.context, [(meta.offsets[f], preds[f]) for f in by_doc.get(i, [])],
                           opts.n_best_size, opts.max_answer_length) for i, ex in enumerate(examples)]

    def score(self, examples: list[QAExample], predictions: list[list[dict]], labels: list[str]) -> dict[str, float]:
        out = squad_scores([p[0]["text"] if p else "" for p in predictions], [e.gold for e in examples])
        out["no_answer"] = float(sum(not p for p in predictions))
        groups: dict[str, list[int]] = {}
        for i, e in enumerate(examples):
            if e.factoid:
                groups.setdefault(e.question_id, []).append(i)
        if groups:
            ranked = [merge_candidates([predictions[i] for i in idx]) for idx in groups.values()]
            golds = [list(dict.fromkeys(g for i in idx for g in examples[i].gold)) for idx in groups.values()]
            out.update(factoid_scores(ranked, golds))
        return out


    def pick_examples(self, examples: list[QAExample], predictions: list[list[dict]]) -> list[tuple[int, str]]:
        """The test questions with the most and the least confident best answer."""
        return most_and_least([(float(p[0]["probability"]) if p else 0.0, i, "") for i, p in enumerate(predictions)],
                              " answer")

    def explain_section(self, run: Any, example: QAExample, n: int, folder: Path, *, attributions: bool,
                        n_steps: int = 50, tolerance: float = 0.05) -> str:
        from .explain import qa_section

        return qa_section(run, example, n, folder, attributions=attributions, n_steps=n_steps, tolerance=tolerance)


TASK = ExtractiveQATask()
