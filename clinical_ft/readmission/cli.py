"""``python -m clinical_ft.readmission prepare|train|evaluate|predict|explain|demo``: 30-day readmission
from clinical notes, chunked long-note training, aggregated admission risks.

python -m clinical_ft.readmission prepare --mimic-dir /data/mimic-iii --setting discharge --out data/readmit
python -m clinical_ft.readmission train --data data/readmit --config readmission/minilm --out runs/readmit
python -m clinical_ft.readmission evaluate --model runs/readmit --split test
python -m clinical_ft.readmission predict --model runs/readmit --notes notes.csv --out risk.csv
python -m clinical_ft.readmission explain --model runs/readmit --notes notes.csv --ids 123,456 --out report.html
python -m clinical_ft.readmission demo
"""

from __future__ import annotations

import argparse
from collections import Counter

from .. import engine, taskcli
from ..errors import ClinicalFTError
from ..interpret.cli import add_common_args
from ..taskapi import task_options
from ..trainer import is_main_process
from . import infer
from .notes import iter_blocks
from .prepare import card_from_data, prepare
from .task import TASK, TITLE

PROG = "python -m clinical_ft.readmission"


def _columns(args: argparse.Namespace) -> dict[str, str]:
    roles = {"id": args.id_column, "text": args.text_column, "label": getattr(args, "label_column", None),
             "subject": getattr(args, "subject_column", None)}
    return {k: v for k, v in roles.items() if v}


def _add_columns(p: argparse.ArgumentParser, label: bool = False) -> None:
    p.add_argument("--id-column", help="admission id column (default admission_id)")
    p.add_argument("--text-column", help="note text column (default text)")
    if label:
        p.add_argument("--label-column", help="0/1 label column (default label)")
        p.add_argument("--subject-column", help="patient column for patient-level splits (default subject_id)")


def _prepare(args: argparse.Namespace) -> int:
    s = prepare(args.out, mimic_dir=args.mimic_dir, notes=args.notes, columns=_columns(args), setting=args.setting,
                days=args.days, seed=args.seed, balanced_test=args.balanced_test)
    for split, c in s["splits"].items():
        print(f"{split:<10} {c['admissions']:>7} admissions  {c['positives']:>6} readmitted  {c['patients']:>7} patients")
    for kind, why in s["reasons"].items():
        if why:
            print(f"{kind}: {sum(why.values())} ({', '.join(f'{n} {r}' for r, n in why.items())})")
    print(f"{s['skipped']} skipped, {s['excluded']} excluded by protocol: listed in {s['skipped_csv']}")
    print(f"written to {s['out']} (train/validation/test.csv, card.yaml)")
    return 0


def _train(args: argparse.Namespace) -> int:
    if bool(args.data) == bool(args.card):
        raise ClinicalFTError("give exactly one of --data (a prepared folder) or --card (a task card)")
    card = card_from_data(args.data) if args.data else args.card
    task, card, cfg = taskcli.load_card_and_config(card, args.config, args.overrides, args.encoder, (TASK,))
    return taskcli.train_run(task, card, cfg, args, "validation (admission level)")


def _load(args: argparse.Namespace) -> tuple[object, engine.Run]:
    """The run, with --aggregation/--c/--prevalence/--subgroups applied to a new config (infer.open_run)."""
    return infer.open_run(args.model, aggregation=getattr(args, "aggregation", None), c=getattr(args, "c", None),
                          prevalence=getattr(args, "prevalence", None), subgroups=_csv(getattr(args, "subgroups", None)))


def _csv(text: str | None) -> list[str] | None:
    return None if text is None else [x.strip() for x in text.split(",") if x.strip()]


def _evaluate(args: argparse.Namespace) -> int:
    task, run = _load(args)
    result = engine.evaluate(task, run, args.split, args.data_dir, args.batch_size, input_file=args.input)
    taskcli.print_evaluation(run, result)
    plots = result.get("artifacts", {}).get("plots", [])
    if plots:
        print("curves: " + ", ".join(plots))
    return 0


def _predict(args: argparse.Namespace) -> int:
    _, run = _load(args)
    s = infer.predict_csv(run, args.notes, args.out, columns=_columns(args), batch_size=args.batch_size)
    if not is_main_process():  # torchrun: rank 0 wrote the files and says so
        return 0
    why = Counter(k.reason.split(" (")[0].split(" in column")[0] for k in s.skips)
    print(f"{s.scored} admissions scored ({s.windows} chunks, {run.cfg.aggregation} aggregation) -> {s.out}")
    target = task_options(TASK, run.cfg).prevalence
    shifted = target is not None and (run.path / "calibration.json").is_file()
    print(f"risks: {s.calibration}" + (f"; moved to a prevalence of {target:g} (Bayes odds correction)" if shifted else ""))
    print(f"drift summary (risk distribution, share above the operating thresholds, PSI) -> {s.drift_json}")
    print(f"{len(s.skips)} rows skipped" + (f" ({', '.join(f'{n} {r}' for r, n in why.items())})" if why else "")
          + f" -> {s.skipped_csv}")
    return 0


