"""DDI-2013 annotated XML documents (a file, a folder, or the official release zip read in place)
-> one `RelExample` per candidate pair, with a `ReadReport` of everything skipped or noticed.

Policies for bad document input (counted and reported, never a crash):

- pair naming an entity that does not exist, or whose offsets are unreadable/outside the sentence:
  the pair is skipped with a reason;
- pair marked ``ddi="true"`` with no ``type``: skipped with a reason (its class is unknown);
- pair without a ``ddi`` attribute, or with a value other than true/false: skipped with a reason
  when labels are required (train/evaluate); unlabelled (label None) for predict;
- discontinuous mention (``"12-20;30-35"``): treated as its full extent, first start to last end;
- overlapping or nested arguments: entity markers are still inserted at the exact offsets
  (nested spans nest their markers); BioBERT masks replace the union with ``@DRUG-DRUG$``.
"""

from __future__ import annotations

import functools
import logging
import xml.etree.ElementTree as ET
import zipfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from .pairs import RelExample

log = logging.getLogger("clinical_ft.relation")

# document parts of the official release zip, by split
DDI_PARTS = {"train": "DDICorpus/Train/", "test": "DDICorpus/Test/Test for DDI Extraction task/"}


@dataclass
class ReadReport:
    """What a reader noticed: counts per issue and every skipped pair with its reason."""

    counts: Counter = field(default_factory=Counter)
    skipped: list[tuple[str, str, str]] = field(default_factory=list)  # (file, pair id, reason)
    first: dict[str, list[str]] = field(default_factory=dict)  # issue -> first few "file pair-id"
    skipped_docs: list[str] = field(default_factory=list)  # document id of each skipped pair

    def note(self, issue: str, where: str, pair_id: str) -> None:
        self.counts[issue] += 1
        self.first.setdefault(issue, [])
        if len(self.first[issue]) < 3:
            self.first[issue].append(f"{where} {pair_id}")

    def skip(self, reason: str, where: str, pair_id: str, doc_id: str = "") -> None:
        self.note(reason, where, pair_id)
        self.skipped.append((where, pair_id, reason))
        self.skipped_docs.append(doc_id)

    def lines(self) -> list[str]:
        return [f"{n} x {issue} (first: {', '.join(self.first[issue])})" for issue, n in sorted(self.counts.items())]


def _spans(offset: str | None, n: int) -> list[tuple[int, int]] | None:
    """``"3-9;12-15"`` (inclusive ends) -> [(3, 10), (12, 16)] (exclusive ends), None if unreadable."""
    try:
        spans = [(int(a), int(b) + 1) for a, b in (part.split("-") for part in (offset or "").split(";"))]
    except ValueError:
        return None
    return spans if all(0 <= a < b <= n for a, b in spans) else None


def _xml_sources(path: Path, split: str | None) -> list[tuple[str, bytes]]:
    """(name, bytes) of the XML documents in a file, a folder or a zip (for the official release
    zip, only the part belonging to `split`), in sorted name order."""
    if path.is_dir():
        return [(str(p), p.read_bytes()) for p in sorted(path.rglob("*.xml"))]
    if not zipfile.is_zipfile(path):
        return [(str(path), path.read_bytes())]
    with zipfile.ZipFile(path) as zf:
        names = sorted(n for n in zf.namelist() if n.endswith(".xml") and "/." not in n and "__MACOSX" not in n)
        prefix = DDI_PARTS.get(split or "")
        if prefix and any(n.startswith(prefix) for n in names):
            names = [n for n in names if n.startswith(prefix)]
        return [(f"{path}!{n}", zf.read(n)) for n in names]


def _documents(path: Path, split: str | None) -> Iterable[tuple[str, ET.Element]]:
    for name, data in _xml_sources(path, split):
        try:
            yield name, ET.fromstring(data)
        except ET.ParseError as exc:
            raise InputError(name, exc.position[0], "a well-formed DDI XML document", str(exc)) from None


