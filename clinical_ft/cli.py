"""`clinical-ft`: list and validate shipped task cards and configs."""

from __future__ import annotations

import argparse
import sys

from . import resources
from .config import TaskCard, TrainConfig, load
from .errors import ClinicalFTError


def _ls(args: argparse.Namespace) -> int:
    for kind in ("tasks", "configs"):
        print(f"{kind}:")
        for rel in resources.list_shipped(kind):
            path = resources.find(rel, kind)
            extra = ""
            if kind == "tasks":
                try:
                    card = load(TaskCard, path)
                    extra = f"  [{card.kind}] {card.description[:70]}"
                except ClinicalFTError:
                    extra = "  (INVALID: run clinical-ft validate)"
            print(f"  {str(rel.with_suffix('')):<28}{extra}")
    return 0


def validate_file(path: str) -> str:
    """Validate one card or config (decided by its folder, else by whether it has `kind`)."""
    from .config import read_yaml

    p = resources.find(path, "tasks") if "tasks" in str(path) else None
    if p is None:
        try:
            p = resources.find(path, "configs")
        except ClinicalFTError:
            p = resources.find(path, "tasks")
    is_card = "tasks" in p.parts or "kind" in (read_yaml(p) or {})
    load(TaskCard if is_card else TrainConfig, p)
    return f"{p}: valid {'task card' if is_card else 'train config'}"


def _validate(args: argparse.Namespace) -> int:
    paths = args.paths or [str(resources.find(r, k)) for k in ("tasks", "configs") for r in resources.list_shipped(k)]
    failed = 0
    for path in paths:
        try:
            print(validate_file(path))
        except ClinicalFTError as exc:
            failed += 1
            print(f"error: {exc}", file=sys.stderr)
    return 2 if failed else 0


def _report(args: argparse.Namespace) -> int:
    from .interpret.run_report import build_report

    try:
        out = build_report(args.run, args.out, args.data_dir, examples_wanted=not args.no_examples)
        print(f"run report written to {out}")
    except ClinicalFTError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="clinical-ft", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("ls", help="list shipped task cards and configs")
    v = sub.add_parser("validate", help="validate cards/configs (all shipped ones when no path is given)")
    v.add_argument("paths", nargs="*")
    r = sub.add_parser("report", help="self-contained HTML page about a run: metrics, curves, model card")
    r.add_argument("--run", required=True, help="run directory written by train")
    r.add_argument("--out", required=True, help="HTML file to write")
    r.add_argument("--data-dir", help="root of the card's data, to read the test examples explained as examples "
                   "(default as for evaluate: $CLINICAL_FT_DATA, then ../shared/data)")
    r.add_argument("--no-examples", action="store_true",
                   help="skip the example explanations (does not load the model or read the data)")
    from . import benchmark

    benchmark.add_arguments(sub.add_parser("benchmark", help="grid of card x encoder x seed runs, resumable, "
                                           "with a results table", description=benchmark.__doc__,
                                           formatter_class=argparse.RawDescriptionHelpFormatter))
    args = p.parse_args(argv)
    if args.command == "benchmark":
        return benchmark.run_cli(args)
    return {"ls": _ls, "validate": _validate, "report": _report}[args.command](args)


if __name__ == "__main__":
    raise SystemExit(main())
