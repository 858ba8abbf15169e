"""`clinical-ft benchmark`: a resumable grid of (task card x encoder x seed) runs through the task
modules and the shared path (engine.train, then engine.evaluate on the test split).

    clinical-ft benchmark --cards tasks/ner/*.yaml --encoders minilm,biobert --seeds 1,2,3 --out bench/
    clinical-ft benchmark --resume bench/        # continue after an interruption, skipping finished runs
    clinical-ft benchmark --table bench/ --format markdown   # the table again, without training

Output: grid.yaml (all --resume needs), runs/<card>/<encoder>/seed<k>/ (a run directory plus
predictions_test.jsonl and result.json, or error.json / skipped.json), results.md/.csv/.png, runs.csv.
Which task serves a card, and the score it is judged by (the card's ``metric``), come from registry.py.
"""

from __future__ import annotations

import argparse
import gc
import json
import re
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import engine, registry, resources, taskcli
from ..atomic import write_json
from ..config import TaskCard, TrainConfig, dump_yaml, from_dict, parse_overrides, read_yaml, to_dict
from ..errors import ClinicalFTError, ConfigError, EncoderNotFound
from ..taskapi import Task, selection_metric
from .table import ERROR, RESULT, SKIPPED, describe, status, write_tables

GRID_FILE = "grid.yaml"


@dataclass
class Grid:
    """A benchmark grid, saved as grid.yaml in the output folder (YAML keys = fields)."""

    cards: list[str]
    encoders: list[str]
    seeds: list[int]
    config: str | None = None  # one train config for every card; default: configs/<kind>/<encoder>.yaml
    overrides: list[str] = field(default_factory=list)  # key=value, applied to every run
    data_dir: str | None = None
    max_train_examples: int | None = None  # budget options for CPU users; runs are marked LIMITED
    max_steps: int | None = None
    epochs: float | None = None
    bootstrap: int = 1000  # resamples for the 95% interval (0: none)
    bootstrap_seed: int = 0
    keep_models: bool = True

    def budget(self) -> str:
        """The budget options in use, as text (empty when none)."""
        opts = {"max_train_examples": self.max_train_examples, "max_steps": self.max_steps, "epochs": self.epochs}
        return ", ".join(f"{k}={v:g}" for k, v in opts.items() if v is not None)


@dataclass
class Cell:
    """One run of the grid."""

    card_path: str
    card: TaskCard
    encoder: str
    seed: int
    dir: Path

    @property
    def label(self) -> str:
        return f"{self.card.name} x {self.encoder} x seed {self.seed}"


def encoder_slug(name: str) -> str:
    """A folder name for an encoder alias, hub id or local directory."""
    base = Path(name).name if Path(name).is_dir() else name.replace("/", "__")
    return re.sub(r"[^A-Za-z0-9._-]+", "_", base) or "encoder"


def expand(grid: Grid, out: Path) -> list[Cell]:
    """Cards x encoders x seeds, in that order. All card problems are reported together.

    Raises:
        ConfigError: a card cannot be found or is invalid, or two cards share a name.
    """
    problems: list[str] = []
    cards: list[tuple[str, TaskCard]] = []
    for path in grid.cards:
        try:
            cards.append((path, registry.load_card(path)))
        except ClinicalFTError as exc:
            hint = "; a key=value override? put overrides before --cards, or after `--`" if "=" in path else ""
            problems.append(f"--cards {path}: {str(exc).split('; shipped:')[0] if hint else exc}{hint}")
    names = [c.name for _, c in cards]
    problems += [f"--cards: two cards are named {n!r}; run directories would collide"
                 for n in sorted({n for n in names if names.count(n) > 1})]
    if not grid.cards or not grid.encoders or not grid.seeds:
        problems.append("expected at least one card, one encoder and one seed")
    for task, enc in dict.fromkeys((registry.for_card(c), e) for _, c in cards for e in grid.encoders):
        try:  # a bad override or config would fail every run: report it before training anything
            run_config(grid, task, enc, grid.seeds[0] if grid.seeds else 0)
        except ClinicalFTError as exc:
            problems.append(f"config for {task.kind} x {enc}: {exc}")
    if problems:
        raise ConfigError("benchmark grid", problems)
    return [Cell(path, card, enc, seed, out / "runs" / card.name / encoder_slug(enc) / f"seed{seed}")
            for path, card in cards for enc in grid.encoders for seed in grid.seeds]


