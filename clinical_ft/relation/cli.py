"""``python -m clinical_ft.relation train|evaluate|predict|explain``: relation extraction over marked
argument pairs (evaluate also writes confusion_<split>.png)."""

from __future__ import annotations

import argparse
import dataclasses
from collections import Counter
from pathlib import Path
from typing import Any

from .. import engine, taskcli
from ..atomic import atomic_open
from ..errors import ClinicalFTError
from ..interpret.cli import add_selection, check_steps, select
from .ddi_xml import read_documents
from .pairs import NO_MARKER, RelExample, marking_note, read_tsv
from .task import TASK, options


def predict(run: engine.Run, examples: list[RelExample]) -> list[tuple[str, float]]:
    """(label, probability) for every example (gold labels, if any, are ignored)."""
    return predict_with_notes(run, examples)[0]


def predict_with_notes(run: engine.Run, examples: list[RelExample]) -> tuple[list[tuple[str, float]], list[str]]:
    """(label, probability) for every example, and a note on each: why the model did not read it as
    two marked arguments inside its window ('' when it did). Gold labels, if any, are ignored."""
    if not examples:
        return [], []
    pairs = [dataclasses.replace(e, label=None) for e in examples]
    encoded = TASK.encode(run.tokenizer, pairs, run.cfg, run.labels)
    preds = TASK.decode(pairs, encoded, engine.predict_raw(TASK, run, encoded), run.labels, run.cfg)
    opts = options(run.cfg)
    return preds, [pair_note(e, win, opts, run.cfg.max_length) for e, win in zip(pairs, encoded.meta)]


def pair_note(ex: RelExample, window: Any, opts: Any, max_length: int) -> str:
    """What the model made of a pair encoded in `window` when not two arguments marked inside it,
    following the task's encoding: no marker (or a marker outside the window) pools at [CLS] under
    entity-start pooling; one mask is read as overlapping arguments (pairs.marking_note)."""
    at_cls = ": pooled at [CLS]" if opts.pooling == "entity_start" else ""
    reason = marking_note(ex)
    if reason == NO_MARKER:
        return reason + (at_cls or ": the model cannot tell which words are the arguments")
    starts = ex.marked(opts.marker, opts.entity_types)[1]
    if all(any(o and o[0] <= s < o[1] for o in window.offsets) for s in starts):  # as encode finds markers
        return reason
    return "; ".join(filter(None, [reason, f"an argument marker outside the model's window (max_length {max_length})"
                                   + at_cls]))


def marked_pair(ex: RelExample) -> tuple[RelExample, str]:
    """A tsv row whose arguments are written as ``[E1] x [/E1] ... [E2] y [/E2]`` (typed or not) as a
    pair with two argument spans, marked at encoding time in the run's own style, as explain reads
    it; other rows as they are. Also a note: '' or why the row's markers could not be read."""
    from .explain import parse_markers

    try:
        parsed = parse_markers(ex.text)
    except ClinicalFTError as exc:
        return ex, f"argument markers not read ({exc})"
    if parsed is None:
        return ex, ""
    plain, spans, types = parsed
    return dataclasses.replace(ex, text=plain, args=spans, types=types), ""


def _read_input(args: argparse.Namespace) -> tuple[list[RelExample], list[str], list[tuple[str, str, str]]]:
    """The pairs of --input, a reading note per pair ('' when none), and the pairs skipped with a reason."""
    inp = Path(args.input)
    if not inp.exists():
        raise ClinicalFTError(f"input {inp} not found")
    if inp.is_file() and inp.suffix in (".tsv", ".txt", ".csv"):
        read = [marked_pair(e) for e in read_tsv(inp, require_labels=False)]
        return [e for e, _ in read], [n for _, n in read], []
    examples, report = read_documents(inp, args.part, require_labels=False)
    return examples, [""] * len(examples), report.skipped


def _predict(args: argparse.Namespace) -> int:
    _, run = taskcli.open_run(args.model, (TASK,))
    examples, read_notes, skipped = _read_input(args)
    preds, notes = predict_with_notes(run, examples)
    notes = ["; ".join(filter(None, pair)) for pair in zip(read_notes, notes)]
    with atomic_open(args.out) as fh:
        fh.write("id\tlabel\tprobability\tnote\n")
        for ex, (lab, prob), note in zip(examples, preds, notes):
            fh.write(f"{ex.id}\t{lab}\t{prob:.6f}\t{note}\n")
        for where, pid, reason in skipped:
            fh.write(f"{pid}\t\t\tnot predicted: {reason} ({where})\n")
    noted = Counter(n for n in notes if n)
    with_notes = f"{sum(noted.values())} with a note, " if noted else ""
    print(f"{len(examples)} pairs predicted, {with_notes}{len(skipped)} skipped with a reason -> {args.out}")
    for note, n in noted.most_common():
        print(f"  {n} pair{'s' if n > 1 else ''}: {note}")
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
    out = explain_relation(run, pairs, args.out, attributions=not args.no_attributions, n_steps=args.n_steps,
                           tolerance=args.tolerance)
    left = f" ({more} more left out by --limit {args.limit})" if more else ""
    print(f"{len(pairs)} pair(s) explained{left} -> {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p, sub = taskcli.parser("python -m clinical_ft.relation", __doc__ or "")
    pr = sub.add_parser("predict", help="classify the pairs of a tsv file or of DDI-format XML documents")
    pr.add_argument("--model", required=True, help="run directory written by train")
    pr.add_argument("--input", required=True, help="tsv ([index<TAB>]sentence[<TAB>label], arguments masked (@GENE$) "
                                                   "or marked [E1] x [/E1] ... [E2] y [/E2]) or DDI XML file/folder/zip")
    pr.add_argument("--out", required=True, help="tsv output: id, label, probability, note (one row per pair; the note "
                                                 "says why a pair was not read as two marked arguments, or skipped)")
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
