"""Streaming inference: admission risks for notes CSVs of any size in bounded memory.

Notes are read in blocks (pandas ``chunksize``); the windows of all notes of a block go through the
engine's batched forward (engine.predict: windows sorted by length, padded per batch only) and are
aggregated per admission with the run's aggregation. Results are appended to a temporary file that
replaces the output only when every row is done.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import engine
from ..atomic import atomic_open
from .notes import Note, Skip, iter_blocks, write_skips
from .task import TASK

RISK_COLUMNS = ["risk", "n_chunks", "top_chunk_start", "top_chunk_end", "top_chunk_prob"]  # a prediction's keys
HEADER = ["admission_id", "risk", "n_chunks", "aggregation", "aggregation_c", "top_chunk_start", "top_chunk_end",
          "top_chunk_prob"]


@dataclass
class PredictSummary:
    """What `predict_csv` did: counts, output paths and the skipped rows."""

    scored: int = 0
    windows: int = 0
    skips: list[Skip] = field(default_factory=list)
    out: Path | None = None
    skipped_csv: Path | None = None


def iter_risks(run: engine.Run, blocks: Iterator[tuple[list[Note], list[Skip]]], batch_size: int | None = None,
               progress: bool = True) -> Iterator[tuple[list[Note], list[dict[str, Any]], list[Skip]]]:
    """Score blocks of notes one at a time (engine.predict), with a tqdm progress bar over notes."""
    from tqdm.auto import tqdm

    with tqdm(unit="note", desc="scoring", disable=not progress) as bar:
        for notes, skips in blocks:
            risks = engine.predict(TASK, run, notes, batch_size)
            bar.update(len(notes) + len(skips))
            yield notes, risks, skips


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
    summary = PredictSummary()
    blocks = iter_blocks(notes_csv, columns, labels="ignore", block_size=block_size)
    with atomic_open(out, newline="") as fh:
        w = csv.writer(fh)
        w.writerow(HEADER)
        for notes, risks, skips in iter_risks(run, blocks, batch_size, progress):
            for n, r in zip(notes, risks):
                w.writerow([n.id, f"{r['risk']:.6f}", r["n_chunks"], run.cfg.aggregation, run.cfg.aggregation_c,
                            r["top_chunk_start"], r["top_chunk_end"], f"{r['top_chunk_prob']:.6f}"])
            summary.scored += len(notes)
            summary.windows += sum(r["n_chunks"] for r in risks)
            summary.skips.extend(skips)
        summary.skipped_csv = write_skips(skipped_path(out), summary.skips)
    summary.out = out
    return summary
