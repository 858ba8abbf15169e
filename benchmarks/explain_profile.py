"""Where the time of integrated gradients goes, on one 510-token window of the bundled MiniLM
(the trained demo model), 2 torch threads, every number in one process (ratios to a plain predict
of the same window measured alternately):

- one gradient evaluation (forward + input-only backward) per interpolation row, SDPA vs eager
  attention, at batches of 1, 4 and 8 rows;
- captum's per-call extra forwards (LayerIntegratedGradients evaluates the layer at the input and at
  the baseline on every ``attribute`` call, i.e. every round);
- a torch.profiler table of one adaptive IG (the default nested trapezoid rule).

    OMP_NUM_THREADS=2 python benchmarks/explain_profile.py --model RUN_DIR   # on a quiet machine; RUN_DIR: <demo --out>/run
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from explain_bench import note_text  # noqa: E402


def median_time(fn, n: int = 3) -> float:
    fn()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="a trained readmission run folder (e.g. the demo's run/)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    import torch
    from captum.attr._core.layer import layer_integrated_gradients as lig_module

    from clinical_ft.chunking import tokenize_windows
    from clinical_ft.engine import load_run
    from clinical_ft.interpret.attribution import _frozen, class_log_odds, integrated_gradients
    from clinical_ft.readmission.task import TASK

    torch.set_num_threads(args.threads)
    run = load_run(TASK, args.model)
    model, tok = run.model.eval(), run.tokenizer
    win = tokenize_windows(tok, [note_text(tok, 510)], max_length=512, stride=128)[0]
    ids = torch.tensor([win.input_ids])
    t = ids.shape[1]
    out: dict = {"tokens": t, "threads": torch.get_num_threads(), "loadavg_before": list(os.getloadavg())}

    def predict() -> None:
        with torch.no_grad():
            model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits.softmax(-1)

    def grad_rows(b: int) -> None:
        emb = model.get_input_embeddings()(ids.expand(b, -1)).detach().requires_grad_(True)
        logits = model(inputs_embeds=emb, attention_mask=torch.ones(b, t, dtype=torch.long)).logits
        torch.autograd.grad((logits[:, 1] - logits[:, 0]).sum(), emb)

    per_row = {}
    with _frozen(model):
        for impl in ("sdpa", "eager"):
            model.set_attn_implementation(impl)
            for b in (1, 4, 8):
                pred = median_time(predict, 5)
                per_row[f"{impl}_b{b}"] = median_time(lambda b=b: grad_rows(b)) / b / pred
        model.set_attn_implementation("sdpa")
    out["gradient_row_in_predicts"] = per_row

    spent = {"calls": 0, "s": 0.0}
    original = lig_module._forward_layer_eval

    def timed_eval(*a, **k):
        t0 = time.perf_counter()
        try:
            return original(*a, **k)
        finally:
            spent["calls"] += 1
            spent["s"] += time.perf_counter() - t0

    lig_module._forward_layer_eval = timed_eval
    try:
        pred = median_time(predict, 5)
        t0 = time.perf_counter()
        a = integrated_gradients(model, tok, win.input_ids, class_log_odds(1))
        ig_s = time.perf_counter() - t0
    finally:
        lig_module._forward_layer_eval = original
    out["ig"] = {"s": ig_s, "in_predicts": ig_s / pred, "rounds": a.rounds, "n_steps": a.n_steps,
                 "relative_delta": a.relative_delta, "gradients": a.n_steps + 1,
                 "captum_layer_evals": spent["calls"], "captum_layer_evals_in_predicts": spent["s"] / pred}
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        integrated_gradients(model, tok, win.input_ids, class_log_odds(1))
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15), file=sys.stderr)
    out["loadavg_after"] = list(os.getloadavg())
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
