"""The protocol through which a task plugs into the shared path (engine, runner, run report, explain).

Every hook the engine, the benchmark runner, the tables and the run report call is declared here,
the optional ones with their default behaviour, so a task's contract is read in one place. A task
class subclasses `Task` explicitly (to inherit those defaults). Which task serves a card is decided
by :func:`head_for` from the tasks' declared kind and formats: over every task in registry.py, or
over the heads of one task package in that package's CLI. Cards and configs are loaded and checked
against their task here too (:func:`load_card`, :func:`load_config`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

from . import resources
from .config import TaskCard, TrainConfig, build, load
from .errors import ClinicalFTError, ConfigError

SPLIT_ROLES = ("train", "validation", "test")


@dataclass
class Encoded:
    """Model-ready features plus task metadata aligned with them.

    Attributes:
        dataset: a `datasets.Dataset` holding only model inputs (`input_ids`, `attention_mask`,
            `token_type_ids`, optional `labels`, `length` for length grouping).
        meta: per-feature (or per-example) bookkeeping the task needs to decode predictions,
            e.g. windows with document ids and offsets. Never a setting: `decode` gets the config.
    """

    dataset: Any
    meta: Any


@dataclass
class NoOptions:
    """`task_options` of a task that has none: any key is an error."""


class Task(Protocol):
    """What a task supplies. The engine knows nothing else about tasks.

    Class attributes (data the registry and validation read):
        kind: the card kind this task serves (``ner``, ``relation``, ``qa``, ``readmission``).
        formats: the ``data.format`` values it reads; where a kind has several heads, the format
            picks the head (qa: ``squad``/``bioasq`` extractive, ``pubmedqa`` yes/no).
        options: the dataclass of ``TrainConfig.task_options`` (unknown or mistyped keys fail).
        file_roles: the ``data.files`` roles it reads, beyond train/validation/test (e.g. ``golden``).
        columns: the ``card.columns`` roles it honours; empty means the format has no named
            columns and a ``columns`` block is refused.
        score_keys: keys `score` always returns; a card's ``metric`` must be one of them (or a
            per-label key such as ``Disease_f1`` where `per_label_scores` is true).
        metric_for_best_model: the default selection key when a card names none.
    """

    kind: ClassVar[str]
    formats: ClassVar[tuple[str, ...]]
    options: ClassVar[type] = NoOptions
    file_roles: ClassVar[tuple[str, ...]] = ()
    columns: ClassVar[tuple[str, ...]] = ()
    score_keys: ClassVar[tuple[str, ...]]
    per_label_scores: ClassVar[bool] = False
    metric_for_best_model: ClassVar[str]

    # -- data -------------------------------------------------------------------------------------
    def load_split(self, card: TaskCard, split: str, data_dir: str | Path | None) -> list[Any]:
        """Read one split of the card's data into examples (raising InputError on bad rows)."""

    def read_file(self, card: TaskCard, path: Path) -> list[Any]:
        """Labelled examples of one file in the card's format (``evaluate --input``: a held-out corpus)."""

    def label_list(self, card: TaskCard, train_examples: list[Any]) -> list[str]:
        """The label set: the card's, else derived from the training examples."""

    def input_report(self, examples: list[Any]) -> dict[str, Any]:
        """What reading a split changed or skipped (e.g. IOB repairs, skipped pairs), for eval JSON."""
        return {}

    # -- model ------------------------------------------------------------------------------------
    def build_model(self, encoder: str, labels: list[str], cfg: TrainConfig) -> Any:
        """A Hugging Face model with this task's head on `encoder` (also reloads a run directory)."""

    def encode(self, tokenizer: Any, examples: list[Any], cfg: TrainConfig, labels: list[str]) -> Encoded:
        """Tokenize (windowing long inputs) and attach training labels where examples have them."""

    def collator(self, tokenizer: Any) -> Any:
        """Batch collator with dynamic padding."""

    def reduce_logits(self, logits: Any, labels: Any) -> Any:
        """Shrink logits before they are gathered (e.g. argmax); identity if unneeded."""

    def decode(self, examples: list[Any], encoded: Encoded, predictions: Any, labels: list[str],
               cfg: TrainConfig) -> list[Any]:
        """Turn per-feature predictions into one JSON-ready prediction per example (settings such
        as the aggregation come from `cfg`)."""

    def fit_after_training(self, run_dir: Path, examples: list[Any], predictions: list[Any],
                           cfg: TrainConfig) -> dict[str, Any]:
        """Fit what the task learns from the validation split once training is done (the kept
        model's decoded `predictions` of its `examples`), e.g. a calibrator, and save it into
        `run_dir`; returns a summary for metrics.json (empty: nothing to fit)."""
        return {}

    def finish_predictions(self, run_dir: Path, predictions: list[Any], cfg: TrainConfig) -> list[Any]:
        """Apply what `fit_after_training` saved in `run_dir` to decoded predictions (evaluate and
        predict; not the evaluations during training). Unchanged by default."""
        return predictions

    # -- scoring ----------------------------------------------------------------------------------
    def score(self, examples: list[Any], predictions: list[Any], labels: list[str]) -> dict[str, float]:
        """The card's metric(s) for gold `examples` against `predictions` (also predictions read
        back from ``predictions_<split>.jsonl``)."""

    def score_counts(self, examples: list[Any], predictions: list[Any], labels: list[str],
                     key: str) -> tuple[Any, Callable[[Any], float]] | None:
        """Per-example count rows and the function of their sums that gives `score`'s `key`, when the
        metric is such a function (bootstrap by summing rows); None: re-score each resample."""
        return None

    def write_artifacts(self, run_dir: Path, split: str, examples: list[Any], predictions: list[Any],
                        labels: list[str], cfg: TrainConfig) -> dict[str, Any]:
        """Write plots or tables of an evaluation into `run_dir`; returns what was written, and with
        which settings, for the eval JSON."""
        return {}

    # -- run report and explanations ----------------------------------------------------------------
    def pick_examples(self, examples: list[Any], predictions: list[Any]) -> list[tuple[int, str]]:
        """(index, why) of the (two) test examples the run report explains."""

    def explain_section(self, run: Any, example: Any, n: int, folder: Path, *, attributions: bool,
                        n_steps: int = 50, tolerance: float = 0.05) -> str:
        """HTML section `n` of a report explaining one example of `run` (PNG heatmaps to `folder`),
        built with clinical_ft.interpret: the prediction, attention and, with `attributions`,
        integrated-gradient word attributions with their convergence delta (at most `n_steps` steps,
        added until |delta| <= `tolerance` * |f(x) - f(baseline)|; default interpret.attribution.TOLERANCE)."""