def ddi_sentences(path: str | Path) -> list[str]:
    """The sentence texts of DDI-2013-format XML documents (file, folder or zip; every part), in
    document order: the pre-training reader of DDI sources (one document per sentence).

    Raises:
        InputError: a document that is not well-formed XML (file and line).
    """
    return [text for _, root in _documents(Path(path), None) for sent in root.iter("sentence")
            if (text := (sent.get("text") or "").strip())]


def read_ddi(path: str | Path, split: str | None = None,
             require_labels: bool = True) -> tuple[list[RelExample], ReadReport]:
    """One example per candidate pair of DDI-2013-format XML documents (file, folder or zip).

    Labels: the pair's ``type`` for ``ddi="true"``, ``false`` for ``ddi="false"``. See the module
    docstring for what happens to bad pairs; every skipped pair is in the report with its reason.

    Args:
        path: an XML file, a folder of them, or a zip (the official release: only `split`'s part).
        split: ``train`` or ``test`` part of the official release zip; None reads every document.
        require_labels: skip pairs without a usable ``ddi`` attribute (train/evaluate); when False
            (predict) such pairs are kept unlabelled.

    Raises:
        InputError: a document that is not well-formed XML (file and line).
    """
    path = Path(path)
    report, out = ReadReport(), []
    for name, root in _documents(path, split):
        short = name.rsplit("/", 1)[-1]
        doc_id = root.get("id") or short
        for sent in root.iter("sentence"):
            text = (sent.get("text") or "").rstrip("\r\n")
            ents: dict[str, list[tuple[int, int]] | None] = {}
            kinds: dict[str, str] = {}
            for ent in sent.iter("entity"):
                spans = _spans(ent.get("charOffset"), len(text))
                ents[ent.get("id") or ""] = spans
                kinds[ent.get("id") or ""] = (ent.get("type") or "").strip().lower()
                if spans and len(spans) > 1:
                    report.note("discontinuous mention (marked by its full extent)", short, ent.get("id") or "?")
            for pair in sent.iter("pair"):
                pid = pair.get("id") or f"{sent.get('id')}.p?"
                e1, e2 = ents.get(pair.get("e1") or ""), ents.get(pair.get("e2") or "")
                if pair.get("e1") not in ents or pair.get("e2") not in ents:
                    report.skip("pair refers to a missing entity", short, pid, doc_id)
                    continue
                if e1 is None or e2 is None:
                    report.skip("argument offsets unreadable or outside the sentence", short, pid, doc_id)
                    continue
                ddi = (pair.get("ddi") or "").strip().lower()
                if ddi not in ("true", "false") and require_labels:
                    report.skip('no ddi="true"/"false" attribute', short, pid, doc_id)
                    continue
                if ddi == "true" and not pair.get("type"):
                    report.skip('ddi="true" without a type', short, pid, doc_id)
                    continue
                s1, s2 = (e1[0][0], e1[-1][1]), (e2[0][0], e2[-1][1])
                if s1[0] < s2[1] and s2[0] < s1[1]:
                    report.note("overlapping or nested arguments", short, pid)
                label = {"true": (pair.get("type") or "").lower(), "false": "false"}.get(ddi)
                types = (kinds[pair.get("e1") or ""], kinds[pair.get("e2") or ""])
                out.append(RelExample(pid, text, label, name, None, doc_id, (s1, s2), types))
    return out, report


@functools.lru_cache(maxsize=4)
def _read_ddi_once(path: str, split: str | None, mtime: float,
                   require_labels: bool) -> tuple[tuple[RelExample, ...], ReadReport]:
    examples, report = read_ddi(path, split, require_labels)
    for line in report.lines():  # once per file and part, though train and validation both read it
        log.warning("%s: %s", path, line)
    return tuple(examples), report


def read_documents(path: str | Path, split: str | None = None,
                   require_labels: bool = True) -> tuple[list[RelExample], ReadReport]:
    """DDI-format documents (file, folder or zip) -> pairs, via `read_ddi`. Problems are logged once
    per file and part (the report, shared between calls, keeps them: treat it as read-only)."""
    examples, report = _read_ddi_once(str(path), split, Path(path).stat().st_mtime, require_labels)
    return list(examples), report
