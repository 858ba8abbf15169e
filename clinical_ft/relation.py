"""Relation extraction: one candidate pair per example, arguments marked (typed markers or BioBERT
masks), [CLS] or entity-start pooling, micro-P/R/F1 over the positive classes.
Run as ``python -m clinical_ft.relation train|evaluate|predict|explain``.

Task options (``task_options`` in the config, or ``task_options.pooling=cls`` on the command line):
``marker`` entity_markers | typed_markers | mask (how document pairs are marked: ``[E1] x [/E1]``,
``[E1:drug] x [/E1:drug]`` or ``@DRUG$``; tsv text comes masked already), ``entity_types`` the types
that get typed markers (declared up front so train and predict share one vocabulary; a pair with
another type is marked untyped and counted in a warning), ``pooling`` entity_start | cls.
Pairs skipped while reading (see relation_data.py) are counted by reason in ``eval_<split>.json``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from . import encoders, engine, methods, taskcli
from .chunking import centrality, tokenize_windows
from .config import TaskCard, TrainConfig, from_dict
from .data import carve, split_path
from .ddi_xml import read_documents
from .errors import ClinicalFTError, ConfigError, InputError
from .relation_data import DDI_TYPES, RelExample, add_markers, read_tsv
from .taskapi import Encoded

log = logging.getLogger("clinical_ft.relation")
NEGATIVE = ("false", "0", "negative", "none", "no_relation", "other")  # excluded from micro-F1
DOC_FORMATS = ("ddi_xml",)


@dataclass
class RelationOptions:
    """Validated `TrainConfig.task_options` of the relation task."""

    marker: Literal["entity_markers", "typed_markers", "mask"] = "entity_markers"
    pooling: Literal["entity_start", "cls"] = "entity_start"
    entity_types: list[str] = field(default_factory=lambda: list(DDI_TYPES))


def options(cfg: TrainConfig) -> RelationOptions:
    """The relation options of `cfg`.

    Raises:
        ConfigError: unknown keys or values in `task_options`, all listed together.
    """
    opts = from_dict(RelationOptions, cfg.task_options, "task_options (relation)")
    bad = [t for t in opts.entity_types if not re.fullmatch(r"[a-z0-9_]+", t)]
    if bad or not opts.entity_types:
        raise ConfigError("task_options (relation)", [f"entity_types: expected lower-case names such as "
                                                      f"{list(DDI_TYPES)}, found {bad or 'an empty list'}"])
    return opts


def positive_labels(labels: list[str]) -> list[str]:
    """Every label but the negative class (``false``, ``0``, ... case-insensitive)."""
    return [lab for lab in labels if lab.lower() not in NEGATIVE]


def _saved_entity_start(encoder: str) -> bool:
    cfg_file = Path(encoders.resolve(encoder)) / "config.json"
    return cfg_file.is_file() and "EntityStartClassifier" in (json.loads(cfg_file.read_text()).get("architectures") or [])


class RelationTask:
    kind = "relation"
    metric_for_best_model = "f1"

    def __init__(self) -> None:
        self.skipped: dict[str, Counter] = {}  # split -> skipped pairs by reason, of its last load_split

    def _read(self, card: TaskCard, split: str, path: Path) -> tuple[list[RelExample], list[tuple[str, str]]]:
        """Pairs, and (reason, document id) of every pair skipped while reading."""
        if card.data.format in DOC_FORMATS:
            examples, report = read_documents(path, split)
            return examples, [(r, d) for (_, _, r), d in zip(report.skipped, report.skipped_docs)]
        if card.data.format != "tsv":
            raise ClinicalFTError(f"card {card.name!r}: data.format {card.data.format!r} is not one of tsv, ddi_xml")
        return read_tsv(path), []

    def load_split(self, card: TaskCard, split: str, data_dir: str | Path | None) -> list[RelExample]:
        """Pairs of one split. A dev split is carved from train by document (tsv: by row); pairs skipped
        while reading count towards the split of their document (train when no pair of it is left).
        Training pairs come in a seeded random order, so `max_train_examples` takes a random sample."""
        path = split_path(card, split, data_dir)
        carved = card.data.dev_fraction is not None and "validation" not in card.data.files
        if path is None or (split == "train" and carved):
            train, skips = self._read(card, "train", split_path(card, "train", data_dir))
            cut = {s: carve(train, card.data.dev_fraction or 0.1, card.data.split_seed, s, group=lambda e: e.doc_id)
                   for s in ("train", "validation")}
            dev_docs = {e.doc_id for e in cut["validation"]}
            examples = cut["validation" if split == "validation" else "train"]
            skips = [(r, d) for r, d in skips if (d in dev_docs) == (split == "validation")]
        else:
            examples, skips = self._read(card, split, path)
        self.skipped[split] = Counter(r for r, _ in skips)
        if split == "train":
            random.Random(card.data.split_seed).shuffle(examples)
        return examples

    def label_list(self, card: TaskCard, train_examples: list[RelExample]) -> list[str]:
        seen = sorted({e.label for e in train_examples if e.label is not None})
        if card.labels:
            bad = next((e for e in train_examples if e.label is not None and e.label not in card.labels), None)
            if bad:
                raise InputError(bad.source, bad.line, f"a label from the card's labels {card.labels}",
                                 f"{bad.label!r} (pair {bad.id})")
            return list(card.labels)
        return [lab for lab in seen if lab.lower() in NEGATIVE] + positive_labels(seen)

    def build_model(self, encoder: str, labels: list[str], cfg: TrainConfig) -> Any:
        from transformers import AutoModel, AutoModelForSequenceClassification

        from .relation_model import EntityStartClassifier

        opts = options(cfg)
        head = {"num_labels": len(labels), "id2label": dict(enumerate(labels)),
                "label2id": {t: i for i, t in enumerate(labels)}}
        if opts.pooling == "cls":
            model = encoders.load_model(AutoModelForSequenceClassification, encoder, **head)
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
        cols: dict[str, list] = {"input_ids": [], "token_type_ids": [], "attention_mask": [], "length": []}
        if opts.pooling == "entity_start":
            cols["entity_positions"] = []
        if with_labels:
            cols["labels"] = []
        lost = 0
        for i, ex in enumerate(examples):
            win, pos = chosen[i]
            lost += min(pos) < 0
            cols["input_ids"].append(win.input_ids)
            cols["token_type_ids"].append(win.token_type_ids)
            cols["attention_mask"].append([1] * len(win.input_ids))
            cols["length"].append(len(win.input_ids))
            if opts.pooling == "entity_start":
                cols["entity_positions"].append([max(p, 0) for p in pos])
            if with_labels:
                if ex.label not in label2id:
                    raise InputError(ex.source, ex.line, f"a label the model knows: {labels}", f"{ex.label!r} (pair {ex.id})")
                cols["labels"].append(label2id[ex.label])
        if lost and opts.pooling == "entity_start":
            log.warning("%d of %d pairs: an argument marker is missing or outside the window; pooled at [CLS]",
                        lost, len(examples))
        return Encoded(Dataset.from_dict(cols), [chosen[i][0] for i in range(len(examples))])

    def collator(self, tokenizer: Any) -> Any:
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(tokenizer)

    def reduce_logits(self, logits: Any, labels: Any) -> Any:
        return logits

    def decode(self, examples: list[RelExample], encoded: Encoded, predictions: Any, labels: list[str]) -> list[tuple[str, float]]:
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
                        labels: list[str]) -> dict[str, Any]:
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
        tmp = png.with_name(png.name + ".tmp")
        fig.savefig(tmp, format="png", dpi=100)
        plt.close(fig)
        tmp.replace(png)
        skipped = self.skipped.get(split, Counter())
        return {"confusion_matrix_png": png.name, "confusion_labels": labels, "confusion_matrix": cm.tolist(),
                "skipped_pairs": sum(skipped.values()), "skipped_by_reason": dict(sorted(skipped.items()))}


TASK = RelationTask()


def predict(run: engine.Run, examples: list[RelExample]) -> list[tuple[str, float]]:
    """(label, probability) for every example (gold labels, if any, are ignored)."""
    if not examples:
        return []
    unlabelled = [dataclasses.replace(e, label=None) for e in examples]
    encoded = TASK.encode(run.tokenizer, unlabelled, run.cfg, run.labels)
    return TASK.decode(unlabelled, encoded, engine.predict_raw(TASK, run, encoded), run.labels)


def _predict_cmd(task: RelationTask, args: Any) -> int:
    run = engine.load_run(task, args.model)
    inp = Path(args.input)
    if not inp.exists():
        raise ClinicalFTError(f"input {inp} not found")
    skipped: list[tuple[str, str, str]] = []
    if inp.is_file() and inp.suffix in (".tsv", ".txt", ".csv"):
        examples = read_tsv(inp, require_labels=False)
    else:
        examples, report = read_documents(inp, args.part, require_labels=False)
        skipped = report.skipped
    preds = predict(run, examples)
    tmp = Path(args.out + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        fh.write("id\tlabel\tprobability\tnote\n")
        for ex, (lab, prob) in zip(examples, preds):
            fh.write(f"{ex.id}\t{lab}\t{prob:.6f}\t\n")
        for where, pid, reason in skipped:
            fh.write(f"{pid}\t\t\tnot predicted: {reason} ({where})\n")
    tmp.replace(args.out)
    print(f"{len(examples)} pairs predicted, {len(skipped)} skipped with a reason -> {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command line: train, evaluate (also writes confusion_<split>.png), predict, explain (HTML report)."""
    p, sub = taskcli.parser("python -m clinical_ft.relation", __doc__ or "")
    pr = sub.add_parser("predict", help="classify the pairs of a tsv file or of DDI-format XML documents")
    pr.add_argument("--model", required=True, help="run directory written by train")
    pr.add_argument("--input", required=True, help="tsv ([index<TAB>]sentence[<TAB>label]) or DDI XML file/folder/zip")
    pr.add_argument("--out", required=True, help="tsv output: id, label, probability, note (one row per pair)")
    pr.add_argument("--part", choices=["train", "test"], help="official DDI zip only: which part to read (default all)")
    from .interpret import cli as interpret_cli

    ex = sub.add_parser("explain", help="HTML report: predicted label, word attributions and attention of marked pairs")
    interpret_cli.add_relation_explain_args(ex)
    return taskcli.run(TASK, p, argv, {"predict": _predict_cmd, "explain": interpret_cli.relation_explain_cmd})


if __name__ == "__main__":
    raise SystemExit(main())