def run_config(grid: Grid, task: Task, encoder: str, seed: int) -> tuple[TrainConfig, str]:
    """The resolved config of one run and where its base came from.

    Base: ``--config``, else configs/<kind>/<encoder>.yaml, else configs/<kind>/minilm.yaml, else the
    defaults; then the grid's key=value overrides, the encoder, the seed and the budget options;
    validated whole, the task's ``task_options`` included.
    """
    kind = task.kind
    base: Path | None = resources.find(grid.config, "configs") if grid.config else None
    names = [f"{kind}/{encoder}"] if "/" not in encoder and not Path(encoder).is_dir() else []
    for name in [] if base else [*names, f"{kind}/minilm"]:
        try:
            base = resources.find(name, "configs")
            break
        except ClinicalFTError:
            continue
    extra = parse_overrides(grid.overrides)
    extra.update(encoder=encoder, seed=seed)
    budget = {"max_train_examples": grid.max_train_examples, "max_steps": grid.max_steps,
              "num_train_epochs": grid.epochs}
    extra.update({k: v for k, v in budget.items() if v is not None})
    return registry.load_config(base, extra, task), str(base) if base else "defaults"


def run_cell(grid: Grid, cell: Cell) -> str:
    """Train (or finish) and score one run; record result.json, error.json or skipped.json.

    A run trained before an interruption (metrics.json present) is only evaluated; one stopped
    mid-training resumes from its last checkpoint (engine.train). Returns the new status.
    """
    d = cell.dir
    d.mkdir(parents=True, exist_ok=True)
    for name in (ERROR, SKIPPED):
        (d / name).unlink(missing_ok=True)
    try:
        task = registry.for_card(cell.card)
        cfg, source = run_config(grid, task, cell.encoder, cell.seed)
        if not (d / "metrics.json").is_file():
            engine.train(task, cell.card, cfg, d, data_dir=grid.data_dir)
        run = engine.load_run(task, d)
        scores = engine.evaluate(task, run, "test", grid.data_dir)
        del run
        key = selection_metric(task, cell.card)
        if key not in scores:
            raise ClinicalFTError(f"test scores of card {cell.card.name!r} have no {key!r}; found {sorted(scores)}")
        m = json.loads((d / "metrics.json").read_text(encoding="utf-8"))
        keep = ("limited", "limited_reasons", "train_examples", "train_examples_available", "epochs_run",
                "global_steps", "train_runtime_s", "device")
        write_json(d / RESULT, {
            "status": "done", "card": cell.card.name, "kind": cell.card.kind, "encoder": cell.encoder,
            "seed": cell.seed, "metric": key, "value": float(scores[key]), "test_examples": scores["examples"],
            "config_source": source, **{k: m.get(k) for k in keep}}, default=str)
        if not grid.keep_models:
            (d / "model.safetensors").unlink(missing_ok=True)
        return "done"
    except EncoderNotFound as exc:
        write_json(d / SKIPPED, {"status": "skipped", "type": type(exc).__name__, "reason": str(exc)}, default=str)
        return "skipped"
    except Exception as exc:  # recorded, and the grid goes on; KeyboardInterrupt stops it (resume later)
        write_json(d / ERROR, {"status": "failed", "type": type(exc).__name__, "message": str(exc),
                                      "traceback": traceback.format_exc()}, default=str)
        return "failed"
    finally:
        if (d / "run.yaml").is_file():  # a model was built: free its reference cycles (gc is slow otherwise)
            gc.collect()


def save_grid(grid: Grid, out: Path) -> None:
    """Write grid.yaml; an existing, different grid in `out` is an error (resume it or pick another folder)."""
    path = out / GRID_FILE
    if path.is_file() and to_dict(load_grid(out)) != to_dict(grid):
        raise ClinicalFTError(f"{path} holds a different grid; continue it with `clinical-ft benchmark --resume "
                              f"{out}` or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    dump_yaml(grid, path, f"# Benchmark grid written by clinical-ft benchmark.\n"
                          f"# Used by: clinical-ft benchmark --resume {out}  (and --table {out})\n")


