"""Results tables of `clinical-ft benchmark`: mean and standard deviation over seeds, a bootstrap 95%
interval on each test metric, the card's published reference beside ours with the difference, a
BLURB-style macro score (mean of per-family means, family = card kind) and a PNG chart.

The interval is a percentile bootstrap over test examples (the task's unit: sentences, pairs,
questions, admissions): each resample draws example indices with replacement and recomputes the
task's own `score` on the saved per-example predictions (predictions_test.jsonl) of every seed,
averaged over seeds, so it describes test-set sampling uncertainty of the seed-averaged score.
Scores are shown x100; published references <= 1 are read as fractions and shown x100 too.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import engine, registry
from ..atomic import save_figure, write_json, write_text
from ..config import Reference, TaskCard, read_yaml
from ..rundir import RUN_FILE, run_card

log = logging.getLogger("clinical_ft.benchmark")
CACHE_FILE = "bootstrap_cache.json"
RESULT, ERROR, SKIPPED = "result.json", "error.json", "skipped.json"  # the record a run directory holds


def status(run_dir: Path) -> str:
    """``done``, ``failed``, ``skipped`` or ``pending``, from the files in a run directory."""
    for name, st in ((RESULT, "done"), (ERROR, "failed"), (SKIPPED, "skipped")):
        if (run_dir / name).is_file():
            return st
    return "pending"


def describe(run_dir: Path, st: str) -> str:
    """One line on a run's outcome: its test score, or why it failed or was skipped."""
    if st == "done":
        r = json.loads((run_dir / RESULT).read_text(encoding="utf-8"))
        return f"test {r['metric']} {r['value']:.4f}" + (" (LIMITED)" if r.get("limited") else "")
    rec = json.loads((run_dir / (ERROR if st == "failed" else SKIPPED)).read_text(encoding="utf-8"))
    return f"{st.upper()}: {rec['type']}: {(rec.get('message') or rec.get('reason', '')).splitlines()[0][:200]}"


