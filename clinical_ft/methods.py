"""Fine-tuning methods applied to the model a task built, on the one engine path.

- ``full``: every parameter trains (default).
- ``partial``: freeze the embeddings (``freeze_embeddings``) and/or the bottom ``freeze_layers``
  transformer layers of the encoder; the rest of the encoder and the head train.
- ``head_only``: the whole encoder (the model's ``base_model``) is frozen; only the head trains.
- ``lora``: low-rank adapters (peft) on ``lora_target_modules`` of the encoder, the head trained
  in full (peft ``modules_to_save``). The run saves the adapter under ``adapter/`` and the adapter
  MERGED into the base weights as the run's model, so load_run/predict need no peft.
- tokens a task added to the vocabulary (relation markers, see `mark_new_tokens`) keep trainable
  embedding rows under every method: under ``lora`` through peft's ``trainable_token_indices``;
  under ``head_only`` and ``partial`` with frozen embeddings the word embedding is swapped for a
  `PartlyTrainableEmbedding` (old rows frozen, new rows trained) that `save_model` merges back.
- ``layerwise_lr_decay`` (any method): layer-wise learning-rate decay (LLRD). With L layers, the
  head (and pooler) get ``learning_rate``, layer l (1..L) ``learning_rate * decay**(L + 1 - l)``,
  the embeddings ``learning_rate * decay**(L + 1)``.

Parameters are located by name: ``...embeddings...`` and ``...layer.N...`` inside the encoder
(BERT, RoBERTa, ELECTRA, DistilBERT naming); the head is every parameter outside ``base_model``.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any

from .config import TrainConfig
from .errors import ClinicalFTError

log = logging.getLogger("clinical_ft.methods")
_NEW_TOKENS = "clinical_ft_new_token_ids"  # model attribute set by mark_new_tokens (never saved)
_LAYER = re.compile(r"(?:^|\.)layer\.(\d+)\.")
ADAPTER_DIR = "adapter"
_PEFT_TASK_TYPES = (("ForTokenClassification", "TOKEN_CLS"), ("ForSequenceClassification", "SEQ_CLS"),
                    ("ForQuestionAnswering", "QUESTION_ANS"))


def num_layers(model: Any) -> int:
    """Transformer layers of the encoder: config.num_hidden_layers (or n_layers), else counted by name."""
    cfg = getattr(model, "config", None)
    for key in ("num_hidden_layers", "n_layers"):
        if isinstance(getattr(cfg, key, None), int):
            return int(getattr(cfg, key))
    found = {int(m.group(1)) for n, _ in model.named_parameters() if (m := _LAYER.search(n))}
    return max(found) + 1 if found else 0


def depth(name: str, n_layers: int) -> int:
    """Depth of a parameter: 0 embeddings, 1..L transformer layer (layer.N is N+1), L+1 anything above."""
    m = _LAYER.search(name)
    if m:
        return int(m.group(1)) + 1
    return 0 if "embeddings" in name.split(".") else n_layers + 1


def _encoder(model: Any) -> Any:
    base = getattr(model, "base_model", model)
    return base if base is not None else model


def mark_new_tokens(model: Any, ids: list[int]) -> None:
    """Record the token ids a task added to `model`'s vocabulary (their embedding rows are new and
    must train whatever the method freezes)."""
    setattr(model, _NEW_TOKENS, sorted(set(ids)))


def new_token_ids(model: Any) -> list[int]:
    """Token ids recorded by `mark_new_tokens` (empty when none)."""
    return list(getattr(model, _NEW_TOKENS, []))


def _embedding_class() -> type:
    import torch

    class PartlyTrainableEmbedding(torch.nn.Embedding):
        """An embedding whose `weight` is frozen except the rows `ids`, trained as `new_rows`.

        Args:
            base: the embedding to wrap (its weight is shared, not copied).
            ids: the trainable rows.
        """

        def __init__(self, base: torch.nn.Embedding, ids: list[int]) -> None:
            super().__init__(base.num_embeddings, base.embedding_dim, padding_idx=base.padding_idx,
                             _weight=base.weight.detach(), _freeze=True)
            index = torch.tensor(ids, dtype=torch.long, device=base.weight.device)
            self.new_rows = torch.nn.Parameter(base.weight.detach()[index].clone())  # (K, H)
            slot = torch.full((base.num_embeddings,), -1, dtype=torch.long, device=base.weight.device)
            slot[index] = torch.arange(len(ids), device=base.weight.device)
            self.register_buffer("slot", slot, persistent=False)  # token id -> row of new_rows, or -1

        def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
            out = super().forward(input_ids)  # (B, T, H) from the frozen weight
            slot = self.slot[input_ids]  # (B, T)
            return torch.where((slot >= 0).unsqueeze(-1), self.new_rows[slot.clamp(min=0)], out)

        def merged(self) -> torch.nn.Embedding:
            """A plain embedding holding the trained rows."""
            weight = self.weight.detach().clone()
            weight[self.slot >= 0] = self.new_rows.detach()[self.slot[self.slot >= 0]]
            return torch.nn.Embedding(self.num_embeddings, self.embedding_dim, padding_idx=self.padding_idx,
                                      _weight=weight)

    return PartlyTrainableEmbedding


def _train_new_rows(model: Any, ids: list[int]) -> None:
    emb = model.get_input_embeddings()
    if ids and not emb.weight.requires_grad:
        model.set_input_embeddings(_embedding_class()(emb, ids))
        log.info("%d new token embeddings train; the other %d rows stay frozen", len(ids), emb.num_embeddings - len(ids))


def merge_new_rows(model: Any) -> Any:
    """Put a `PartlyTrainableEmbedding`'s trained rows back into a plain embedding (no-op otherwise)."""
    emb = model.get_input_embeddings()
    if hasattr(emb, "new_rows") and hasattr(emb, "merged"):
        model.set_input_embeddings(emb.merged())
    return model


