"""The small protocol through which a task plugs into the shared training path (engine.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .config import TaskCard, TrainConfig


@dataclass
class Encoded:
    """Model-ready features plus task metadata aligned with them.

    Attributes:
        dataset: a `datasets.Dataset` holding only model inputs (`input_ids`, `attention_mask`,
            `token_type_ids`, optional `labels`).
        meta: per-feature (or per-example) bookkeeping the task needs to decode predictions,
            e.g. windows with document ids and offsets.
    """

    dataset: Any
    meta: Any


class Task(Protocol):
    """What a task module supplies. The engine knows nothing else about tasks.

    Attributes:
        kind: the card kind this task serves (``ner``, ``relation``, ...).
        metric_for_best_model: key of `score`'s output used for early stopping and best checkpoint.
    """

    kind: str
    metric_for_best_model: str

    def load_split(self, card: TaskCard, split: str, data_dir: str | Path | None) -> list[Any]:
        """Read one split of the card's data into examples (raising InputError on bad rows)."""

    def label_list(self, card: TaskCard, train_examples: list[Any]) -> list[str]:
        """The label set: the card's, else derived from the training examples."""

    def build_model(self, encoder: str, labels: list[str], cfg: TrainConfig) -> Any:
        """A Hugging Face model with this task's head on `encoder`."""

    def encode(self, tokenizer: Any, examples: list[Any], cfg: TrainConfig, labels: list[str]) -> Encoded:
        """Tokenize (windowing long inputs) and attach training labels where examples have them."""

    def collator(self, tokenizer: Any) -> Any:
        """Batch collator with dynamic padding."""

    def reduce_logits(self, logits: Any, labels: Any) -> Any:
        """Shrink logits before they are gathered (e.g. argmax); identity if unneeded."""

    def decode(self, examples: list[Any], encoded: Encoded, predictions: Any, labels: list[str]) -> list[Any]:
        """Turn per-feature predictions into one prediction per example."""

    def score(self, examples: list[Any], predictions: list[Any], labels: list[str]) -> dict[str, float]:
        """The card's metric(s) for gold `examples` against `predictions`."""
