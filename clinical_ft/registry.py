"""Which Task serves a card: the one owner of that answer, with plain imports.

A card's ``kind`` names its task family and, where a kind has several heads, its ``data.format``
picks the head (qa: ``squad``/``bioasq`` extractive, ``pubmedqa`` yes/no). The benchmark runner,
pre-training's ``--exclude-card``, the results tables, the run report and the task CLIs all ask
here; nothing else branches on the kind. Loading a card or config through this module also
validates it against its task (formats, split roles, columns, metric key, ``task_options``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import resources
from .config import TaskCard, TrainConfig, build, from_dict, load, read_yaml
from .errors import ClinicalFTError
from .ner import TASK as NER
from .qa import EXTRACTIVE, YESNO
from .readmission import TASK as READMISSION
from .relation import TASK as RELATION
from .rundir import RUN_FILE
from .taskapi import Task, check_card

TASKS: tuple[Task, ...] = (NER, RELATION, EXTRACTIVE, YESNO, READMISSION)


def kinds() -> list[str]:
    """Every card kind some task serves."""
    return list(dict.fromkeys(t.kind for t in TASKS))


def heads(kind: str) -> list[Task]:
    """The tasks serving `kind` (one per head)."""
    return [t for t in TASKS if t.kind == kind]


def _find(kind: Any, fmt: Any) -> tuple[Task | None, str]:
    mine = heads(kind)
    if not mine:
        return None, f"kind: expected one of {kinds()}, found {kind!r}"
    for task in mine:
        if fmt in task.formats:
            return task, ""
    known = [f for t in mine for f in t.formats]
    return None, f"data.format: expected one of {known} for kind {kind}, found {fmt!r}"


def for_card(card: TaskCard) -> Task:
    """The task serving `card` (by kind, and format where the kind has several heads).

    Raises:
        ClinicalFTError: no task serves that kind and format.
    """
    task, why = _find(card.kind, card.data.format if card.data else None)
    if task is None:
        raise ClinicalFTError(f"card {card.name!r}: {why}")
    return task


def run_card(run_dir: str | Path) -> TaskCard:
    """The card recorded in a run directory's run.yaml."""
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        raise ClinicalFTError(f"{run_dir} is not a clinical_ft run directory (no {RUN_FILE}); train one first")
    return from_dict(TaskCard, read_yaml(path)["card"], f"{path} card")


def for_run(run_dir: str | Path) -> Task:
    """The task that trained the run in `run_dir` (from its run.yaml)."""
    return for_card(run_card(run_dir))


def card_problems(card: TaskCard) -> list[str]:
    """What is wrong with `card` for its task (taskapi.card_problems); empty: nothing."""
    if card.data is None:
        return []
    task, why = _find(card.kind, card.data.format)
    if task is None:
        return [why] if card.kind in kinds() else []  # an unknown kind is already reported by the card's type
    return check_card(task, card)


def options_problems(task: Task, cfg: TrainConfig) -> list[str]:
    """Problems of ``cfg.task_options`` for `task` (unknown keys, types, ranges), keys prefixed."""
    return build(task.options, cfg.task_options, "task_options.")[1] if isinstance(cfg.task_options, dict) else []


def load_card(name: str | Path) -> TaskCard:
    """A card by path or shipped name, validated whole (its own fields and against its task)."""
    return load(TaskCard, resources.find(name, "tasks"), checks=card_problems)


def load_config(name: str | Path | None, overrides: list[str] | dict[str, Any] | None, task: Task | None) -> TrainConfig:
    """A train config by path or shipped name (defaults when None) plus overrides, validated whole;
    with `task`, its ``task_options`` too."""
    path = resources.find(name, "configs") if name else None
    return load(TrainConfig, path, overrides, checks=(lambda c: options_problems(task, c)) if task else None)


def config_task(path: Path) -> Task | None:
    """The task whose options a config file is checked against: by its folder (configs/<kind>/),
    the first head of that kind; None when the folder names no kind."""
    mine = heads(path.parent.name)
    return mine[0] if mine else None
