"""Command-line plumbing shared by every task module: `train` and `evaluate` are the same for all
tasks; each task adds its own `predict` (and, later, `explain`) through `extra` handlers."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from typing import Any

from . import engine, resources
from .config import TaskCard, TrainConfig, load, parse_overrides
from .errors import ClinicalFTError
from .taskapi import Task

Handler = Callable[[Task, argparse.Namespace], int]


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("clinical_ft").setLevel(logging.INFO)
    try:
        import transformers

        transformers.logging.set_verbosity_warning()
    except ImportError:  # pragma: no cover
        pass


def load_card_and_config(card: str, config: str | None, overrides: list[str], encoder: str | None) -> tuple[TaskCard, TrainConfig]:
    """Load the card and config (shipped names or paths); `key=value` overrides and --encoder on top."""
    card_obj = load(TaskCard, resources.find(card, "tasks"))
    extra = parse_overrides(overrides)
    if encoder:
        extra["encoder"] = encoder
    cfg = load(TrainConfig, resources.find(config, "configs") if config else None, extra)
    return card_obj, cfg


def format_table(metrics: dict[str, Any]) -> str:
    """Two-column plain-text table of the scalar metrics."""
    rows = [(k, f"{v:.4f}" if isinstance(v, float) else str(v)) for k, v in metrics.items()
            if isinstance(v, (int, float, str)) and not isinstance(v, bool)]
    width = max((len(k) for k, _ in rows), default=0)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def parser(prog: str, description: str) -> tuple[argparse.ArgumentParser, Any]:
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("-v", "--verbose", action="store_true", help="more logging (never note text)")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="fine-tune an encoder on a task card")
    t.add_argument("--card", required=True, help="task card: path or shipped name (e.g. ner/ncbi_disease)")
    t.add_argument("--config", help="train config: path or shipped name; defaults apply when omitted")
    t.add_argument("--out", required=True, help="run directory to create (or resume)")
    t.add_argument("--encoder", help="alias (minilm, biobert, ...), Hugging Face id or local directory")
    t.add_argument("--data-dir", help="root for the card's relative data paths (default $CLINICAL_FT_DATA or ../shared/data)")
    t.add_argument("--overwrite", action="store_true", help="replace a finished run in --out")
    t.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. learning_rate=3e-5")
    e = sub.add_parser("evaluate", help="score a trained run on a split of its card")
    e.add_argument("--model", required=True, help="run directory written by train")
    e.add_argument("--split", default="test", help="train, validation or test (default test)")
    e.add_argument("--data-dir", help="root for the card's relative data paths")
    return p, sub


def _train(task: Task, args: argparse.Namespace) -> int:
    card, cfg = load_card_and_config(args.card, args.config, args.overrides, args.encoder)
    metrics = engine.train(task, card, cfg, args.out, data_dir=args.data_dir, overwrite=args.overwrite)
    print(format_table({k: v for k, v in metrics.items() if k != "validation"}))
    if "validation" in metrics:
        print("\nvalidation\n" + format_table(metrics["validation"]))
    print(f"\nrun written to {args.out}")
    return 0


def _evaluate(task: Task, args: argparse.Namespace) -> int:
    run = engine.load_run(task, args.model)
    metrics = engine.evaluate(task, run, args.split, args.data_dir)
    print(format_table(metrics))
    print(f"\n{json.dumps({k: v for k, v in metrics.items() if not isinstance(v, dict)}, default=float)}")
    print(f"written to {run.path / ('eval_' + args.split + '.json')}")
    return 0


def run(task: Task, p: argparse.ArgumentParser, argv: list[str] | None, extra: dict[str, Handler]) -> int:
    """Parse `argv` and dispatch; user errors print one clear message and return 2."""
    args = p.parse_args(argv)
    setup_logging(args.verbose)
    handlers: dict[str, Handler] = {"train": _train, "evaluate": _evaluate, **extra}
    try:
        return handlers[args.command](task, args)
    except ClinicalFTError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
