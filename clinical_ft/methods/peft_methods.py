"""peft methods whose weights merge into the base model: ``lora``, ``ia3`` and ``qlora`` (LoRA on a
4-bit bitsandbytes base, CUDA only). The head trains in full (peft ``modules_to_save``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from .. import encoders
from ..config import IA3_DEFAULT_FEEDFORWARD, IA3_DEFAULT_TARGETS, TrainConfig
from ..errors import ClinicalFTError
from .freeze import encoder_of, head_names, new_token_ids, train_new_rows

_PEFT_TASK_TYPES = (("ForTokenClassification", "TOKEN_CLS"), ("ForSequenceClassification", "SEQ_CLS"),
                    ("ForQuestionAnswering", "QUESTION_ANS"))


def _peft() -> Any:
    try:
        import peft
    except ImportError:  # pragma: no cover - peft is a dependency
        raise ClinicalFTError("this method needs the peft package: pip install peft") from None
    return peft


def is_peft(model: Any) -> bool:
    """True for a peft model (its weights can be merged with ``merge_and_unload``)."""
    return hasattr(model, "peft_config") and hasattr(model, "merge_and_unload")


def preflight(cfg: TrainConfig) -> None:
    """Refuse, before anything is loaded, a method this machine cannot run.

    Raises:
        ClinicalFTError: ``qlora`` without a CUDA GPU, or without bitsandbytes.
    """
    if cfg.method != "qlora":
        return
    import torch

    if not torch.cuda.is_available():
        raise ClinicalFTError("method: qlora needs a CUDA GPU (bitsandbytes 4-bit weights run on CUDA only) and "
                              "none is available; on this machine use method: lora (the same adapters on a "
                              "full-precision encoder)")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise ClinicalFTError("method: qlora needs bitsandbytes: pip install 'clinical_ft[qlora]'") from None


@contextlib.contextmanager
def loading(cfg: TrainConfig) -> Iterator[None]:
    """While building the model: ``qlora`` loads the encoder's weights in 4-bit NF4 (double quantisation,
    bf16 compute); other methods load as usual."""
    if cfg.method != "qlora":
        yield
        return
    import torch
    from transformers import BitsAndBytesConfig

    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=torch.bfloat16)
    with encoders.load_options(quantization_config=quant):
        yield


def _linear_names(encoder: Any) -> list[str]:
    import torch

    return sorted({n.rsplit(".", 1)[-1] for n, m in encoder.named_modules() if isinstance(m, torch.nn.Linear)})


def _check_targets(key: str, wanted: list[str], encoder: Any) -> None:
    names = [n for n, _ in encoder.named_modules()]
    missing = [t for t in wanted if not any(n == t or n.endswith("." + t) for n in names)]
    if missing:
        raise ClinicalFTError(f"{key}: {missing} are not linear layers of {type(encoder).__name__}; "
                              f"it has {_linear_names(encoder)}")


def task_type(model: Any) -> str | None:
    """peft task type of a transformers head (None for custom heads such as relation's entity-start)."""
    return next((t for suffix, t in _PEFT_TASK_TYPES if type(model).__name__.endswith(suffix)), None)


def apply(model: Any, cfg: TrainConfig) -> Any:
    """Wrap `model` in a peft model for ``lora``, ``qlora`` or ``ia3``.

    Raises:
        ClinicalFTError: target modules are not linear layers of the encoder.
    """
    peft = _peft()
    encoder = encoder_of(model)
    head = head_names(model, encoder) or None
    if cfg.method == "ia3":
        targets, feedforward = cfg.ia3_target_modules or list(IA3_DEFAULT_TARGETS), cfg.ia3_feedforward_modules
        feedforward = feedforward if feedforward is not None else [m for m in IA3_DEFAULT_FEEDFORWARD if m in targets]
        _check_targets("ia3_target_modules", targets, encoder)
        ids = new_token_ids(model)
        if ids:  # IA3 has no trainable_token_indices: the added rows train beside it
            for p in model.get_input_embeddings().parameters():
                p.requires_grad_(False)
            train_new_rows(model, ids)
        pcfg = peft.IA3Config(target_modules=targets, feedforward_modules=feedforward, modules_to_save=head,
                              task_type=task_type(model))
        wrapped = peft.get_peft_model(model, pcfg)
        train_new_rows(wrapped.get_base_model(), ids)  # peft froze them with the encoder
        return wrapped
    missing = [t for t in cfg.lora_target_modules if t not in _linear_names(encoder)]
    if missing:
        raise ClinicalFTError(f"lora_target_modules: {missing} are not linear layers of {type(encoder).__name__}; "
                              f"it has {_linear_names(encoder)}")
    if cfg.method == "qlora":
        model = peft.prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    lcfg = peft.LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                           target_modules=list(cfg.lora_target_modules), modules_to_save=head,
                           task_type=task_type(model),
                           trainable_token_indices=new_token_ids(model) or None)  # added tokens: their rows train
    return peft.get_peft_model(model, lcfg)


def merged(model: Any, adapter_dir: str, rebuild: Any) -> Any:
    """The trained adapter merged into the base model. ``qlora``: into a full-precision copy of the base
    built by `rebuild()` (the 4-bit weights are not the run's model); otherwise into `model` itself."""
    if rebuild is None:
        return model.merge_and_unload()
    return _peft().PeftModel.from_pretrained(rebuild(), adapter_dir).merge_and_unload()
