"""Readmission inference throughput: `predict`'s streaming path vs a ClinicalBERT-style loop.

Same notes, same model, same process. The reference does what ClinicalBERT's ``run_readmission.py``
evaluation does: one note at a time, every chunk padded to 512 tokens. `predict`
(``readmission.infer.predict_csv``: ``engine.predict`` block by block) batches the chunks of many
notes sorted by length with dynamic padding (the Trainer's prediction loop, under ``torch.no_grad``).
Risks must agree (max abs difference < 1e-4). Peak memory of `predict` is measured in child
processes at growing note counts (streaming keeps it flat).

Notes: the real MTSamples transcriptions in ../shared/data/mtsamples_subset (no labels needed),
cycled to --notes; model: the bundled MiniLM-L6 with a seeded, untrained 2-class head (speed
and equality do not depend on training).

    OMP_NUM_THREADS=2 python benchmarks/readmission_throughput.py --notes 200 --memory-notes 500,2000 \
        --out benchmarks/readmission_throughput.json
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def build_run(max_length: int, stride: int, batch: int):
    import torch

    from clinical_ft import encoders
    from clinical_ft.config import TaskCard, TrainConfig, from_dict
    from clinical_ft.engine import Run
    from clinical_ft.readmission.task import TASK

    card = from_dict(TaskCard, {"name": "bench", "version": 1, "kind": "readmission", "metric": "auroc",
                                "data": {"format": "notes_csv", "files": {"test": "x.csv"}}}, "bench")
    cfg = TrainConfig(encoder="minilm", max_length=max_length, stride=stride, per_device_eval_batch_size=batch)
    torch.manual_seed(0)
    model = TASK.build_model("minilm", ["no", "yes"], cfg).eval()
    return Run(Path("."), card, cfg, ["no", "yes"], model, encoders.load_tokenizer("minilm"))


def write_notes(path: Path, n: int, words: int | None = None) -> int:
    from clinical_ft.readmission.synthetic import mtsamples_texts

    texts = mtsamples_texts()
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["admission_id", "text"])
        for i in range(n):
            t = texts[i % len(texts)]
            w.writerow([f"n{i}", " ".join(t.split()[:words]) if words else t])
    return n


def clinicalbert_loop(run, notes: list[tuple[str, str]]) -> dict[str, float]:
    """One note at a time; all its chunks padded to 512; ClinicalBERT's vote per note."""
    import torch

    from clinical_ft.aggregation import aggregate
    from clinical_ft.chunking import tokenize_windows

    out = {}
    with torch.no_grad():
        for doc_id, text in notes:
            wins = tokenize_windows(run.tokenizer, [text], max_length=run.cfg.max_length, stride=run.cfg.stride)
            batch = run.tokenizer.pad({"input_ids": [w.input_ids for w in wins]}, padding="max_length",
                                      max_length=512, return_tensors="pt")
            probs = run.model(**batch).logits.softmax(-1)[:, 1].numpy()
            out[doc_id] = aggregate([doc_id] * len(probs), probs, run.cfg.aggregation, run.cfg.aggregation_c)[doc_id][0]
    return out


def encoder_flops(lengths: list[int], cfg) -> float:
    """Forward multiply-add FLOPs (x2) of a BERT encoder over sequences of these lengths.

    Per layer and sequence of length L: Q, K, V and output projections 4*h*h*L, the feed-forward
    2*h*i*L, attention scores and weighted sum 2*L*L*h; FLOPs = 2 x multiply-adds.
    Embeddings, layer norms, softmax and the head are left out (< 2% here)."""
    h, i, n = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    return float(sum(2 * n * (4 * h * h * L + 2 * h * i * L + 2 * L * L * h) for L in lengths))


def flop_bound(run, notes: list[tuple[str, str]], batch: int) -> dict:
    """How much faster than the reference `predict` can be from FLOPs alone: the reference pads every
    window to 512; `predict` pads each length-sorted batch to its longest window."""
    from clinical_ft.chunking import tokenize_windows

    lengths = [len(w.input_ids) for w in tokenize_windows(run.tokenizer, [t for _, t in notes],
                                                          max_length=run.cfg.max_length, stride=run.cfg.stride)]
    srt = sorted(lengths, reverse=True)
    padded = [srt[s] for s in range(0, len(srt), batch) for _ in srt[s:s + batch]]
    cfg = run.model.config
    ref, ours, real = (encoder_flops(x, cfg) for x in ([512] * len(lengths), padded, lengths))
    return {"windows": len(lengths), "real_tokens": sum(lengths), "reference_positions": 512 * len(lengths),
            "predict_positions": sum(padded), "reference_gflop": ref / 1e9, "predict_gflop": ours / 1e9,
            "real_tokens_gflop": real / 1e9, "flop_ratio_reference_over_predict": ref / ours,
            "flop_ratio_reference_over_real_tokens": ref / real}


def count_tokens(run, notes) -> int:
    """Tokens of every window (special tokens included) that `predict` feeds the model for `notes`
    (readmission.task.encode_windows, the windowing of TASK.encode)."""
    from clinical_ft.readmission.task import encode_windows

    return int(sum(encode_windows(run.tokenizer, notes, run.cfg)[0]["length"]))


