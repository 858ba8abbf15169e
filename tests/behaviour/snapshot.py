"""Behaviour snapshot of the task CLIs: a tiny fixed-seed train -> evaluate -> predict run per task.

Not a pytest module (it is named snapshot.py and has no tests): a standalone script, written to
show that a refactoring (e.g. moving modules into task packages) changes no behaviour. For each
case it builds the 2-layer, 32-wide random BERT of tests/conftest.py (`tiny_encoder`), runs the
documented command lines (`python -m clinical_ft.<task> train|evaluate|predict ...`, one fresh
subprocess each, CPU only, 2 threads), and records eval_test.json (timing/memory/device keys
removed, temp paths shown as <TMP>, floats to 6 significant digits), global_steps/train_loss from metrics.json and the predict
output files (numbers in them rounded to 5 decimals).

Run from the repository root whose `clinical_ft` is to be snapshotted:

    # old code, a pristine copy of the commit before the change (git clone REPO /tmp/before):
    cd /tmp/before && PYTHONPATH=/tmp/before python REPO/tests/behaviour/snapshot.py --out REPO/tests/behaviour/before.json
    # new code, from the repository root:
    PYTHONPATH=. python tests/behaviour/snapshot.py --out /tmp/after.json
    python tests/behaviour/snapshot.py --compare tests/behaviour/before.json /tmp/after.json   # exit 1 on any difference

Options: --cases ner,qa_yesno (a subset), --keep DIR (keep run directories for inspection).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

FIX = Path("tests/fixtures")
COMMON = ["max_steps=3", "seed=7", "per_device_train_batch_size=2", "per_device_eval_batch_size=4",
          "eval_strategy=no", "logging_steps=1", "warmup_ratio=0.0"]
SMALL = ["max_length=48", "stride=8"]
QA_SIZE = ["max_length=96", "stride=24"]
DROP = re.compile(r"second|runtime|time|_s$|memory|device|encoder|version")  # run-dependent keys
ENV = {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2",
       "CUDA_VISIBLE_DEVICES": "", "PYTHONHASHSEED": "0", "CUBLAS_WORKSPACE_CONFIG": ":4096:8"}


def cases(tmp: Path) -> dict[str, dict]:
    """name -> module, card, data dir, overrides and predict commands ((extra args, output file or None=stdout))."""
    txt = tmp / "notes.txt"
    txt.write_text("The patient has familial adenomatous polyposis and colorectal cancer.\n"
                   "No evidence of ataxia telangiectasia was found in the family.\n", encoding="utf-8")
    ddi = tmp / "ddi_data" / "ddi_mini" / "DDICorpus-mini.zip"  # as tests/test_relation_data.py zip_ddi
    ddi.parent.mkdir(parents=True)
    src = FIX / "relation" / "ddi_mini"
    with zipfile.ZipFile(ddi, "w") as zf:
        for p in sorted(src.rglob("*.xml")):
            zf.write(p, p.relative_to(src).as_posix())
        zf.writestr("DDICorpus/.DS_Store", b"\x00\x01")
    qa = str(FIX / "qa")
    return {
        "ner": dict(module="clinical_ft.ner", card=FIX / "ncbi_mini.yaml", data=FIX, over=SMALL, predict=[
            (["--input", str(FIX / "ncbi_mini" / "test.tsv")], "pred.conll"),
            (["--input", str(txt)], "pred.jsonl")]),
        "relation_gad": dict(module="clinical_ft.relation", card=FIX / "relation" / "gad_mini.yaml", data=FIX,
                             over=["max_length=64", "stride=8"], predict=[
            (["--input", str(FIX / "relation" / "gad_mini" / "test.tsv")], "pred.tsv")]),
        "relation_ddi": dict(module="clinical_ft.relation", card=FIX / "relation" / "ddi_mini.yaml",
                             data=tmp / "ddi_data", over=["max_length=64", "stride=8", "task_options.marker=typed_markers"],
                             predict=[(["--input", str(ddi), "--part", "test"], "pred.tsv")]),
        "qa_covid": dict(module="clinical_ft.qa", card=FIX / "qa" / "covid_mini.yaml", data=qa,
                         over=QA_SIZE + ["task_options.n_best_size=5"], predict=[
            (["--input", str(FIX / "qa" / "covid_mini" / "covid_mini.json")], "pred.jsonl")]),
        "qa_bioasq": dict(module="clinical_ft.qa", card=FIX / "qa" / "bioasq_mini.yaml", data=qa, over=QA_SIZE, predict=[
            (["--question", "Which gene is mutated?", "--context", "The BRCA1 gene is mutated in familial breast cancer."],
             None)]),
        "qa_yesno": dict(module="clinical_ft.qa", card=FIX / "qa" / "pubmedqa_mini.yaml", data=qa, over=QA_SIZE, predict=[
            (["--input", str(FIX / "qa" / "pubmedqa_mini" / "ori_pqal.json")], "pred.jsonl")]),
        "readmission": dict(module="clinical_ft.readmission", card=FIX / "readmission" / "notes_mini.yaml", data=FIX,
                            over=["max_length=64", "stride=8"], predict=[
            (["--notes", str(FIX / "readmission" / "notes_mini" / "test.csv")], "risk.csv")]),
    }


def tiny_encoder(out: Path) -> str:
    """Exactly tests/conftest.py `tiny_encoder`."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from clinical_ft.encoders import bundled_minilm

    tok = AutoTokenizer.from_pretrained(bundled_minilm())
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=37, max_position_embeddings=512)
    torch.manual_seed(0)
    BertModel(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


def sig(x: float, digits: int = 6) -> float:
    return x if x == 0 or not math.isfinite(x) else float(f"{x:.{digits - 1}e}")


def clean(obj, tmp: str, digits: int = 6):
    """Floats to `digits` significant digits, timing/memory/path keys dropped, temp paths masked."""
    if isinstance(obj, dict):
        return {k: clean(v, tmp, digits) for k, v in obj.items() if not DROP.search(str(k))}
    if isinstance(obj, list):
        return [clean(v, tmp, digits) for v in obj]
    if isinstance(obj, float):
        return sig(obj, digits)
    if isinstance(obj, str):
        return obj.replace(tmp, "<TMP>")
    return obj


def cell(s: str):
    """A text cell: numbers with a fraction or exponent rounded to 5 decimals, anything else kept."""
    if re.fullmatch(r"[-+]?(\d+\.\d*|\.\d+|\d+(\.\d*)?[eE][-+]?\d+)", s.strip()):
        return round(float(s), 5)
    return s


def read_output(path: Path, tmp: str):
    """A predict output as rows: JSON lines parsed, tsv/conll/csv split into cells; numbers rounded."""
    if not path.exists():
        return None
    text = path.read_text(encoding="utf-8").replace(tmp, "<TMP>")
    if path.suffix == ".jsonl" or (text.lstrip().startswith("{") and path.suffix != ".json"):
        return [clean5(json.loads(line)) for line in text.splitlines() if line.strip()]
    if path.suffix == ".csv":
        return [[cell(c) for c in row] for row in csv.reader(io.StringIO(text))]
    return [[cell(c) for c in line.split("\t")] for line in text.splitlines()]


def clean5(obj):
    if isinstance(obj, dict):
        return {k: clean5(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [clean5(v) for v in obj]
    return round(obj, 5) if isinstance(obj, float) else obj


def cli(module: str, args: list[str], env: dict[str, str]) -> str:
    p = subprocess.run([sys.executable, "-m", module, *args], env=env, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"python -m {module} {' '.join(args)} -> rc {p.returncode}\n{p.stderr[-3000:]}")
    return p.stdout


def run_case(name: str, c: dict, enc: str, tmp: Path, env: dict[str, str]) -> dict:
    run = tmp / name / "run"
    out = tmp / name
    cli(c["module"], ["train", "--card", str(c["card"]), "--data-dir", str(c["data"]), "--out", str(run),
                      "--encoder", enc, *COMMON, *c["over"]], env)
    cli(c["module"], ["evaluate", "--model", str(run), "--split", "test", "--data-dir", str(c["data"])], env)
    m = json.loads((run / "metrics.json").read_text())
    rec = {"train": clean({k: m.get(k) for k in ("global_steps", "train_loss", "train_examples", "train_features",
                                                  "total_parameters", "trainable_parameters")}, str(tmp)),
           "eval_test": clean(json.loads((run / "eval_test.json").read_text()), str(tmp)), "predict": {}}
    for i, (extra, fname) in enumerate(c["predict"]):
        dest = out / f"{i}_{fname}" if fname else None
        stdout = cli(c["module"], ["predict", "--model", str(run), *extra, *(["--out", str(dest)] if dest else [])], env)
        if dest is None:
            rec["predict"][f"{i}_stdout"] = [clean5(json.loads(x)) for x in stdout.splitlines() if x.strip()]
            continue
        rec["predict"][f"{i}_{fname}"] = read_output(dest, str(tmp))
        skipped = dest.with_name(dest.stem + ".skipped.csv")
        if skipped.exists():
            rec["predict"][skipped.name] = read_output(skipped, str(tmp))
    for f in sorted(run.glob("predictions_test.*")):  # what evaluate writes beside eval_test.json (readmission)
        rec["eval_test"][f"_file_{f.name}"] = read_output(f, str(tmp))
    return rec


def record(out: str, only: list[str] | None, keep: str | None) -> int:
    tmp = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="snapshot_"))
    tmp.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **ENV}
    where = subprocess.run([sys.executable, "-c", "import clinical_ft; print(clinical_ft.__file__)"], env=env,
                           capture_output=True, text=True, check=True).stdout.strip()
    print(f"clinical_ft from {where}", flush=True)
    start = time.perf_counter()
    enc = tiny_encoder(tmp / "tiny_bert")
    result: dict = {"_meta": {"clinical_ft": where, "cases": []}}
    try:
        for name, c in cases(tmp).items():
            if only and name not in only:
                continue
            t0 = time.perf_counter()
            try:
                result[name] = run_case(name, c, enc, tmp, env)
            except RuntimeError as exc:
                result[name] = {"error": str(exc).replace(str(tmp), "<TMP>").splitlines()[0]}
                print(exc, file=sys.stderr)
            result["_meta"]["cases"].append(name)
            print(f"{name}: {time.perf_counter() - t0:.1f}s", flush=True)
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(result, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"{len(result) - 1} cases in {time.perf_counter() - start:.0f}s -> {out}")
    return 1 if any("error" in v for k, v in result.items() if k != "_meta") else 0


