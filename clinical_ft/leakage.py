"""Test-set leakage guard for domain-adaptive pre-training.

`python -m clinical_ft.pretrain` writes ``pretraining_manifest.json`` into the encoder directory:
every source file with its sha256, and a hash of every document and sentence it trained on. A run
fine-tuned from that encoder carries a copy. Before training and before scoring a test split, the
engine calls :func:`check`: if the test file itself, or any of its text units, was in the
pre-training corpus, it refuses with a :class:`ClinicalFTError`.

Text units are compared after canonicalisation (Unicode NFKC, case-folded, all whitespace removed),
so a CoNLL sentence (tokens joined by spaces) matches the same sentence in raw text however it was
tokenised. Units shorter than ``MIN_CHARS`` canonical characters ("Methods.", "Results") are ignored.
Hashes are the first 16 hex digits (64 bits) of sha256; no text is stored or logged.

A split given as a glob (BioASQ test batches) is every matching file. A test file that is also the
training file (COVID-QA's fixed split by article, the DDI release zip) is judged by its test text
only: pre-training on its training part is allowed.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import logging
import re
import shutil
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from .config import TaskCard
from .errors import ClinicalFTError

log = logging.getLogger("clinical_ft.leakage")
MANIFEST = "pretraining_manifest.json"
MIN_CHARS = 20
_SENT_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")
_WS = re.compile(r"\s+")


def canonical(text: str) -> str:
    """NFKC, case-folded, whitespace removed: the form in which texts are compared."""
    return _WS.sub("", unicodedata.normalize("NFKC", text).casefold())


def text_hash(text: str) -> str | None:
    """64-bit hex hash of `text`'s canonical form, or None when it is too short to count."""
    c = canonical(text)
    return hashlib.sha256(c.encode("utf-8")).hexdigest()[:16] if len(c) >= MIN_CHARS else None


def sentences(text: str) -> list[str]:
    """Split on sentence-final punctuation followed by an upper-case letter or digit."""
    return [s for s in _SENT_END.split(" ".join(text.split())) if s]


def unit_hashes(text: str) -> set[str]:
    """Hashes of a text and of each of its sentences."""
    out = {text_hash(s) for s in [text, *sentences(text)]}
    out.discard(None)
    return out  # type: ignore[return-value]


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _json_strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for v in node.values():
            yield from _json_strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from _json_strings(v)


def split_texts(path: str | Path, fmt: str = "") -> Iterable[str]:
    """Every text of an evaluation file, read generically: CoNLL sentences (tokens joined by spaces),
    every string of a JSON file, every cell of a CSV/TSV table, else every line. Binary files (zip)
    yield nothing: only their file hash is compared."""
    path = Path(path)
    suffix = path.suffix.lower()
    if fmt == "conll" or suffix in (".conll", ".iob", ".bio"):  # first column of each line, blank line between
        sents, words = [], []
        for line in path.read_text(encoding="utf-8-sig").splitlines() + [""]:
            cols = line.split("\t") if "\t" in line else line.split()
            if cols and cols[0] != "-DOCSTART-":
                words.append(cols[0])
            elif words:
                sents.append(" ".join(words))
                words = []
        return sents
    if suffix == ".json":
        return list(_json_strings(json.loads(path.read_text(encoding="utf-8"))))
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        log.warning("%s is not text: only its file hash is compared with pre-training sources", path)
        return []
    if suffix in (".csv", ".tsv"):
        rows = csv.reader(text.splitlines(), delimiter="\t" if suffix == ".tsv" else ",")
        return [cell for row in rows for cell in row]
    return text.splitlines()


def split_files(card: TaskCard, split: str, data_dir: str | Path | None) -> list[Path]:
    """The file of one split of `card`, or every file matching it when it is a glob (data.role_paths:
    absolute or relative, with or without a glob).

    Raises:
        ClinicalFTError: the card has no such split, it is carved from train, or no file is there.
    """
    from .data import carved, role_paths

    if split == "validation" and carved(card):
        raise ClinicalFTError(f"card {card.name!r} split {split!r} is carved from train; it has no file of its own")
    return role_paths(card, split, data_dir)


def shared_with_train(card: TaskCard, split: str) -> bool:
    """Whether `split` lives in the training file (a fixed split carved inside it)."""
    return split != "train" and card.data.files.get(split) == card.data.files.get("train")


