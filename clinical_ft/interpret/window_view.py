"""The top of a long-note explanation: which windows drove the aggregated score (a strip over the
whole note and a ranked table with each window's share and the score without it)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .html import esc


def strip_html(windows: Sequence[Any], shares: np.ndarray, ranking: Sequence[int], explained: set[int],
               text_length: int) -> str:
    """Windows drawn over the whole note (overlapping windows on alternating rows), shaded by their
    share of the score, numbered by rank; explained windows outlined."""
    top = float(shares.max()) if len(shares) and shares.max() > 0 else 1.0
    rank = {w: r + 1 for r, w in enumerate(ranking)}
    n = max(1, text_length)
    boxes = []
    for k, (win, s) in enumerate(zip(windows, shares)):
        left, width = 100 * win.char_start / n, max(0.3, 100 * (win.char_end - win.char_start) / n)
        edge = "2px solid #1a7f37" if k in explained else "1px solid #d0d7de"
        boxes.append(f'<div title="window {k + 1}: rank {rank[k]}, share {s:.4f}, characters {win.char_start}-'
                     f'{win.char_end}" style="position:absolute;left:{left:.2f}%;width:{width:.2f}%;top:{(k % 2) * 18}px;'
                     f"height:16px;box-sizing:border-box;border:{edge};background:rgba(207,34,46,{s / top:.2f});"
                     f'font-size:10px;line-height:14px;text-align:center;overflow:hidden">{rank[k]}</div>')
    return ('<div class="strip" style="position:relative;height:36px;margin:.4em 0;background:#f6f8fa">'
            + "".join(boxes) + '</div><p class="note">Windows over the whole note (left = start of the note), '
            "numbered by rank, shaded by their share of the aggregated score; outlined: explained word by word.</p>")


def ranking_table(name: str, probs: Sequence[float], windows: Sequence[Any], shares: np.ndarray,
                  without: np.ndarray, ranking: Sequence[int], ig: dict[int, Any]) -> str:
    """One row per window in rank order: p, share of the score, score without it, IG convergence."""
    rows = []
    for r, k in enumerate(ranking):
        win, a = windows[k], ig.get(k)
        loo = "" if np.isnan(without[k]) else f"{without[k]:.4f}"
        if a is None:
            cells = "<td colspan=3></td>"
        else:
            flag = "yes" if a.converged else '<b class="warn">NO</b>'
            cells = (f'<td class="num">{a.n_steps}</td><td class="num">{a.delta:.2e} '
                     f'({100 * a.relative_delta:.1f}%)</td><td>{flag}</td>')
        rows.append(f'<tr><td>{r + 1}</td><td>{k + 1}{" &#9733;" if a is not None else ""}</td>'
                    f'<td class="num">{win.char_start}-{win.char_end}</td><td class="num">{len(win.input_ids)}</td>'
                    f'<td class="num">{probs[k]:.4f}</td><td class="num">{shares[k]:.4f}</td>'
                    f'<td class="num">{loo}</td>{cells}</tr>')
    return (f"<table><tr><th>rank</th><th>window</th><th>characters</th><th>tokens</th><th>p({esc(name)})</th>"
            "<th>share of score</th><th>score without it</th><th>IG steps</th><th>convergence delta "
            "(% of |f(x) - f(baseline)|)</th><th>converged</th></tr>" + "".join(rows) + "</table>")
