"""The relation Task: one candidate pair per example, arguments marked (typed markers or BioBERT
masks), [CLS] or entity-start pooling, micro-P/R/F1 over the positive classes.

Task options (``task_options`` in the config, or ``task_options.pooling=cls`` on the command line):
``marker`` entity_markers | typed_markers | mask (how document pairs are marked: ``[E1] x [/E1]``,
``[E1:drug] x [/E1:drug]`` or ``@DRUG$``; tsv text comes masked already), ``entity_types`` the types
that get typed markers (declared up front so train and predict share one vocabulary; a pair with
another type is marked untyped and counted in a warning), ``pooling`` entity_start | cls.
Pairs skipped while reading (see ddi_xml.py) are counted by reason in ``eval_<split>.json``.
"""

from __future__ import annotations

import json
import logging
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from .. import encoders, methods
from ..atomic import save_figure
from ..chunking import centrality, tokenize_windows
from ..config import TaskCard, TrainConfig
from ..data import card_labels, carved, feature_columns, read_split
from ..errors import InputError
from ..interpret.core import most_and_least
from ..taskapi import Encoded, Task, input_name, task_options
from .ddi_xml import read_documents
from .pairs import DDI_TYPES, RelExample, add_markers, read_tsv

log = logging.getLogger("clinical_ft.relation")
NEGATIVE = ("false", "0", "negative", "none", "no_relation", "other")  # excluded from micro-F1
DOC_FORMATS = ("ddi_xml",)


@dataclass
class RelationOptions:
    """Validated `TrainConfig.task_options` of the relation task."""

    marker: Literal["entity_markers", "typed_markers", "mask"] = "entity_markers"
    pooling: Literal["entity_start", "cls"] = "entity_start"
    entity_types: list[str] = field(default_factory=lambda: list(DDI_TYPES))

    def check(self, ok: Any) -> list[str]:
        bad = [t for t in self.entity_types if not re.fullmatch(r"[a-z0-9_]+", t)]
        if bad or not self.entity_types:
            return [f"entity_types: expected lower-case names such as {list(DDI_TYPES)}, found {bad or 'an empty list'}"]
        return []


def options(cfg: TrainConfig) -> RelationOptions:
    """The validated relation options of `cfg` (ConfigError lists every problem)."""
    return task_options(TASK, cfg)


def positive_labels(labels: list[str]) -> list[str]:
    """Every label but the negative class (``false``, ``0``, ... case-insensitive)."""
    return [lab for lab in labels if lab.lower() not in NEGATIVE]


def _saved_entity_start(encoder: str) -> bool:
    cfg_file = Path(encoders.resolve(encoder)) / "config.json"
    return cfg_file.is_file() and "EntityStartClassifier" in (json.loads(cfg_file.read_text()).get("architectures") or [])