def _status_mb(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def memory_child(n: int, words: int | None, block: int) -> None:
    """Run `predict` on n notes in this (fresh) process; print the peak RSS during `predict` alone
    (the engine's per-run peak window: on Linux VmHWM is reset after the model is loaded)."""
    from clinical_ft import engine
    from clinical_ft.readmission import infer
    from clinical_ft.readmission.notes import iter_blocks

    run = build_run(512, 64, 32)
    with tempfile.TemporaryDirectory() as d:
        write_notes(Path(d) / "notes.csv", n, words)
        loaded = _status_mb("VmRSS")
        engine.reset_peak_memory()  # VmHWM back to the current RSS
        s = infer.predict_csv(run, Path(d) / "notes.csv", Path(d) / "risk.csv", block_size=block, progress=False)
        peak = engine.peak_memory_mb()
        process_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        # token count after the measurement, block by block as predict_csv reads the notes
        tokens = sum(count_tokens(run, notes) for notes, _ in
                     iter_blocks(Path(d) / "notes.csv", labels="ignore", block_size=block))
    print(json.dumps({"notes": n, "scored": s.scored, "tokens": tokens, "rss_before_predict_mb": loaded,
                      "peak_rss_during_predict_mb": peak, "growth_mb": peak - loaded,
                      "process_peak_rss_mb": process_peak}))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--notes", type=int, default=200)
    p.add_argument("--repeats", type=int, default=2, help="alternating timed runs of each; the fastest counts")
    p.add_argument("--words", type=int, default=None,
                   help="keep only each note's first N words in the timed run (how the ratio depends on note length)")
    p.add_argument("--memory-notes", default="500,2000", help="note counts for the peak-memory children")
    p.add_argument("--memory-words", type=int, default=60, help="truncate notes for the memory runs (speed)")
    p.add_argument("--block", type=int, default=250, help="notes per streamed block")
    p.add_argument("--out", default="benchmarks/readmission_throughput.json")
    p.add_argument("--flops-only", action="store_true",
                   help="only compute the FLOP bound for --notes and add it to --out (no timing)")
    p.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.memory_child:
        memory_child(args.memory_child, args.memory_words, args.block)
        return 0
    from clinical_ft.readmission import infer
    from clinical_ft.readmission.notes import load_notes

    run = build_run(512, 64, 32)
    cmd = " ".join(argv if argv is not None else sys.argv[1:])
    res: dict = {"command": f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '')} "
                            f"python benchmarks/readmission_throughput.py {cmd}",
                 "model": "bundled MiniLM-L6, seeded untrained head", "max_length": 512, "stride": 64}
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "notes.csv"
        write_notes(path, args.notes, args.words)
        loaded = load_notes(path, labels="ignore")
        notes = [(n.id, n.text) for n in loaded]
        bound = flop_bound(run, notes, run.cfg.per_device_eval_batch_size)
        if args.flops_only:
            old = json.loads(Path(args.out).read_text()) if Path(args.out).exists() else {}
            old["flops"] = {"notes": args.notes, "words": args.words, **bound, "command": res["command"]}
            Path(args.out).write_text(json.dumps(old, indent=2) + "\n")
            print(json.dumps(old["flops"], indent=2))
            return 0
        n_tokens = count_tokens(run, loaded)
        times = {"predict": [], "clinicalbert_loop": []}
        for _ in range(args.repeats):
            t = time.perf_counter()
            s = infer.predict_csv(run, path, Path(d) / "risk.csv", block_size=args.block, progress=False)
            times["predict"].append(time.perf_counter() - t)
            t = time.perf_counter()
            ref = clinicalbert_loop(run, notes)
            times["clinicalbert_loop"].append(time.perf_counter() - t)
        ours = {r["admission_id"]: float(r["risk"]) for r in csv.DictReader((Path(d) / "risk.csv").open())}
    diff = max(abs(ours[k] - ref[k]) for k in ref)
    best = {k: min(v) for k, v in times.items()}
    res.update({
        "notes": args.notes, "words": args.words, "chunks": s.windows, "tokens": n_tokens, "times_s": times,
        "predict_notes_per_s": args.notes / best["predict"], "predict_tokens_per_s": n_tokens / best["predict"],
        "reference_notes_per_s": args.notes / best["clinicalbert_loop"],
        "reference_tokens_per_s": n_tokens / best["clinicalbert_loop"],
        "speedup": best["clinicalbert_loop"] / best["predict"], "max_abs_risk_diff": diff,
        "identical_within_1e-4": bool(diff < 1e-4),
        "flops": {"notes": args.notes, "words": args.words, **bound},
    })
    res["memory"] = []
    for n in [int(x) for x in args.memory_notes.split(",") if x]:
        r = subprocess.run([sys.executable, __file__, "--memory-child", str(n), "--memory-words", str(args.memory_words),
                            "--block", str(args.block)], capture_output=True, text=True, check=True)
        res["memory"].append(json.loads(r.stdout.strip().splitlines()[-1]))
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps({k: v for k, v in res.items() if k not in ("times_s",)}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
