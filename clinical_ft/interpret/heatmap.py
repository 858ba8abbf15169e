"""PNG attention heatmaps with matplotlib (Agg backend, no display needed)."""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..atomic import atomic_open


def heatmap_png(panels: Sequence[tuple[str, np.ndarray]], labels: Sequence[str] | None = None,
                title: str = "") -> bytes:
    """Side-by-side (T, T) heatmaps as PNG bytes; token labels on the axes only for short inputs.

    Args:
        panels: (caption, matrix) pairs, e.g. ("rollout", R), ("layer 6, mean of heads", A).
        labels: token strings for the axes (drawn when there are at most 32 tokens).
        title: figure title.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3.4 * len(panels), 3.7), dpi=90)
    FigureCanvasAgg(fig)  # Agg: no display, no pyplot global state
    short = labels is not None and len(labels) <= 32
    fig.subplots_adjust(left=0.2 if short else 0.14, right=0.97, bottom=0.22 if short else 0.14, top=0.86,
                        wspace=0.45 if short else 0.3)
    for i, (cap, mat) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        ax.imshow(np.sqrt(np.clip(mat, 0, None)), cmap="Blues", interpolation="nearest")
        ax.set_title(cap, fontsize=9)
        ax.set_xlabel("attended token", fontsize=8)
        ax.set_ylabel("attending token", fontsize=8)
        if short:
            ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=6)
            ax.set_yticks(range(len(labels)), labels, fontsize=6)
        else:
            ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def safe_name(text: str, limit: int = 60) -> str:
    """A file-name-safe version of a document id."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[:limit].strip("._") or "doc"


def png_dir(out_html: Path) -> Path:
    """Folder beside the report that holds its PNG heatmaps: ``<stem>_heatmaps/``."""
    return out_html.with_name(out_html.stem + "_heatmaps")


def write_png(folder: Path, name: str, png: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    with atomic_open(path, "wb") as fh:
        fh.write(png)
    return path