class RelationTask(Task):
    kind: ClassVar[str] = "relation"
    formats: ClassVar[tuple[str, ...]] = ("tsv",) + DOC_FORMATS
    options: ClassVar[type] = RelationOptions
    score_keys: ClassVar[tuple[str, ...]] = ("precision", "recall", "f1", "accuracy")
    per_label_scores: ClassVar[bool] = True
    metric_for_best_model: ClassVar[str] = "f1"

    def __init__(self) -> None:
        self.skipped: dict[str, Counter] = {}  # split -> skipped pairs by reason, of its last load_split

    def _read(self, card: TaskCard, split: str | None, path: Path) -> tuple[list[RelExample], list[tuple[str, str]]]:
        """Pairs, and (reason, document id) of every pair skipped while reading."""
        if card.data.format in DOC_FORMATS:
            examples, report = read_documents(path, split)
            return examples, [(r, d) for (_, _, r), d in zip(report.skipped, report.skipped_docs)]
        return read_tsv(path), []

    def load_split(self, card: TaskCard, split: str, data_dir: str | Path | None) -> list[RelExample]:
        """Pairs of one split. A dev split is carved from train by document (tsv: by row); pairs skipped
        while reading count towards the split of their document (train when no pair of it is left).
        Training pairs come in a seeded random order, so `max_train_examples` takes a random sample."""
        cut = carved(card) and split in ("train", "validation")
        skips: list[tuple[str, str]] = []
        docs: set[str] = set()

        def read(path: Path) -> list[RelExample]:
            examples, skipped = self._read(card, "train" if cut else split, path)
            skips.extend(skipped)
            docs.update(e.doc_id for e in examples)
            return examples

        examples = read_split(card, split, data_dir, read, group=lambda e: e.doc_id)
        if cut:
            mine = {e.doc_id for e in examples}
            dev_docs = mine if split == "validation" else docs - mine
            skips = [(r, d) for r, d in skips if (d in dev_docs) == (split == "validation")]
        self.skipped[split] = Counter(r for r, _ in skips)
        if split == "train":
            random.Random(card.data.split_seed).shuffle(examples)
        return examples

    def read_file(self, card: TaskCard, path: Path) -> list[RelExample]:
        """Pairs of a tsv file or of DDI-format XML (file, folder or zip: every part), as the card reads."""
        examples, skips = self._read(card, None, path)
        self.skipped[input_name(path)] = Counter(r for r, _ in skips)
        return examples

    def label_list(self, card: TaskCard, train_examples: list[RelExample]) -> list[str]:
        observed = ((e.label, e.source, e.line, f"pair {e.id}") for e in train_examples if e.label is not None)
        return card_labels(card, observed, order=lambda seen: [lab for lab in sorted(seen) if lab.lower() in NEGATIVE]
                           + positive_labels(sorted(seen)))

    def build_model(self, encoder: str, labels: list[str], cfg: TrainConfig) -> Any:
        from transformers import AutoModel, AutoModelForSequenceClassification

        from .model import EntityStartClassifier

        opts = options(cfg)
        head = {"num_labels": len(labels), "id2label": dict(enumerate(labels)),
                "label2id": {t: i for i, t in enumerate(labels)}}
        if opts.pooling == "cls":
            model = encoders.load_classifier(AutoModelForSequenceClassification, encoder, labels)
        elif _saved_entity_start(encoder):
            model = encoders.load_model(EntityStartClassifier, encoder)  # a trained run directory
        else:
            try:
                base = encoders.load_model(AutoModel, encoder, add_pooling_layer=False)
            except TypeError:  # encoders without a pooler option
                base = encoders.load_model(AutoModel, encoder)
            for k, v in head.items():
                setattr(base.config, k, v)
            model = EntityStartClassifier(base.config, encoder=base)
        if opts.marker != "mask":
            tok = encoders.load_tokenizer(encoder)
            added = add_markers(tok, opts.marker, opts.entity_types)
            if model.get_input_embeddings().num_embeddings < len(tok):
                model.resize_token_embeddings(len(tok))
            methods.mark_new_tokens(model, added)  # their rows train under every method
        return model

    def encode(self, tokenizer: Any, examples: list[RelExample], cfg: TrainConfig, labels: list[str]) -> Encoded:
        """One feature per pair. A pair longer than `max_length` gets the window (chunking.py) that
        holds both argument markers most centrally; pairs whose markers fall outside every window are
        pooled at [CLS] instead and counted in a warning."""
        from datasets import Dataset

        opts = options(cfg)
        if opts.marker != "mask":
            add_markers(tokenizer, opts.marker, opts.entity_types)
        marked = [e.marked(opts.marker, opts.entity_types) for e in examples]
        untyped = [e for e in examples if e.args is not None and not e.typed(opts.entity_types)]
        if untyped and opts.marker == "typed_markers":
            log.warning("%d of %d pairs have an entity type outside task_options.entity_types %s (first: pair %s, "
                        "types %s); marked with untyped [E1]/[E2]", len(untyped), len(examples), opts.entity_types,
                        untyped[0].id, untyped[0].types)
        windows = tokenize_windows(tokenizer, [t for t, _ in marked], max_length=cfg.max_length, stride=cfg.stride,
                                   doc_ids=[e.id for e in examples])
        best: dict[int, tuple[int, int]] = {}  # example -> (markers found, their least centrality)
        chosen: dict[int, tuple[Any, list[int]]] = {}  # example -> (window, marker token positions)
        for win in windows:
            starts = marked[win.doc_index][1]
            pos = [next((p for p, o in enumerate(win.offsets) if o and o[0] <= s < o[1]), -1) for s in starts]
            cen = centrality(win)
            score = (sum(p >= 0 for p in pos), min(cen.get(p, 0) for p in pos))
            if win.doc_index not in best or score > best[win.doc_index]:
                best[win.doc_index] = score
                chosen[win.doc_index] = (win, pos)
        label2id = {t: i for i, t in enumerate(labels)}
        with_labels = bool(examples) and all(e.label is not None for e in examples)
        unlabelled = next((e for e in examples if e.label is None), None)
        if unlabelled is not None and any(e.label is not None for e in examples):
            raise InputError(unlabelled.source, unlabelled.line, "a label on every pair (or on none, for predict)",
                             f"pair {unlabelled.id} without one")
        cols = feature_columns([chosen[i][0] for i in range(len(examples))])
        if opts.pooling == "entity_start":
            cols["entity_positions"] = [[max(p, 0) for p in chosen[i][1]] for i in range(len(examples))]
        if with_labels:
            bad = next((ex for ex in examples if ex.label not in label2id), None)
            if bad is not None:
                raise InputError(bad.source, bad.line, f"a label the model knows: {labels}", f"{bad.label!r} (pair {bad.id})")
            cols["labels"] = [label2id[ex.label] for ex in examples]
        lost = sum(min(chosen[i][1]) < 0 for i in range(len(examples)))
        if lost and opts.pooling == "entity_start":
            log.warning("%d of %d pairs: an argument marker is missing or outside the window; pooled at [CLS]",
                        lost, len(examples))
        return Encoded(Dataset.from_dict(cols), [chosen[i][0] for i in range(len(examples))])

    def collator(self, tokenizer: Any) -> Any:
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(tokenizer)

    def reduce_logits(self, logits: Any, labels: Any) -> Any:
        return logits

    def decode(self, examples: list[RelExample], encoded: Encoded, predictions: Any, labels: list[str],
               cfg: TrainConfig) -> list[tuple[str, float]]:
        """(label, probability) per pair, from the softmax over the classes."""
        logits = np.asarray(predictions, dtype=np.float64).reshape(len(examples), len(labels))
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        return [(labels[int(k)], float(p[k])) for p, k in zip(probs, probs.argmax(axis=1))]

    def score(self, examples: list[RelExample], predictions: list[Any], labels: list[str]) -> dict[str, float]:
        """Micro-P/R/F1 over the positive classes (negative class excluded; for 0/1 sets this is the
        binary P/R/F1 of class 1), accuracy, and per-class P/R/F1/support."""
        from sklearn.metrics import accuracy_score, precision_recall_fscore_support

        gold = [e.label for e in examples]
        pred = [p[0] if isinstance(p, (tuple, list)) else p for p in predictions]  # (label, prob); a list after JSON
        pos = positive_labels(labels) or labels
        p, r, f, _ = precision_recall_fscore_support(gold, pred, labels=pos, average="micro", zero_division=0)
        out = {"precision": p, "recall": r, "f1": f, "accuracy": accuracy_score(gold, pred) if gold else 0.0}
        pc, rc, fc, sc = precision_recall_fscore_support(gold, pred, labels=labels, average=None, zero_division=0)
        for lab, *vals in zip(labels, pc, rc, fc, sc):
            out.update({f"{lab}_{m}": v for m, v in zip(("precision", "recall", "f1", "support"), vals)})
        return {k: float(v) for k, v in out.items()}

    def write_artifacts(self, run_dir: Path, split: str, examples: list[RelExample], predictions: list[Any],
                        labels: list[str], cfg: TrainConfig) -> dict[str, Any]:
        """Confusion matrix (counts, rows = gold) as ``confusion_<split>.png`` in the run directory, and
        the pairs of the split skipped while reading, by reason (they are not in the scores)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from sklearn.metrics import ConfusionMatrixDisplay, confusion_matrix

        gold, pred = [e.label for e in examples], [p[0] for p in predictions]
        cm = confusion_matrix(gold, pred, labels=labels)
        fig, ax = plt.subplots(figsize=(1.2 * len(labels) + 2, 1.2 * len(labels) + 1.5))
        ConfusionMatrixDisplay(cm, display_labels=labels).plot(ax=ax, colorbar=False, xticks_rotation=45)
        ax.set_title(f"{split}: {len(examples)} pairs")
        fig.tight_layout()
        png = Path(run_dir) / f"confusion_{split}.png"
        save_figure(fig, png, dpi=100)
        skipped = self.skipped.get(split, Counter())
        return {"confusion_matrix_png": png.name, "confusion_labels": labels, "confusion_matrix": cm.tolist(),
                "skipped_pairs": sum(skipped.values()), "skipped_by_reason": dict(sorted(skipped.items()))}


    def pick_examples(self, examples: list[RelExample], predictions: list[Any]) -> list[tuple[int, str]]:
        """The most and the least confident test pairs."""
        return most_and_least([(float(p[1]), i, p[0]) for i, p in enumerate(predictions)])

    def explain_section(self, run: Any, example: RelExample, n: int, folder: Path, *, attributions: bool,
                        n_steps: int = 50, tolerance: float = 0.05) -> str:
        from .explain import relation_section

        return relation_section(run, example, n, folder, attributions=attributions, n_steps=n_steps, tolerance=tolerance)


TASK = RelationTask()
