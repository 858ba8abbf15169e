"""NCBI-disease NER benchmark: clinical_ft (shipped config) vs a plain Hugging Face Trainer set up
like ``run_ner.py`` (benchmarks/ner_baseline_hf.py), same encoder (bundled MiniLM), same data.

Two parts, every configuration in its own subprocess (so peak RSS is per configuration):

- speed: both sides train one epoch over the same first ``--steps`` x 8 training sentences
  (``--steps`` baseline optimizer steps of batch 8; ours covers the same sentences in its own
  batch size), without evaluation, alternating baseline/ours/ours/baseline... for ``--reps``
  rounds. Examples/s and real (non-pad) tokens/s come from the Trainer's ``train_runtime``
  and a counting collator; the ratio is taken per round and summarised by the median.
- quality: ours through the CLI (``python -m clinical_ft.ner train`` with the shipped config,
  then ``evaluate --split test``), the baseline through ner_baseline_hf.py (``--do-predict``),
  both on the full training set for ``--epochs`` epochs unless ``--max-train-examples``.
  End-to-end throughput of these runs is reported too (not interleaved: noisier).

A third part (``--ab-seconds``) runs benchmarks/ner_ab.py: both sides in ONE process, alternating
turns of 32 sentences, the fairest ratio on a machine whose load changes.

Full protocol (needs an idle machine, ~1 h):
    python benchmarks/ner_ncbi.py --epochs 3 --steps 168 --reps 3 --ab-seconds 600 --out benchmarks/results
What was run for the committed results: see benchmarks/results/ner_ncbi.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import shlex
import statistics
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from common import (  # noqa: E402
    CountingCollator,
    machine,
    now_utc,
    run_measured,
    start_measured,
    wait_measured,
    write_json,
    write_text,
)

CARD = "tasks/ner/ncbi_disease.yaml"
CONFIG = "configs/ner/minilm.yaml"
BASELINE_BATCH = 8


def _ours_worker(work: Path, n_examples: int, config: str, overrides: list[str]) -> int:
    """Train ours (engine.train, shipped config) one epoch on the first `n_examples` sentences, no eval."""
    from clinical_ft import engine, registry
    from clinical_ft.ner import NerTask

    class CountingNer(NerTask):
        counter: CountingCollator | None = None

        def collator(self, tokenizer: Any) -> Any:
            self.counter = CountingCollator(super().collator(tokenizer))
            return self.counter

    task = CountingNer()
    card = registry.load_card(CARD)
    cfg = registry.load_config(config, [f"max_train_examples={n_examples}", "num_train_epochs=1",
                                        "eval_strategy=no", "max_eval_examples=1", *overrides], task)
    m = engine.train(task, card, cfg, work, overwrite=True)
    c = task.counter
    runtime = m["train_runtime_s"]
    out = {"side": "ours", "train_runtime_s": runtime, "examples_seen": c.examples, "tokens_seen": c.tokens,
           "padded_tokens_seen": c.padded, "global_steps": m["global_steps"],
           "train_examples_per_s": c.examples / runtime, "train_tokens_per_s": c.tokens / runtime,
           "batch_size": cfg.per_device_train_batch_size, "learning_rate": cfg.learning_rate,
           "peak_rss_mb": engine.peak_memory_mb()}
    write_json(work / "speed.json", out)
    return 0


def _py() -> str:
    return sys.executable


def speed_part(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    n = args.steps * BASELINE_BATCH
    runs: list[dict[str, Any]] = []
    for rep in range(args.reps):
        order = ["baseline", "ours"] if rep % 2 == 0 else ["ours", "baseline"]
        for side in order:
            d = work / f"speed_{side}_{rep}"
            d.mkdir(parents=True, exist_ok=True)
            if side == "baseline":
                cmd = [_py(), str(HERE / "ner_baseline_hf.py"), "--out", str(d), "--epochs", "1",
                       "--max-train-examples", str(n)]
                result_file = d / "metrics.json"
            else:
                cmd = [_py(), str(Path(__file__).resolve()), "--worker", "ours", "--work", str(d),
                       "--steps", str(args.steps), "--config", args.config, *args.overrides]
                result_file = d / "speed.json"
            if args.reuse and result_file.is_file():
                print(f"reusing the finished speed run {d}", flush=True)
                proc = {"rc": 0, "peak_rss_mb": json.loads(result_file.read_text())["peak_rss_mb"],
                        "loadavg_before": None}
            else:
                proc = run_measured(cmd, d / "log.txt", {"HF_HUB_OFFLINE": "1"})
            if proc["rc"] != 0:
                raise SystemExit(f"{side} speed run failed; see {proc['log']}")
            m = json.loads(result_file.read_text())
            runs.append({"rep": rep, "side": side, **{k: m[k] for k in (
                "train_runtime_s", "examples_seen", "tokens_seen", "padded_tokens_seen", "global_steps",
                "train_examples_per_s", "train_tokens_per_s", "batch_size", "learning_rate")},
                "peak_rss_mb": proc["peak_rss_mb"], "loadavg_before": proc["loadavg_before"]})
            print(f"speed rep {rep} {side}: {m['train_tokens_per_s']:.0f} tok/s, {m['train_examples_per_s']:.1f} ex/s",
                  flush=True)
    ratios = []
    for rep in range(args.reps):
        b = next(r for r in runs if r["rep"] == rep and r["side"] == "baseline")
        o = next(r for r in runs if r["rep"] == rep and r["side"] == "ours")
        ratios.append({"rep": rep, "examples_per_s": o["train_examples_per_s"] / b["train_examples_per_s"],
                       "tokens_per_s": o["train_tokens_per_s"] / b["train_tokens_per_s"]})

    def med(side: str, key: str) -> float:
        return statistics.median(r[key] for r in runs if r["side"] == side)

    return {"sentences": n, "reps": args.reps, "runs": runs, "ratios": ratios,
            "median": {s: {k: med(s, k) for k in ("train_examples_per_s", "train_tokens_per_s", "peak_rss_mb")}
                       for s in ("baseline", "ours")},
            "ratio_examples_per_s": statistics.median(r["examples_per_s"] for r in ratios),
            "ratio_tokens_per_s": statistics.median(r["tokens_per_s"] for r in ratios)}


def ab_part(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """One process, both sides in alternating turns of 32 sentences (benchmarks/ner_ab.py)."""
    path = work / "ab.json"
    cmd = [_py(), str(HERE / "ner_ab.py"), "--seconds", str(args.ab_seconds), "--out", str(path), *args.overrides]
    if not (args.reuse and path.is_file()):
        proc = run_measured(cmd, work / "ab.log", {"HF_HUB_OFFLINE": "1"})
        if proc["rc"] != 0:
            raise SystemExit(f"A/B speed run failed; see {proc['log']}")
    else:
        print(f"reusing the finished A/B run {path}", flush=True)
    return json.loads(path.read_text())


def _quality_commands(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    limit = ["--max-train-examples", str(args.max_train_examples)] if args.max_train_examples else []
    bdir, odir = work / "quality_baseline", work / "quality_ours"
    bcmd = [_py(), str(HERE / "ner_baseline_hf.py"), "--out", str(bdir), "--epochs", str(args.epochs),
            "--do-eval", "--do-predict", *limit]
    extra = [f"num_train_epochs={args.epochs}", *([f"max_train_examples={args.max_train_examples}"]
                                                  if args.max_train_examples else []), *args.overrides]
    ocmd = [_py(), "-m", "clinical_ft.ner", "train", "--card", CARD, "--config", args.config, "--out", str(odir),
            "--overwrite", *extra]
    ecmd = [_py(), "-m", "clinical_ft.ner", "evaluate", "--model", str(odir), "--split", "test"]
    return {"bdir": bdir, "odir": odir, "bcmd": bcmd, "ocmd": ocmd, "ecmd": ecmd}


def _quality_env(args: argparse.Namespace) -> dict[str, str]:
    env = {"HF_HUB_OFFLINE": "1"}
    if args.quality_threads:
        env["OMP_NUM_THREADS"] = str(args.quality_threads)
    return env


def start_quality(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Start (or, with --reuse, find finished) quality runs; sequential unless --parallel-quality."""
    c = _quality_commands(args, work)
    jobs: dict[str, Any] = {}
    procs: dict[str, dict[str, Any]] = {}
    for side, cmd, d in (("baseline", c["bcmd"], c["bdir"]), ("ours", c["ocmd"], c["odir"])):
        done = d / "metrics.json"
        if args.reuse and done.is_file():
            print(f"reusing the finished {side} run in {d}", flush=True)
            procs[side] = {"reused": True, "finished": dt.datetime.fromtimestamp(
                done.stat().st_mtime, dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
            continue
        d.mkdir(parents=True, exist_ok=True)
        jobs[side] = start_measured(cmd, work / f"quality_{side}.log", _quality_env(args))
        if not args.parallel_quality:
            procs[side] = wait_measured(jobs.pop(side))
    return {"jobs": jobs, "procs": procs}


def quality_part(args: argparse.Namespace, work: Path, started: dict[str, Any]) -> dict[str, Any]:
    """Wait for the quality runs, score ours on test, collect both sides' metrics."""
    c = _quality_commands(args, work)
    bdir, odir, bcmd, ocmd, ecmd = c["bdir"], c["odir"], c["bcmd"], c["ocmd"], c["ecmd"]
    procs = started["procs"]
    for side, job in started["jobs"].items():
        procs[side] = wait_measured(job)
    for side, proc in procs.items():
        if proc.get("rc", 0) != 0:
            raise SystemExit(f"{side} quality run failed; see {proc['log']}")
    if not (args.reuse and (odir / "eval_test.json").is_file()):
        if run_measured(ecmd, work / "quality_ours_eval.log", _quality_env(args))["rc"] != 0:
            raise SystemExit(f"ours evaluate failed; see {work / 'quality_ours_eval.log'}")
    bm = json.loads((bdir / "metrics.json").read_text())
    om = json.loads((odir / "metrics.json").read_text())
    ot = json.loads((odir / "eval_test.json").read_text())
    return {
        "concurrent": bool(args.parallel_quality), "threads": args.quality_threads,
        "baseline": {"command": shlex.join(bcmd), "process": procs["baseline"], "test": bm["test"],
                     "validation": bm.get("validation"), "train_runtime_s": bm["train_runtime_s"],
                     "train_examples_per_s": bm["train_examples_per_s"], "train_tokens_per_s": bm["train_tokens_per_s"],
                     "epochs_run": bm["epochs_run"], "train_examples": bm["train_examples"],
                     "peak_rss_mb": bm["peak_rss_mb"], "padding_ratio": bm["padded_tokens_seen"] / bm["tokens_seen"]},
        "ours": {"command": shlex.join(ocmd) + " && " + shlex.join(ecmd), "process": procs["ours"],
                 "test": {k: ot[k] for k in ("precision", "recall", "f1", "examples", "seconds")},
                 "validation": om.get("validation"), "train_runtime_s": om["train_runtime_s"],
                 "train_examples_per_s": om["train_samples_per_second"],
                 "train_tokens_per_s": om["train_tokens_per_second"], "epochs_run": om["epochs_run"],
                 "train_examples": om["train_examples"], "peak_rss_mb": om["peak_memory_mb"],
                 "note": "end-to-end train time of ours includes its per-epoch dev evaluation and checkpoints"},
    }


def _load(loadavg: list[float] | None) -> str:
    return "n/a (reused run)" if not loadavg or math.isnan(loadavg[0]) else f"{loadavg[0]:.2f}"


def _fmt(x: Any, nd: int = 1) -> str:
    return f"{x:,.{nd}f}" if isinstance(x, (int, float)) else str(x)


def render(res: dict[str, Any]) -> str:
    m = res["machine"]
    lines = [
        "# NER benchmark: NCBI-disease, bundled MiniLM-L6",
        "",
        f"Date: {res['date']}. Machine: {m['nproc']} CPUs ({m['cpu']}), torch {m['torch']}, transformers "
        f"{m['transformers']}, load average at start {', '.join(f'{x:.2f}' for x in m['loadavg'])}, "
        f"at end {', '.join(f'{x:.2f}' for x in res['loadavg_end'])} (a shared machine: absolute times are noise, ratios "
        "come from runs alternated in one invocation).",
        "",
        f"Command: `{res['command']}`",
        "",
        *([res["args"]["note"], ""] if res["args"].get("note") else []),
        "- **baseline**: plain `transformers.Trainer` as `run_ner.py` sets it up (benchmarks/ner_baseline_hf.py): "
        "batch 8, lr 5e-5, linear schedule, no warmup, random batches, dynamic padding, max_seq_length 512.",
        f"- **ours**: `python -m clinical_ft.ner` with `{res['config']}` (shipped values below).",
        "",
    ]
    if "quality" in res:
        q = res["quality"]
        b, o = q["baseline"], q["ours"]
        lines += [
            f"## Quality (test, seqeval entity level): {b['epochs_run']:g} epoch(s), {o['train_examples']} training "
            "sentences" + (" (LIMITED: not the full training set)" if res["args"]["max_train_examples"] else " (full set)"),
            "",
            "| | precision | recall | F1 | train time (s) | examples/s | tokens/s | peak RSS (MB) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name, r in (("baseline", b), ("ours", o)):
            t = r["test"]
            lines.append(f"| {name} | {t['precision']:.4f} | {t['recall']:.4f} | **{t['f1']:.4f}** | "
                         f"{_fmt(r['train_runtime_s'], 0)} | {_fmt(r['train_examples_per_s'])} | "
                         f"{_fmt(r['train_tokens_per_s'], 0)} | {_fmt(r['peak_rss_mb'], 0)} |")
        how = ("both at the same time" if q.get("concurrent") else "one after the other") + (
            f", OMP_NUM_THREADS={q['threads']}" if q.get("threads") else "")
        lines += ["", f"The two runs ran {how}, while the speed part and other jobs shared the CPUs.",
                  "", f"F1 difference (ours - baseline): {o['test']['f1'] - b['test']['f1']:+.4f}. Baseline test words "
                  f"lost to truncation: {b['test'].get('words_lost_to_truncation')}. "
                  f"End-to-end speed ratio of these two runs (not interleaved; ours includes per-epoch dev "
                  f"evaluation and checkpointing): {o['train_examples_per_s'] / b['train_examples_per_s']:.2f}x "
                  "examples/s.", "",
                  f"- baseline: `{b['command']}`", f"- ours: `{o['command']}`", ""]
    if "speed" in res:
        s = res["speed"]
        lines += [
            f"## Training speed, interleaved: {s['sentences']} sentences (one epoch each), {s['reps']} rounds "
            "alternating baseline/ours",
            "",
            "| round | side | batch | steps | examples/s | tokens/s | padding (padded/real tokens) | peak RSS (MB) | "
            "load avg (1 min) |",
            "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in s["runs"]:
            lines.append(f"| {r['rep']} | {r['side']} | {r['batch_size']} | {r['global_steps']} | "
                         f"{_fmt(r['train_examples_per_s'])} | {_fmt(r['train_tokens_per_s'], 0)} | "
                         f"{r['padded_tokens_seen'] / r['tokens_seen']:.2f} | {_fmt(r['peak_rss_mb'], 0)} | "
                         f"{_load(r['loadavg_before'])} |")
        per = ", ".join(f"{r['tokens_per_s']:.2f}" for r in s["ratios"])
        note = ("Both sides train one epoch on the same first sentences of train.tsv, without evaluation, "
                "default torch threads. On so small a set the length-grouped sampler sorts megabatches of only "
                "a quarter of the set (on the full set: ~1,350 sentences), so ours pads more here than in a "
                "full run: the ratio is conservative.")
        lines += ["", f"**Throughput ratio ours/baseline (median of rounds): {s['ratio_examples_per_s']:.2f}x "
                  f"examples/s, {s['ratio_tokens_per_s']:.2f}x tokens/s** (per round, tokens/s: {per}).", "", note, ""]
    if "ab" in res:
        a = res["ab"]
        b, o = a["baseline"], a["ours"]
        lines += [
            f"## Training speed, one process, interleaved turns ({a['turns']} turns of {a['sentences_per_turn']} "
            "sentences per side)",
            "",
            f"`{a['command']}` (benchmarks/ner_ab.py): both sides in one process, full training set, the sampler's "
            "batches in shuffled order, alternating turns of equal size (ABBA), so load changes hit both alike. "
            f"Load average at start {a['machine_start']['loadavg'][0]:.2f}, at end {a['loadavg_end'][0]:.2f}; "
            f"torch threads {a['machine_start']['torch_threads']}.",
            "",
            "| side | batch | steps | sentences | seconds | examples/s | real tokens/s | padding |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name, r in (("baseline", b), ("ours", o)):
            lines.append(f"| {name} | {r['batch_size']} | {r['steps']} | {r['examples']} | {_fmt(r['seconds'], 0)} | "
                         f"{_fmt(r['examples_per_s'], 2)} | {_fmt(r['tokens_per_s'], 0)} | {r['padding_ratio']:.2f} |")
        lines += ["", f"**Throughput ratio ours/baseline: {a['ratio_examples_per_s']:.2f}x examples/s, "
                  f"{a['ratio_tokens_per_s']:.2f}x real tokens/s.**", ""]
    lines += ["Shipped config values used by ours:", "", "```yaml", res["config_text"].rstrip(), "```", ""]
    return "\n".join(lines)


def _without_note(argv: list[str]) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--note":
            skip = True
        elif not a.startswith("--note="):
            out.append(a)
    return out + (["--note", "..."] if len(out) < len(argv) else [])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=float, default=3.0, help="epochs of both quality runs (default 3)")
    p.add_argument("--max-train-examples", type=int, help="limit both quality runs to the first N sentences")
    p.add_argument("--steps", type=int, default=96, help="speed part: baseline steps (x8 sentences) per run")
    p.add_argument("--reps", type=int, default=3, help="speed part: rounds of baseline+ours")
    p.add_argument("--out", default=str(HERE / "results"), help="folder for ner_ncbi.md and ner_ncbi.json")
    p.add_argument("--work", default="/tmp/ner_bench", help="scratch folder for runs and logs")
    p.add_argument("--config", default=CONFIG, help="our train config (default: the shipped one)")
    p.add_argument("--skip-speed", action="store_true", help="skip the subprocess-per-run speed rounds")
    p.add_argument("--ab-seconds", type=float, default=0,
                   help="also run ner_ab.py (one process, interleaved turns) for this long (0: skip)")
    p.add_argument("--skip-quality", action="store_true")
    p.add_argument("--reuse", action="store_true", help="reuse finished runs (quality, speed rounds, A/B) found in --work")
    p.add_argument("--parallel-quality", action="store_true",
                   help="run the two quality runs at the same time, and alongside the speed part")
    p.add_argument("--quality-threads", type=int, help="OMP_NUM_THREADS for the quality runs (default: inherit)")
    p.add_argument("--worker", choices=["ours"], help=argparse.SUPPRESS)
    p.add_argument("--note", help="a paragraph for the results file (e.g. how reused runs were produced)")
    p.add_argument("--render", metavar="JSON", help="only rewrite the markdown next to a results JSON")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="extra config overrides for ours")
    args = p.parse_args(argv)
    work = Path(args.work)
    if args.render:
        path = Path(args.render)
        write_text(path.with_suffix(".md"), render(json.loads(path.read_text(encoding="utf-8"))))
        return 0
    if args.worker:
        return _ours_worker(work, args.steps * BASELINE_BATCH, args.config, args.overrides)
    res: dict[str, Any] = {"date": now_utc(), "machine": machine(), "args": vars(args), "config": args.config,
                           "config_text": (ROOT / args.config).read_text(encoding="utf-8"),
                           "command": shlex.join(["python", "benchmarks/ner_ncbi.py", *_without_note(argv or sys.argv[1:])])}
    started = start_quality(args, work) if not args.skip_quality else None
    if not args.skip_speed:
        res["speed"] = speed_part(args, work)
    if args.ab_seconds:
        res["ab"] = ab_part(args, work)
    if started is not None:
        res["quality"] = quality_part(args, work, started)
    import os

    res["loadavg_end"] = list(os.getloadavg())
    out = Path(args.out)
    write_json(out / "ner_ncbi.json", res)
    write_text(out / "ner_ncbi.md", render(res))
    print((out / "ner_ncbi.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
