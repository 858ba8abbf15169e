"""Streaming inference: admission risks for notes CSVs of any size in bounded memory.

Notes are read in blocks (pandas ``chunksize``); the windows of all notes of a block are sorted
by length and batched together (dynamic padding, no padding every window to ``max_length``),
run under ``torch.inference_mode`` and aggregated per admission with the run's aggregation.
Results are appended to a temporary file that replaces the output only when every row is done.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..engine import Run
from .notes import Note, Skip, iter_blocks, write_skips
from .task import Risk, aggregate_windows, encode_windows

HEADER = ["admission_id", "risk", "n_chunks", "aggregation", "aggregation_c", "top_chunk_start", "top_chunk_end",
          "top_chunk_prob"]


@dataclass
class PredictSummary:
    """What `predict_csv` did: counts, output paths and the skipped rows."""

    scored: int = 0
    windows: int = 0
    tokens: int = 0
    skips: list[Skip] = field(default_factory=list)
    out: Path | None = None
    skipped_csv: Path | None = None


def _device(model: Any) -> Any:
    import torch

    if torch.cuda.is_available() and next(model.parameters()).device.type != "cuda":
        model.to("cuda")
    return next(model.parameters()).device


def window_probs(model: Any, tokenizer: Any, input_ids: list[list[int]], batch_size: int) -> np.ndarray:
    """Positive-class probability per window; windows batched longest first, padded per batch only."""
    import torch

    model.eval()
    device = _device(model)
    order = np.argsort([-len(x) for x in input_ids], kind="stable")
    out = np.empty(len(input_ids), dtype=np.float32)
    with torch.inference_mode():
        for s in range(0, len(order), batch_size):
            idx = order[s:s + batch_size]
            batch = tokenizer.pad({"input_ids": [input_ids[i] for i in idx]}, return_tensors="pt")
            logits = model(**{k: v.to(device) for k, v in batch.items()}).logits
            out[idx] = logits.float().softmax(dim=-1)[:, 1].cpu().numpy()
    return out


def score_notes(run: Run, notes: list[Note], batch_size: int | None = None) -> tuple[list[Risk], int, int]:
    """Risks of `notes` (one block, held in memory), plus the number of windows and tokens."""
    if not notes:
        return [], 0, 0
    cols, meta = encode_windows(run.tokenizer, notes, run.cfg)
    probs = window_probs(run.model, run.tokenizer, cols["input_ids"], batch_size or run.cfg.per_device_eval_batch_size)
    return aggregate_windows(len(notes), meta, probs), len(probs), int(sum(cols["length"]))


def iter_risks(run: Run, blocks: Iterator[tuple[list[Note], list[Skip]]], batch_size: int | None = None,
               progress: bool = True) -> Iterator[tuple[list[Note], list[Risk], list[Skip], int, int]]:
    """Score blocks of notes one at a time, with a tqdm progress bar over notes."""
    from tqdm.auto import tqdm

    with tqdm(unit="note", desc="scoring", disable=not progress) as bar:
        for notes, skips in blocks:
            risks, n_win, n_tok = score_notes(run, notes, batch_size)
            bar.update(len(notes) + len(skips))
            yield notes, risks, skips, n_win, n_tok


def skipped_path(out_csv: str | Path) -> Path:
    """``<out stem>.skipped.csv`` beside the predictions: ``risk.csv`` -> ``risk.skipped.csv``."""
    out = Path(out_csv)
    return out.with_name(out.stem + ".skipped.csv")


def predict_csv(run: Run, notes_csv: str | Path, out_csv: str | Path, *, columns: dict[str, str] | None = None,
                batch_size: int | None = None, block_size: int = 1000, progress: bool = True) -> PredictSummary:
    """Write one row per scored admission to `out_csv` and the unscored rows to ``<out stem>.skipped.csv``
    beside it (so that predictions written into one folder keep their own reports).

    Each row records the aggregation and its constant ``aggregation_c``, the settings (with the run)
    that reproduce its risk, also after a ``--c`` override. Both files appear only when every row has
    been handled (temporary files, then rename).
    """
    out = Path(out_csv)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    summary = PredictSummary()
    blocks = iter_blocks(notes_csv, columns, labels="ignore", block_size=block_size)
    try:
        with tmp.open("w", encoding="utf-8", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(HEADER)
            for notes, risks, skips, n_win, n_tok in iter_risks(run, blocks, batch_size, progress):
                for n, r in zip(notes, risks):
                    w.writerow([n.id, f"{r.risk:.6f}", r.n_chunks, run.cfg.aggregation, run.cfg.aggregation_c,
                                r.top_start, r.top_end, f"{r.top_prob:.6f}"])
                summary.scored += len(notes)
                summary.windows += n_win
                summary.tokens += n_tok
                summary.skips.extend(skips)
        summary.skipped_csv = write_skips(skipped_path(out), summary.skips)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    summary.out = out
    return summary
