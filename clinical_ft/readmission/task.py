"""The readmission Task: sequence classification (2 labels) on token windows of long notes.

Training: every window of an admission's note carries the admission's label (as in ClinicalBERT).
Decoding: window probabilities of the positive class are aggregated per admission with
`clinical_ft.aggregation` (ClinicalBERT's formula with ``aggregation_c``, max or mean, from the
config), so validation (best checkpoint), evaluation and prediction all score admissions, not windows.
A prediction is a dict with the columns of ``risk.csv``: ``risk``, ``n_chunks``, ``top_chunk_start``,
``top_chunk_end``, ``top_chunk_prob`` (the character span and probability of the top window).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from .. import encoders
from ..aggregation import aggregate
from ..chunking import tokenize_windows
from ..config import TaskCard, TrainConfig
from ..data import feature_columns, read_split
from ..errors import InputError
from ..taskapi import Encoded, Task, task_options
from . import calibration
from .metrics import readmission_metrics
from .notes import GROUP_COLUMNS, LABEL_NAMES, NOTE_COLUMNS, Note, load_notes
from .reliability import calibration_metrics, operating_points

TITLE = "Readmission explanations"  # the explain reports' title
TOKENIZE_BLOCK = 256  # notes tokenized at once; windows keep only doc index and character span


@dataclass
class ReadmissionOptions:
    """``task_options`` of readmission.

    Attributes:
        calibration: how the validation admissions calibrate the risks at the end of training
            (readmission/calibration.py); ``platt`` by default (benchmarks/calibration_bench.py).
        prevalence: the deployment readmission rate risks are moved to (prior shift; None: the
            validation admissions' rate). ``predict --prevalence`` sets it for one command.
        subgroups: admission attributes whose groups ``evaluate`` reports one by one (``--subgroups``).
        bootstrap: resamples of the patient-grouped 95% intervals in ``evaluate`` (0: none).
        ece_bins: equal-width bins of the expected calibration error.
    """

    calibration: Literal["temperature", "platt", "isotonic", "none"] = "platt"
    prevalence: float | None = None
    subgroups: list[str] = field(default_factory=list)
    bootstrap: int = 1000
    ece_bins: int = 10

    def check(self, ok: Any) -> list[str]:
        problems = []
        if ok("prevalence") and self.prevalence is not None and not 0 < self.prevalence < 1:
            problems.append(f"prevalence: expected a readmission rate in (0, 1), found {self.prevalence}")
        if ok("bootstrap") and self.bootstrap < 0:
            problems.append(f"bootstrap: expected resamples >= 0, found {self.bootstrap}")
        if ok("ece_bins") and self.ece_bins < 2:
            problems.append(f"ece_bins: expected >= 2 bins, found {self.ece_bins}")
        bad = [g for g in self.subgroups if g not in GROUP_COLUMNS]
        if ok("subgroups") and bad:
            problems.append(f"subgroups: expected admission attributes among {list(GROUP_COLUMNS)}, found {bad}")
        return problems


@dataclass
class WindowMeta:
    """Per window: which note (index into the examples) and which characters it covers."""

    doc_index: np.ndarray
    char_start: np.ndarray
    char_end: np.ndarray


def encode_windows(tokenizer: Any, notes: list[Note], cfg: TrainConfig) -> tuple[dict[str, list], WindowMeta]:
    """Token windows of `max_length` with `stride` overlap for every note (chunking.tokenize_windows)."""
    cols: dict[str, list] = {}
    doc, start, end = [], [], []
    for b in range(0, len(notes), TOKENIZE_BLOCK):
        block = notes[b:b + TOKENIZE_BLOCK]
        windows = tokenize_windows(tokenizer, [n.text for n in block], max_length=cfg.max_length,
                                   stride=cfg.stride, doc_ids=[n.id for n in block])
        for k, v in feature_columns(windows).items():
            cols.setdefault(k, []).extend(v)
        doc += [b + w.doc_index for w in windows]
        start += [w.char_start for w in windows]
        end += [w.char_end for w in windows]
    meta = WindowMeta(np.asarray(doc, dtype=np.int64), np.asarray(start, dtype=np.int64), np.asarray(end, dtype=np.int64))
    return cols or feature_columns([]), meta


def aggregate_windows(n_notes: int, meta: WindowMeta, probs: Any, cfg: TrainConfig) -> list[dict[str, Any]]:
    """Admission risks from window probabilities (same order as `meta`), via aggregation.aggregate
    with the config's ``aggregation`` and ``aggregation_c``."""
    p = np.asarray(probs, dtype=np.float64).reshape(-1)
    if len(p) != len(meta.doc_index):
        raise ValueError(f"{len(p)} window scores for {len(meta.doc_index)} windows")
    agg = aggregate([str(d) for d in meta.doc_index], p, cfg.aggregation, cfg.aggregation_c)
    out = []
    for i in range(n_notes):
        score, n, top = agg[str(i)]
        out.append({"risk": float(score), "n_chunks": int(n), "top_chunk_start": int(meta.char_start[top]),
                    "top_chunk_end": int(meta.char_end[top]), "top_chunk_prob": float(p[top])})
    return out


class ReadmissionTask(Task):
    kind: ClassVar[str] = "readmission"
    formats: ClassVar[tuple[str, ...]] = ("notes_csv",)
    options: ClassVar[type] = ReadmissionOptions
    file_roles: ClassVar[tuple[str, ...]] = ("test_natural",)  # prepare --balanced-test keeps the natural test
    columns: ClassVar[tuple[str, ...]] = NOTE_COLUMNS
    score_keys: ClassVar[tuple[str, ...]] = ("auroc", "auprc_avg_precision", "auprc_trapezoid", "rp80", "brier", "ece")
    metric_for_best_model: ClassVar[str] = "auroc"

    def load_split(self, card: TaskCard, split: str, data_dir: str | Path | None) -> list[Note]:
        """Notes of one split; a carved validation split is cut by patient when patients are known."""
        return read_split(card, split, data_dir, lambda path: load_notes(path, card.columns),
                          group=lambda n: n.subject or n.id)

    def read_file(self, card: TaskCard, path: Path) -> list[Note]:
        return load_notes(path, card.columns)

    def label_list(self, card: TaskCard, train_examples: list[Note]) -> list[str]:
        if card.labels and len(card.labels) != 2:
            raise InputError(f"card {card.name}", None, "labels: two names [negative, positive]", str(card.labels))
        return list(card.labels or LABEL_NAMES)

    def build_model(self, encoder: str, labels: list[str], cfg: TrainConfig) -> Any:
        from transformers import AutoModelForSequenceClassification

        return encoders.load_classifier(AutoModelForSequenceClassification, encoder, labels)

    def encode(self, tokenizer: Any, examples: list[Note], cfg: TrainConfig, labels: list[str]) -> Encoded:
        from datasets import Dataset

        cols, meta = encode_windows(tokenizer, examples, cfg)
        if examples and all(n.label is not None for n in examples):
            cols["labels"] = [int(examples[d].label) for d in meta.doc_index]
        return Encoded(Dataset.from_dict(cols), meta)

    def collator(self, tokenizer: Any) -> Any:
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(tokenizer)

    def reduce_logits(self, logits: Any, labels: Any) -> Any:
        """Positive-class probability of each window (softmax over the two logits)."""
        return logits.float().softmax(dim=-1)[:, 1]

    def decode(self, examples: list[Note], encoded: Encoded, predictions: Any, labels: list[str],
               cfg: TrainConfig) -> list[dict[str, Any]]:
        return aggregate_windows(len(examples), encoded.meta, predictions, cfg)

    def score(self, examples: list[Note], predictions: list[dict[str, Any]], labels: list[str]) -> dict[str, float]:
        """Ranking metrics and the calibration of `risk` (brier, ece, slope, intercept); where the
        predictions carry the uncalibrated `score` too, its brier and ece as ``uncalibrated_*``."""
        y = [n.label for n in examples]
        out = {**readmission_metrics(y, [r["risk"] for r in predictions]),
               **calibration_metrics(y, [r["risk"] for r in predictions])}
        if predictions and "score" in predictions[0]:
            raw = calibration_metrics(y, [r["score"] for r in predictions])
            out.update({f"uncalibrated_{k}": raw[k] for k in ("brier", "ece")})
        return out

    def fit_after_training(self, run_dir: Path, examples: list[Note], predictions: list[dict[str, Any]],
                           cfg: TrainConfig) -> dict[str, Any]:
        """Fit the configured calibrator on the validation admissions' aggregated scores; save it with
        the validation score deciles (drift) and the operating thresholds chosen on validation."""
        opts = task_options(self, cfg)
        scores, y = [r["risk"] for r in predictions], [n.label for n in examples]
        cal = calibration.fit(opts.calibration, scores, y)
        risks = cal.apply(scores)
        cal.thresholds = {p["name"]: p["threshold"] for p in operating_points(y, risks)}
        calibration.save(cal, run_dir)
        return {"calibration": {"method": cal.method, "fitted_on": cal.fitted_on, "positives": cal.positives,
                                "prevalence": cal.prevalence, "described": cal.describe(), **cal.params}}

    def finish_predictions(self, run_dir: Path, predictions: list[dict[str, Any]], cfg: TrainConfig) -> list[dict[str, Any]]:
        """`risk` calibrated (and moved to ``task_options.prevalence`` when set), the aggregated
        `score` kept beside it; a run without calibration.json keeps its scores as risks."""
        cal = calibration.load(run_dir)
        target = task_options(self, cfg).prevalence
        if not predictions:
            return predictions
        scores = np.asarray([r["risk"] for r in predictions])
        risks = cal.apply(scores) if cal else scores
        if target is not None and cal is not None and np.isfinite(cal.prevalence):
            risks = calibration.prior_shift(risks, cal.prevalence, target)
        return [{**r, "score": float(s), "risk": float(p)} for r, s, p in zip(predictions, scores, risks)]

    def write_artifacts(self, run_dir: Path, split: str, examples: list[Note], predictions: list[dict[str, Any]],
                        labels: list[str], cfg: TrainConfig) -> dict[str, Any]:
        """ROC, PR, reliability and decision curves (PNGs named ``<kind>_<split>.png``; none for a
        one-class split), patient-grouped 95% bootstrap intervals, operating points, subgroups, and
        the aggregation, calibration and prevalence the risks were computed with."""
        from .evaluation import evaluation_report

        return evaluation_report(run_dir, split, examples, predictions, cfg, task_options(self, cfg),
                                 calibration.load(run_dir))

    def pick_examples(self, examples: list[Note], predictions: list[dict[str, Any]]) -> list[tuple[int, str]]:
        """The highest- and the lowest-risk test admissions."""
        scored = [(float(r["risk"]), i) for i, r in enumerate(predictions)]
        hi, lo = max(scored), min(scored)
        return [(hi[1], f"highest risk ({hi[0]:.3f})"), (lo[1], f"lowest risk ({lo[0]:.3f})")]

    def explain_section(self, run: Any, example: Note, n: int, folder: Path, *, attributions: bool,
                        n_steps: int = 50, tolerance: float = 0.05) -> str:
        from ..interpret.notes import note_sections

        return note_sections(run, [(example.id, example.text)], folder, attributions=attributions,
                             n_steps=n_steps, tolerance=tolerance, first_index=n)[0]


TASK = ReadmissionTask()
