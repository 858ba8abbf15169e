"""Readmission `predict` end to end against the raw forward on the same windows, and where the
difference goes: CSV read, tokenization + windowing, the engine's batched forward (the Trainer's
prediction loop: collation, forward, gathering), aggregation, writing.

In ONE process, alternating: (1) ``readmission.infer.predict_csv`` on a notes CSV, its stages timed by
wrapping the functions it calls (``iter_blocks``, ``encode_windows``, ``engine.predict_raw``,
``aggregate_windows``; writing and the rest is what is left), and (2) the raw forward:
``model(**batch)`` under ``inference_mode`` over the same windows, length-sorted, padded per batch
of the run's eval batch size (built beforehand, so not timed). Tokens = window tokens with specials.

Notes: real MTSamples transcriptions (../shared/data/mtsamples_subset) cycled to --notes; the
bundled MiniLM-L6 with a seeded, untrained head (speed does not depend on training).

    OMP_NUM_THREADS=1 python benchmarks/readmission_stages.py --notes 60 --out benchmarks/results/readmission_stages.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, now_utc, write_json  # noqa: E402
from readmission_throughput import build_run, write_notes  # noqa: E402

STAGES = ("csv_read", "tokenize_window", "forward_trainer_loop", "aggregate", "write_and_rest")


def timed_predict(run: Any, path: Path, out: Path, block: int) -> dict[str, float]:
    """predict_csv with its stages timed (the wrapped functions are put back afterwards)."""
    from clinical_ft import engine
    from clinical_ft.readmission import infer, task

    t: dict[str, float] = defaultdict(float)

    def wrap(fn: Any, stage: str) -> Any:
        def inner(*a: Any, **kw: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                t[stage] += time.perf_counter() - t0
        return inner

    def blocks(*a: Any, **kw: Any) -> Any:
        it = orig["blocks"](*a, **kw)
        while True:
            t0 = time.perf_counter()
            try:
                item = next(it)
            except StopIteration:
                t["csv_read"] += time.perf_counter() - t0
                return
            t["csv_read"] += time.perf_counter() - t0
            yield item

    orig = {"blocks": infer.iter_blocks, "enc": task.encode_windows, "raw": engine.predict_raw,
            "agg": task.aggregate_windows}
    infer.iter_blocks, task.encode_windows = blocks, wrap(orig["enc"], "tokenize_window")
    engine.predict_raw, task.aggregate_windows = wrap(orig["raw"], "forward_trainer_loop"), wrap(orig["agg"], "aggregate")
    try:
        t0 = time.perf_counter()
        infer.predict_csv(run, path, out, block_size=block, progress=False)
        total = time.perf_counter() - t0
    finally:
        infer.iter_blocks, task.encode_windows = orig["blocks"], orig["enc"]
        engine.predict_raw, task.aggregate_windows = orig["raw"], orig["agg"]
    t["write_and_rest"] = total - sum(t.values())
    return {"total": total, **t}


def raw_batches(run: Any, notes: list[Any]) -> tuple[list[dict[str, Any]], int]:
    """The windows predict feeds the model, length-sorted and padded per eval batch; their token count."""
    from clinical_ft.readmission.task import encode_windows

    cols, _ = encode_windows(run.tokenizer, notes, run.cfg)
    rows = sorted(({k: cols[k][i] for k in cols if k != "length"} for i in range(len(cols["input_ids"]))),
                  key=lambda r: -len(r["input_ids"]))
    bs = run.cfg.per_device_eval_batch_size
    return ([run.tokenizer.pad(rows[s:s + bs], return_tensors="pt") for s in range(0, len(rows), bs)],
            sum(len(r["input_ids"]) for r in rows))


def raw_forward(model: Any, batches: list[dict[str, Any]]) -> float:
    import torch

    t0 = time.perf_counter()
    with torch.inference_mode():
        for b in batches:
            model(**b).logits.softmax(-1)
    return time.perf_counter() - t0


def summarize(rounds: list[dict[str, Any]], tokens: int) -> dict[str, Any]:
    """Ratios per round (the two sides of a round ran back to back: the same load), their median,
    and the stages of the median round's predict."""
    import statistics

    ratio = [100 * r["raw_forward_s"] / r["predict"]["total"] for r in rounds]
    loop = [100 * r["raw_forward_s"] / r["predict"]["forward_trainer_loop"] for r in rounds]
    mid = sorted(rounds, key=lambda r: r["raw_forward_s"] / r["predict"]["total"])[len(rounds) // 2]["predict"]
    return {"raw_forward_tokens_per_s_median": statistics.median(tokens / r["raw_forward_s"] for r in rounds),
            "predict_tokens_per_s_median": statistics.median(tokens / r["predict"]["total"] for r in rounds),
            "predict_over_raw_pct_per_round": ratio, "predict_over_raw_pct_median": statistics.median(ratio),
            "trainer_loop_over_raw_pct_median": statistics.median(loop),
            "stages_pct_of_predict_median_round": {k: 100 * mid.get(k, 0.0) / mid["total"] for k in STAGES}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--notes", type=int, default=60)
    p.add_argument("--repeats", type=int, default=3, help="alternating rounds; each side's fastest round counts")
    p.add_argument("--block", type=int, default=250, help="notes per streamed block (predict's default: 1000)")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    from clinical_ft.readmission.notes import load_notes

    run = build_run(512, 64, 32)
    start = machine()
    rounds = []
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "notes.csv"
        write_notes(path, args.notes)
        batches, tokens = raw_batches(run, load_notes(path, labels="ignore"))
        raw_forward(run.model, batches[-1:])  # warm-up
        for r in range(args.repeats):
            sides = ("predict", "raw") if r % 2 == 0 else ("raw", "predict")
            row: dict[str, Any] = {}
            for side in sides:
                if side == "predict":
                    row["predict"] = timed_predict(run, path, Path(d) / "risk.csv", args.block)
                else:
                    row["raw_forward_s"] = raw_forward(run.model, batches)
            rounds.append(row)
    out = {"date": now_utc(), "machine_start": start, "loadavg_end": list(__import__("os").getloadavg()),
           "command": "python benchmarks/readmission_stages.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "notes": args.notes, "windows": sum(len(b["input_ids"]) for b in batches), "tokens": tokens,
           **summarize(rounds, tokens), "rounds": rounds}
    write_json(Path(args.out), out)
    print(json.dumps({k: v for k, v in out.items() if k not in ("rounds", "machine_start")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
