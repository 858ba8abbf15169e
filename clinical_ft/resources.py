"""Find shipped task cards/configs and the data root.

Cards and configs are looked up as: an explicit path, then the repository's `tasks/`/`configs/`
folder (editable installs), then the copy shipped in the wheel under `clinical_ft/_data/`.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import ClinicalFTError

_PKG = Path(__file__).resolve().parent
_REPO = _PKG.parent
DATA_ENV = "CLINICAL_FT_DATA"


def _roots(kind: str) -> list[Path]:
    return [r for r in (_REPO / kind, _PKG / "_data" / kind) if r.is_dir()]


def find(name: str | Path, kind: str) -> Path:
    """Resolve a card (`kind="tasks"`) or config (`kind="configs"`) by path or short name.

    Args:
        name: a path, or a name relative to the shipped folder, with or without `.yaml`
            (e.g. ``ner/ncbi_disease``).
        kind: ``"tasks"`` or ``"configs"``.

    Raises:
        ClinicalFTError: nothing matches; the message lists what is shipped.
    """
    path = Path(name)
    if path.is_file():
        return path
    rel = Path(str(name).removeprefix(f"{kind}/"))
    for root in _roots(kind):
        for cand in (root / rel, root / rel.with_suffix(".yaml")):
            if cand.is_file():
                return cand
    shipped = ", ".join(str(p) for p in list_shipped(kind)) or "none"
    raise ClinicalFTError(f"{kind[:-1]} {name!r} not found as a file or shipped name; shipped: {shipped}")


def list_shipped(kind: str) -> list[Path]:
    """Shipped YAML files of `kind`, as paths relative to their root (first root wins)."""
    seen: dict[Path, None] = {}
    for root in _roots(kind):
        for p in sorted(root.rglob("*.yaml")):
            seen.setdefault(p.relative_to(root), None)
    return list(seen)


def data_root(explicit: str | Path | None = None) -> Path:
    """Where card data paths are resolved: `--data-dir`, then $CLINICAL_FT_DATA, then ../shared/data."""
    if explicit:
        return Path(explicit)
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV])
    for base in (Path.cwd(), _REPO):
        for cand in (base / "shared" / "data", base.parent / "shared" / "data"):
            if cand.is_dir():
                return cand
    return Path.cwd() / "data"


def resolve_data_path(card_path: str, explicit_root: str | Path | None = None) -> Path:
    p = Path(os.path.expandvars(os.path.expanduser(card_path)))
    return p if p.is_absolute() else data_root(explicit_root) / p