def count_trainable(model: Any) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def apply(model: Any, cfg: TrainConfig) -> Any:
    """Apply `cfg.method` to a freshly built task model; return the model to train (a PeftModel for lora).

    Raises:
        ClinicalFTError: freeze_layers exceeds the encoder's layers, the model has no head to train,
            LoRA target modules are not in the model, or peft is missing.
    """
    n_layers = num_layers(model)
    encoder = _encoder(model)
    if cfg.attention_dropout is not None:
        set_attention_dropout(model, cfg.attention_dropout)
    if cfg.method == "lora":
        model = _lora(model, encoder, cfg)
    elif cfg.method in ("partial", "head_only"):
        if cfg.method == "partial" and cfg.freeze_layers > n_layers:
            raise ClinicalFTError(f"freeze_layers: the encoder has {n_layers} layers, found {cfg.freeze_layers}")
        if encoder is model:
            raise ClinicalFTError(f"method {cfg.method}: {type(model).__name__} has no head outside its encoder")
        for name, p in encoder.named_parameters():
            d = depth(name, n_layers)
            if cfg.method == "head_only" or (cfg.freeze_embeddings and d == 0) or 1 <= d <= cfg.freeze_layers:
                p.requires_grad_(False)
        _train_new_rows(model, new_token_ids(model))
    trainable, total = count_trainable(model)
    log.info("method %s: %d of %d parameters trainable (%.2f%%)", describe(cfg), trainable, total,
             100.0 * trainable / max(total, 1))
    return model


def set_attention_dropout(model: Any, p: float) -> None:
    """Dropout `p` on the attention probabilities of every self-attention module (the ``dropout``
    that BERT-family attention passes to SDPA), recorded in the model config.

    Raises:
        ClinicalFTError: the model has no self-attention module with a ``dropout`` layer.
    """
    import torch

    found = [m.dropout for m in model.modules()
             if type(m).__name__.endswith("SelfAttention") and isinstance(getattr(m, "dropout", None), torch.nn.Dropout)]
    if not found:
        raise ClinicalFTError(f"attention_dropout: {type(model).__name__} has no self-attention dropout to set")
    for layer in found:
        layer.p = p
    if hasattr(model.config, "attention_probs_dropout_prob"):
        model.config.attention_probs_dropout_prob = p


def describe(cfg: TrainConfig) -> str:
    """One-line description of the method, e.g. ``lora(r=8, alpha=16, query+value)``."""
    if cfg.method == "partial":
        what = (["embeddings"] if cfg.freeze_embeddings else []) + ([f"layers 0-{cfg.freeze_layers - 1}"] if cfg.freeze_layers else [])
        text = f"partial(frozen: {', '.join(what)})"
    elif cfg.method == "lora":
        text = f"lora(r={cfg.lora_r}, alpha={cfg.lora_alpha}, dropout={cfg.lora_dropout}, {'+'.join(cfg.lora_target_modules)})"
    else:
        text = cfg.method
    return text + (f" + llrd({cfg.layerwise_lr_decay})" if cfg.layerwise_lr_decay is not None else "")


