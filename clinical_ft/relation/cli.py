"""``python -m clinical_ft.relation train|evaluate|predict|explain``: relation extraction over marked
argument pairs (evaluate also writes confusion_<split>.png)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from .. import engine, taskcli
from ..atomic import atomic_open
from ..errors import ClinicalFTError
from ..interpret.cli import add_selection, check_steps, select
from .ddi_xml import read_documents
from .pairs import RelExample, read_tsv
from .task import TASK


def predict(run: engine.Run, examples: list[RelExample]) -> list[tuple[str, float]]:
    """(label, probability) for every example (gold labels, if any, are ignored)."""
    return engine.predict(TASK, run, [dataclasses.replace(e, label=None) for e in examples])


def _predict(args: argparse.Namespace) -> int:
    _, run = taskcli.open_run(args.model, (TASK,))
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
    with atomic_open(args.out) as fh:
        fh.write("id\tlabel\tprobability\tnote\n")
        for ex, (lab, prob) in zip(examples, preds):
            fh.write(f"{ex.id}\t{lab}\t{prob:.6f}\t\n")
        for where, pid, reason in skipped:
            fh.write(f"{pid}\t\t\tnot predicted: {reason} ({where})\n")
    print(f"{len(examples)} pairs predicted, {len(skipped)} skipped with a reason -> {args.out}")
    return 0


def _explain(args: argparse.Namespace) -> int:
    from .explain import explain_relation, pair_example

    check_steps(args)
    if args.text is not None:
        pairs, more = [pair_example("text", args.text)], 0
    else:
        if not Path(args.input).is_file():
            raise ClinicalFTError(f"--input {args.input}: no such file")
        rows, more = select(read_tsv(args.input, require_labels=False), args.ids, args.limit, args.input)
        pairs = [pair_example(r.id, r.text, r.label, r.source) for r in rows]
    _, run = taskcli.open_run(args.model, (TASK,))
    out = explain_relation(run, pairs, args.out, attributions=not args.no_attributions, n_steps=args.n_steps)
    left = f" ({more} more left out by --limit {args.limit})" if more else ""
    print(f"{len(pairs)} pair(s) explained{left} -> {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p, sub = taskcli.parser("python -m clinical_ft.relation", __doc__ or "")
    pr = sub.add_parser("predict", help="classify the pairs of a tsv file or of DDI-format XML documents")
    pr.add_argument("--model", required=True, help="run directory written by train")
    pr.add_argument("--input", required=True, help="tsv ([index<TAB>]sentence[<TAB>label]) or DDI XML file/folder/zip")
    pr.add_argument("--out", required=True, help="tsv output: id, label, probability, note (one row per pair)")
    pr.add_argument("--part", choices=["train", "test"], help="official DDI zip only: which part to read (default all)")
    ex = sub.add_parser("explain", help="HTML report: predicted label, word attributions and attention of marked pairs")
    ex.add_argument("--model", required=True, help="relation run directory written by train")
    src = ex.add_mutually_exclusive_group(required=True)
    src.add_argument("--text", help='one sentence, arguments marked "[E1] x [/E1] ... [E2] y [/E2]" or masked (@DRUG$)')
    src.add_argument("--input", help="tsv as predict reads it ([index<TAB>]sentence[<TAB>label]), marked sentences")
    add_selection(ex, "pair")
    return taskcli.run((TASK,), p, argv, {"predict": _predict, "explain": _explain})


if __name__ == "__main__":
    raise SystemExit(main())