def bootstrap_ci(statistic: Callable[[np.ndarray], float], n: int, resamples: int = 1000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic(indices)`` over `n` items drawn with replacement.

    Args:
        statistic: maps an index array (shape (n,)) to the metric on those items.
        n: number of items (test examples).
        resamples: bootstrap resamples; 0 gives (nan, nan).
        seed: seed of the resampling generator (same seed, same interval).
        level: coverage of the interval.

    Returns:
        (low, high) percentiles of the resampled statistic.
    """
    if n == 0 or resamples <= 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    stats = np.array([statistic(rng.integers(0, n, size=n)) for _ in range(resamples)], dtype=float)
    low, high = np.percentile(stats, [50 * (1 - level), 50 * (1 + level)])
    return float(low), float(high)


def seed_mean_ci(task: Any, examples: Sequence[Any], labels: list[str], preds_by_seed: list[list[Any]], key: str,
                 resamples: int, seed: int) -> tuple[float, float]:
    """Bootstrap interval of the seed-averaged `key` score; the same example resample serves every seed.

    A task whose metric is a function of per-example counts offers ``score_counts(examples,
    predictions, labels, key) -> (rows, value)`` (NER: entity counts per sentence); a resample then
    sums rows instead of re-scoring (same draws, same interval, far faster). Otherwise each resample
    calls the task's `score`."""
    parts = [task.score_counts(examples, p, labels, key) for p in preds_by_seed]
    if all(x is not None for x in parts):
        def statistic(idx: np.ndarray) -> float:
            return float(np.mean([value(rows[idx].sum(axis=0)) for rows, value in parts]))
    else:
        def statistic(idx: np.ndarray) -> float:
            ex = [examples[i] for i in idx]
            return float(np.mean([task.score(ex, [p[i] for i in idx], labels)[key] for p in preds_by_seed]))

    return bootstrap_ci(statistic, len(examples), resamples, seed)


def _group_ci(grid: Any, group: list[Any], recs: list[dict[str, Any]], cache: dict[str, Any]) -> tuple[float, float]:
    """CI for the done runs `group` (cells of one card x encoder), cached by prediction-file content."""
    files = [c.dir / "predictions_test.jsonl" for c in group]
    digest = hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()[:16]
    key = f"{group[0].card.name}|{group[0].encoder}|{[c.seed for c in group]}|{grid.bootstrap}|{grid.bootstrap_seed}|{digest}"
    if key not in cache:
        run_file = read_yaml(group[0].dir / RUN_FILE)
        card = run_card(group[0].dir)
        task = registry.for_card(card)
        examples = task.load_split(card, "test", grid.data_dir)
        preds = [engine.read_predictions(f) for f in files]
        if any(len(p) != len(examples) for p in preds):
            raise ValueError(f"{len(examples)} test examples but {[len(p) for p in preds]} saved predictions")
        cache[key] = seed_mean_ci(task, examples, list(run_file["labels"]), preds, recs[0]["metric"],
                                  grid.bootstrap, grid.bootstrap_seed)
    return tuple(cache[key])


def pick_reference(card: TaskCard, encoder: str) -> Reference | None:
    """The card's reference whose model names this encoder (``biobert`` ~ "BioBERT v1.1"), else the first."""
    for ref in card.references:
        word = re.sub(r"[^a-z0-9]", "", ref.model.lower().split()[0]) if ref.model.split() else ""
        if word and word in encoder.lower():
            return ref
    return card.references[0] if card.references else None


def records(cells: list[Any]) -> list[dict[str, Any]]:
    """One record per run: result.json, or the status with its reason (failed, skipped, pending)."""
    out = []
    for c in cells:
        st = status(c.dir)
        base = {"card": c.card.name, "kind": c.card.kind, "encoder": c.encoder, "seed": c.seed, "status": st}
        if st == "done":
            base.update(json.loads((c.dir / RESULT).read_text(encoding="utf-8")))
        elif st != "pending":
            rec = json.loads((c.dir / (ERROR if st == "failed" else SKIPPED)).read_text(encoding="utf-8"))
            base["reason"] = f"{rec['type']}: {rec.get('message') or rec.get('reason', '')}"
        out.append(base)
    return out


def summarize(recs: list[dict[str, Any]], cards: dict[str, TaskCard], budget: str = "",
              cis: dict[tuple[str, str], tuple[float, float]] | None = None) -> list[dict[str, Any]]:
    """One row per (card, encoder) with finished runs: mean/sd over seeds (x100), CI, reference, budget."""
    rows = []
    for (card, enc) in dict.fromkeys((r["card"], r["encoder"]) for r in recs):
        done = [r for r in recs if r["card"] == card and r["encoder"] == enc and r["status"] == "done"]
        if not done:
            continue
        vals = np.array([100 * r["value"] for r in done])
        low, high = (cis or {}).get((card, enc), (math.nan, math.nan))
        ref = pick_reference(cards[card], enc)
        ref_score = None if ref is None else (100 * ref.score if ref.score <= 1 else ref.score)
        limited = any(r.get("limited") for r in done) or bool(budget)
        train = sorted({f"{r.get('train_examples')}/{r.get('train_examples_available')}" for r in done})
        # why each run was LIMITED (metrics.json); runs recorded before reasons existed show their sizes
        why = list(dict.fromkeys(x for r in done for x in r.get("limited_reasons") or []))
        why = why or ["train " + ", ".join(train)] + ([budget] if budget else [])
        rows.append({
            "card": card, "kind": done[0]["kind"], "encoder": enc, "metric": done[0]["metric"], "seeds": len(done),
            "mean": float(vals.mean()), "sd": float(vals.std(ddof=1)) if len(vals) > 1 else math.nan,
            "ci_low": 100 * low, "ci_high": 100 * high,
            "reference": ref_score, "reference_model": ref.model if ref else "",
            "diff": None if ref_score is None else float(vals.mean()) - ref_score,
            "limited": limited,
            "budget": "LIMITED: " + "; ".join(why) if limited else "full",
        })
    return rows


def macro(rows: list[dict[str, Any]], n_cards: int) -> list[dict[str, Any]]:
    """BLURB-style macro score per encoder: the mean over families of each family's mean card score."""
    out = []
    for enc in dict.fromkeys(r["encoder"] for r in rows):
        mine = [r for r in rows if r["encoder"] == enc]
        fams = {k: float(np.mean([r["mean"] for r in mine if r["kind"] == k])) for k in dict.fromkeys(r["kind"] for r in mine)}
        out.append({"encoder": enc, "families": fams, "macro": float(np.mean(list(fams.values()))),
                    "cards": f"{len(mine)}/{n_cards}", "limited": any(r["limited"] for r in mine)})
    return out


def _f(x: Any, digits: int = 2) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def command(grid: Any, out: Path) -> str:
    """The command line that reproduces `grid` into `out`."""
    parts = ["clinical-ft benchmark", *grid.overrides, "--cards", *grid.cards, "--encoders", ",".join(grid.encoders),
             "--seeds", ",".join(map(str, grid.seeds))]
    for opt in ("config", "data_dir", "max_train_examples", "max_steps", "epochs"):
        if getattr(grid, opt) is not None:
            parts += [f"--{opt.replace('_', '-')}", f"{getattr(grid, opt):g}" if opt == "epochs" else str(getattr(grid, opt))]
    parts += ["--bootstrap", str(grid.bootstrap)] + ([] if grid.keep_models else ["--discard-models"])
    return " ".join(parts + ["--out", str(out)])


def markdown(rows: list[dict[str, Any]], macros: list[dict[str, Any]], recs: list[dict[str, Any]], grid: Any, out: Path) -> str:
    """The results table, the macro table and the runs that were not scored, as markdown."""
    lines = ["# Benchmark results", "", f"Command: `{command(grid, out)}`", ""]
    if any(r["limited"] for r in rows):
        lines += ["**LIMITED runs** (training budget: " + (grid.budget() or "see the budget column") + "): "
                  "not comparable with full-data runs or with the published references.", ""]
    lines += [f"Test scores x100: mean and sample sd over seeds; 95% CI = percentile bootstrap over test examples "
              f"({grid.bootstrap} resamples, seed {grid.bootstrap_seed}) of the seed-averaged score. "
              "Δ = our mean - published reference.", "",
              "| card | family | encoder | metric | seeds | mean | sd | 95% CI | reference | Δ | budget |",
              "|---|---|---|---|---:|---:|---:|---|---|---:|---|"]
    for r in rows:
        ref = f"{_f(r['reference'])} ({r['reference_model']})" if r["reference"] is not None else "–"
        lines.append(f"| {r['card']} | {r['kind']} | {r['encoder']} | {r['metric']} | {r['seeds']} | {_f(r['mean'])} | "
                     f"{_f(r['sd'])} | [{_f(r['ci_low'])}, {_f(r['ci_high'])}] | {ref} | {_f(r['diff'])} | {r['budget']} |")
    if macros:
        fams = list(dict.fromkeys(f for m in macros for f in m["families"]))
        lines += ["", "BLURB-style macro score: mean over families of the mean card score per family.", "",
                  "| encoder | " + " | ".join(fams) + " | macro | cards |", "|---|" + "---:|" * (len(fams) + 1) + "---|"]
        for m in macros:
            cells = " | ".join(_f(m["families"].get(f)) for f in fams)
            lines.append(f"| {m['encoder']} | {cells} | {_f(m['macro'])}{' (LIMITED)' if m['limited'] else ''} | {m['cards']} |")
    other: dict[tuple[str, str, str, str], list[str]] = {}  # same card, encoder, status, reason: one row
    for r in recs:
        if r["status"] != "done":
            reason = (r.get("reason") or "not run yet: clinical-ft benchmark --resume").splitlines()[0][:240]
            other.setdefault((r["card"], r["encoder"], r["status"], reason.replace("|", "/")), []).append(str(r["seed"]))
    if other:
        lines += ["", "Runs not scored (details in each run's error.json / skipped.json):", "",
                  "| card | encoder | seeds | status | reason |", "|---|---|---|---|---|"]
        lines += [f"| {c} | {e} | {','.join(seeds)} | {st} | {why} |" for (c, e, st, why), seeds in other.items()]
    return "\n".join(lines) + "\n"


def chart(rows: list[dict[str, Any]], path: Path) -> None:
    """Grouped bars (card x encoder, bootstrap 95% CI as error bars), the published reference dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cards = list(dict.fromkeys(r["card"] for r in rows))
    encs = list(dict.fromkeys(r["encoder"] for r in rows))
    width = 0.8 / max(len(encs), 1)
    fig, ax = plt.subplots(figsize=(max(4.0, 1.6 * len(cards) * max(len(encs), 1) ** 0.5), 3.6))
    for j, enc in enumerate(encs):
        xs = [i + j * width for i, c in enumerate(cards) for r in rows if r["card"] == c and r["encoder"] == enc]
        mine = [r for c in cards for r in rows if r["card"] == c and r["encoder"] == enc]
        err = [[0.0 if math.isnan(r["ci_low"]) else r["mean"] - r["ci_low"] for r in mine],
               [0.0 if math.isnan(r["ci_high"]) else r["ci_high"] - r["mean"] for r in mine]]
        ax.bar(xs, [r["mean"] for r in mine], width, yerr=err, capsize=3,
               label=enc + (" (LIMITED)" if any(r["limited"] for r in mine) else ""))
    for i, c in enumerate(cards):
        ref = next((r["reference"] for r in rows if r["card"] == c and r["reference"] is not None), None)
        if ref is not None:
            ax.hlines(ref, i - width / 2, i + 0.8 - width / 2, colors="black", linestyles="dashed", linewidth=1)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(cards))], cards, rotation=20, ha="right")
    ax.set_ylabel("test score x100 (dashed: reference)")
    ax.set_ylim(0, 1.08 * max([100.0] + [r["reference"] or 0 for r in rows]))
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=min(3, len(encs)))
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def write_tables(grid: Any, cells: list[Any], out: Path, fmt: str = "markdown") -> str:
    """Write results.md, results.csv, runs.csv and results.png into `out`; return the table in `fmt`."""
    import pandas as pd

    recs = records(cells)
    cache_path = out / CACHE_FILE
    cache = json.loads(cache_path.read_text(encoding="utf-8")) if cache_path.is_file() else {}
    cis: dict[tuple[str, str], tuple[float, float]] = {}
    groups: dict[tuple[str, str], list[Any]] = {}
    for c, r in zip(cells, recs):
        if r["status"] == "done":
            groups.setdefault((c.card.name, c.encoder), []).append(c)
    for k, group in groups.items() if grid.bootstrap > 0 else ():
        try:
            cis[k] = _group_ci(grid, group, [r for r in recs if (r["card"], r["encoder"]) == k and r["status"] == "done"], cache)
        except Exception as exc:  # the table still shows mean/sd; the interval says n/a
            log.warning("no bootstrap interval for %s x %s: %s: %s", *k, type(exc).__name__, exc)
        write_json(cache_path, cache)  # after every interval, so an interrupted table keeps what it computed
    cards = {c.card.name: c.card for c in cells}
    rows = summarize(recs, cards, grid.budget(), cis)
    text = markdown(rows, macro(rows, len(cards)), recs, grid, out)
    table = pd.DataFrame(rows, columns=["card", "kind", "encoder", "metric", "seeds", "mean", "sd", "ci_low", "ci_high",
                                        "reference", "reference_model", "diff", "limited", "budget"])
    for name, content in (("results.md", text), ("results.csv", table.to_csv(index=False, float_format="%.4f")),
                          ("runs.csv", pd.DataFrame(recs).to_csv(index=False))):
        write_text(out / name, content)
    if rows:
        chart(rows, out / "results.png")
    return text if fmt == "markdown" else (out / "results.csv").read_text(encoding="utf-8")
