"""Example explanations for the run report: two test examples picked from the run's saved test
predictions, explained with attention only (fast), or the reason why none can be shown.

What each task leaves in a run directory: readmission ``predictions_test.csv`` (``evaluate``:
admission_id, label, risk), every other task ``predictions_test.jsonl`` (``engine.evaluate`` with
``save_predictions``, as the benchmark runner does: one prediction per test example, in order).
The example texts themselves are read again from the card's test split (they are never copied
into the run directory).
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

from ..errors import ClinicalFTError
from .heatmap import png_dir
from .html import esc

log = logging.getLogger("clinical_ft.interpret")


class NoExamples(Exception):
    """Why a run report shows no example explanation (the message is shown in the report)."""


def _task(card: Any) -> Any:
    if card.kind == "readmission":
        from ..readmission import TASK
    elif card.kind == "relation":
        from ..relation import TASK
    elif card.kind == "ner":
        from ..ner import TASK
    elif card.kind == "qa":
        from ..qa import task_for

        TASK = task_for(card)
    else:
        raise NoExamples(f"task kind {card.kind!r} has no explain command")
    return TASK


def _jsonl(path: Path) -> list[Any]:
    try:
        return [json.loads(line)["prediction"] for line in path.read_text(encoding="utf-8").splitlines() if line]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise NoExamples(f"{path.name} is not readable as engine.evaluate writes it ({exc})") from None


def _picks(kind: str, run_dir: Path, examples: list[Any]) -> list[tuple[int, str]]:
    """(example index, why it was picked) for the two examples to show."""
    if kind == "readmission":
        with (run_dir / "predictions_test.csv").open(encoding="utf-8", newline="") as fh:
            risk = {r["admission_id"]: float(r["risk"]) for r in csv.DictReader(fh)}
        scored = [(risk[e.id], i) for i, e in enumerate(examples) if e.id in risk]
        if not scored:
            raise NoExamples("no admission of predictions_test.csv is in the card's test split")
        hi, lo = max(scored), min(scored)
        return [(hi[1], f"highest risk ({hi[0]:.3f})"), (lo[1], f"lowest risk ({lo[0]:.3f})")]
    preds = _jsonl(run_dir / "predictions_test.jsonl")
    if len(preds) != len(examples):
        raise NoExamples(f"predictions_test.jsonl has {len(preds)} predictions for {len(examples)} test examples")
    if not preds:
        raise NoExamples("the test split is empty")
    if kind == "relation":
        return _confidence([(float(p[1]), i, p[0]) for i, p in enumerate(preds)])
    if kind == "qa" and all(isinstance(p, dict) for p in preds):  # yes/no: label, probability, ...
        return _confidence([(float(p["probability"]), i, p["label"]) for i, p in enumerate(preds)])
    if kind == "qa":
        return _confidence([(float(p[0]["probability"]) if p else 0.0, i, "") for i, p in enumerate(preds)], " answer")
    counts = sorted(((-sum(t.startswith("B") for t in p), i) for i, p in enumerate(preds)))
    return [(i, f"{-c} predicted entit{'y' if c == -1 else 'ies'}") for c, i in counts[:2]]


def _confidence(conf: list[tuple[float, int, str]], noun: str = "") -> list[tuple[int, str]]:
    """(index, why) of the most and the least confident of (probability, index, label or "") triples."""
    def why(c: tuple[float, int, str], which: str) -> str:
        return f"{which} confident{noun} ({c[2] + ', ' if c[2] else ''}p={c[0]:.3f})"

    hi, lo = max(conf), min(conf)
    return [(hi[1], why(hi, "most")), (lo[1], why(lo, "least"))]


def _has_predictions(kind: str, run_dir: Path) -> bool:
    return (run_dir / ("predictions_test.csv" if kind == "readmission" else "predictions_test.jsonl")).is_file()


def example_sections(run_dir: Path, out_html: Path, data_dir: str | Path | None = None) -> tuple[list[str], str]:
    """Attention-only explanations of two test examples picked from the run's test predictions.

    Args:
        run_dir: the run directory (model, run.yaml and test predictions).
        out_html: the run report's path; PNG heatmaps go to ``<stem>_heatmaps/`` beside it.
        data_dir: root of the card's data (default as for evaluate).

    Returns:
        (HTML sections, an escaped HTML sentence introducing them) or ([], one saying why no
        example is shown).
    """
    from .. import engine
    from ..config import TaskCard, from_dict, read_yaml

    card = from_dict(TaskCard, read_yaml(run_dir / engine.RUN_FILE)["card"], str(run_dir / engine.RUN_FILE))
    which = "predictions_test.csv" if card.kind == "readmission" else "predictions_test.jsonl"
    try:
        task = _task(card)
        if not _has_predictions(card.kind, run_dir):
            how = ("python -m clinical_ft.readmission evaluate --model RUN" if card.kind == "readmission"
                   else "clinical-ft benchmark (engine.evaluate with save_predictions)")
            raise NoExamples(f"the run directory has no test predictions ({which}; written by {how})")
        try:
            examples = task.load_split(card, "test", data_dir)
        except ClinicalFTError as exc:
            raise NoExamples(f"the test examples could not be read again ({exc})") from None
        picks = list(dict(_picks(card.kind, run_dir, examples)).items())  # one test example: shown once
        try:
            run = engine.load_run(task, run_dir)
        except (ClinicalFTError, OSError, ValueError) as exc:
            raise NoExamples(f"the model could not be loaded ({exc})") from None
        sections = _explain(card.kind, run, [examples[i] for i, _ in picks], png_dir(out_html))
    except NoExamples as why:
        return [], f"No example explanation is shown: {esc(str(why))}."
    chosen = "; ".join(f"{getattr(examples[i], 'id', i)}: {why}" for i, why in picks)
    return sections, (f"Test examples picked from {which} ({esc(chosen)}), explained with attention only; for word "
                      f"attributions run <code>python -m clinical_ft.{explain_module(card.kind)} explain</code>.")


def explain_module(kind: str) -> str:
    """The task module whose ``explain`` command serves runs of `kind`."""
    return {"doc_classification": "readmission"}.get(kind, kind)


def _explain(kind: str, run: Any, examples: list[Any], folder: Path) -> list[str]:
    if kind == "readmission":
        from .notes import note_sections

        return note_sections(run, [(e.id, e.text) for e in examples], folder, attributions=False)
    if kind == "relation":
        from .relation_explain import relation_section

        return [relation_section(run, e, n, folder, attributions=False) for n, e in enumerate(examples)]
    if kind == "qa":
        from .qa_explain import question_section

        return [question_section(run, e, n, folder, attributions=False) for n, e in enumerate(examples)]
    from .ner_explain import ner_section

    return [ner_section(run, f"{e.source}:{e.line}", " ".join(e.words), n, folder, attributions=False)
            for n, e in enumerate(examples)]