def reports(task: Task, key: str) -> bool:
    """Whether `key` is a score `task.score` reports: one of its `score_keys`, or a per-label key
    (``<label>_f1``, ``_precision``, ``_recall``, ``_support``) where the task has them."""
    if key in task.score_keys:
        return True
    label, _, metric = key.rpartition("_")
    return task.per_label_scores and bool(label) and metric in ("f1", "precision", "recall", "support")


def selection_metric(task: Task, card: TaskCard) -> str:
    """The score that model selection maximises: the card's `metric`, else the task's default."""
    return card.metric if reports(task, card.metric) else task.metric_for_best_model


def task_options(task: Task, cfg: TrainConfig) -> Any:
    """`cfg`'s ``task_options`` as the task's validated options dataclass.

    Raises:
        ConfigError: unknown or mistyped keys, out-of-range values, all listed together.
    """
    obj, problems = build(task.options, cfg.task_options, "task_options.")
    if problems:
        raise ConfigError(f"task_options ({task.kind})", problems)
    return obj


def check_card(task: Task, card: TaskCard) -> list[str]:
    """What is wrong with `card` for `task`: unknown split roles, a columns block the format cannot
    honour or unknown column roles, a metric the task does not report (empty: nothing)."""
    roles = SPLIT_ROLES + task.file_roles
    problems = [f"data.files.{r}: unknown split role; expected one of {list(roles)}" for r in card.data.files
                if r not in roles]
    if card.columns and not task.columns:
        problems.append(f"columns: format {card.data.format!r} has no named columns; remove this block")
    problems += [f"columns.{r}: unknown column role; expected one of {list(task.columns)}" for r in card.columns
                 if task.columns and r not in task.columns]
    if not reports(task, card.metric):
        problems.append(f"metric: expected a score key of the {card.kind} task such as {list(task.score_keys)}"
                        + (" or <label>_f1" if task.per_label_scores else "") + f", found {card.metric!r}")
    return problems


def find_head(tasks: Sequence[Task], kind: Any, fmt: Any) -> tuple[Task | None, str]:
    """The task of `tasks` serving cards of `kind` and data format `fmt`, or None and why not."""
    mine = [t for t in tasks if t.kind == kind]
    if not mine:
        return None, f"kind: expected one of {list(dict.fromkeys(t.kind for t in tasks))}, found {kind!r}"
    for task in mine:
        if fmt in task.formats:
            return task, ""
    return None, f"data.format: expected one of {[f for t in mine for f in t.formats]} for kind {kind}, found {fmt!r}"


def head_for(tasks: Sequence[Task], card: TaskCard) -> Task:
    """The task of `tasks` serving `card` (ClinicalFTError when none does)."""
    task, why = find_head(tasks, card.kind, card.data.format if card.data else None)
    if task is None:
        raise ClinicalFTError(f"card {card.name!r}: {why}")
    return task


def card_problems(tasks: Sequence[Task], card: TaskCard) -> list[str]:
    """What is wrong with `card` for the task of `tasks` that would serve it (empty: nothing)."""
    if card.data is None:
        return []
    task, why = find_head(tasks, card.kind, card.data.format)
    return [why] if task is None else check_card(task, card)


def load_card(name: str | Path, tasks: Sequence[Task]) -> TaskCard:
    """A card by path or shipped name, validated whole: its own fields and against its task in `tasks`."""
    return load(TaskCard, resources.find(name, "tasks"), checks=lambda c: card_problems(tasks, c))


def load_config(name: str | Path | None, overrides: list[str] | dict[str, Any] | None, task: Task | None) -> TrainConfig:
    """A train config by path or shipped name (defaults when None) plus overrides, validated whole;
    with `task`, its ``task_options`` too (unknown, mistyped or out-of-range keys)."""
    path = resources.find(name, "configs") if name else None

    def options_problems(cfg: TrainConfig) -> list[str]:
        return build(task.options, cfg.task_options, "task_options.")[1] if isinstance(cfg.task_options, dict) else []

    return load(TrainConfig, path, overrides, checks=options_problems if task else None)


def input_name(path: Path) -> str:
    """The name an evaluated file's outputs carry: its stem, with ``_input`` added where the stem is a
    split name (``test.tsv`` must not overwrite the card's ``eval_test.json``)."""
    return path.stem + ("_input" if path.stem in SPLIT_ROLES else "")
