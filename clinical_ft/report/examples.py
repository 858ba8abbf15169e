"""Example explanations for the run report: two test examples picked from the run's saved test
predictions (``predictions_test.jsonl``, written by every task's ``evaluate``) by the task's
``pick_examples`` hook, explained with attention only (fast) by its ``explain_section`` hook, or
the reason why none can be shown. The example texts are read again from the card's test split
(they are never copied into the run directory)."""

from __future__ import annotations

import logging
from pathlib import Path

from .. import engine, registry, rundir
from ..errors import ClinicalFTError
from ..interpret.heatmap import png_dir
from ..interpret.html import esc

log = logging.getLogger("clinical_ft.report")


class NoExamples(Exception):
    """Why a run report shows no example explanation (the message is shown in the report)."""


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
    card = rundir.run_card(run_dir)
    preds_file = engine.predictions_path(run_dir, "test")
    try:
        try:
            task = registry.for_card(card)
        except ClinicalFTError as exc:
            raise NoExamples(str(exc)) from None
        if not preds_file.is_file():
            raise NoExamples(f"the run directory has no test predictions ({preds_file.name}; written by "
                             f"python -m clinical_ft.{card.kind} evaluate --model RUN)")
        try:
            preds = engine.read_predictions(preds_file)
        except ClinicalFTError as exc:
            raise NoExamples(str(exc)) from None
        try:
            examples = task.load_split(card, "test", data_dir)
        except ClinicalFTError as exc:
            raise NoExamples(f"the test examples could not be read again ({exc})") from None
        if len(preds) != len(examples):
            raise NoExamples(f"{preds_file.name} has {len(preds)} predictions for {len(examples)} test examples")
        if not preds:
            raise NoExamples("the test split is empty")
        picks = list(dict(task.pick_examples(examples, preds)).items())  # one test example: shown once
        try:
            run = engine.load_run(task, run_dir)
        except (ClinicalFTError, OSError, ValueError) as exc:
            raise NoExamples(f"the model could not be loaded ({exc})") from None
        run.model.eval()
        folder = png_dir(out_html)
        sections = [task.explain_section(run, examples[i], n, folder, attributions=False)
                    for n, (i, _) in enumerate(picks)]
    except NoExamples as why:
        return [], f"No example explanation is shown: {esc(str(why))}."
    chosen = "; ".join(f"{getattr(examples[i], 'id', i)}: {why}" for i, why in picks)
    return sections, (f"Test examples picked from {preds_file.name} ({esc(chosen)}), explained with attention only; "
                      f"for word attributions run <code>python -m clinical_ft.{card.kind} explain</code>.")
