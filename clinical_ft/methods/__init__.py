"""Fine-tuning methods applied to the model a task built, on the one engine path.

- ``full``: every parameter trains (default).
- ``partial``: freeze the embeddings (``freeze_embeddings``) and/or the bottom ``freeze_layers``
  transformer layers of the encoder; the rest of the encoder and the head train.
- ``head_only``: the whole encoder (the model's ``base_model``) is frozen; only the head trains.
- ``bitfit``: only the encoder's bias terms (LayerNorm biases included) and the head train.
- ``lora`` / ``ia3``: peft adapters on ``lora_target_modules`` / ``ia3_target_modules`` of the
  encoder, the head trained in full (peft ``modules_to_save``). The run saves the adapter under
  ``adapter/`` and the adapter MERGED into the base weights as the run's model: loading needs no peft.
- ``qlora``: LoRA on a 4-bit NF4 (bitsandbytes) encoder; CUDA only (`preflight` refuses it elsewhere
  before anything loads). The adapter is merged into a full-precision copy of the base for the run.
- ``prefix`` / ``prompt``: peft virtual tokens in the encoder (methods/prompt.py); they cannot merge:
  the run keeps them under ``adapter/`` and `restore` (load_run) re-applies them (needs peft).
- tokens a task added to the vocabulary (relation markers, see `mark_new_tokens`) keep trainable
  embedding rows under every method: under ``lora`` through peft's ``trainable_token_indices``;
  otherwise, where the embedding is frozen, through a `PartlyTrainableEmbedding` (old rows frozen,
  new rows trained) that `save_model` merges back.
- ``attention_dropout`` / ``hidden_dropout`` (any method): dropout on the attention probabilities /
  on the encoder's hidden states while training (methods/dropout.py); an attention dropout of 0 lets
  SDPA run its fused kernel in training too.
- ``layerwise_lr_decay`` (any method): layer-wise learning-rate decay (LLRD). With L layers, the
  head (and pooler) get ``learning_rate``, layer l (1..L) ``learning_rate * decay**(L + 1 - l)``,
  the embeddings ``learning_rate * decay**(L + 1)``.

Parameters are located by name: ``...embeddings...`` and ``...layer.N...`` inside the encoder
(BERT, RoBERTa, ELECTRA, DistilBERT naming); the head is every parameter outside ``base_model``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..config import IA3_DEFAULT_TARGETS, TrainConfig
from . import peft_methods, prompt
from .dropout import set_attention_dropout, set_hidden_dropout
from .freeze import (
    count_trainable,
    depth,
    encoder_of,
    freeze,
    mark_new_tokens,
    merge_new_rows,
    new_token_ids,
    num_layers,
)
from .optim import lr_scales, optimizer_cls_and_kwargs, step_timer
from .peft_methods import is_peft, loading, preflight

__all__ = ["ADAPTER_DIR", "apply", "count_trainable", "depth", "describe", "is_peft", "loading", "lr_scales",
           "mark_new_tokens", "merge_new_rows", "new_token_ids", "num_layers", "optimizer_cls_and_kwargs",
           "preflight", "restore", "run_metrics", "save_model", "set_attention_dropout", "set_hidden_dropout", "step_timer"]
log = logging.getLogger("clinical_ft.methods")
ADAPTER_DIR = "adapter"
MERGED = ("lora", "ia3", "qlora")  # peft methods merged into the saved model


def apply(model: Any, cfg: TrainConfig) -> Any:
    """Apply `cfg.method` to a freshly built task model; return the model to train (a PeftModel for
    lora/ia3/qlora).

    Raises:
        ClinicalFTError: freeze_layers exceeds the encoder's layers, the model has no head to train,
            target modules are not in the model, or the encoder cannot take virtual tokens.
    """
    if cfg.attention_dropout is not None:
        set_attention_dropout(model, cfg.attention_dropout)
    if cfg.hidden_dropout is not None:
        set_hidden_dropout(model, cfg.hidden_dropout)
    if cfg.method in MERGED:
        model = peft_methods.apply(model, cfg)
    elif cfg.method in prompt.METHODS:
        model = prompt.apply(model, encoder_of(model), cfg)
    elif cfg.method in ("partial", "head_only", "bitfit"):
        model = freeze(model, cfg)
    trainable, total = count_trainable(model)
    log.info("method %s: %d of %d parameters trainable (%.2f%%)", describe(cfg), trainable, total,
             100.0 * trainable / max(total, 1))
    return model


def describe(cfg: TrainConfig) -> str:
    """One-line description of the method, e.g. ``lora(r=8, alpha=16, query+value)``."""
    if cfg.method == "partial":
        what = (["embeddings"] if cfg.freeze_embeddings else []) + ([f"layers 0-{cfg.freeze_layers - 1}"] if cfg.freeze_layers else [])
        text = f"partial(frozen: {', '.join(what)})"
    elif cfg.method in ("lora", "qlora"):
        text = (f"{cfg.method}(r={cfg.lora_r}, alpha={cfg.lora_alpha}, dropout={cfg.lora_dropout}, "
                f"{'+'.join(cfg.lora_target_modules)})")
    elif cfg.method == "ia3":
        text = f"ia3({'+'.join(cfg.ia3_target_modules or IA3_DEFAULT_TARGETS)})"
    elif cfg.method in prompt.METHODS:
        text = f"{cfg.method}({prompt.virtual_tokens(cfg)} virtual tokens)"
    else:
        text = cfg.method
    return text + (f" + llrd({cfg.layerwise_lr_decay})" if cfg.layerwise_lr_decay is not None else "")


def run_metrics(cfg: TrainConfig, timer: Any) -> dict[str, Any]:
    """Method fields for metrics.json."""
    return {"method": cfg.method, "method_detail": describe(cfg),
            "seconds_per_step": timer.seconds / timer.steps if timer.steps else None}


def save_model(trainer: Any, out: Path, rebuild: Any = None) -> None:
    """Save the trained model as the run's model. lora/ia3/qlora: the adapter goes to ``out/adapter`` and
    the merged model to `out` (qlora: merged into the full-precision base `rebuild()` returns), so the
    run loads like a fully fine-tuned one. prefix/prompt: the virtual tokens go to ``out/adapter``, the
    plain encoder and head to `out` (`restore` puts them back together)."""
    model = trainer.model
    if is_peft(model):
        model.save_pretrained(str(out / ADAPTER_DIR))
        model = peft_methods.merged(model, str(out / ADAPTER_DIR), rebuild if _qlora(model) else None)
        log.info("adapter saved to %s; merged model saved to %s", out / ADAPTER_DIR, out)
    else:
        model = prompt.unwrap(model, out / ADAPTER_DIR)
    trainer.model = merge_new_rows(model)
    trainer.save_model(str(out))


def _qlora(model: Any) -> bool:
    return bool(getattr(model.get_base_model(), "is_loaded_in_4bit", False))


def restore(model: Any, run_dir: Path, cfg: TrainConfig) -> Any:
    """A run's model as trained: prefix/prompt runs get their saved virtual tokens back (peft); the
    other methods' saved models are complete."""
    if cfg.method not in prompt.METHODS:
        return model
    return prompt.apply(model, encoder_of(model), cfg, adapter_dir=Path(run_dir) / ADAPTER_DIR)