def load_grid(out: Path) -> Grid:
    """The grid saved in `out`/grid.yaml (validated)."""
    path = Path(out) / GRID_FILE
    if not path.is_file():
        raise ClinicalFTError(f"{out} holds no {GRID_FILE}; start a grid with `clinical-ft benchmark --cards ... --out {out}`")
    return from_dict(Grid, read_yaml(path), str(path))


def run_grid(grid: Grid, out: Path, fmt: str = "markdown") -> tuple[dict[str, int], str]:
    """Run every unfinished cell (failed and skipped ones are retried), then write the tables.

    Returns:
        counts of runs per final status, and the results table in `fmt` (markdown or csv).
    """
    cells = expand(grid, out)
    save_grid(grid, out)
    counts: dict[str, int] = {}
    for i, cell in enumerate(cells, start=1):
        st = status(cell.dir)
        if st == "done":
            print(f"[{i}/{len(cells)}] {cell.label}: finished before, skipped")
        else:
            start = time.perf_counter()
            st = run_cell(grid, cell)
            print(f"[{i}/{len(cells)}] {cell.label}: {describe(cell.dir, st)} ({time.perf_counter() - start:.0f} s)",
                  flush=True)
        counts[st] = counts.get(st, 0) + 1
    return counts, write_tables(grid, cells, out, fmt)


def _csv(text: str, what: str, cast: type) -> list[Any]:
    try:
        return [cast(x.strip()) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ClinicalFTError(f"--{what}: expected a comma-separated list, found {text!r}") from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The `benchmark` options (shared by `clinical-ft benchmark` and `python -m clinical_ft.bench`)."""
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--out", help="new benchmark folder: grid.yaml, runs/, results.md/.csv/.png")
    mode.add_argument("--resume", metavar="DIR", help="continue the grid saved in DIR, skipping finished runs")
    mode.add_argument("--table", metavar="DIR", help="print DIR's results table again, without training")
    p.add_argument("--cards", nargs="+", help="task cards: paths or shipped names (e.g. tasks/ner/*.yaml)")
    p.add_argument("--encoders", default="minilm", help="comma-separated aliases, hub ids or directories (default minilm)")
    p.add_argument("--seeds", default="1", help="comma-separated seeds (default 1)")
    p.add_argument("--config", help="train config for every card (default configs/<kind>/<encoder>.yaml, "
                                     "else configs/<kind>/minilm.yaml with the encoder replaced)")
    p.add_argument("--data-dir", help="root for the cards' relative data paths")
    p.add_argument("--max-train-examples", type=int, help="budget: first N training examples (run marked LIMITED)")
    p.add_argument("--max-steps", type=int, help="budget: optimiser steps per run (run marked LIMITED)")
    p.add_argument("--epochs", type=float, help="budget: epochs per run (run marked LIMITED)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95%% interval (0: none)")
    p.add_argument("--discard-models", action="store_true", help="delete each run's weights once it is scored")
    p.add_argument("--format", choices=["markdown", "csv"], default="markdown", help="table printed at the end")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="config overrides for every run (before --cards, or after `--`)")


def run_cli(args: argparse.Namespace) -> int:
    """Dispatch parsed `benchmark` arguments; user errors print one message and return 2."""
    taskcli.setup_logging(False)
    try:
        if args.out:
            if not args.cards:
                raise ClinicalFTError("--cards: expected at least one task card for a new grid (--out)")
            same = ("config", "data_dir", "max_train_examples", "max_steps", "epochs", "bootstrap")
            grid = Grid(cards=list(args.cards), encoders=_csv(args.encoders, "encoders", str),
                        seeds=_csv(args.seeds, "seeds", int), overrides=list(args.overrides),
                        keep_models=not args.discard_models, **{k: getattr(args, k) for k in same})
            out = Path(args.out)
        else:
            if args.cards or args.overrides:
                raise ClinicalFTError("--resume/--table take the grid from DIR/grid.yaml; drop --cards and overrides")
            out = Path(args.resume or args.table)
            grid = load_grid(out)
        if args.table:
            text = write_tables(grid, expand(grid, out), out, fmt=args.format)
        else:
            counts, text = run_grid(grid, out, args.format)
            print(f"\n{', '.join(f'{n} {s}' for s, n in sorted(counts.items()))}; tables in {out}\n")
        print(text, end="")
        return 0
    except ClinicalFTError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m clinical_ft.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    return run_cli(p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
