"""Faithfulness (AOPC comprehensiveness / sufficiency) of integrated gradients, attention (last layer,
mean of heads), attention rollout and a random ranking on trained models; used by explain_bench.py.

- readmission: the demo run (``python -m clinical_ft.readmission demo --out DIR``), test admissions,
  the top-2 windows of each note as ``explain`` ranks them; target p(readmitted) of the window.
- NER: a trained NCBI-disease run, test sentences with at least one predicted entity, the first
  entity; target p(entity label) at its first token.
"""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np


def demo_rows(run_dir: str, n_notes: int, top: int = 2) -> dict[str, Any]:
    """Faithfulness and IG convergence of the top windows of `n_notes` test admissions of the demo run,
    and the share of each note's aggregated score its top 1/2/3 windows hold."""
    import pandas as pd

    from clinical_ft import engine
    from clinical_ft.aggregation import window_shares
    from clinical_ft.interpret.notes import note_sections
    from clinical_ft.readmission.task import TASK

    run = engine.load_run(TASK, Path(run_dir) / "run")
    test = pd.read_csv(Path(run_dir) / "data" / "test.csv", dtype={"admission_id": str})
    notes = [(r.admission_id, r.text) for r in test.head(n_notes).itertuples()]
    record: list[dict[str, Any]] = []
    folder = Path(run_dir) / "bench_png"
    start = time.perf_counter()
    note_sections(run, notes, folder, top_chunks=top, record=record)
    seconds = time.perf_counter() - start
    covered = _coverage(run, notes, window_shares)
    return {"windows": record, "seconds": seconds, "notes": len(notes), "top_k_share": covered,
            "max_length": run.cfg.max_length, "aggregation": run.cfg.aggregation, "c": run.cfg.aggregation_c}


def _coverage(run: Any, notes: list[tuple[str, str]], shares_fn: Any) -> dict[str, float]:
    """Mean share of the aggregated score held by the top 1/2/3 windows (notes with more windows than k)."""
    import torch

    from clinical_ft.chunking import tokenize_windows

    out: dict[int, list[float]] = {1: [], 2: [], 3: []}
    for _, text in notes:
        wins = tokenize_windows(run.tokenizer, [text], max_length=run.cfg.max_length, stride=run.cfg.stride)
        with torch.no_grad():
            probs = [float(torch.softmax(run.model(input_ids=torch.tensor([w.input_ids])).logits[0], -1)[1]) for w in wins]
        s = np.sort(shares_fn(probs, run.cfg.aggregation, run.cfg.aggregation_c))[::-1]
        for k in out:
            if len(s) > k:
                out[k].append(float(s[:k].sum() / s.sum()))
    return {f"top{k}": float(np.mean(v)) if v else float("nan") for k, v in out.items()} | {
        "notes_with_more_windows": {f"top{k}": len(v) for k, v in out.items()}}


def ncbi_rows(run_dir: str, n_sentences: int, start: int = 0) -> dict[str, Any]:
    """Faithfulness and IG convergence for the first predicted entity of `n_sentences` NCBI test sentences
    (those with a predicted entity, read from test sentence `start` on)."""
    from clinical_ft import engine
    from clinical_ft.interpret.attention import attention_maps, forward_with_attentions
    from clinical_ft.interpret.attribution import integrated_gradients, token_logit, token_prob
    from clinical_ft.interpret.trust import window_faithfulness
    from clinical_ft.ner.conll import read_conll
    from clinical_ft.ner.explain import predict_entities
    from clinical_ft.ner.task import TASK
    from clinical_ft.resources import data_root

    run = engine.load_run(TASK, Path(run_dir))
    run.model.eval()
    sentences, _ = read_conll(data_root() / "ncbi_disease" / "test.tsv")
    rows, seen, t0 = [], start, time.perf_counter()
    for s in sentences[start:]:
        if len(rows) >= n_sentences:
            break
        seen += 1
        text = " ".join(s.words)
        windows, ents = predict_entities(run, text)
        if not ents:
            continue
        e = ents[0]
        win = windows[e["window"]]
        maps = attention_maps(forward_with_attentions(run.model, win.input_ids, win.token_type_ids)[1])
        view = SimpleNamespace(raw={"e": np.stack([maps[-2, e["position"]], maps[-1, e["position"]]])})  # as in reports
        a = integrated_gradients(run.model, run.tokenizer, win.input_ids, token_logit(e["position"], e["label"]),
                                 token_type_ids=win.token_type_ids)
        res = window_faithfulness(run.model, run.tokenizer, win, token_prob(e["position"], e["label"]), view, "e",
                                  a.scores)
        rows.append({"sentence": seen, "tokens": len(win.input_ids),
                     "ig": {"steps": a.n_steps, "delta": a.delta, "converged": a.converged,
                            "relative_delta": a.relative_delta},
                     "faithfulness": {m: [f.comprehensiveness, f.sufficiency] for m, f in res.items()}})
    return {"windows": rows, "seconds": time.perf_counter() - t0, "first_sentence": start, "sentences_read": seen - start}


def table(rows: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    """Markdown rows (ranking, mean comp, mean suff, comp > random share) and the IG convergence summary."""
    methods = list(rows[0]["faithfulness"]) if rows else []
    rnd = [r["faithfulness"].get("random ranking (seed 0)", [np.nan, np.nan]) for r in rows]
    lines = []
    for m in methods:
        v = np.array([r["faithfulness"][m] for r in rows])
        beat = np.mean([x[0] > y[0] for x, y in zip(v, rnd)])
        lines.append(f"| {m} | {v[:, 0].mean():+.4f} | {v[:, 1].mean():+.4f} | {v[:, 0].mean() - v[:, 1].mean():+.4f} "
                     f"| {100 * beat:.0f}% |")
    ig = [r["ig"] for r in rows if r.get("ig")]
    conv = {"windows": len(ig), "converged": sum(g["converged"] for g in ig),
            "steps_mean": float(np.mean([g["steps"] for g in ig])) if ig else float("nan"),
            "steps_max": max((g["steps"] for g in ig), default=0),
            "relative_delta_median": float(np.median([g["relative_delta"] for g in ig])) if ig else float("nan")}
    return "\n".join(lines), conv
