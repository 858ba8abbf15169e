"""``python -m clinical_ft.qa train|evaluate|predict|explain``: question answering. The card's
``data.format`` picks the head: ``squad``/``bioasq`` extractive spans, ``pubmedqa``
yes/no/maybe; a trained run's card decides for evaluate, predict and explain."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .. import engine, taskcli
from ..atomic import write_text
from ..errors import ClinicalFTError
from ..interpret.cli import add_selection, check_steps, select
from ..taskapi import Task
from .extractive import TASK as EXTRACTIVE
from .readers import QAExample, YesNoExample, read_squad, read_yesno
from .yesno import TASK as YESNO
from .yesno import YesNoTask

HEADS = (EXTRACTIVE, YESNO)  # the card's (or run's) data.format picks one


def _yesno(task: Task) -> bool:
    return isinstance(task, YesNoTask)


def predict(task: Task, run: engine.Run, examples: list[Any]) -> list[dict[str, Any]]:
    """One JSON-ready row per example: answer text, character offsets and probability (extractive;
    plus the top 5), or label and probabilities (yes/no). A question with no valid span says why."""
    rows = []
    for ex, p in zip(examples, engine.predict(task, run, examples)):
        if _yesno(task):
            rows.append({"id": ex.id, **p})
        elif p:
            top = [{k: c[k] for k in ("text", "start", "end", "probability")} for c in p[:5]]
            rows.append({"id": ex.id, "answer": p[0]["text"], "start": p[0]["start"], "end": p[0]["end"],
                         "probability": p[0]["probability"], "nbest": top})
        else:
            rows.append({"id": ex.id, "answer": "", "start": None, "end": None, "probability": 0.0, "nbest": [],
                         "reason": "no valid span: empty context, or every candidate fell outside it"})
    return rows


def _examples(task: Task, args: argparse.Namespace, what: str) -> tuple[list[Any], int]:
    """The questions of --input (with --ids/--limit where the command has them) or of --question with
    --context/--context-file, and how many --limit left out."""
    yesno = _yesno(task)
    if args.input and not args.question:
        items = read_yesno(args.input, require_labels=False) if yesno else read_squad(args.input, require_answers=False)
        return select(items, args.ids, args.limit, args.input) if hasattr(args, "limit") else (items, 0)
    if args.question and not args.input and (args.context is not None) != bool(args.context_file):
        if args.context is None and not Path(args.context_file).is_file():
            raise ClinicalFTError(f"--context-file {args.context_file}: no such file")
        ctx = args.context if args.context is not None else Path(args.context_file).read_text(encoding="utf-8")
        qid = "question" if what == "explain" else "1"
        return [YesNoExample(qid, args.question, ctx, None) if yesno else QAExample(qid, args.question, ctx, None)], 0
    raise ClinicalFTError(f"{what} needs --input FILE, or --question TEXT with one of --context TEXT / "
                          "--context-file FILE")


def _predict(args: argparse.Namespace) -> int:
    task, run = taskcli.open_run(args.model, HEADS)
    examples, _ = _examples(task, args, "predict")
    rows = predict(task, run, examples)
    text = "".join(json.dumps(r, default=float) + "\n" for r in rows)
    if args.out in (None, "-"):
        sys.stdout.write(text)
    else:
        write_text(args.out, text)
        print(f"{len(rows)} questions answered -> {args.out}")
    return 0


def _explain(args: argparse.Namespace) -> int:
    from .explain import explain_qa

    check_steps(args)
    task, run = taskcli.open_run(args.model, HEADS)
    examples, more = _examples(task, args, "explain")
    out = explain_qa(run, examples, args.out, attributions=not args.no_attributions, n_steps=args.n_steps,
                     tolerance=args.tolerance)
    left = f" ({more} more left out by --limit {args.limit})" if more else ""
    print(f"{len(examples)} question(s) explained{left} -> {out}")
    return 0


def _question_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="QA run directory written by train (extractive or yes/no)")
    p.add_argument("--question", help="one question (with --context or --context-file)")
    p.add_argument("--context", help="the context text for --question")
    p.add_argument("--context-file", help="UTF-8 file holding the context for --question")


def main(argv: list[str] | None = None) -> int:
    p, sub = taskcli.parser("python -m clinical_ft.qa", __doc__ or "")
    pr = sub.add_parser("predict", help="answer questions from SQuAD-style JSON (or PubMedQA-style for yes/no) or text")
    _question_args(pr)
    pr.add_argument("--input", help="SQuAD v1 JSON (answers optional); PubMedQA-shaped JSON for a yes/no model")
    pr.add_argument("--out", help="JSON lines output (default: stdout)")
    ex = sub.add_parser("explain", help="HTML report: the best answer span (or yes/no/maybe class), word attributions and attention")
    ex.description = ("HTML report explaining a QA run's answers: for an extractive run the best span, for a yes/no "
                      "run the predicted label; word attributions over question + context, and attention.")
    _question_args(ex)
    ex.add_argument("--input", help="SQuAD v1 JSON (answers optional), or PubMedQA-shaped JSON for a yes/no run "
                    "(final_decision optional); gold answers are shown when present")
    add_selection(ex, "question")
    return taskcli.run(HEADS, p, argv, {"predict": _predict, "explain": _explain})


if __name__ == "__main__":
    raise SystemExit(main())