def _lora(model: Any, encoder: Any, cfg: TrainConfig) -> Any:
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:  # pragma: no cover - peft is a dependency
        raise ClinicalFTError("method: lora needs the peft package: pip install peft") from None
    import torch

    linear = sorted({n.rsplit(".", 1)[-1] for n, m in encoder.named_modules() if isinstance(m, torch.nn.Linear)})
    missing = [t for t in cfg.lora_target_modules if t not in linear]
    if missing:
        raise ClinicalFTError(f"lora_target_modules: {missing} are not linear layers of {type(encoder).__name__}; "
                              f"it has {linear}")
    head = [n for n, child in model.named_children() if child is not encoder and any(True for _ in child.parameters())]
    task_type = next((t for suffix, t in _PEFT_TASK_TYPES if type(model).__name__.endswith(suffix)), None)
    lcfg = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=list(cfg.lora_target_modules), modules_to_save=head or None, task_type=task_type,
                      trainable_token_indices=new_token_ids(model) or None)  # added tokens: their rows train
    return get_peft_model(model, lcfg)


def is_peft(model: Any) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "merge_and_unload")


def lr_scales(model: Any, decay: float) -> dict[str, float]:
    """Learning-rate multiplier of every trainable parameter under LLRD with factor `decay`."""
    n = num_layers(model)
    return {name: decay ** (n + 1 - depth(name, n)) for name, p in model.named_parameters() if p.requires_grad}


def optimizer_cls_and_kwargs(model: Any, cfg: TrainConfig, args: Any) -> tuple[type, dict[str, Any]] | None:
    """For Trainer(optimizer_cls_and_kwargs=...): the Trainer's own optimizer (AdamW by default), whose
    weight-decay groups are further split by LLRD learning rate. None (Trainer default) without LLRD."""
    if cfg.layerwise_lr_decay is None:
        return None
    from transformers import Trainer

    base_cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(args, model)
    scales = lr_scales(model, cfg.layerwise_lr_decay)
    by_id = {id(p): scales[n] for n, p in model.named_parameters() if n in scales}

    class LayerwiseLR(base_cls):  # type: ignore[valid-type,misc]
        """`base_cls` with each parameter group split by layer-wise learning-rate scale."""

        def __init__(self, params: Any, **kw: Any) -> None:
            groups = []
            for g in params:
                split: dict[float, list[Any]] = {}
                for p in g["params"]:
                    split.setdefault(by_id[id(p)], []).append(p)
                groups += [{**g, "params": ps, "lr": kw["lr"] * s, "lr_scale": s} for s, ps in sorted(split.items())]
            super().__init__(groups, **kw)

    return LayerwiseLR, kwargs


def step_timer() -> Any:
    """A TrainerCallback summing wall time of optimisation steps only (not evaluation or saving)."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.seconds, self.steps, self._t0 = 0.0, 0, None

        def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self._t0 = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if self._t0 is not None:
                self.seconds += time.perf_counter() - self._t0
                self.steps += 1
                self._t0 = None

    return StepTimer()


def run_metrics(cfg: TrainConfig, timer: Any) -> dict[str, Any]:
    """Method fields for metrics.json."""
    return {"method": cfg.method, "method_detail": describe(cfg),
            "seconds_per_step": timer.seconds / timer.steps if timer.steps else None}


def save_model(trainer: Any, out: Path) -> None:
    """Save the trained model as the run's model. LoRA: the adapter goes to ``out/adapter`` and the
    merged model (``merge_and_unload``) to `out`, so the run loads like a fully fine-tuned one."""
    model = trainer.model
    if not is_peft(model):
        trainer.model = merge_new_rows(model)
        trainer.save_model(str(out))
        return
    model.save_pretrained(str(out / ADAPTER_DIR))
    merged = model.merge_and_unload()
    merged.save_pretrained(str(out))
    trainer.model = merged
    log.info("LoRA adapter saved to %s; merged model saved to %s", out / ADAPTER_DIR, out)
