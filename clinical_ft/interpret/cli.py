"""Command-line pieces of the interpretability reports, wired into the task CLIs and `clinical-ft`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import ClinicalFTError, InputError


def add_common_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--n-steps", type=int, default=50, help="integrated-gradients steps (default 50)")
    p.add_argument("--no-attributions", action="store_true", help="attention only (much faster)")


def add_ner_explain_args(p: argparse.ArgumentParser) -> None:
    """`explain` for NER: --model RUN (--text "..." | --input file.txt) --out report.html."""
    p.add_argument("--model", required=True, help="NER run directory written by train")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--text", help="text to explain")
    src.add_argument("--input", help="UTF-8 text file, one document per line")
    p.add_argument("--out", required=True, help="HTML report to write (PNG heatmaps go beside it)")
    p.add_argument("--max-entities", type=int, default=20, help="entities attributed per document (default 20)")
    add_common_args(p)


def read_lines(path: str | Path) -> tuple[list[tuple[str, str]], int]:
    """Documents of a text file, one per non-blank line, id ``<file>:<line>``; also the blank-line count."""
    path = Path(path)
    if not path.is_file():
        raise ClinicalFTError(f"{path}: no such file")
    lines = path.read_bytes().split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the final newline ends the last line, it does not start a blank one
    docs, blank = [], 0
    for ln, raw in enumerate(lines, start=1):
        try:
            line = raw.decode("utf-8").rstrip("\r")
        except UnicodeDecodeError as exc:
            raise InputError(path, ln, "UTF-8 text", f"byte 0x{raw[exc.start]:02x}") from None
        if line.strip():
            docs.append((f"{path.name}:{ln}", line))
        else:
            blank += 1
    return docs, blank


def ner_explain_cmd(task: Any, args: argparse.Namespace) -> int:
    """Handler of ``python -m clinical_ft.ner explain``."""
    from .. import engine
    from .ner_explain import explain_ner

    if args.n_steps < 1:
        raise ClinicalFTError(f"--n-steps must be >= 1, found {args.n_steps}")
    docs, blank = ([("text", args.text)], 0) if args.text is not None else read_lines(args.input)
    if not docs:
        raise ClinicalFTError(f"{args.input}: no non-blank line to explain")
    run = engine.load_run(task, args.model)
    out = explain_ner(run, docs, args.out, attributions=not args.no_attributions, n_steps=args.n_steps,
                      max_entities=args.max_entities)
    skipped = f" ({blank} blank line(s) skipped)" if blank else ""
    print(f"{len(docs)} document(s) explained{skipped} -> {out}")
    return 0


def _check_steps(args: argparse.Namespace) -> None:
    if args.n_steps < 1:
        raise ClinicalFTError(f"--n-steps must be >= 1, found {args.n_steps}")
    if getattr(args, "limit", 1) < 1:
        raise ClinicalFTError(f"--limit must be >= 1, found {args.limit}")


def select(items: list[Any], ids: str | None, limit: int, source: str) -> tuple[list[Any], int]:
    """Items whose ``id`` is in comma-separated `ids` (in that order), else the first `limit` items.

    Returns:
        (chosen items, how many more were left out by `limit`).

    Raises:
        ClinicalFTError: an id of `ids` that is not in `source`, or nothing to explain.
    """
    if ids:
        wanted = [i.strip() for i in ids.split(",") if i.strip()]
        by_id = {str(x.id): x for x in items}
        missing = [i for i in wanted if i not in by_id]
        if missing:
            some = ", ".join(list(by_id)[:5])
            raise ClinicalFTError(f"{source}: no item with id(s) {missing}; its ids start {some} (change --ids)")
        items = [by_id[i] for i in wanted]
    if not items:
        raise ClinicalFTError(f"{source}: nothing to explain")
    return items[:limit], max(0, len(items) - limit)


def _add_selection(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--ids", help=f"with --input: comma-separated {what} ids to explain (default: the first --limit)")
    p.add_argument("--limit", type=int, default=20, help=f"with --input: at most this many {what}s (default 20)")
    p.add_argument("--out", required=True, help="HTML report to write (PNG heatmaps go beside it)")
    add_common_args(p)


def add_relation_explain_args(p: argparse.ArgumentParser) -> None:
    """`explain` for relation: --model RUN (--text "..." | --input pairs.tsv [--ids]) --out report.html."""
    p.add_argument("--model", required=True, help="relation run directory written by train")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--text", help='one sentence, arguments marked "[E1] x [/E1] ... [E2] y [/E2]" or masked (@DRUG$)')
    src.add_argument("--input", help="tsv as predict reads it ([index<TAB>]sentence[<TAB>label]), marked sentences")
    _add_selection(p, "pair")


def relation_explain_cmd(task: Any, args: argparse.Namespace) -> int:
    """Handler of ``python -m clinical_ft.relation explain``."""
    from .. import engine
    from ..relation_data import read_tsv
    from .relation_explain import explain_relation, pair_example

    _check_steps(args)
    if args.text is not None:
        pairs, more = [pair_example("text", args.text)], 0
    else:
        if not Path(args.input).is_file():
            raise ClinicalFTError(f"--input {args.input}: no such file")
        rows, more = select(read_tsv(args.input, require_labels=False), args.ids, args.limit, args.input)
        pairs = [pair_example(r.id, r.text, r.label, r.source) for r in rows]
    run = engine.load_run(task, args.model)
    out = explain_relation(run, pairs, args.out, attributions=not args.no_attributions, n_steps=args.n_steps)
    left = f" ({more} more left out by --limit {args.limit})" if more else ""
    print(f"{len(pairs)} pair(s) explained{left} -> {out}")
    return 0


def add_qa_explain_args(p: argparse.ArgumentParser) -> None:
    """`explain` for QA: --model RUN (--question Q --context C | --input FILE) --out report.html."""
    p.description = ("HTML report explaining a QA run's answers: for an extractive run the best span, for a yes/no "
                     "run the predicted label; word attributions over question + context, and attention.")
    p.add_argument("--model", required=True, help="QA run directory written by train (extractive or yes/no)")
    p.add_argument("--question", help="one question (with --context or --context-file)")
    p.add_argument("--context", help="the context text for --question")
    p.add_argument("--context-file", help="UTF-8 file holding the context for --question")
    p.add_argument("--input", help="SQuAD v1 JSON (answers optional), or PubMedQA-shaped JSON for a yes/no run "
                   "(final_decision optional); gold answers are shown when present")
    _add_selection(p, "question")


def qa_explain_cmd(task: Any, args: argparse.Namespace) -> int:
    """Handler of ``python -m clinical_ft.qa explain`` (extractive or yes/no, by the run's card)."""
    from .. import engine
    from ..qa_data import QAExample, YesNoExample, read_squad, read_yesno
    from ..qa_yesno import YesNoTask
    from .qa_explain import explain_qa

    _check_steps(args)
    yesno = isinstance(task, YesNoTask)
    if args.input and not args.question:
        items = read_yesno(args.input, require_labels=False) if yesno else read_squad(args.input, require_answers=False)
        examples, more = select(items, args.ids, args.limit, args.input)
    elif args.question and not args.input and (args.context is not None) != bool(args.context_file):
        if args.context is None and not Path(args.context_file).is_file():
            raise ClinicalFTError(f"--context-file {args.context_file}: no such file")
        ctx = args.context if args.context is not None else Path(args.context_file).read_text(encoding="utf-8")
        examples = [YesNoExample("question", args.question, ctx, None) if yesno
                    else QAExample("question", args.question, ctx, None)]
        more = 0
    else:
        raise ClinicalFTError("explain needs --input FILE, or --question TEXT with one of --context TEXT / "
                              "--context-file FILE")
    run = engine.load_run(task, args.model)
    out = explain_qa(run, examples, args.out, attributions=not args.no_attributions, n_steps=args.n_steps)
    left = f" ({more} more left out by --limit {args.limit})" if more else ""
    print(f"{len(examples)} question(s) explained{left} -> {out}")
    return 0