def diff(a, b, where: str, out: list[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                out.append(f"{where}.{k}: {'missing in A' if k not in a else 'missing in B'}")
            else:
                diff(a[k], b[k], f"{where}.{k}", out)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out.append(f"{where}: length {len(a)} != {len(b)}")
        for i, (x, y) in enumerate(zip(a, b)):
            diff(x, y, f"{where}[{i}]", out)
    elif isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) and not isinstance(b, bool):
        if not math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-9):
            out.append(f"{where}: {a!r} != {b!r}")
    elif a != b:
        out.append(f"{where}: {a!r} != {b!r}")


def canonical(snap: dict) -> dict:
    """The snapshot with the intended format changes of the task-package move undone, so that only
    behaviour is compared: every task's evaluate now saves predictions_test.jsonl (new, not compared);
    readmission's evaluate wrote predictions_test.csv (admission_id, label, risk, n_chunks) and put
    plots/aggregation at the top of eval_test.json, now the jsonl predictions and an `artifacts` block."""
    for case in snap.values():
        ev = case.get("eval_test") if isinstance(case, dict) else None
        if not isinstance(ev, dict):
            continue
        ev.pop("examples", None) if "admissions" in ev else None  # readmission now states examples too
        old = ev.pop("_file_predictions_test.csv", None)
        new = ev.pop("_file_predictions_test.jsonl", None)
        if old is not None:  # [header, [id, label, risk, n_chunks], ...]
            ev["risks"] = [[r[2], int(r[3])] for r in old[1:]]
        elif new is not None and new and isinstance(new[0].get("prediction"), dict) and "risk" in new[0]["prediction"]:
            ev["risks"] = [[r["prediction"]["risk"], r["prediction"]["n_chunks"]] for r in new]
        art = ev.pop("artifacts", None) or {}
        plots = ev.pop("plots", None)
        if plots is not None or "plots" in art:
            ev["plots"] = [Path(p).name for p in (plots if plots is not None else art["plots"])]
        for key in ("aggregation", "aggregation_c"):
            if key in art:
                ev[key] = art[key]
        ev.update({k: v for k, v in art.items() if k not in ("plots", "aggregation", "aggregation_c")})
    return snap


def compare(fa: str, fb: str) -> int:
    a, b = (canonical(json.loads(Path(f).read_text(encoding="utf-8"))) for f in (fa, fb))
    bad = 0
    for name in sorted((set(a) | set(b)) - {"_meta"}):
        problems: list[str] = []
        diff(a.get(name), b.get(name), name, problems)
        print(f"{name}: {'identical' if not problems else f'{len(problems)} difference(s)'}")
        for p in problems[:40]:
            print(f"  {p}")
        bad += bool(problems)
    print("SAME" if not bad else f"DIFFERENT: {bad} case(s)")
    return 1 if bad else 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--out", help="record a snapshot into this JSON file")
    g.add_argument("--compare", nargs=2, metavar=("A", "B"), help="compare two snapshots; exit 1 if they differ")
    p.add_argument("--cases", help="comma-separated subset of cases to record")
    p.add_argument("--keep", help="keep the run directories in this folder")
    args = p.parse_args()
    if args.compare:
        return compare(*args.compare)
    for k, v in ENV.items():
        os.environ[k] = v
    return record(args.out, args.cases.split(",") if args.cases else None, args.keep)


if __name__ == "__main__":
    raise SystemExit(main())
