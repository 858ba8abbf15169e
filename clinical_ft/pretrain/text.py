"""Text sources of domain-adaptive pre-training (`clinical_ft.pretrain`): files, or folders searched
recursively by suffix: ``.txt`` one document per line; ``.tsv``/``.conll``/``.iob`` CoNLL sentences
(tokens joined by spaces); ``.json`` SQuAD-style contexts or PubMedQA contexts; ``.csv`` the
``--text-column`` of every row; ``.xml``/``.zip`` DDI-2013 documents (the release zip, every part), one
document per sentence.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import InputError
from ..ner.conll import read_conll
from ..relation.ddi_xml import ddi_sentences

SUFFIXES = (".txt", ".tsv", ".conll", ".iob", ".json", ".csv", ".xml", ".zip")


def _read_file(path: Path, text_column: str) -> list[str]:
    suffix = path.suffix.lower()
    if suffix == ".txt":
        docs = []
        for ln, raw in enumerate(path.read_bytes().split(b"\n"), start=1):
            try:
                docs.append(raw.decode("utf-8").strip())
            except UnicodeDecodeError as exc:
                raise InputError(path, ln, "UTF-8 text", f"byte 0x{raw[exc.start]:02x}") from None
        return [d for d in docs if d]
    if suffix in (".tsv", ".conll", ".iob"):
        try:
            sents, _ = read_conll(path, require_tags=False)
        except InputError as exc:
            raise InputError(path, exc.line, f"CoNLL token lines ({exc.expected}); tables go in a .csv with "
                             "--text-column", exc.found) from None
        return [" ".join(s.words) for s in sents]
    if suffix == ".csv":
        import pandas as pd

        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        if text_column not in frame.columns:
            raise InputError(path, 1, f"a column named {text_column!r} (--text-column)", f"columns {list(frame.columns)}")
        return [t.strip() for t in frame[text_column] if t.strip()]
    if suffix in (".xml", ".zip"):
        return ddi_sentences(path)  # one document per sentence
    if suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and isinstance(data.get("data"), list):  # SQuAD v1
            ctx = [p["context"] for a in data["data"] for p in a.get("paragraphs", []) if p.get("context")]
            return list(dict.fromkeys(ctx))  # the same snippet may serve several questions
        if isinstance(data, dict) and data and all(isinstance(v, dict) and "CONTEXTS" in v for v in data.values()):
            return [" ".join(v["CONTEXTS"]) for v in data.values()]  # PubMedQA: one abstract per PMID
        raise InputError(path, None, "SQuAD JSON (data[].paragraphs[].context) or PubMedQA JSON "
                         "(PMID -> {CONTEXTS: [...]})", f"a top-level {type(data).__name__} of another shape")
    raise InputError(path, None, f"a file ending in one of {SUFFIXES}", path.suffix or "no suffix")


def read_sources(paths: list[str], text_column: str = "text") -> list[tuple[Path, list[str]]]:
    """(file, documents) for every file named or found (recursively, by suffix) in a folder named.

    Raises:
        InputError: a missing path, a folder without text files, or a malformed file.
    """
    out: list[tuple[Path, list[str]]] = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
            if not files:
                raise InputError(path, None, f"files ending in {SUFFIXES}", "none")
        elif path.is_file():
            files = [path]
        else:
            raise InputError(path, None, "a text file or a folder of them", "nothing at that path")
        out += [(f, _read_file(f, text_column)) for f in files]
    return out
