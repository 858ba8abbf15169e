"""Which Task serves a card: the one owner of that answer, with plain imports.

A card's ``kind`` names its task family and, where a kind has several heads, its ``data.format``
picks the head (qa: ``squad``/``bioasq`` extractive, ``pubmedqa`` yes/no). The benchmark runner,
pre-training's ``--exclude-card``, the results tables, the run report and ``clinical-ft validate``
ask here; nothing else branches on the kind. (A task package's own CLI serves only its own heads,
through taskcli.py, so the registry sits above the task packages and no task imports it.) Loading a
card or config through this module also validates it against its task (formats, split roles,
columns, metric key, ``task_options``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import taskapi
from .config import TaskCard, TrainConfig
from .ner import TASK as NER
from .qa import EXTRACTIVE, YESNO
from .readmission import TASK as READMISSION
from .relation import TASK as RELATION
from .rundir import run_card
from .taskapi import Task

TASKS: tuple[Task, ...] = (NER, RELATION, EXTRACTIVE, YESNO, READMISSION)


def kinds() -> list[str]:
    """Every card kind some task serves."""
    return list(dict.fromkeys(t.kind for t in TASKS))


def heads(kind: str) -> list[Task]:
    """The tasks serving `kind` (one per head)."""
    return [t for t in TASKS if t.kind == kind]


def for_card(card: TaskCard) -> Task:
    """The task serving `card` (by kind, and format where the kind has several heads).

    Raises:
        ClinicalFTError: no task serves that kind and format.
    """
    return taskapi.head_for(TASKS, card)


def for_run(run_dir: str | Path) -> Task:
    """The task that trained the run in `run_dir` (from its run.yaml)."""
    return for_card(run_card(run_dir))


def card_problems(card: TaskCard) -> list[str]:
    """What is wrong with `card` for its task (empty: nothing)."""
    return taskapi.card_problems(TASKS, card)


def load_card(name: str | Path) -> TaskCard:
    """A card by path or shipped name, validated whole (its own fields and against its task)."""
    return taskapi.load_card(name, TASKS)


def load_config(name: str | Path | None, overrides: list[str] | dict[str, Any] | None, task: Task | None) -> TrainConfig:
    """A train config by path or shipped name plus overrides, validated whole (with `task`: its task_options)."""
    return taskapi.load_config(name, overrides, task)


def config_task(path: Path) -> Task | None:
    """The task whose options a config file is checked against: by its folder (configs/<kind>/),
    the first head of that kind (the heads of one kind share their options); None when the folder
    names no kind."""
    mine = heads(path.parent.name)
    return mine[0] if mine else None