def split_fingerprint(card: TaskCard, split: str,
                      data_dir: str | Path | None) -> tuple[list[Path], list[str], list[set[str]]]:
    """(files, their sha256s, unit hashes of each text read generically) of one split of `card`.

    Raises:
        ClinicalFTError: the card has no such split or its file is missing.
    """
    paths = split_files(card, split, data_dir)
    texts = [h for path in paths for text in split_texts(path, card.data.format) if (h := unit_hashes(text))]
    return paths, [file_sha256(p) for p in paths], texts


def example_texts(examples: Iterable[Any]) -> list[list[str]]:
    """Texts of a task's examples, read generically, one list per example: every string field of an
    example dataclass, and list-of-string fields joined by spaces (a CoNLL sentence). This sees what a
    task actually evaluates on, e.g. PubMedQA contexts whose test file holds only ids and labels."""
    out: list[list[str]] = []
    for ex in examples:
        fields: list[str] = []
        for f in dataclasses.fields(ex) if dataclasses.is_dataclass(ex) else ():
            value = getattr(ex, f.name)
            if isinstance(value, str):
                fields.append(value)
            elif isinstance(value, list) and value and all(isinstance(v, str) for v in value):
                fields.append(" ".join(value))
        out.append(fields)
    return out


def load_manifest(directory: str | Path) -> dict[str, Any] | None:
    """The pre-training manifest of an encoder or run directory, or None if it has none."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    if "unit_hashes" not in data or "sources" not in data:
        raise ClinicalFTError(f"{path}: expected a clinical_ft pre-training manifest with sources and unit_hashes")
    return data


def check(card: TaskCard, directories: Iterable[str | Path], data_dir: str | Path | None,
          split: str = "test", *, missing_ok: bool = False,
          texts_fn: Callable[[], list[list[str]]] | None = None) -> None:
    """Refuse to train on or score `card` when its `split` text was in an encoder's pre-training corpus.

    Args:
        card: the benchmark card.
        directories: encoder/run directories that may hold a manifest (others are skipped).
        data_dir: root for the card's data paths.
        split: the split that must not have been pre-trained on.
        missing_ok: when the split's file is absent, log and return instead of raising.
        texts_fn: returns the split's texts as the task reads them (see `example_texts`); its units
            are checked instead of the file's text read generically (the file's sha256 is still
            compared, unless the file also holds the training split). Called only when a manifest exists.

    Raises:
        ClinicalFTError: the split's file, or some of its sentences, were used for pre-training.
    """
    manifests = [(Path(d), m) for d in directories if Path(d).is_dir() and (m := load_manifest(d)) is not None]
    if not manifests or split not in card.data.files:
        return
    try:
        paths, shas, texts = split_fingerprint(card, split, data_dir)
    except ClinicalFTError as exc:
        if not missing_ok:
            raise
        log.warning("pre-training leakage check of card %r postponed to evaluation: %s", card.name, exc)
        return
    if texts_fn is not None:  # the texts the task evaluates on, rather than the file read generically
        texts = [u for fields in texts_fn() if (u := set().union(*(unit_hashes(t) for t in fields)))]
    path = paths[0] if len(paths) == 1 else f"{len(paths)} files matching {card.data.files[split]}"
    own = {} if shared_with_train(card, split) else dict(zip(shas, paths))  # shared: judged by its test text
    for directory, manifest in manifests:
        for src in manifest["sources"]:
            if src.get("sha256") in own:
                raise ClinicalFTError(
                    f"encoder {directory} was pre-trained on {src.get('path')}, which is the {split} file of card "
                    f"{card.name!r} ({own[src['sha256']]}); re-run python -m clinical_ft.pretrain with --exclude-card "
                    "for this card")
        seen = set(manifest["unit_hashes"])
        hits = [i for i, units in enumerate(texts) if units & seen]
        if hits:
            raise ClinicalFTError(
                f"encoder {directory} was pre-trained on text of the {split} split of card {card.name!r} ({path}): "
                f"{len(hits)} of its {len(texts)} sentences/texts (first: number {hits[0] + 1}) are in {MANIFEST}. "
                "Scores would be inflated; "
                f"re-run python -m clinical_ft.pretrain with --exclude-card pointing at this card")
    log.info("leakage check: %s split of %r (%d texts) not in the pre-training corpus of %s", split, card.name,
             len(texts), ", ".join(str(d) for d, _ in manifests))


def carry(encoder_dir: str | Path, run_dir: str | Path) -> None:
    """Copy an encoder's manifest into a run directory, so that evaluation keeps checking it."""
    src = Path(encoder_dir) / MANIFEST
    if src.is_file():
        shutil.copyfile(src, Path(run_dir) / MANIFEST)
