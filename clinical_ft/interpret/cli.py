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
