"""Command-line plumbing shared by every task package: `train` and `evaluate` are the same for all
tasks; each task's ``cli.py`` adds its own `predict` and `explain` handlers. The task serving a card
or a run comes from the registry, never from the command's module."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import engine, registry
from .config import TaskCard, TrainConfig, parse_overrides
from .errors import ClinicalFTError
from .taskapi import Task

Handler = Callable[[argparse.Namespace], int]


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("clinical_ft").setLevel(logging.INFO)
    try:
        import transformers

        transformers.logging.set_verbosity_warning()
    except ImportError:  # pragma: no cover
        pass


def _check_kind(task: Task, kind: str | None, what: str) -> None:
    if kind is not None and task.kind != kind:
        raise ClinicalFTError(f"{what} is a {task.kind} task; use python -m clinical_ft.{task.kind}")


def load_card_and_config(card: str | Path | TaskCard, config: str | None, overrides: list[str], encoder: str | None,
                         kind: str | None = None) -> tuple[Task, TaskCard, TrainConfig]:
    """The card's task, the card and the config (shipped names or paths), validated whole together;
    `key=value` overrides and --encoder on top.

    Raises:
        ConfigError: every problem of the card, and of the config (task_options included).
        ClinicalFTError: the card is not of `kind` (the command's task).
    """
    card_obj = card if isinstance(card, TaskCard) else registry.load_card(card)
    task = registry.for_card(card_obj)
    _check_kind(task, kind, f"card {card_obj.name!r}")
    extra = parse_overrides(overrides)
    if encoder:
        extra["encoder"] = encoder
    return task, card_obj, registry.load_config(config, extra, task)


def open_run(run_dir: str | Path, kind: str | None = None, **kwargs: Any) -> tuple[Task, engine.Run]:
    """The task of a run directory (from its run.yaml) and the loaded run."""
    task = registry.for_run(run_dir)
    _check_kind(task, kind, f"run {run_dir}")
    return task, engine.load_run(task, run_dir, **kwargs)


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
    e = sub.add_parser("evaluate", help="score a trained run on a split of its card (predictions saved)")
    e.add_argument("--model", required=True, help="run directory written by train")
    e.add_argument("--split", default="test", help="train, validation or test (default test)")
    e.add_argument("--data-dir", help="root for the card's relative data paths")
    return p, sub


def train_run(task: Task, card: TaskCard, cfg: TrainConfig, args: argparse.Namespace, dev_title: str = "validation") -> int:
    """engine.train, then the metrics printed as tables."""
    metrics = engine.train(task, card, cfg, args.out, data_dir=args.data_dir, overwrite=args.overwrite)
    print(format_table({k: v for k, v in metrics.items() if k != "validation"}))
    if "validation" in metrics:
        print(f"\n{dev_title}\n" + format_table(metrics["validation"]))
    print(f"\nrun written to {args.out}")
    return 0


def print_evaluation(run: engine.Run, metrics: dict[str, Any], split: str) -> None:
    print(format_table(metrics))
    print(f"\n{json.dumps({k: v for k, v in metrics.items() if not isinstance(v, dict)}, default=float)}")
    print(f"written to {run.path / ('eval_' + split + '.json')} and {engine.predictions_path(run.path, split).name}")


def commands(kind: str) -> dict[str, Handler]:
    """The `train` and `evaluate` handlers of the task CLI of `kind`."""

    def train(args: argparse.Namespace) -> int:
        task, card, cfg = load_card_and_config(args.card, args.config, args.overrides, args.encoder, kind)
        return train_run(task, card, cfg, args)

    def evaluate(args: argparse.Namespace) -> int:
        task, run = open_run(args.model, kind)
        print_evaluation(run, engine.evaluate(task, run, args.split, args.data_dir), args.split)
        return 0

    return {"train": train, "evaluate": evaluate}


def run(kind: str, p: argparse.ArgumentParser, argv: list[str] | None, extra: dict[str, Handler]) -> int:
    """Parse `argv` and dispatch to the handlers (train/evaluate of `kind`, then `extra`); user errors
    print one clear message and return 2."""
    args = p.parse_args(argv)
    setup_logging(args.verbose)
    handlers = {**commands(kind), **extra}
    try:
        return handlers[args.command](args)
    except ClinicalFTError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
