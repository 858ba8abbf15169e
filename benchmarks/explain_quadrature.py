"""Integrated-gradient quadratures on real windows: how many gradients each adaptive scheme needs to
reach |delta| <= 5% of |f(x) - f(baseline)|, and how far its accepted per-token attributions are from
a 64-point Gauss-Legendre reference (L1 distance / L1 norm of the reference).

Windows: the two highest-probability windows of the first --notes demo test admissions (256 tokens
at most) and one 510-token MTSamples window; target: log-odds of readmission (as ``explain``).
Per window, all from captum's LayerIntegratedGradients:

- Gauss-Legendre with 4, 8, 16, 32, 64 points (each a fresh round: doubling from 4 costs 4 + 8 + 16 ...);
- the nested trapezoid rule: T_4 (captum's ``riemann_trapezoid`` on 5 points, whose weights sum to
  4/5, rescaled by 5/4), then T_2n = (T_n + M_n) / 2 with M_n captum's ``riemann_middle`` on n points
  (T_16 costs 17 gradients in all);
- Romberg (Richardson) extrapolation of those trapezoid values, per token.

    OMP_NUM_THREADS=1 python benchmarks/explain_quadrature.py --run /tmp/i17demo --notes 12 \\
        --out benchmarks/results/explain_quadrature.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from explain_bench import note_text  # noqa: E402

POINTS = {4: 5, 8: 9, 16: 17, 32: 33, 64: 65}  # gradients of the nested T_n (n intervals)


def window_row(model, tok, lig, ids_list: list[int]) -> dict:
    import torch

    from clinical_ft.interpret.attribution import baseline_ids

    ids, base = torch.tensor([ids_list]), torch.tensor([baseline_ids(ids_list, tok)])
    mask = torch.ones_like(ids)
    with torch.no_grad():
        v, b = (float(x) for x in lig.forward_func(torch.cat([ids, base]), mask))
    diff = v - b

    def attr(n: int, rule: str) -> np.ndarray:
        out = lig.attribute(ids, baselines=base, additional_forward_args=(mask,), n_steps=n, method=rule,
                            internal_batch_size=min(n, 4096 // len(ids_list)))
        return out.sum(-1)[0].double().numpy()

    gl = {n: attr(n, "gausslegendre") for n in POINTS}
    trap = {4: attr(5, "riemann_trapezoid") * 5 / 4}  # captum's trapezoid weights sum to (n-1)/n
    for n in (4, 8, 16, 32):
        trap[2 * n] = (trap[n] + attr(n, "riemann_middle")) / 2
    r1 = {n: (4 * trap[2 * n] - trap[n]) / 3 for n in (4, 8, 16, 32)}
    r2 = {n: (16 * r1[2 * n] - r1[n]) / 15 for n in (4, 8, 16)}
    r3 = {n: (64 * r2[2 * n] - r2[n]) / 63 for n in (4, 8)}
    romberg = {4: trap[4], 8: r1[4], 16: r2[4], 32: r3[4], 64: (256 * r3[8] - r3[4]) / 255}
    ref = gl[64]

    def pair(s: np.ndarray) -> list[float]:  # [relative delta, token L1 error vs the reference]
        return [abs(s.sum() - diff) / abs(diff), float(np.abs(s - ref).sum() / np.abs(ref).sum())]

    return {"T": len(ids_list), "diff": diff, "gl": {n: pair(s) for n, s in gl.items()},
            "trap": {n: pair(s) for n, s in trap.items()}, "romberg": {n: pair(s) for n, s in romberg.items()}}


def summary(rows: list[dict], tol: float = 0.05) -> dict[str, dict]:
    """Per scheme: windows reaching `tol`, mean gradients spent (discarded rounds included), and the
    median / max token error of the accepted attributions."""
    def gl_from(r: dict, start: int):
        spent, n = 0, start
        while n <= 64:
            spent += n
            if r["gl"][str(n)][0] <= tol:
                return spent, r["gl"][str(n)][1]
            n *= 2
        return None

    def nested(r: dict, key: str):
        return next(((POINTS[int(n)], r[key][n][1]) for n in ("4", "8", "16", "32", "64") if r[key][n][0] <= tol), None)

    schemes = {"Gauss-Legendre doubling from 4": lambda r: gl_from(r, 4),
               "Gauss-Legendre doubling from 8": lambda r: gl_from(r, 8),
               "Gauss-Legendre doubling from 16": lambda r: gl_from(r, 16),
               "nested trapezoid": lambda r: nested(r, "trap"), "nested trapezoid + Romberg": lambda r: nested(r, "romberg")}
    out = {}
    for name, fn in schemes.items():
        ok = [x for x in map(fn, rows) if x]
        out[name] = {"converged": len(ok), "windows": len(rows), "gradients_mean": statistics.mean(x[0] for x in ok),
                     "token_error_median": statistics.median(x[1] for x in ok), "token_error_max": max(x[1] for x in ok)}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="folder of `python -m clinical_ft.readmission demo --out DIR`")
    p.add_argument("--notes", type=int, default=12)
    p.add_argument("--out", default="benchmarks/results/explain_quadrature.json")
    args = p.parse_args(argv)
    import pandas as pd
    import torch
    from captum.attr import LayerIntegratedGradients

    from clinical_ft.chunking import tokenize_windows
    from clinical_ft.engine import load_run
    from clinical_ft.interpret.attribution import class_log_odds, embedding_layer
    from clinical_ft.readmission.task import TASK

    run = load_run(TASK, Path(args.run) / "run")
    model, tok = run.model.eval(), run.tokenizer
    for prm in model.parameters():
        prm.requires_grad_(False)
    test = pd.read_csv(Path(args.run) / "data" / "test.csv", dtype={"admission_id": str})
    windows = []
    for text in test.text.head(args.notes):
        ws = tokenize_windows(tok, [text], max_length=run.cfg.max_length, stride=run.cfg.stride)
        with torch.no_grad():
            pr = [float(torch.softmax(model(input_ids=torch.tensor([w.input_ids])).logits[0], -1)[1]) for w in ws]
        windows += [ws[i].input_ids for i in np.argsort(pr)[::-1][:2]]
    windows.append(tokenize_windows(tok, [note_text(tok, 510)], max_length=512, stride=128)[0].input_ids)
    select = class_log_odds(1)
    lig = LayerIntegratedGradients(lambda inp, am: select(model(input_ids=inp, attention_mask=am.expand(inp.shape[0], -1))),
                                   embedding_layer(model))
    rows = []
    for w in windows:
        rows.append(window_row(model, tok, lig, w))
        print(json.dumps(rows[-1]), flush=True)
    res = {"command": "python benchmarks/explain_quadrature.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "windows": rows, "summary": summary(json.loads(json.dumps(rows)))}
    Path(args.out).write_text(json.dumps(res, indent=1))
    print(json.dumps(res["summary"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
