"""Readers for question answering: SQuAD v1 JSON (also BioBERT's BioASQ conversion), the official
BioASQ golden files, and PubMedQA-shaped yes/no/maybe JSON. The cards' split protocols: splits.py."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError

log = logging.getLogger("clinical_ft.qa")


@dataclass
class QAExample:
    """One question over one context (BioASQ: one snippet of a question).

    Attributes:
        answers: (text, character start) pairs; None when the input carries no answers.
        gold: acceptable answer strings for scoring (answers, or golden-file synonyms).
        question_id: the question this example belongs to (BioASQ: id without the snippet suffix).
        group: what splits keep together (the article, or the BioASQ question).
        factoid: score with BioASQ factoid metrics over all snippets of a question.
    """

    id: str
    question: str
    context: str
    answers: list[tuple[str, int]] | None
    gold: list[str] = field(default_factory=list)
    question_id: str = ""
    group: str = ""
    source: str = ""
    where: str = ""
    factoid: bool = False
    split: str = ""


@dataclass
class YesNoExample:
    """A yes/no(/maybe) question with its context; `label` is None for unlabelled input."""

    id: str
    question: str
    context: str
    label: str | None
    source: str = ""


def load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(path, None, "a readable JSON file", exc.strerror or type(exc).__name__) from None
    except UnicodeDecodeError as exc:
        raise InputError(path, None, "UTF-8 JSON", f"undecodable byte at offset {exc.start}") from None
    except json.JSONDecodeError as exc:
        raise InputError(path, exc.lineno, "valid JSON", exc.msg) from None


def _anchor(context: str, text: str, start: Any) -> tuple[str, int] | None:
    """The answer's (text, start), re-anchored to the nearest occurrence of the stripped text
    when `answer_start` does not point at it (COVID-QA has such offsets); None if absent."""
    if isinstance(start, int) and context[start:start + len(text)] == text and text == text.strip():
        return text, start
    text = text.strip()
    hits, i = [], context.find(text)
    while text and i >= 0:
        hits.append(i)
        i = context.find(text, i + 1)
    if not hits:
        return None
    ref = start if isinstance(start, int) else 0
    return text, min(hits, key=lambda h: abs(h - ref))


def read_squad(path: str | Path, *, require_answers: bool = True, factoid: bool = False) -> list[QAExample]:
    """Read SQuAD v1 JSON (``data[].paragraphs[].{context, qas[]}``).

    Answers whose ``answer_start`` does not match are re-anchored to the nearest occurrence of the
    (stripped) text and counted in a warning; an answer text absent from its context keeps the
    example (scored against its text, trained as "no answer in this window") and is reported.

    Raises:
        InputError: not SQuAD-shaped, naming the JSON location.
    """
    path = Path(path)
    doc = load_json(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise InputError(path, None, 'SQuAD v1 JSON: an object with a "data" list', type(doc).__name__)
    out: list[QAExample] = []
    moved, missing = [], []
    for ai, art in enumerate(doc["data"]):
        if not isinstance(art, dict) or not isinstance(art.get("paragraphs"), list):
            raise InputError(path, None, f'data[{ai}]: an article object with a "paragraphs" list', repr(art)[:60])
        for pi, par in enumerate(art["paragraphs"]):
            ctx = par.get("context") if isinstance(par, dict) else None
            if not isinstance(ctx, str):
                raise InputError(path, None, f'data[{ai}].paragraphs[{pi}].context: a string', repr(ctx)[:40])
            if not isinstance(par.get("qas", []), list):
                raise InputError(path, None, f'data[{ai}].paragraphs[{pi}].qas: a list', repr(par["qas"])[:40])
            for qi, qa in enumerate(par.get("qas", [])):
                where = f"data[{ai}].paragraphs[{pi}].qas[{qi}]"
                if not isinstance(qa, dict) or "id" not in qa or not isinstance(qa.get("question"), str):
                    raise InputError(path, None, f"{where}: an object with id and question", repr(qa)[:60])
                raw = qa.get("answers")
                if raw is None and require_answers:
                    raise InputError(path, None, f"{where}: an answers list (or use predict for unanswered input)", "none")
                answers, gold = None, []
                if raw is not None:
                    answers = []
                    for a in raw:
                        if not isinstance(a, dict) or not isinstance(a.get("text"), str):
                            raise InputError(path, None, f"{where}.answers: objects with text and answer_start", repr(a)[:60])
                        gold.append(a["text"].strip())
                        anchored = _anchor(ctx, a["text"], a.get("answer_start"))
                        if anchored is None:
                            missing.append(where)
                            continue
                        if anchored != (a["text"], a.get("answer_start")):
                            moved.append(where)
                        answers.append(anchored)
                qid = str(qa["id"])
                question_id = qid.rsplit("_", 1)[0] if factoid else qid
                out.append(QAExample(qid, qa["question"], ctx, answers, gold, question_id,
                                     question_id if factoid else f"{path.name}:{ai}", str(path), where, factoid))
    if moved:
        log.warning("%s: %d answers re-anchored to their text (answer_start off or text padded), first at %s",
                    path, len(moved), moved[0])
    if missing:
        log.warning("%s: %d answer texts not found in their context (kept for scoring only), first at %s",
                    path, len(missing), missing[0])
    return out


def read_bioasq_golden(paths: list[Path]) -> dict[str, list[str]]:
    """Question id -> acceptable exact answers (synonyms flattened) from official BioASQ golden files."""
    gold: dict[str, list[str]] = {}
    for path in paths:
        doc = load_json(path)
        if not isinstance(doc, dict) or not isinstance(doc.get("questions"), list):
            raise InputError(path, None, 'BioASQ golden JSON: an object with a "questions" list', type(doc).__name__)
        for qi, q in enumerate(doc["questions"]):
            if not isinstance(q, dict):
                raise InputError(path, None, f"questions[{qi}]: a question object", repr(q)[:60])
            if q.get("type") == "factoid":
                if q.get("id") in (None, ""):
                    raise InputError(path, None, f"questions[{qi}].id: the id of a factoid question", "none")
                ans = q.get("exact_answer", [])
                flat = [a for x in ans for a in (x if isinstance(x, list) else [x])]
                gold[str(q["id"])] = [str(a).strip() for a in flat]
    return gold


def read_yesno(path: str | Path, labels: dict[str, str] | None = None, require_labels: bool = True) -> list[YesNoExample]:
    """Read PubMedQA-shaped JSON: ``{id: {QUESTION, CONTEXTS (list or str), final_decision}}``.

    Args:
        labels: id -> label overriding ``final_decision`` (e.g. the test ground-truth file).

    Raises:
        InputError: wrong shape or a missing label, naming the id.
    """
    path = Path(path)
    doc = load_json(path)
    if not isinstance(doc, dict):
        raise InputError(path, None, "a JSON object keyed by question id", type(doc).__name__)
    out = []
    for key, item in doc.items():
        if not isinstance(item, dict) or not isinstance(item.get("QUESTION"), str):
            raise InputError(path, None, f"[{key!r}]: an object with QUESTION and CONTEXTS", repr(item)[:60])
        ctx = item.get("CONTEXTS")
        if not isinstance(ctx, str) and not (isinstance(ctx, list) and all(isinstance(c, str) for c in ctx)):
            raise InputError(path, None, f"[{key!r}].CONTEXTS: a list of strings (or a string)",
                             "none" if ctx is None else repr(ctx)[:60])
        ctx = " ".join(ctx) if isinstance(ctx, list) else ctx
        label = (labels or {}).get(key, item.get("final_decision"))
        if label is None and require_labels:
            raise InputError(path, None, f"[{key!r}].final_decision: yes, no or maybe", "none")
        out.append(YesNoExample(str(key), item["QUESTION"], ctx, label, str(path)))
    return out
