"""Cost, memory and faithfulness of explanations on the bundled MiniLM (6 layers x 12 heads).

Speed cases (public MTSamples transcriptions, ../shared/data/mtsamples_subset; random classification
head: speed only), each in its own process so its peak RSS is its own, the reference (plain SDPA
prediction of the same input) measured in the same process:

- ``chunk512``: one 510-token window: predict (median of 5) alternating with integrated gradients
  alone (median of 4; the default nested trapezoid rule, 8 intervals halved up to 50 until |delta| <=
  5% of |f(x) - f(baseline)|) and, for comparison, the nested rule from 4 intervals and the previous
  default (Gauss-Legendre, 4 steps doubled, each round afresh), then attention alone, faithfulness
  alone and the whole ``explain_notes``;
- ``note5000``: a 5,000-token note; ``words20000``: a 20,000-word note: predict (batches of 16
  windows), then the whole ``explain_notes`` (top-2 windows attributed).

Faithfulness (explain_faith.py): AOPC comprehensiveness / sufficiency of IG, attention, rollout and
random on demo admissions and NCBI test sentences (trained runs given by --demo-run and --ncbi-run).

    OMP_NUM_THREADS=2 python benchmarks/explain_bench.py --speed-model /tmp/i17demo/run --demo-run /tmp/i17demo \
        --ncbi-run /tmp/i17ncbi
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, now_utc, write_json  # noqa: E402

CASES = ["chunk512", "note5000", "words20000"]
MAX_LENGTH, STRIDE = 512, 128


def note_text(tokenizer, n_tokens: int = 0, n_words: int = 0) -> str:
    """The first `n_tokens` tokens (or `n_words` words) of concatenated MTSamples transcriptions."""
    from clinical_ft.resources import data_root

    path = data_root() / "mtsamples_subset" / "mtsamples_subset.csv"
    with path.open(encoding="utf-8", newline="") as fh:
        texts = [row["transcription"] for row in csv.DictReader(fh) if row.get("transcription")]
    if n_words:
        words = " \n".join(texts).split(" ")
        if len(words) < n_words:
            raise SystemExit(f"{path}: fewer than {n_words} words")
        return " ".join(words[:n_words])
    text = ""
    for t in texts:
        text += t + "\n\n"
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        if len(enc["input_ids"]) >= n_tokens:
            return text[:enc["offset_mapping"][n_tokens - 1][1]]
    raise SystemExit(f"{path}: fewer than {n_tokens} tokens")


def _timed(fn, *a, **k):
    t0 = time.perf_counter()
    out = fn(*a, **k)
    return time.perf_counter() - t0, out


def child(case: str, threads: int, model_run: str | None) -> dict:
    import torch
    from transformers import AutoModelForSequenceClassification

    from clinical_ft import encoders
    from clinical_ft.chunking import tokenize_windows
    from clinical_ft.config import DataSpec, TaskCard, TrainConfig
    from clinical_ft.engine import Run
    from clinical_ft.interpret.attention import attention_maps, forward_with_attentions
    from clinical_ft.interpret.attribution import class_log_odds, class_prob, integrated_gradients
    from clinical_ft.interpret.notes import note_sections
    from clinical_ft.interpret.trust import window_faithfulness

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    if model_run:  # a trained readmission classifier: realistic f(x) - f(baseline) and convergence
        from clinical_ft.engine import load_run
        from clinical_ft.readmission.task import TASK

        loaded = load_run(TASK, model_run)
        model, tok = loaded.model.eval(), loaded.tokenizer
    else:
        model = encoders.load_model(AutoModelForSequenceClassification, "minilm", num_labels=2).eval()
        tok = encoders.load_tokenizer("minilm")
    text = note_text(tok, n_words=20000) if case == "words20000" else note_text(tok, 510 if case == "chunk512" else 5000)
    windows = tokenize_windows(tok, [text], max_length=MAX_LENGTH, stride=STRIDE)
    run = Run(Path(tempfile.mkdtemp(prefix="explain_bench_")), TaskCard(
        name="speed_only", version=1, kind="readmission", data=DataSpec(format="csv"), metric="auroc"),
        TrainConfig(max_length=MAX_LENGTH, stride=STRIDE), ["0", "1"], model, tok)

    def predict() -> None:
        with torch.no_grad():
            for i in range(0, len(windows), 16):
                block = windows[i:i + 16]
                ids = torch.tensor([w.input_ids + [tok.pad_token_id] * (MAX_LENGTH - len(w.input_ids)) for w in block])
                mask = torch.tensor([[1] * len(w.input_ids) + [0] * (MAX_LENGTH - len(w.input_ids)) for w in block])
                torch.softmax(model(input_ids=ids, attention_mask=mask).logits, -1)

    predict()  # warm-up: one-off costs (also of the first backward pass) stay out of every timing
    integrated_gradients(model, tok, windows[0].input_ids, class_log_odds(1), n_steps=1, start_steps=1)
    out = {"case": case, "windows": len(windows), "tokens": sum(len(w.input_ids) for w in windows),
           "words": len(text.split()), "torch_threads": torch.get_num_threads(), "loadavg_1min": os.getloadavg()[0]}
    preds, igs = [], []
    others: dict[str, list] = {"nested_from_4": [], "gausslegendre_from_4": []}
    if case == "chunk512":
        win = windows[0]
        for turn in range(5):  # alternate the reference and IG: same load for both
            preds.append(_timed(predict)[0])
            if turn < 4:
                t, a = _timed(integrated_gradients, model, tok, win.input_ids, class_log_odds(1))
                igs.append(t)
                others["nested_from_4"].append(_timed(integrated_gradients, model, tok, win.input_ids,
                                                      class_log_odds(1), start_steps=4))
                others["gausslegendre_from_4"].append(_timed(integrated_gradients, model, tok, win.input_ids,
                                                             class_log_odds(1), start_steps=4, method="gausslegendre"))
        out["ig_s"], out["ig_ratio"] = statistics.median(igs), statistics.median(igs) / statistics.median(preds)
        for name, runs in others.items():
            med, last = statistics.median(t for t, _ in runs), runs[-1][1]
            out["ig_" + name] = {"s": med, "ratio": med / statistics.median(preds), "steps": last.n_steps,
                                 "relative_delta": last.relative_delta, "rounds": last.rounds}
        out["ig"] = {"steps": a.n_steps, "delta": a.delta, "relative_delta": a.relative_delta, "converged": a.converged,
                     "rounds": a.rounds, "f_x_minus_f_baseline": a.value - a.baseline_value}
        out["attention_s"] = _timed(lambda: attention_maps(forward_with_attentions(model, win.input_ids)[1]))[0]
        views = [None]
        out["faithfulness_s"] = _timed(window_faithfulness, model, tok, win, class_prob(1), views[0], "cls", a.scores)[0]
    else:
        preds.append(_timed(predict)[0])
    out["predict_s"] = statistics.median(preds)
    out["rss_after_predict_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    record: list[dict] = []
    out["explain_s"] = _timed(note_sections, run, [("bench", text)], run.path / "png", top_chunks=2, record=record)[0]
    out["explain_ratio"] = out["explain_s"] / out["predict_s"]
    out["explained"] = [{"window": r["window"], **{k: r["ig"][k] for k in ("steps", "delta", "relative_delta", "converged")},
                         "rounds": r["ig"]["rounds"]} for r in record]
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def faith_child(kind: str, path: str, n: int, args: argparse.Namespace) -> dict:
    import explain_faith

    return (explain_faith.demo_rows(path, n, args.demo_top) if kind == "demo"
            else explain_faith.ncbi_rows(path, n, args.ncbi_start))


def _sub(args: list[str], threads: int) -> dict:
    proc = subprocess.run([sys.executable, __file__, *args, "--threads", str(threads)], capture_output=True, text=True,
                          env={**os.environ, "TRANSFORMERS_VERBOSITY": "error"})
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="benchmarks/explain_results", help="results stem (.json; the .md is written by hand)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cases", default=",".join(CASES))
    p.add_argument("--demo-run", help="folder of `python -m clinical_ft.readmission demo --out DIR`")
    p.add_argument("--demo-notes", type=int, default=20)
    p.add_argument("--demo-top", type=int, default=2, help="windows explained per demo admission")
    p.add_argument("--ncbi-run", help="a trained NCBI-disease NER run")
    p.add_argument("--ncbi-sentences", type=int, default=50)
    p.add_argument("--ncbi-start", type=int, default=0, help="first NCBI test sentence read")
    p.add_argument("--speed-model", help="run folder of a trained readmission model for the speed cases (default: "
                   "MiniLM with a random head, whose f(x) - f(baseline) is near 0)")
    p.add_argument("--case", help=argparse.SUPPRESS)
    p.add_argument("--faith", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.case or args.faith:
        import torch

        torch.set_num_threads(args.threads)
        res = child(args.case, args.threads, args.speed_model) if args.case else faith_child(args.faith[0], args.faith[1], int(args.faith[2]), args)
        print(json.dumps(res))
        return 0
    info = {"date": now_utc(), "machine": machine(), "encoder": "bundled MiniLM-L6 (6 layers, 12 heads, hidden 384)",
            "command": "OMP_NUM_THREADS={} python benchmarks/explain_bench.py {}".format(
                args.threads, " ".join(argv if argv is not None else sys.argv[1:])), "speed": [], "faithfulness": {}}
    for case in [c for c in args.cases.split(",") if c]:
        info["speed"].append(_sub(["--case", case] + (["--speed-model", args.speed_model] if args.speed_model else []),
                                  args.threads))
        print(json.dumps({k: v for k, v in info["speed"][-1].items() if k not in ("explained",)}), flush=True)
    if args.demo_run:
        info["faithfulness"]["demo"] = _sub(["--faith", "demo", args.demo_run, str(args.demo_notes),
                                             "--demo-top", str(args.demo_top)], args.threads)
    if args.ncbi_run:
        info["faithfulness"]["ncbi"] = _sub(["--faith", "ncbi", args.ncbi_run, str(args.ncbi_sentences),
                                             "--ncbi-start", str(args.ncbi_start)], args.threads)
    info["loadavg_after"] = list(os.getloadavg())
    write_json(Path(args.out + ".json"), info)
    import explain_faith

    for name, res in info["faithfulness"].items():
        rows, conv = explain_faith.table(res["windows"])
        print(f"## {name} ({len(res['windows'])} explained windows, {res['seconds']:.0f}s)\n{rows}\n{conv}")
        if "top_k_share" in res:
            print("top-k share of the aggregated score:", res["top_k_share"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
