"""Streaming inference: admission risks for notes CSVs of any size in bounded memory.

Notes are read in blocks (pandas ``chunksize``); the windows of all notes of a block go through the
engine's batched forward (engine.predict: windows sorted by length, padded per batch only) and are
aggregated per admission with the run's aggregation. Results are appended to a temporary file that
replaces the output only when every row is done.

Under ``torchrun --nproc_per_node N`` every rank reads the same blocks and the engine's forward
(transformers' Trainer on accelerate) splits each block's windows across the ranks deterministically
and gathers them in order; only rank 0 writes, after the last block, so the output is the
single-process one and no complete-looking file appears unless every rank got through.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import engine, taskcli
from ..atomic import atomic_open, write_json
from ..errors import ClinicalFTError
from ..taskapi import task_options
from ..trainer import is_main_process
from . import calibration
from .notes import Note, Skip, iter_blocks, write_skips
from .task import TASK

HEADER = ["admission_id", "risk", "score", "n_chunks", "aggregation", "aggregation_c", "calibration", "prevalence",
          "top_chunk_start", "top_chunk_end", "top_chunk_prob"]
FLOAT_COLUMNS = ("risk", "score", "top_chunk_prob")  # written with 6 decimals in risk.csv
QUANTILES = (0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)


@dataclass
class PredictSummary:
    """What `predict_csv` did: counts, output paths and the skipped rows."""

    scored: int = 0
    windows: int = 0
    skips: list[Skip] = field(default_factory=list)
    out: Path | None = None
    skipped_csv: Path | None = None
    drift_json: Path | None = None
    calibration: str = ""  # how the risks were calibrated (or why not), as written in every row


def iter_risks(run: engine.Run, blocks: Iterator[tuple[list[Note], list[Skip]]], batch_size: int | None = None,
               progress: bool = True) -> Iterator[tuple[list[Note], list[dict[str, Any]], list[Skip]]]:
    """Score blocks of notes one at a time (engine.predict), with a tqdm progress bar over notes."""
    from tqdm.auto import tqdm

    with tqdm(unit="note", desc="scoring", disable=not progress or not is_main_process()) as bar:
        for notes, skips in blocks:
            risks = engine.predict(TASK, run, notes, batch_size)
            bar.update(len(notes) + len(skips))
            yield notes, risks, skips


def risk_fields(note_id: str, r: dict[str, Any], run: engine.Run, cal: calibration.Calibrator | None,
                prevalence: float | str) -> list[Any]:
    """One admission's values in :data:`HEADER` order (risk.csv, and the Spark scorer's columns)."""
    return [note_id, r["risk"], r["score"], r["n_chunks"], run.cfg.aggregation, run.cfg.aggregation_c,
            cal.method if cal else "none", prevalence, r["top_chunk_start"], r["top_chunk_end"], r["top_chunk_prob"]]


def open_run(model: str | Path, *, aggregation: str | None = None, c: float | None = None,
             prevalence: float | None = None, subgroups: list[str] | None = None) -> tuple[Any, engine.Run]:
    """The task and run of `model`, with --aggregation/--c/--prevalence/--subgroups applied to a new
    config (the run directory is not changed).

    Raises:
        ClinicalFTError: `model` is not a readmission run; `c` is not a number > 0; a bad option value.
    """
    if c is not None and not (math.isfinite(c) and c > 0):
        raise ClinicalFTError(f"--c: expected ClinicalBERT's aggregation constant, a number > 0; found {c}")
    task, run = taskcli.open_run(model, (TASK,))
    changes: dict[str, Any] = {k: v for k, v in (("aggregation", aggregation), ("aggregation_c", c)) if v is not None}
    options = {k: v for k, v in (("prevalence", prevalence), ("subgroups", subgroups)) if v is not None}
    if options:
        changes["task_options"] = {**run.cfg.task_options, **options}
    if not changes:
        return task, run
    cfg = dataclasses.replace(run.cfg, **changes)
    task_options(task, cfg)  # --prevalence / --subgroups checked like the config's own keys
    return task, dataclasses.replace(run, cfg=cfg)


def skipped_path(out_csv: str | Path) -> Path:
    """``<out stem>.skipped.csv`` beside the predictions: ``risk.csv`` -> ``risk.skipped.csv``."""
    out = Path(out_csv)
    return out.with_name(out.stem + ".skipped.csv")


def predict_csv(run: engine.Run, notes_csv: str | Path, out_csv: str | Path, *, columns: dict[str, str] | None = None,
                batch_size: int | None = None, block_size: int = 1000, progress: bool = True) -> PredictSummary:
    """Write one row per scored admission to `out_csv` and the unscored rows to ``<out stem>.skipped.csv``
    beside it (so that predictions written into one folder keep their own reports).

    Each row records the aggregation and its constant ``aggregation_c``, the settings (with the run)
    that reproduce its risk, also after a ``--c`` override. Both files appear only when every row has
    been handled (temporary files, then rename).
    """
    out = Path(out_csv)
    out.parent.mkdir(parents=True, exist_ok=True)
    cal = calibration.load(run.path)
    target = task_options(TASK, run.cfg).prevalence
    summary = PredictSummary(calibration=cal.describe() if cal else "none: this run has no calibration.json "
                             "(trained before calibration existed, or without validation admissions)")
    prevalence = "" if target is None or cal is None else target
    scores, risks_all, windows = [], [], []
    blocks = iter_blocks(notes_csv, columns, labels="ignore", block_size=block_size)
    main = is_main_process()  # the other ranks of a distributed run score their share and write nothing
    with (atomic_open(out, newline="") if main else contextlib.nullcontext(io.StringIO())) as fh:
        w = csv.writer(fh)
        w.writerow(HEADER)
        for notes, risks, skips in iter_risks(run, blocks, batch_size, progress):
            for n, r in zip(notes, risks):
                w.writerow([f"{v:.6f}" if k in FLOAT_COLUMNS else v
                            for k, v in zip(HEADER, risk_fields(n.id, r, run, cal, prevalence))])
            scores.append(np.asarray([r["score"] for r in risks], dtype=np.float32))  # 12 bytes a note in all
            risks_all.append(np.asarray([r["risk"] for r in risks], dtype=np.float32))
            windows.append(np.asarray([r["n_chunks"] for r in risks], dtype=np.int32))
            summary.scored += len(notes)
            summary.skips.extend(skips)
        summary.windows = int(sum(int(x.sum()) for x in windows))
        summary.skipped_csv, summary.drift_json = skipped_path(out), drift_path(out)
        if main:
            write_skips(summary.skipped_csv, summary.skips)
            joined = [np.concatenate(x) if x else np.zeros(0) for x in (scores, risks_all, windows)]
            write_json(summary.drift_json, drift(cal, *joined, summary, target))
    summary.out = out
    return summary


def drift_path(out_csv: str | Path) -> Path:
    """``<out stem>.drift.json`` beside the predictions."""
    out = Path(out_csv)
    return out.with_name(out.stem + ".drift.json")


def _quantiles(values: np.ndarray) -> dict[str, float]:
    return {f"p{round(q * 100)}": float(v) for q, v in zip(QUANTILES, np.quantile(values, QUANTILES))} if len(values) else {}


def drift(cal: calibration.Calibrator | None, scores: np.ndarray, risks: np.ndarray, windows: np.ndarray,
          summary: PredictSummary, target: float | None) -> dict[str, Any]:
    """What this batch of notes looks like next to the validation admissions of training: counts,
    the distribution of risks and of windows per note, the share above each operating threshold
    chosen on validation, and the population stability index of the scores."""
    out: dict[str, Any] = {
        "scored": summary.scored, "skipped": len(summary.skips), "calibration": summary.calibration,
        "prevalence": target, "mean_risk": float(np.mean(risks)) if len(risks) else None, "risk": _quantiles(risks),
        "windows_per_note": _quantiles(windows.astype(float))}
    if cal is None:
        out["psi"] = None
        out["note"] = "no calibration.json: no validation reference to compare with"
        return out
    calibrated = cal.apply(scores)  # thresholds were chosen on calibrated validation risks, before any prior shift
    out["share_above_threshold"] = {name: (float(np.mean(calibrated >= t)) if t is not None and len(scores) else None)
                                    for name, t in cal.thresholds.items()}
    out["thresholds"] = cal.thresholds
    out["psi"] = calibration.psi(cal.score_deciles, scores)
    out["psi_reading"] = "< 0.1 stable; 0.1-0.25 moderate shift; > 0.25 major shift: check the notes before acting"
    return out