def _explain(args: argparse.Namespace) -> int:
    from ..interpret import explain_notes

    wanted = [i.strip() for i in args.ids.split(",") if i.strip()]
    found: dict[str, str] = {}
    for notes, _ in iter_blocks(args.notes, _columns(args), labels="ignore"):
        found.update({n.id: n.text for n in notes if n.id in wanted})
    missing = [i for i in wanted if i not in found]
    if missing:
        raise ClinicalFTError(f"{args.notes}: no scorable note with id(s) {missing}")
    _, run = _load(args)
    if args.n_steps < 1 or args.top_windows < 0 or not 0 < args.tolerance < 1:
        raise ClinicalFTError(f"expected --n-steps >= 1, --top-windows >= 0 and 0 < --tolerance < 1, found "
                              f"{args.n_steps}, {args.top_windows}, {args.tolerance}")
    path = explain_notes(run, [(i, found[i]) for i in wanted], args.out, attributions=not args.no_attributions,
                         n_steps=args.n_steps, top_chunks=args.top_windows, tolerance=args.tolerance, title=TITLE)
    print(f"report written to {path}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(args.out, encoder=args.encoder, patients=args.patients, words=args.words, max_steps=args.max_steps,
             attributions=None if not args.no_attributions else False)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p, sub = taskcli.parser(PROG, __doc__ or "")
    tr = sub.choices["train"]
    tr.add_argument("--data", help="folder written by `prepare` (its card.yaml); instead of --card")
    for action in tr._actions:  # --card or --data
        if action.dest == "card":
            action.required = False
    ev = sub.choices["evaluate"]
    ev.add_argument("--batch-size", type=int, help="chunks per forward pass (default: the run's eval batch size)")
    ev.add_argument("--aggregation", choices=["clinicalbert", "max", "mean"], help="override the run's aggregation")
    ev.add_argument("--c", type=float, help="override ClinicalBERT's aggregation constant c")
    ev.add_argument("--subgroups", help="comma-separated admission attributes to report per group, e.g. "
                    "gender,age_group,admission_type (columns of the split CSVs)")
    ev.add_argument("--prevalence", type=float, help="move the calibrated risks to this readmission rate")
    pp = sub.add_parser("prepare", help="admission-level splits + card.yaml from MIMIC-III tables or a notes CSV")
    pp.add_argument("--mimic-dir", help="folder with ADMISSIONS.csv and NOTEEVENTS.csv (MIMIC-III, bring your own)")
    pp.add_argument("--notes", help="instead: a notes CSV with id, text and 0/1 label columns")
    pp.add_argument("--setting", choices=["discharge", "early"], default="discharge")
    pp.add_argument("--days", type=int, choices=[2, 3], default=3, help="early setting: notes of the first N days")
    pp.add_argument("--out", required=True, help="folder to write")
    pp.add_argument("--seed", type=int, default=1, help="seed of the patient-level split")
    pp.add_argument("--balanced-test", action="store_true", help="50/50 test as in ClinicalBERT (natural copy kept)")
    _add_columns(pp, label=True)
    pr = sub.add_parser("predict", help="risk per admission of a notes CSV (streamed; skipped rows reported)")
    pr.add_argument("--model", required=True, help="run directory written by train")
    pr.add_argument("--notes", required=True, help="notes CSV (admission_id, text)")
    pr.add_argument("--out", required=True, help="output CSV; <out stem>.skipped.csv is written beside it")
    pr.add_argument("--batch-size", type=int, help="chunks per forward pass")
    pr.add_argument("--aggregation", choices=["clinicalbert", "max", "mean"], help="override the run's aggregation")
    pr.add_argument("--c", type=float, help="override ClinicalBERT's aggregation constant c")
    pr.add_argument("--prevalence", type=float, help="deployment readmission rate (e.g. 0.11): calibrated risks "
                    "are moved from the validation admissions' rate to it (Bayes odds correction)")
    _add_columns(pr)
    ex = sub.add_parser("explain", help="HTML report (chunk scores, attributions, attention) for some notes")
    ex.add_argument("--model", required=True)
    ex.add_argument("--notes", required=True, help="notes CSV (same reader as predict)")
    ex.add_argument("--ids", required=True, help="comma-separated admission ids to explain")
    ex.add_argument("--out", required=True, help="HTML report path")
    add_common_args(ex)  # --n-steps, --tolerance, --no-attributions
    ex.add_argument("--top-windows", type=int, default=2, help="windows explained word by word (default 2)")
    _add_columns(ex)
    de = sub.add_parser("demo", help="synthetic data -> prepare -> short train -> evaluate -> predict -> report")
    de.add_argument("--out", default="readmission_demo", help="folder for everything the demo writes")
    de.add_argument("--encoder", default="minilm")
    de.add_argument("--patients", type=int, default=None, help="synthetic patients (default: demo size)")
    de.add_argument("--words", type=int, default=None, help="words per synthetic discharge summary")
    de.add_argument("--max-steps", type=int, default=None, help="training steps (default: demo size)")
    de.add_argument("--no-attributions", action="store_true", help="skip integrated gradients in the report")
    return p


def main(argv: list[str] | None = None) -> int:
    extra = {"train": _train, "evaluate": _evaluate, "prepare": _prepare, "predict": _predict,
             "explain": _explain, "demo": _demo}
    return taskcli.run((TASK,), build_parser(), argv, extra)
