"""Shared data plumbing of the task packages: where a card's split files are (globs, absolute or
relative), the dev-carving rules, the label set of a card, and model-input columns of windows."""

from __future__ import annotations

import glob
import os
import random
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from .config import TaskCard
from .errors import ClinicalFTError, InputError
from .resources import DATA_ENV, resolve_data_path

T = TypeVar("T")
SPLITS = ("train", "validation", "test")
GLOB_CHARS = "*?["


def carved(card: TaskCard) -> bool:
    """Whether the card carves its validation split from train (``dev_fraction``, no validation file)."""
    return card.data.dev_fraction is not None and "validation" not in card.data.files


def role_paths(card: TaskCard, role: str, data_dir: str | Path | None) -> list[Path]:
    """The files of ``data.files[role]``: one path, or every match of a glob (sorted). Paths are taken
    relative to the card's ``data.path`` under the data root unless absolute; ``~`` and ``$VAR`` are
    expanded, as in ``data.path``.

    Raises:
        ClinicalFTError: the card has no such role, or nothing exists there (saying how to point at the data).
    """
    files = card.data.files
    if role not in files:
        raise ClinicalFTError(f"card {card.name!r} has no split {role!r}; it has {sorted(files)}")
    written = os.path.expandvars(os.path.expanduser(files[role]))
    pattern = resolve_data_path(card.data.path, data_dir) / written  # an absolute files[role] wins
    if any(c in written for c in GLOB_CHARS):
        found = sorted(Path(p) for p in glob.glob(str(pattern)))
        if found:
            return found
    elif pattern.is_file() or pattern.is_dir():
        return [pattern]
    hub = f" or load `{card.data.hf_dataset}` with the datasets library where the hub is reachable" \
        if card.data.hf_dataset else ""
    what = "no file matches" if any(c in written for c in GLOB_CHARS) else "data file"
    raise ClinicalFTError(
        f"{what} {pattern} for card {card.name!r} split {role!r}" + ("" if what != "data file" else " not found")
        + f". Pass --data-dir DIR (the folder holding {card.data.path!r}) or set ${DATA_ENV}{hub}.")


def split_path(card: TaskCard, split: str, data_dir: str | Path | None) -> Path | None:
    """The single file of `split`, or None when the card carves validation from train."""
    if split == "validation" and carved(card):
        return None
    paths = role_paths(card, split, data_dir)
    if len(paths) != 1:
        raise ClinicalFTError(f"card {card.name!r} split {split!r}: expected one file, "
                              f"{card.data.files[split]!r} matches {len(paths)}")
    return paths[0]


def carve(items: Sequence[T], fraction: float, seed: int, split: str, group: Callable[[T], Any] | None = None) -> list[T]:
    """Deterministically split `items` into train/validation by group (e.g. by document), returning
    the part named by `split`. The same seed always gives the same partition."""
    keys = list(dict.fromkeys(group(x) if group else i for i, x in enumerate(items)))
    rng = random.Random(seed)
    rng.shuffle(keys)
    dev_keys = set(keys[: max(1, round(len(keys) * fraction))])
    in_dev = [(group(x) if group else i) in dev_keys for i, x in enumerate(items)]
    return [x for x, d in zip(items, in_dev) if d == (split == "validation")]


def read_split(card: TaskCard, split: str, data_dir: str | Path | None, read: Callable[[Path], list[T]],
               group: Callable[[T], Any] | None = None) -> list[T]:
    """One split of a card whose splits are files, read with `read` (one call per file of a glob).

    When the card carves validation from train, train and validation are the two parts of the
    training file(s), split by `group` (default: by item) with ``dev_fraction`` and ``split_seed``.
    """
    if split in ("train", "validation") and carved(card):
        pool = [x for p in role_paths(card, "train", data_dir) for x in read(p)]
        return carve(pool, card.data.dev_fraction, card.data.split_seed, split, group)
    return [x for p in role_paths(card, split, data_dir) for x in read(p)]


def card_labels(card: TaskCard, observed: Iterable[tuple[str, Any, int | None, str]],
                order: Callable[[set[str]], list[str]] = sorted) -> list[str]:
    """The label set of a card: its declared ``labels`` (every observed label must be one of them),
    else `order` applied to the observed labels.

    Args:
        observed: (label, source file, line or None, where) of every gold label in the training data.

    Raises:
        InputError: an observed label that the card does not declare, naming file, line and where.
    """
    rows = list(observed)
    if card.labels:
        bad = next((r for r in rows if r[0] not in card.labels), None)
        if bad is not None:
            unknown = sorted({r[0] for r in rows} - set(card.labels))
            where = f" ({bad[3]})" if bad[3] else ""
            raise InputError(bad[1], bad[2], f"a label from the card's labels {card.labels}",
                             f"{bad[0]!r}{where}; all unknown labels: {unknown}")
        return list(card.labels)
    return order({r[0] for r in rows})


def feature_columns(windows: Sequence[Any]) -> dict[str, list]:
    """Model-input columns of tokenized windows (chunking.Window), plus `length` for length grouping."""
    return {"input_ids": [w.input_ids for w in windows], "token_type_ids": [w.token_type_ids for w in windows],
            "attention_mask": [[1] * len(w.input_ids) for w in windows],
            "length": [len(w.input_ids) for w in windows]}
