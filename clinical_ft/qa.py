"""Question answering: extractive spans (SQuAD v1 JSON; BioASQ factoid) and yes/no/maybe
classification (PubMedQA). Run as ``python -m clinical_ft.qa train|evaluate|predict|explain``; the card's
``data.format`` picks the head: ``squad``/``bioasq`` extractive, ``pubmedqa`` yes/no/maybe."""

from __future__ import annotations

import json
import logging
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import encoders, engine, resources, taskcli
from .chunking import tokenize_windows
from .config import TaskCard, TrainConfig, from_dict, load, read_yaml
from .errors import ClinicalFTError, ConfigError
from .qa_data import (
    QAExample,
    YesNoExample,
    extractive_split,
    feature_columns,
    fit_questions,
    read_squad,
    read_yesno,
)
from .qa_post import answer_token_span, best_spans, factoid_scores, merge_candidates, squad_scores
from .qa_yesno import YesNoTask
from .taskapi import Encoded

log = logging.getLogger("clinical_ft.qa")
TOP_K = 20  # start/end candidates kept per window by reduce_logits (bounds n_best_size)
EXTRACTIVE_FORMATS, YESNO_FORMATS = ("squad", "bioasq"), ("pubmedqa",)


@dataclass
class QAOptions:
    """``task_options`` of extractive QA (utils_qa.py defaults)."""

    n_best_size: int = 20
    max_answer_length: int = 30  # tokens
    train_negative_fraction: float = 1.0  # training windows without the answer kept (run_qa keeps all)


def qa_options(cfg: TrainConfig) -> QAOptions:
    """Validate ``cfg.task_options``; raise ConfigError listing every problem."""
    opts = from_dict(QAOptions, cfg.task_options, "task_options")
    problems = []
    if not 1 <= opts.n_best_size <= TOP_K:
        problems.append(f"task_options.n_best_size: expected 1..{TOP_K}, found {opts.n_best_size}")
    if opts.max_answer_length < 1:
        problems.append(f"task_options.max_answer_length: expected >= 1, found {opts.max_answer_length}")
    if not 0.0 <= opts.train_negative_fraction <= 1.0:
        problems.append(f"task_options.train_negative_fraction: expected 0..1, found {opts.train_negative_fraction}")
    if problems:
        raise ConfigError("task_options", problems)
    return opts


@dataclass
class WindowMeta:
    """Only what decoding needs per window: its example and its context offsets."""

    doc_index: list[int]
    offsets: list[list[tuple[int, int] | None]]
    options: Any


class ExtractiveQATask:
    kind = "qa"
    metric_for_best_model = "f1"

    def load_split(self, card: TaskCard, split: str, data_dir: str | Path | None) -> list[QAExample]:
        return extractive_split(card, split, data_dir)

    def label_list(self, card: TaskCard, train_examples: list[QAExample]) -> list[str]:
        return []  # spans, no label set

    def build_model(self, encoder: str, labels: list[str], cfg: TrainConfig) -> Any:
        from transformers import AutoModelForQuestionAnswering

        return encoders.load_model(AutoModelForQuestionAnswering, encoder)

    def encode(self, tokenizer: Any, examples: list[QAExample], cfg: TrainConfig, labels: list[str]) -> Encoded:
        """Question + context windows (only the context is windowed). Training labels are the answer's
        token span, or [CLS] for windows that do not hold the whole answer."""
        from datasets import Dataset

        opts = qa_options(cfg)
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
        meta = WindowMeta([w.doc_index for w in kept], [w.offsets for w in kept], opts)
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

    def decode(self, examples: list[QAExample], encoded: Encoded, predictions: Any, labels: list[str]) -> list[list[dict]]:
        """Per example, its n-best answers (text, character offsets, probability), best first."""
        preds = np.asarray(predictions, dtype=np.float32)
        meta: WindowMeta = encoded.meta
        by_doc: dict[int, list[int]] = {}
        for f, d in enumerate(meta.doc_index):
            by_doc.setdefault(d, []).append(f)
        opts = meta.options
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


EXTRACTIVE, YESNO = ExtractiveQATask(), YesNoTask()
TASK = EXTRACTIVE


