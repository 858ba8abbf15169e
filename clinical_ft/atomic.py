"""Atomic outputs: a file appears under its name only when it is complete.

Everything clinical_ft writes (run files, predictions, reports, plots, prepared splits) goes through
:func:`atomic_path`: the caller writes a temporary file beside the target, which replaces the target
by a rename when the block ends without an exception; on an exception the temporary file is removed.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` when the block succeeds.

    The temporary file is ``<name>.tmp`` (a writer that picks its format by suffix, such as
    matplotlib's ``savefig``, must be given the format).
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists() and tmp.is_file():
            tmp.unlink()


@contextmanager
def atomic_open(path: str | Path, mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """`open` on a temporary file that replaces `path` when the block succeeds (text: UTF-8)."""
    if "b" not in mode:
        kwargs.setdefault("encoding", "utf-8")
    with atomic_path(path) as tmp, tmp.open(mode, **kwargs) as fh:
        yield fh


def write_text(path: str | Path, text: str) -> None:
    """Write UTF-8 `text` to `path` atomically."""
    with atomic_open(path) as fh:
        fh.write(text)


def save_figure(fig: Any, path: str | Path, **savefig: Any) -> Path:
    """Save a matplotlib figure as PNG at `path` atomically and close it; return the path."""
    import matplotlib.pyplot as plt

    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", **savefig)
    plt.close(fig)
    return path


def jsonable(x: Any) -> Any:
    """Values json cannot write: numpy scalars/arrays via ``tolist``, dataclasses as dicts, else text."""
    import dataclasses

    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return dataclasses.asdict(x)
    return x.tolist() if hasattr(x, "tolist") else str(x)


def finite(x: Any) -> Any:
    """`x` with every NaN or infinite float replaced by None (JSON ``null``: an undefined metric)."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [finite(v) for v in x]
    if hasattr(x, "dtype") and hasattr(x, "tolist"):  # numpy scalars and arrays
        return finite(x.tolist())
    return x


def write_json(path: str | Path, data: Any, default: Any = jsonable) -> None:
    """Write `data` as indented JSON atomically. Undefined (NaN, infinite) numbers become ``null``, so
    the file is strict JSON; `default` turns values json cannot write into ones it can."""
    text = json.dumps(finite(json.loads(json.dumps(data, default=default))), indent=2, allow_nan=False)
    write_text(path, text + "\n")
