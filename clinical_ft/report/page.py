"""`clinical-ft report`: one self-contained HTML page about a run directory: its card and config,
metrics.json and eval_*.json tables, every PNG curve found in it (embedded), the model card, links
(relative) to explanation reports saved there, and attention-only example explanations of two test
examples when the run has test predictions (examples.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..errors import ClinicalFTError
from ..interpret.html import data_uri, esc, page, write_atomic
from .examples import example_sections

MAX_PNG_BYTES = 5_000_000
MAX_PNGS = 40


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) >= 1e-3 or v == 0 else f"{v:.3e}"
    return str(v)


def metrics_table(metrics: dict[str, Any]) -> str:
    """Scalar metrics as a table; nested mappings (e.g. validation) as tables of their own below."""
    rows = "".join(f'<tr><td>{esc(str(k))}</td><td class="num">{esc(_fmt(v))}</td></tr>'
                   for k, v in metrics.items() if not isinstance(v, (dict, list)))
    out = f"<table><tr><th>metric</th><th>value</th></tr>{rows}</table>" if rows else ""
    for k, v in metrics.items():
        if isinstance(v, dict):
            out += f"<h3>{esc(str(k))}</h3>{metrics_table(v)}"
        elif isinstance(v, list) and v and all(isinstance(r, dict) for r in v):  # rows: operating points, subgroups
            out += f"<h3>{esc(str(k))}</h3>{rows_table(v)}"
        elif isinstance(v, list):
            out += f"<h3>{esc(str(k))}</h3><pre>{esc(json.dumps(v, indent=1, default=str)[:20000])}</pre>"
    return out


def rows_table(rows: list[dict[str, Any]]) -> str:
    """A list of records (operating points, subgroups) as one table, a column per key."""
    cols = list(dict.fromkeys(k for r in rows for k in r))
    head = "".join(f"<th>{esc(str(c))}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f'<td class="num">{esc(_fmt(r.get(c, "")))}</td>' for c in cols) + "</tr>"
                   for r in rows[:500])
    return f"<table><tr>{head}</tr>{body}</table>"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ClinicalFTError(f"{path}: expected a JSON file, could not read it ({exc})") from None


def _pngs(run: Path, out: Path) -> tuple[list[Path], list[str]]:
    found = sorted(p for p in [*run.glob("*.png"), *run.glob("*/*.png")]
                   if not p.parent.name.endswith("_heatmaps") and "checkpoint" not in str(p.relative_to(run)))
    kept, skipped = [], []
    for p in found:
        if p.stat().st_size > MAX_PNG_BYTES:
            skipped.append(f"{p.relative_to(run)} (larger than {MAX_PNG_BYTES // 1_000_000} MB)")
        elif len(kept) >= MAX_PNGS:
            skipped.append(f"{p.relative_to(run)} (more than {MAX_PNGS} images)")
        else:
            kept.append(p)
    return kept, skipped


def build_report(run_dir: str | Path, out_html: str | Path, data_dir: str | Path | None = None, *,
                 examples_wanted: bool = True) -> Path:
    """Write the run report; returns its path.

    Args:
        run_dir: a run directory written by train.
        out_html: the HTML page to write (example heatmap PNGs go to ``<stem>_heatmaps/`` beside it).
        data_dir: root of the card's data, to read the test examples of the example explanations.
        examples_wanted: embed attention-only explanations of two test examples when the run has
            test predictions (loads the model); otherwise the page says why none is shown.

    Raises:
        ClinicalFTError: `run_dir` is not a run directory, or one of its JSON files is unreadable.
    """
    run, out = Path(run_dir), Path(out_html)
    if not (run / "run.yaml").is_file():
        raise ClinicalFTError(f"{run} is not a clinical_ft run directory (no run.yaml); pass --run RUNDIR")
    from ..config import read_yaml

    meta = read_yaml(run / "run.yaml") or {}
    card, cfg = meta.get("card", {}), meta.get("config", {})
    sections = [
        f"<h2>Run</h2><table><tr><th>task</th><td>{esc(str(card.get('name', '?')))} ({esc(str(card.get('kind', '?')))})"
        f"</td></tr><tr><th>encoder</th><td>{esc(str(cfg.get('encoder', '?')))}</td></tr>"
        f"<tr><th>labels</th><td>{esc(', '.join(map(str, meta.get('labels', []))))}</td></tr>"
        f"<tr><th>clinical_ft</th><td>{esc(str(meta.get('clinical_ft_version', '?')))}</td></tr></table>"]
    if (run / "metrics.json").is_file():
        sections.append("<h2>Training metrics (metrics.json)</h2>" + metrics_table(_read_json(run / "metrics.json")))
    else:
        sections.append("<h2>Training metrics</h2><p>No metrics.json: the run has not finished.</p>")
    for ev in sorted(run.glob("eval_*.json")):
        sections.append(f"<h2>Evaluation ({esc(ev.name)})</h2>" + metrics_table(_read_json(ev)))
    pngs, skipped = _pngs(run, out)
    if pngs or skipped:
        figs = "".join(f'<figure><img alt="{esc(str(p.relative_to(run)))}" src="{data_uri(p.read_bytes())}">'
                       f"<figcaption>{esc(str(p.relative_to(run)))}</figcaption></figure>" for p in pngs)
        skip = f"<p class=note>Not embedded: {esc('; '.join(skipped))}</p>" if skipped else ""
        sections.append(f"<h2>Curves and figures</h2>{figs}{skip}")
    reports = sorted(p for p in run.glob("*.html") if p.resolve() != out.resolve())
    if reports:
        items = "".join(f'<li><a href="{esc(_href(p, out))}">{esc(p.name)}</a></li>' for p in reports)
        sections.append(f"<h2>Explanation reports in the run directory</h2><ul>{items}</ul>")
    examples, why = (example_sections(run, out, data_dir) if examples_wanted
                     else ([], "No example explanation is shown: skipped on request (--no-examples)."))
    sections.append("<h2>Example explanations</h2>" + (f"<p>{why}</p>" if why else "")
                    + f"<p>Write more with <code>python -m clinical_ft.{esc(str(card.get('kind')))} explain "
                    f"--model {esc(str(run))} ... --out report.html</code> (self-contained HTML with attributions "
                    "and attention).</p>")
    sections += examples
    if (run / "README.md").is_file():
        sections.append("<h2>Model card (README.md)</h2><pre>"
                        + esc((run / "README.md").read_text(encoding="utf-8", errors="replace")) + "</pre>")
    sections.append("<h2>Resolved card and config (run.yaml)</h2><pre>"
                    + esc((run / "run.yaml").read_text(encoding="utf-8", errors="replace")) + "</pre>")
    return write_atomic(out, page(f"Run report: {run.name}", f'<p class="note">{esc(str(run))}</p>', sections,
                                  with_js=bool(examples)))


def _href(target: Path, report: Path) -> str:
    """Relative URL of `target` from the folder of `report` (works offline, after moving both)."""
    rel = os.path.relpath(target.resolve(), report.resolve().parent)
    return quote(Path(rel).as_posix())
