"""`clinical-ft`: list and validate task cards and configs, build run reports, run benchmark grids."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import registry, resources
from .config import read_yaml
from .data import role_paths
from .errors import ClinicalFTError


def _ls(args: argparse.Namespace) -> int:
    for kind in ("tasks", "configs"):
        print(f"{kind}:")
        for rel in resources.list_shipped(kind):
            extra = ""
            if kind == "tasks":
                try:
                    card = registry.load_card(resources.find(rel, kind))
                    extra = f"  [{card.kind}] {card.description[:70]}"
                except ClinicalFTError:
                    extra = "  (INVALID: run clinical-ft validate)"
            print(f"  {str(rel.with_suffix('')):<28}{extra}")
    return 0


def _resolve(path: str) -> tuple[Path, bool]:
    """The file of a card or config argument and whether it is a card (by folder, else by `kind`)."""
    p = Path(path)
    if not p.is_file():
        for kind in ("tasks", "configs") if "tasks" in str(path) else ("configs", "tasks"):
            try:
                p = resources.find(path, kind)
                break
            except ClinicalFTError:
                continue
        else:
            p = resources.find(path, "tasks")  # raises, listing what is shipped
    return p, "tasks" in p.parts or "kind" in (read_yaml(p) or {})


def validate_file(path: str, data_dir: str | None = None) -> tuple[str, list[str]]:
    """Validate one card or config whole; return the verdict line and the data it could not find.

    A card is checked against its task (format, split roles, columns, metric); a config under
    ``configs/<kind>/`` has its ``task_options`` checked against that kind's task.

    Raises:
        ConfigError: every problem of the file, naming it and each key.
    """
    p, is_card = _resolve(path)
    if not is_card:
        registry.load_config(p, None, registry.config_task(p))
        return f"{p}: valid train config", []
    card = registry.load_card(p)
    missing = []
    for role in card.data.files:
        try:
            role_paths(card, role, data_dir)
        except ClinicalFTError:
            missing.append(f"{p}: data.files.{role}: {card.data.files[role]} not found under "
                           f"{card.data.path!r} (pass --data-dir or set $CLINICAL_FT_DATA)")
    return f"{p}: valid task card", missing


def _validate(args: argparse.Namespace) -> int:
    paths = args.paths or [str(resources.find(r, k)) for k in ("tasks", "configs") for r in resources.list_shipped(k)]
    failed = 0
    for path in paths:
        try:
            verdict, missing = validate_file(path, args.data_dir)
            print(verdict)
            for line in missing:
                print(f"  data missing: {line}")
        except ClinicalFTError as exc:
            failed += 1
            print(f"error: {exc}", file=sys.stderr)
    return 2 if failed else 0


def _report(args: argparse.Namespace) -> int:
    from .report import build_report

    try:
        out = build_report(args.run, args.out, args.data_dir, examples_wanted=not args.no_examples)
        print(f"run report written to {out}")
    except ClinicalFTError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    from .bench import runner

    p = argparse.ArgumentParser(prog="clinical-ft", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("ls", help="list shipped task cards and configs")
    v = sub.add_parser("validate", help="validate cards/configs whole (all shipped ones when no path is given); "
                                        "cards are checked against their task and their data files looked up")
    v.add_argument("paths", nargs="*")
    v.add_argument("--data-dir", help="root for the cards' relative data paths (default $CLINICAL_FT_DATA or ../shared/data)")
    r = sub.add_parser("report", help="self-contained HTML page about a run: metrics, curves, model card")
    r.add_argument("--run", required=True, help="run directory written by train")
    r.add_argument("--out", required=True, help="HTML file to write")
    r.add_argument("--data-dir", help="root of the card's data, to read the test examples explained as examples "
                   "(default as for evaluate: $CLINICAL_FT_DATA, then ../shared/data)")
    r.add_argument("--no-examples", action="store_true",
                   help="skip the example explanations (does not load the model or read the data)")
    runner.add_arguments(sub.add_parser("benchmark", help="grid of card x encoder x seed runs, resumable, "
                                        "with a results table", description=runner.__doc__,
                                        formatter_class=argparse.RawDescriptionHelpFormatter))
    args = p.parse_args(argv)
    if args.command == "benchmark":
        return runner.run_cli(args)
    return {"ls": _ls, "validate": _validate, "report": _report}[args.command](args)


if __name__ == "__main__":
    raise SystemExit(main())
