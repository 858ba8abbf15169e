"""Command-line pieces shared by the task packages' ``explain`` commands: common options, reading
documents from a text file, and choosing which items of an input to explain."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import ClinicalFTError, InputError
from .attribution import TOLERANCE


def add_common_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--n-steps", type=int, default=50, help="most integrated-gradient steps (adaptive: steps are doubled "
                   "until |convergence delta| <= --tolerance; default 50)")
    p.add_argument("--tolerance", type=float, default=TOLERANCE, help="IG stops adding steps once |convergence delta| "
                   f"<= this share of |f(x) - f(baseline)| (default {TOLERANCE}); targets above it are flagged")
    p.add_argument("--no-attributions", action="store_true", help="attention only (much faster)")


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


def check_steps(args: argparse.Namespace) -> None:
    if args.n_steps < 1:
        raise ClinicalFTError(f"--n-steps must be >= 1, found {args.n_steps}")
    if not 0 < getattr(args, "tolerance", TOLERANCE) < 1:
        raise ClinicalFTError(f"--tolerance must be between 0 and 1, found {args.tolerance}")
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


def add_selection(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--ids", help=f"with --input: comma-separated {what} ids to explain (default: the first --limit)")
    p.add_argument("--limit", type=int, default=20, help=f"with --input: at most this many {what}s (default 20)")
    p.add_argument("--out", required=True, help="HTML report to write (PNG heatmaps go beside it)")
    add_common_args(p)


