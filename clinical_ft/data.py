"""Shared data plumbing for task modules: where a card's split lives, and carved dev splits."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from .config import TaskCard
from .errors import ClinicalFTError
from .resources import DATA_ENV, resolve_data_path

T = TypeVar("T")
SPLITS = ("train", "validation", "test")


def split_path(card: TaskCard, split: str, data_dir: str | Path | None) -> Path | None:
    """Local file of `split`, or None when the card carves it (dev_fraction) from train.

    Raises:
        ClinicalFTError: unknown split, or the file is missing (saying how to point at the data).
    """
    files = card.data.files
    if split not in files:
        if split == "validation" and card.data.dev_fraction is not None:
            return None
        raise ClinicalFTError(f"card {card.name!r} has no split {split!r}; it has {sorted(files)}")
    path = resolve_data_path(card.data.path, data_dir) / files[split]
    if not path.is_file():
        hub = f" or load `{card.data.hf_dataset}` with the datasets library where the hub is reachable" if card.data.hf_dataset else ""
        raise ClinicalFTError(
            f"data file {path} for card {card.name!r} split {split!r} not found. Pass --data-dir DIR "
            f"(the folder holding {card.data.path!r}) or set ${DATA_ENV}{hub}."
        )
    return path


def carve(items: Sequence[T], fraction: float, seed: int, split: str, group: Callable[[T], Any] | None = None) -> list[T]:
    """Deterministically split `items` into train/validation by group (e.g. by document), returning
    the part named by `split`. The same seed always gives the same partition."""
    keys = list(dict.fromkeys(group(x) if group else i for i, x in enumerate(items)))
    rng = random.Random(seed)
    rng.shuffle(keys)
    dev_keys = set(keys[: max(1, round(len(keys) * fraction))])
    in_dev = [(group(x) if group else i) in dev_keys for i, x in enumerate(items)]
    return [x for x, d in zip(items, in_dev) if d == (split == "validation")]
