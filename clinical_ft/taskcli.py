"""Command-line plumbing shared by every task package: `train` and `evaluate` are the same for all
tasks; each task's ``cli.py`` adds its own `predict` and `explain` handlers. A task CLI serves the
heads of its own package (qa: extractive and yes/no): the card's, or the run's, kind and format pick
among them (taskapi.head_for), and a card of another kind is refused, naming the command to use."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import engine, resources
from .config import TaskCard, TrainConfig, parse_overrides, read_yaml
from .errors import ClinicalFTError
from .rundir import run_card
from .taskapi import Task, head_for, load_card, load_config

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


Heads = Sequence[Task]  # the tasks of one task package


def _own_kind(heads: Heads, kind: Any, what: str) -> None:
    if isinstance(kind, str) and kind != heads[0].kind:
        raise ClinicalFTError(f"{what} is of kind {kind}, not {heads[0].kind}; use python -m clinical_ft.{kind}")


def load_card_and_config(card: str | Path | TaskCard, config: str | None, overrides: list[str], encoder: str | None,
                         heads: Heads) -> tuple[Task, TaskCard, TrainConfig]:
    """The card's task among `heads`, the card and the config (shipped names or paths), validated
    whole together; `key=value` overrides and --encoder on top.

    Raises:
        ConfigError: every problem of the card, and of the config (task_options included).
        ClinicalFTError: the card is of another kind than `heads` (naming the command to use).
    """
    if not isinstance(card, TaskCard):
        path = resources.find(card, "tasks")
        _own_kind(heads, (read_yaml(path) or {}).get("kind"), f"card {path}")  # then every problem at once
        card = load_card(path, heads)
    task = head_for(heads, card)
    extra = parse_overrides(overrides)
    if encoder:
        extra["encoder"] = encoder
    return task, card, load_config(config, extra, task)


def open_run(run_dir: str | Path, heads: Heads, **kwargs: Any) -> tuple[Task, engine.Run]:
    """The task of a run directory among `heads` (from its run.yaml) and the loaded run."""
    card = run_card(run_dir)
    _own_kind(heads, card.kind, f"run {run_dir}")
    task = head_for(heads, card)
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
    e.add_argument("--input", help="instead of --split: another labelled file in the card's format (a held-out "
                   "corpus); metrics go to eval_<file stem>.json")
    e.add_argument("--data-dir", help="root for the card's relative data paths")
    return p, sub


def train_run(task: Task, card: TaskCard, cfg: TrainConfig, args: argparse.Namespace, dev_title: str = "validation") -> int:
    """engine.train, then the metrics printed as tables."""
    metrics = engine.train(task, card, cfg, args.out, data_dir=args.data_dir, overwrite=args.overwrite)
    print(format_table({k: v for k, v in metrics.items() if k not in ("validation", "limited_reasons")}))
    if "validation" in metrics:
        print(f"\n{dev_title}\n" + format_table(metrics["validation"]))
    print(f"\nrun written to {args.out}")
    if metrics["limited"]:
        print(f"LIMITED run (not comparable with full-data results): {'; '.join(metrics['limited_reasons'])}")
    return 0


def print_evaluation(run: engine.Run, metrics: dict[str, Any]) -> None:
    name = metrics["split"]
    print(format_table(metrics))
    print(f"\n{json.dumps({k: v for k, v in metrics.items() if not isinstance(v, dict)}, default=float)}")
    print(f"written to {run.path / ('eval_' + name + '.json')} and {engine.predictions_path(run.path, name).name}")


def commands(heads: Heads) -> dict[str, Handler]:
    """The `train` and `evaluate` handlers of the task CLI serving `heads`."""

    def train(args: argparse.Namespace) -> int:
        task, card, cfg = load_card_and_config(args.card, args.config, args.overrides, args.encoder, heads)
        return train_run(task, card, cfg, args)

    def evaluate(args: argparse.Namespace) -> int:
        task, run = open_run(args.model, heads)
        print_evaluation(run, engine.evaluate(task, run, args.split, args.data_dir, input_file=args.input))
        return 0

    return {"train": train, "evaluate": evaluate}


def run(heads: Heads, p: argparse.ArgumentParser, argv: list[str] | None, extra: dict[str, Handler]) -> int:
    """Parse `argv` and dispatch to the handlers (train/evaluate for `heads`, then `extra`); user errors
    print one clear message and return 2."""
    args = p.parse_args(argv)
    setup_logging(args.verbose)
    handlers = {**commands(heads), **extra}
    try:
        return handlers[args.command](args)
    except ClinicalFTError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a missing or unreadable input or output path: one line naming it
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
