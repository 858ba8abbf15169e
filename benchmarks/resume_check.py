"""Resume check on the real bundled MiniLM: does a run killed mid-training and started again end with
the same model and the same dev scores as one never interrupted?

Set-up (issue 14): NER card ``ner/ncbi_disease``, config ``ner/minilm``, overrides
``max_train_examples=300 max_steps=60 eval_strategy=steps eval_steps=20 learning_rate=3e-4`` plus
``max_eval_examples=200`` (only to keep the three dev evaluations per run short; model selection is then
on 200 of the 923 dev sentences). Checkpoints are saved at every evaluation (steps 20, 40, 60). Three runs,
each a ``python -m clinical_ft.ner train ... --out DIR`` subprocess in its own directory:

1. ``uninterrupted``: the command once;
2. ``killed_after_checkpoint``: SIGKILL as soon as ``DIR/checkpoints/checkpoint-40/trainer_state.json``
   exists (polled every 0.05 s), then the same command again (it resumes from checkpoint-40);
3. ``killed_during_save``: SIGKILL as soon as the folder ``DIR/checkpoints/checkpoint-40`` exists but
   ``trainer_state.json`` in it does not yet (polled every 0.01 s; if the window is missed the run is
   started afresh, up to 3 tries, after which ``trainer_state.json`` is deleted after the kill to
   simulate it, and the result says so), then the same command again (it should resume from
   checkpoint-20).

For each run: sha256 of ``model.safetensors``, ``metrics.json`` validation f1/precision/recall/loss,
train_loss, global_steps, resumed/resumed_from_step/resumes, train_runtime_s; for the interrupted runs
the wall time of both commands and the stderr lines of the second that mention resuming or an
incomplete checkpoint. ``--code`` picks the clinical_ft source tree to run (``PYTHONPATH`` = it, cwd = it),
``--label`` the key of the results JSON it fills, so the same script measures the code before a change:

    # new code (this repository), then the old code from a clone at the older commit
    HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS=2 \\
      python benchmarks/resume_check.py --label after --data-dir ../shared/data
    HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS=2 \\
      python benchmarks/resume_check.py --label before --code <clone at 56397e7> --data-dir ../shared/data
    python benchmarks/resume_check.py --markdown-only     # rewrite results/resume_minilm.md from the JSON

Writes ``benchmarks/results/resume_minilm.json`` (the label's entry replaced, others kept) and ``.md``.
Run one training at a time on a 2-core machine (this script runs its subprocesses one after another).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, now_utc, write_json, write_text  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
OVERRIDES = ["max_train_examples=300", "max_steps=60", "eval_strategy=steps", "eval_steps=20",
             "learning_rate=3e-4", "max_eval_examples=200"]
RUNS = ("uninterrupted", "killed_after_checkpoint", "killed_during_save")
KILL_STEP = 40
MAX_TRIES = 3
PATTERNS = ("resum", "incomplete", "not saved whole")


def command(python: str, out: Path, data_dir: str | None) -> list[str]:
    cmd = [python, "-m", "clinical_ft.ner", "train", "--card", "ner/ncbi_disease", "--config", "ner/minilm",
           "--out", str(out)]
    if data_dir:
        cmd += ["--data-dir", data_dir]
    return cmd + OVERRIDES


def env_for(code: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(PYTHONPATH=str(code), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env.setdefault("OMP_NUM_THREADS", "2")
    return env


def start(cmd: list[str], code: Path, log: Path) -> tuple[subprocess.Popen, Any, Any]:
    out = (log.with_suffix(".stdout")).open("w", encoding="utf-8")
    err = (log.with_suffix(".stderr")).open("w", encoding="utf-8")
    proc = subprocess.Popen(cmd, cwd=code, env=env_for(code), stdout=out, stderr=err, start_new_session=True)
    return proc, out, err


def finish(proc: subprocess.Popen, files: tuple[Any, Any]) -> int:
    rc = proc.wait()
    for f in files:
        f.close()
    return rc


def run_to_end(cmd: list[str], code: Path, log: Path) -> dict[str, Any]:
    t0 = time.perf_counter()
    proc, o, e = start(cmd, code, log)
    rc = finish(proc, (o, e))
    return {"rc": rc, "wall_s": round(time.perf_counter() - t0, 2), "stderr": log.with_suffix(".stderr")}


def kill_when(cmd: list[str], code: Path, log: Path, ready: Any, poll: float, too_late: Any = None,
              limit_s: float = 1800) -> dict[str, Any]:
    """Start `cmd`; SIGKILL its process group when `ready()` is true (polled every `poll` s).
    `too_late()` true before `ready()` means the window was missed (the process is then killed too)."""
    t0 = time.perf_counter()
    proc, o, e = start(cmd, code, log)
    missed = False
    while proc.poll() is None and time.perf_counter() - t0 < limit_s:
        if ready():
            break
        if too_late is not None and too_late():
            missed = True
            break
        time.sleep(poll)
    finished_first = proc.poll() is not None
    if not finished_first:
        os.killpg(proc.pid, signal.SIGKILL)  # our own child's session: it and nothing else
    rc = finish(proc, (o, e))
    return {"rc": rc, "wall_s": round(time.perf_counter() - t0, 2), "killed": not finished_first,
            "missed_window": missed, "finished_before_kill": finished_first}


def sha256(path: Path) -> str | None:
    if not path.is_file():
        return None
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def ckpt_listing(out: Path) -> dict[str, list[str]]:
    folder = out / "checkpoints"
    if not folder.is_dir():
        return {}
    return {p.name: sorted(x.name for x in p.iterdir()) for p in sorted(folder.iterdir()) if p.is_dir()}


def state_ok(path: Path) -> bool:
    try:
        json.loads(path.read_text(encoding="utf-8"))
        return True
    except (OSError, ValueError):
        return False


def interesting(stderr: Path, out: Path, code: Path, data_dir: str | None) -> list[str]:
    """stderr lines about resuming / incomplete checkpoints, machine paths replaced by placeholders."""
    if not stderr.is_file():
        return []
    lines = [ln.strip() for ln in stderr.read_text(encoding="utf-8", errors="replace").splitlines()
             if any(p in ln.lower() for p in PATTERNS)]
    return [scrub(ln, out, code, data_dir) for ln in lines]


def scrub(text: str, out: Path, code: Path, data_dir: str | None) -> str:
    text = text.replace(str(out), "<run>").replace(str(code), "<code>")
    if data_dir:
        text = text.replace(str(Path(data_dir).resolve()), "<data>").replace(data_dir, "<data>")
    return text.replace(sys.prefix, "<venv>")


def tail(stderr: Path, out: Path, code: Path, data_dir: str | None, n: int = 6) -> list[str]:
    if not stderr.is_file():
        return []
    lines = [ln.rstrip() for ln in stderr.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
    lines = [ln for ln in lines if "it/s]" not in ln and "s/it]" not in ln  # tqdm bars
             and ln.strip().strip("^~ ")]  # traceback carets
    return [scrub(ln, out, code, data_dir) for ln in lines[-n:]]


def result_of(out: Path) -> dict[str, Any]:
    m_path = out / "metrics.json"
    if not m_path.is_file():
        return {"finished": False}
    m = json.loads(m_path.read_text(encoding="utf-8"))
    val = m.get("validation", {})
    return {"finished": True, "sha256": sha256(out / "model.safetensors"),
            "validation": {k: val.get(k) for k in ("f1", "precision", "recall", "loss")},
            **{k: m.get(k) for k in ("train_loss", "global_steps", "resumed", "resumed_from_step", "resumes",
                                     "train_runtime_s", "best_checkpoint_metric", "limited_reasons")}}


def one_run(kind: str, args: argparse.Namespace, code: Path, work: Path) -> dict[str, Any]:
    out = work / kind
    shutil.rmtree(out, ignore_errors=True)
    cmd = command(args.python, out, args.data_dir)
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    ck = out / "checkpoints" / f"checkpoint-{KILL_STEP}"
    rec: dict[str, Any] = {"load_before": list(os.getloadavg()), "started": now_utc()}
    print(f"[{args.label}] {kind} ...", flush=True)
    if kind == "uninterrupted":
        r = run_to_end(cmd, code, logs / kind)
        rec.update(rc=r["rc"], wall_s=r["wall_s"])
        if r["rc"]:
            rec["error"] = tail(r["stderr"], out, code, args.data_dir)
    else:
        tries = []
        simulated = False
        for attempt in range(1, MAX_TRIES + 1):
            shutil.rmtree(out, ignore_errors=True)
            if kind == "killed_after_checkpoint":
                first = kill_when(cmd, code, logs / f"{kind}_first", lambda: (ck / "trainer_state.json").exists(), 0.05)
            else:
                first = kill_when(cmd, code, logs / f"{kind}_first{attempt}",
                                  lambda: ck.is_dir() and not (ck / "trainer_state.json").exists(), 0.01,
                                  too_late=lambda: (ck / "trainer_state.json").exists())
            first["checkpoints_after_kill"] = ckpt_listing(out)
            if (ck / "trainer_state.json").exists():
                first["trainer_state_valid_json"] = state_ok(ck / "trainer_state.json")
            tries.append(first)
            if kind == "killed_after_checkpoint" or not first["missed_window"]:
                break
        if kind == "killed_during_save" and tries[-1]["missed_window"]:
            (ck / "trainer_state.json").unlink(missing_ok=True)  # simulate the kill inside the save
            simulated = True
        rec["first"] = tries[-1]
        if len(tries) > 1:
            rec["tries"] = len(tries)
            rec["missed_tries"] = tries[:-1]
        rec["simulated_by_deleting_trainer_state"] = simulated
        second = run_to_end(cmd, code, logs / f"{kind}_second")
        rec["second"] = {"rc": second["rc"], "wall_s": second["wall_s"],
                         "resume_lines": interesting(second["stderr"], out, code, args.data_dir)}
        if second["rc"]:
            rec["second"]["error"] = tail(second["stderr"], out, code, args.data_dir)
        rec["wall_s"] = round(first["wall_s"] + second["wall_s"], 2)
        rec["rc"] = second["rc"]
    rec.update(result_of(out))
    print(json.dumps({k: rec.get(k) for k in ("rc", "wall_s", "sha256", "validation", "global_steps",
                                               "resumed_from_step")}), flush=True)
    return rec


def compare(runs: dict[str, Any]) -> dict[str, Any]:
    base = runs.get("uninterrupted", {})
    outc = {}
    for kind, r in runs.items():
        if kind == "uninterrupted":
            continue
        if not r.get("finished") or not base.get("finished"):
            outc[kind] = {"same_sha256": None, "same_validation": None, "note": "did not finish"}
            continue
        outc[kind] = {"same_sha256": r["sha256"] == base["sha256"],
                      "same_validation": r["validation"] == base["validation"],
                      "delta_f1": (r["validation"]["f1"] or 0) - (base["validation"]["f1"] or 0),
                      "same_train_loss": r["train_loss"] == base["train_loss"],
                      "train_loss_rel_diff": abs(r["train_loss"] - base["train_loss"]) / max(abs(base["train_loss"]), 1e-12)
                      if r.get("train_loss") is not None and base.get("train_loss") is not None else None}
    return outc


def code_id(code: Path) -> str:
    try:
        rev = subprocess.run(["git", "-C", str(code), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(code), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
        return rev + (" + uncommitted changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def fmt(x: Any, nd: int = 4) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{nd}f}"
    return str(x)


def markdown(data: dict[str, Any]) -> str:
    lines = ["# Resume check: bundled MiniLM, NCBI-disease (LIMITED)", "",
             "Generated by `benchmarks/resume_check.py` (commands in its docstring). Card `ner/ncbi_disease`, "
             "config `ner/minilm`, overrides `" + " ".join(OVERRIDES) + "` (`max_eval_examples=200` only keeps "
             "the dev evaluations short). Checkpoints at steps 20/40/60; kills hit checkpoint-40. "
             "LIMITED: 300 training sentences, 60 steps: this checks resume exactness, not quality.", ""]
    if data.get("reading"):  # a hand-written summary stored in the JSON (not produced by a run)
        lines += ["Reading:", ""] + [f"- {x}" for x in data["reading"]] + [""]
    labels = [k for k in ("after", "before") if k in data] + sorted(
        k for k in data if k not in ("after", "before", "setup", "reading"))
    for label in labels:
        d = data[label]
        lines += [f"## {label}: code {d.get('code')} ({d.get('date')})", ""]
        if d.get("note"):
            lines += [d["note"], ""]
        lines += [
                  "| run | rc | model sha256 (first 12) | dev F1 | dev P | dev R | dev loss | train_loss | steps "
                  "| resumed (from step, resumes) | train_runtime_s | wall s (1st + 2nd) |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for kind in RUNS:
            r = d["runs"].get(kind)
            if r is None:
                continue
            v = r.get("validation", {})
            wall = fmt(r.get("wall_s"), 1)
            if "first" in r:
                wall = f"{fmt(r['first']['wall_s'], 1)} + {fmt(r['second']['wall_s'], 1)}"
            res = "-" if r.get("resumed") is None else f"{r.get('resumed')} ({fmt(r.get('resumed_from_step'))}, " \
                f"{fmt(r.get('resumes'))})"
            sha = (r.get("sha256") or "-")[:12]
            lines.append(f"| {kind} | {r.get('rc')} | `{sha}` | {fmt(v.get('f1'))} | {fmt(v.get('precision'))} | "
                         f"{fmt(v.get('recall'))} | {fmt(v.get('loss'))} | {fmt(r.get('train_loss'))} | "
                         f"{fmt(r.get('global_steps'))} | {res} | {fmt(r.get('train_runtime_s'), 1)} | {wall} |")
        lines.append("")
        for kind, c in d.get("comparison", {}).items():
            lines.append(f"- {kind} vs uninterrupted: same sha256 {c.get('same_sha256')}, same dev scores "
                         f"{c.get('same_validation')}" + (f", ΔF1 {c['delta_f1']:+.4f}" if "delta_f1" in c else "")
                         + (f", same train_loss {c.get('same_train_loss')}" if "same_train_loss" in c else "")
                         + (f" (relative difference {c['train_loss_rel_diff']:.1e})" if c.get("train_loss_rel_diff") else ""))
        for kind in RUNS[1:]:
            r = d["runs"].get(kind)
            if not r:
                continue
            first = r.get("first", {})
            extra = ""
            if r.get("simulated_by_deleting_trainer_state"):
                extra = " (window missed every try: trainer_state.json deleted after the kill to simulate it)"
            elif r.get("tries"):
                extra = f" (caught on try {r['tries']})"
            after = ", ".join(f"{k}: {len(v)} files" + ("" if "trainer_state.json" in v else " (no trainer_state.json)")
                              for k, v in first.get("checkpoints_after_kill", {}).items())
            lines.append(f"- {kind}: first command killed after {fmt(first.get('wall_s'), 1)} s{extra}; "
                         f"checkpoints left: {after or 'none'}")
            for ln in r.get("second", {}).get("resume_lines", []):
                if "clinical_ft:" in ln:  # the log lines; traceback lines that happen to match are in the JSON
                    lines.append(f"  - second command: `{ln}`")
            errors = [ln.strip() for ln in r.get("second", {}).get("error", []) if ln.strip().strip("^~ ")]
            if r.get("rc") and errors:
                lines.append(f"  - second command failed (rc {r['rc']}): `{errors[-1]}`")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--code", default=str(REPO), help="clinical_ft source tree to run (default: this repository)")
    ap.add_argument("--label", default="after", help="key in the results JSON (after / before)")
    ap.add_argument("--data-dir", default=None, help="passed to --data-dir of the train commands")
    ap.add_argument("--runs", default=",".join(RUNS), help="comma-separated subset of " + ", ".join(RUNS))
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--work", default=None, help="scratch folder for the run directories (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the run directories")
    ap.add_argument("--results", default=str(RESULTS / "resume_minilm.json"))
    ap.add_argument("--note", default="", help="a sentence stored with this label's results and shown in the .md")
    ap.add_argument("--markdown-only", action="store_true", help="only rewrite the .md from the JSON")
    args = ap.parse_args()
    res_path = Path(args.results)
    data = json.loads(res_path.read_text(encoding="utf-8")) if res_path.is_file() else {}
    if not args.markdown_only:
        code = Path(args.code).resolve()
        work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="resume_check_"))
        work.mkdir(parents=True, exist_ok=True)
        runs = {}
        for kind in [k.strip() for k in args.runs.split(",") if k.strip()]:
            if kind not in RUNS:
                ap.error(f"unknown run {kind!r}; choose from {', '.join(RUNS)}")
            runs[kind] = one_run(kind, args, code, work)
        cmd = " ".join(command("python", Path("DIR"), "<data>" if args.data_dir else None))
        data["setup"] = {"command": cmd, "overrides": OVERRIDES, "kill_step": KILL_STEP,
                         "note": "max_eval_examples=200 only keeps the dev evaluations short (LIMITED run)",
                         "env": "HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS="
                                + os.environ.get("OMP_NUM_THREADS", "2")}
        data[args.label] = {"code": code_id(code), "date": now_utc(), "machine": machine(), "runs": runs,
                            "comparison": compare(runs), **({"note": args.note} if args.note else {})}
        write_json(res_path, data)
        if not args.keep and not args.work:
            shutil.rmtree(work, ignore_errors=True)
    write_text(res_path.with_suffix(".md"), markdown(data))
    print(f"wrote {res_path} and {res_path.with_suffix('.md').name}")


if __name__ == "__main__":
    main()