def task_for(card: TaskCard) -> ExtractiveQATask | YesNoTask:
    """The head a card needs, by ``data.format``."""
    if card.data.format in EXTRACTIVE_FORMATS:
        return EXTRACTIVE
    if card.data.format in YESNO_FORMATS:
        return YESNO
    raise ClinicalFTError(f"card {card.name!r}: data.format {card.data.format!r} is not a QA format; "
                          f"expected one of {list(EXTRACTIVE_FORMATS + YESNO_FORMATS)}")


def predict(task: ExtractiveQATask | YesNoTask, run: engine.Run, examples: list[Any]) -> list[dict[str, Any]]:
    """One JSON-ready row per example: answer text, character offsets and probability (extractive;
    plus the top 5), or label and probabilities (yes/no). A question with no valid span says why."""
    encoded = task.encode(run.tokenizer, examples, run.cfg, run.labels)
    preds = task.decode(examples, encoded, engine.predict_raw(task, run, encoded), run.labels) if examples else []
    rows = []
    for ex, p in zip(examples, preds):
        if isinstance(task, YesNoTask):
            rows.append({"id": ex.id, **p})
        elif p:
            top = [{k: c[k] for k in ("text", "start", "end", "probability")} for c in p[:5]]
            rows.append({"id": ex.id, "answer": p[0]["text"], "start": p[0]["start"], "end": p[0]["end"],
                         "probability": p[0]["probability"], "nbest": top})
        else:
            rows.append({"id": ex.id, "answer": "", "start": None, "end": None, "probability": 0.0, "nbest": [],
                         "reason": "no valid span: empty context, or every candidate fell outside it"})
    return rows


def _predict_cmd(task: Any, args: Any) -> int:
    run = engine.load_run(task, args.model)
    yesno = isinstance(task, YesNoTask)
    if args.input:
        examples = read_yesno(args.input, require_labels=False) if yesno else read_squad(args.input, require_answers=False)
    elif args.question and (args.context is not None or args.context_file):
        if args.context is None and not Path(args.context_file).is_file():
            raise ClinicalFTError(f"--context-file {args.context_file}: no such file")
        ctx = args.context if args.context is not None else Path(args.context_file).read_text(encoding="utf-8")
        examples = [YesNoExample("1", args.question, ctx, None) if yesno else QAExample("1", args.question, ctx, None)]
    else:
        raise ClinicalFTError("predict needs --input FILE, or --question TEXT with --context TEXT or --context-file FILE")
    rows = predict(task, run, examples)
    text = "".join(json.dumps(r, default=float) + "\n" for r in rows)
    if args.out in (None, "-"):
        sys.stdout.write(text)
    else:
        tmp = Path(args.out + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(args.out)
        print(f"{len(rows)} questions answered -> {args.out}")
    return 0


def _pick(args: Any) -> ExtractiveQATask | YesNoTask:
    if args.command == "train":
        return task_for(load(TaskCard, resources.find(args.card, "tasks")))
    run_file = Path(args.model) / engine.RUN_FILE
    if run_file.is_file():
        return task_for(from_dict(TaskCard, read_yaml(run_file)["card"], str(run_file)))
    return EXTRACTIVE  # load_run reports the missing run directory


def main(argv: list[str] | None = None) -> int:
    p, sub = taskcli.parser("python -m clinical_ft.qa", __doc__ or "")
    pr = sub.add_parser("predict", help="answer questions from SQuAD-style JSON (or PubMedQA-style for yes/no) or text")
    pr.add_argument("--model", required=True, help="run directory written by train")
    pr.add_argument("--input", help="SQuAD v1 JSON (answers optional); PubMedQA-shaped JSON for a yes/no model")
    pr.add_argument("--question", help="one question (with --context or --context-file)")
    pr.add_argument("--context", help="the context text for --question")
    pr.add_argument("--context-file", help="UTF-8 file holding the context for --question")
    pr.add_argument("--out", help="JSON lines output (default: stdout)")
    from .interpret import cli as interpret_cli

    ex = sub.add_parser("explain", help="HTML report: the best answer span (or yes/no/maybe class), word attributions and attention")
    interpret_cli.add_qa_explain_args(ex)
    args = p.parse_args(argv)
    try:
        task = _pick(args)
    except ClinicalFTError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return taskcli.run(task, p, argv, {"predict": _predict_cmd, "explain": interpret_cli.qa_explain_cmd})


if __name__ == "__main__":
    raise SystemExit(main())
