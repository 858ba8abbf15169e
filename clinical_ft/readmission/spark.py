"""Admission risks for a Spark DataFrame of notes (``pip install clinical-ft[spark]``; Spark needs Java 17+).

    from clinical_ft.readmission import spark
    risks = spark.score(notes_df, "runs/readmit", id_col="hadm_id", text_col="text")
    risks.write.parquet("risks.parquet")

:func:`score` is ``DataFrame.mapInPandas``: each executor's Python worker loads the run once (cached
in this module, keyed by the run directory, its options and the model files' mtimes, so a run retrained
in the same session is loaded afresh) and scores each Arrow batch of notes through
the same path as ``readmission predict`` (notes.row_problem, engine.predict: windows, aggregation,
calibration, prior shift; infer.risk_fields for the columns). The result has risk.csv's columns
(numbers as doubles, not rounded) plus ``reason``: null for a scored row; for a row that could not be
scored, why (missing id, empty note, duplicate id), with null scores. No row is dropped.

Duplicate ids are found within a partition (the first row of the partition is scored, later ones get
the reason), since partitions are scored independently; ``df.repartition(id_col)`` first puts every
copy of an id in one partition, so that all of them are found (which copy is scored is then Spark's order).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import ClinicalFTError
from .infer import FLOAT_COLUMNS, HEADER

REASON = "reason"
_INTS = ("n_chunks", "top_chunk_start", "top_chunk_end")
_FLOATS = (*FLOAT_COLUMNS, "aggregation_c", "prevalence")
SCHEMA = ", ".join(f"{c} {'double' if c in _FLOATS else 'int' if c in _INTS else 'string'}" for c in HEADER) \
    + f", {REASON} string"
_PANDAS_3 = "PySpark does not yet fully support pandas >= 3"  # pyspark 4.x: a FutureWarning; the path used here is tested
_RUNS: dict[tuple[Any, ...], tuple[Any, Any]] = {}  # per Python worker: (run, calibrator)


def _quiet_pandas_3() -> None:
    warnings.filterwarnings("ignore", message=_PANDAS_3, category=FutureWarning)
    warnings.filterwarnings("ignore", message="The copy keyword is deprecated")  # pyspark's own astype(copy=False)


def _cached_run(run_dir: str, prevalence: float | None, threads: int | None) -> tuple[Any, Any]:
    """The run and its calibrator, loaded once per Python worker process (again when the model file changed)."""
    files = [Path(run_dir) / n for n in ("model.safetensors", "model.safetensors.index.json", "run.yaml")]
    key = (run_dir, prevalence, threads, *(f.stat().st_mtime_ns if f.exists() else None for f in files))
    if key not in _RUNS:
        if threads:
            import torch

            torch.set_num_threads(threads)
        from . import calibration
        from .infer import open_run

        _, run = open_run(run_dir, prevalence=prevalence)
        _RUNS[key] = (run, calibration.load(run.path))
    return _RUNS[key]


def score_batches(batches: Iterator[Any], run_dir: str, id_col: str, text_col: str, *, prevalence: float | None = None,
                  batch_size: int | None = None, threads: int | None = None) -> Iterator[Any]:
    """The function mapInPandas runs on one partition: pandas batches of (id, text) in, batches of
    risk.csv's columns plus ``reason`` out, one row per input row, in input order."""
    import pandas as pd

    from .. import engine
    from ..taskapi import task_options
    from .infer import risk_fields
    from .notes import Note, row_problem
    from .task import TASK

    _quiet_pandas_3()
    run, cal = _cached_run(run_dir, prevalence, threads)
    target = task_options(TASK, run.cfg).prevalence
    shift = None if target is None or cal is None else target  # as predict_csv writes it
    seen: dict[str, int] = {}
    done = 0  # rows of this partition before the current batch
    for pdf in batches:
        ids = ["" if pd.isna(v) else str(v).strip() for v in pdf[id_col]]
        texts = ["" if pd.isna(v) else str(v) for v in pdf[text_col]]
        notes, reasons = [], []
        for i, (rid, text) in enumerate(zip(ids, texts)):
            why = row_problem(rid, text, id_col, f"row {seen[rid]} of this partition" if rid in seen else None)
            reasons.append(why)
            if why is None:
                seen[rid] = done + i + 1
                notes.append(Note(rid, text, None, done + i + 1))
        done += len(ids)
        risks = iter(engine.predict(TASK, run, notes, batch_size))
        rows = [[*risk_fields(rid, next(risks), run, cal, shift), None] if why is None
                else [rid, *[None] * (len(HEADER) - 1), why] for rid, why in zip(ids, reasons)]
        out = pd.DataFrame(rows, columns=[*HEADER, REASON])
        yield out.astype({c: "Int32" if c in _INTS else "Float64" for c in (*_INTS, *_FLOATS)})


def score(df: Any, run_dir: str | Path, *, id_col: str = "admission_id", text_col: str = "text",
          prevalence: float | None = None, batch_size: int | None = None, threads: int | None = None) -> Any:
    """Admission risks for every row of a Spark DataFrame of notes (lazy: a new DataFrame).

    Args:
        df: a pyspark DataFrame with an id column and a note-text column (other columns are not carried).
        run_dir: a readmission run directory every executor can read (a shared or local path).
        id_col: the admission id column (any type; compared as text).
        text_col: the note text column.
        prevalence: deployment readmission rate the calibrated risks are moved to (as ``predict --prevalence``).
        batch_size: windows per forward pass (default: the run's eval batch size).
        threads: torch threads per Python worker (default: torch's own; ``1`` when Spark runs one
            worker per core, e.g. ``local[N]`` on N cores).

    Returns:
        A DataFrame with risk.csv's columns plus ``reason`` (null when scored), one row per input row.

    Raises:
        ClinicalFTError: a missing column, or `run_dir` is not a readmission run (checked on the driver).
    """
    _quiet_pandas_3()
    missing = [c for c in (id_col, text_col) if c not in df.columns]
    if missing:
        raise ClinicalFTError(f"spark.score: the DataFrame has no column(s) {missing}; its columns are {df.columns} "
                              "(name them with id_col=..., text_col=...)")
    if prevalence is not None and not 0 < prevalence < 1:
        raise ClinicalFTError(f"spark.score: prevalence must be a readmission rate in (0, 1); found {prevalence}")
    from ..rundir import run_card

    run_dir = str(Path(run_dir).resolve())
    kind = run_card(run_dir).kind  # fail on the driver, not in every executor
    if kind != "readmission":
        raise ClinicalFTError(f"spark.score: {run_dir} is a {kind} run, not a readmission run")

    def fn(batches: Iterator[Any]) -> Iterator[Any]:
        return score_batches(batches, run_dir, id_col, text_col, prevalence=prevalence, batch_size=batch_size,
                             threads=threads)

    from pyspark.sql import functions as F

    # as text on the driver: an integer id column with a null reaches pandas as float64 ("1.0" otherwise)
    cols = [F.col(c).cast("string").alias(c) for c in (id_col, text_col)]
    return df.select(*cols).mapInPandas(fn, SCHEMA)
