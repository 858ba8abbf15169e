"""The split protocols of the QA cards (documented in the cards).

- a card whose ``test`` file equals its ``train`` file holds out `TEST_FRACTION` of the articles
  (``data[]`` entries) as test, chosen with ``split_seed``; validation is then carved by article
  from the rest with ``dev_fraction``.
- ``bioasq`` format: ``test`` may be a glob of BioBERT test batches whose gold answers come from the
  official golden files (glob in ``files.golden``; whenever given they are the gold, also over answer
  lists in the batches, and a question with no gold at all is an error); training questions that
  appear in the test batches are dropped (the 7b training set contains most 6b test questions).
- ``pubmedqa`` format: ``train`` is ``ori_pqal.json``, ``test`` the ground-truth file whose PMIDs form
  the test split; the remaining items are train, with validation carved by ``dev_fraction``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..config import TaskCard
from ..data import carve, carved, role_paths, split_path
from ..errors import InputError
from .readers import QAExample, YesNoExample, load_json, read_bioasq_golden, read_squad, read_yesno

log = logging.getLogger("clinical_ft.qa")
TEST_FRACTION = 0.2


def _tag(examples: list[Any], split: str) -> list[Any]:
    for e in examples:
        if isinstance(e, QAExample):
            e.split = split
    return examples


def extractive_split(card: TaskCard, split: str, data_dir: str | Path | None) -> list[QAExample]:
    """One split of an extractive card (format ``squad`` or ``bioasq``), following the module's protocol."""
    files, d = card.data.files, card.data
    factoid = d.format == "bioasq"
    shared_test = "test" in files and files["test"] == files.get("train")
    carve_dev = carved(card)

    def group(e: QAExample) -> str:
        return e.group

    def read(split_name: str, require: bool = True) -> list[QAExample]:
        return [e for p in role_paths(card, split_name, data_dir) for e in read_squad(p, require_answers=require, factoid=factoid)]

    if split == "test" and shared_test:
        return _tag(carve(read("train"), TEST_FRACTION, d.split_seed, "validation", group), split)
    if split == "train" or (split == "validation" and carve_dev):
        pool = read("train")
        if shared_test:
            pool = carve(pool, TEST_FRACTION, d.split_seed, "train", group)
        elif factoid and "test" in files:
            test_q = {e.question_id for e in read("test", require=False)}
            before = len(pool)
            pool = [e for e in pool if e.question_id not in test_q]
            log.warning("dropped %d training examples whose question is in the test batches", before - len(pool))
        part = carve(pool, d.dev_fraction, d.split_seed, split, group) if carve_dev else pool
        return _tag(part, split)
    examples = read(split, require=not (factoid and "golden" in files))
    if factoid and "golden" in files:
        apply_golden(examples, read_bioasq_golden(role_paths(card, "golden", data_dir)), files["golden"])
    return _tag(examples, split)


def apply_golden(examples: list[QAExample], gold: dict[str, list[str]], pattern: str) -> None:
    """Give every example the golden answers of its question, in place.

    The golden files are the gold whenever a card names them, whatever the test batch carries:
    BioBERT's conversion of the official test batches writes ``"answers": []`` on every question,
    which is read as "no answers given" (`answers` becomes None, so no window is labelled
    "no answer"). A question absent from the golden files keeps answers of its own, if it has any.

    Raises:
        InputError: a question with no gold at all (not in the golden files, no answers of its own),
            naming its file and location.
    """
    for e in examples:
        if e.answers == [] and not e.gold:
            e.answers = None
        golden = gold.get(e.question_id)
        if golden:
            e.gold = list(golden)
        elif not e.gold:
            found = "no factoid entry" if golden is None else "a factoid entry without exact_answer"
            raise InputError(e.source, None, f"{e.where}: gold for question {e.question_id}, from the golden files "
                             f"({pattern}) or answers of its own", f"{found} and no answers")


def yesno_split(card: TaskCard, split: str, data_dir: str | Path | None) -> list[YesNoExample]:
    """One split of a yes/no card (format ``pubmedqa``), following the module's protocol."""
    files, d = card.data.files, card.data
    carve_dev = carved(card)
    if split in ("train", "validation") and not (split == "validation" and not carve_dev):
        items = read_yesno(split_path(card, "train", data_dir), require_labels=False)
        if "test" in files:
            test_ids = set(load_json(split_path(card, "test", data_dir)))
            items = [x for x in items if x.id not in test_ids]
        for x in items:
            if x.label is None:
                raise InputError(x.source, None, f"[{x.id!r}].final_decision: a label", "none")
        return carve(items, d.dev_fraction, d.split_seed, split) if carve_dev else items
    path = split_path(card, split, data_dir)
    if split == "test" and files.get("test") != files.get("train") and "train" in files:
        truth = load_json(path)
        if not isinstance(truth, dict):
            raise InputError(path, None, "a JSON object mapping id -> label", type(truth).__name__)
        if not all(isinstance(v, str) for v in truth.values()):  # a test file in the full shape
            return read_yesno(path)
        items = {x.id: x for x in read_yesno(split_path(card, "train", data_dir), truth, require_labels=False)}
        absent = [k for k in truth if k not in items]
        if absent:
            raise InputError(path, None, f"ids present in {files['train']}", f"{len(absent)} unknown, first {absent[0]!r}")
        return [items[k] for k in truth]
    return read_yesno(path)
