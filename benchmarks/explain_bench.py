"""Time and peak memory of one explanation on the bundled MiniLM (6 layers x 12 heads).

Inputs: a 512-token chunk and a 5,000-token note made of public MTSamples transcriptions
(../shared/data/mtsamples_subset; no labels, the classification head is random: speed only).
Each case runs in its own process, so its peak RSS is its own. The reference, measured in the
same run, is plain SDPA prediction of the same input; ratios are against it.

    OMP_NUM_THREADS=2 python benchmarks/explain_bench.py --out benchmarks/explain_results

Cases: predict (reference), attention only (eager attention, rollout, PNG + HTML), and
attention + integrated gradients with n_steps=50 (top 1 chunk of the 512 chunk; top 2 chunks,
explain_notes' default, of the 5,000-token note).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, now_utc, write_json, write_text  # noqa: E402

CASES = ["chunk512_predict", "chunk512_attention", "chunk512_ig50",
         "note5000_predict", "note5000_attention", "note5000_ig50"]
MAX_LENGTH, STRIDE = 512, 128


def note_text(tokenizer, n_tokens: int) -> str:
    """The first `n_tokens` tokens' worth of concatenated MTSamples transcriptions."""
    from clinical_ft.resources import data_root

    path = data_root() / "mtsamples_subset" / "mtsamples_subset.csv"
    with path.open(encoding="utf-8", newline="") as fh:
        texts = [row["transcription"] for row in csv.DictReader(fh) if row.get("transcription")]
    text = ""
    for t in texts:
        text += t + "\n\n"
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        if len(enc["input_ids"]) >= n_tokens:
            return text[:enc["offset_mapping"][n_tokens - 1][1]]
    raise SystemExit(f"{path}: fewer than {n_tokens} tokens")


def child(case: str, threads: int) -> dict:
    import torch
    from transformers import AutoModelForSequenceClassification

    from clinical_ft import encoders
    from clinical_ft.chunking import tokenize_windows
    from clinical_ft.config import DataSpec, TaskCard, TrainConfig
    from clinical_ft.engine import Run
    from clinical_ft.interpret import explain_notes

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = encoders.load_model(AutoModelForSequenceClassification, "minilm", num_labels=2).eval()
    tok = encoders.load_tokenizer("minilm")
    n_tokens = 510 if case.startswith("chunk512") else 5000
    text = note_text(tok, n_tokens)
    cfg = TrainConfig(max_length=MAX_LENGTH, stride=STRIDE)
    card = TaskCard(name="speed_only", version=1, kind="readmission", data=DataSpec(format="csv"), metric="auroc")
    windows = tokenize_windows(tok, [text], max_length=MAX_LENGTH, stride=STRIDE)
    with torch.no_grad():  # warm-up at full window size: one-off costs stay out of every timing
        model(input_ids=torch.tensor([windows[0].input_ids]))
    base_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    tmp = Path(tempfile.mkdtemp(prefix="explain_bench_"))
    start = time.perf_counter()
    html_bytes = 0
    if case.endswith("predict"):
        with torch.no_grad():
            ids = torch.tensor([w.input_ids + [tok.pad_token_id] * (MAX_LENGTH - len(w.input_ids)) for w in windows])
            mask = (ids != tok.pad_token_id).long()
            mask[:, 0] = 1
            torch.softmax(model(input_ids=ids, attention_mask=mask).logits, -1)
    else:
        run = Run(tmp, card, cfg, ["0", "1"], model, tok)
        ig = case.endswith("ig50")
        out = explain_notes(run, [("bench", text)], tmp / "r.html", attributions=ig, n_steps=50,
                            top_chunks=1 if case.startswith("chunk512") else 2)
        html_bytes = out.stat().st_size
    wall = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    shutil.rmtree(tmp, ignore_errors=True)
    return {"case": case, "tokens": n_tokens + 2 * len(windows), "windows": len(windows), "wall_s": wall,
            "peak_rss_mb": peak_mb, "rss_before_mb": base_mb, "extra_peak_mb": peak_mb - base_mb,
            "html_bytes": html_bytes, "torch_threads": torch.get_num_threads(), "loadavg_1min": os.getloadavg()[0]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="benchmarks/explain_results", help="results stem (.json and .md)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--case", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.case:
        print(json.dumps(child(args.case, args.threads)))
        return 0
    results = []
    for case in CASES:
        proc = subprocess.run([sys.executable, __file__, "--case", case, "--threads", str(args.threads)],
                              capture_output=True, text=True, env={**os.environ, "TRANSFORMERS_VERBOSITY": "error"})
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
            return proc.returncode
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]))
    ref = {r["case"].split("_")[0]: r for r in results if r["case"].endswith("predict")}
    for r in results:
        r["time_ratio_vs_predict"] = r["wall_s"] / ref[r["case"].split("_")[0]]["wall_s"]
    info = {"date": now_utc(), "machine": machine(), "encoder": "bundled MiniLM-L6 (6 layers, 12 heads, hidden 384)",
            "max_length": MAX_LENGTH, "stride": STRIDE, "ig_steps": 50, "ig_internal_batch_size": 10,
            "command": f"OMP_NUM_THREADS={args.threads} python benchmarks/explain_bench.py --out {args.out}",
            "results": results}
    write_json(Path(args.out + ".json"), info)
    rows = "\n".join(f"| {r['case']} | {r['windows']} | {r['wall_s']:.2f} | {r['time_ratio_vs_predict']:.1f}x | "
                     f"{r['peak_rss_mb']:.0f} | {r['extra_peak_mb']:.0f} | {r['html_bytes'] / 1e6:.2f} | {r['loadavg_1min']:.1f} |"
                     for r in results)
    write_text(Path(args.out + ".md"), f"""# Explanation cost on the bundled MiniLM ({info['date']})

Command: `{info['command']}` ({info['machine']['nproc']} CPU cores, torch threads {args.threads},
load average before {info['machine']['loadavg'][0]:.1f}; other jobs shared the machine, so absolute
times are noisy: read the ratios against plain prediction measured in the same run).
Windows of {MAX_LENGTH} tokens, stride {STRIDE}. IG: LayerIntegratedGradients, 50 steps, 10 steps per
forward; on the top chunk (512) or the top 2 chunks (5,000-token note). Attention cases include
eager attention for every window, rollout, one PNG per window and the HTML. Peak RSS is per process;
"extra" is the increase over the RSS high-water mark after loading the model and one warm-up
forward pass of a full window.

| case | windows | wall s | vs predict | peak RSS MB | extra MB | HTML MB | load (1 min) |
|---|---|---|---|---|---|---|---|
{rows}
""")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
