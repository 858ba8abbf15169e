"""Which parameters train: layer naming, freezing (partial, head_only, bitfit) and the embedding rows
of tokens a task added (`PartlyTrainableEmbedding`), shared by every method."""

from __future__ import annotations

import logging
import re
from typing import Any

from ..config import TrainConfig
from ..errors import ClinicalFTError

log = logging.getLogger("clinical_ft.methods")
_NEW_TOKENS = "clinical_ft_new_token_ids"  # model attribute set by mark_new_tokens (never saved)
_LAYER = re.compile(r"(?:^|\.)layer\.(\d+)\.")


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


def encoder_of(model: Any) -> Any:
    """The model's encoder (``base_model``); the model itself when it has none."""
    base = getattr(model, "base_model", model)
    return base if base is not None else model


def head_names(model: Any, encoder: Any) -> list[str]:
    """Names of the model's children outside the encoder that hold parameters (the task head)."""
    return [n for n, child in model.named_children() if child is not encoder and any(True for _ in child.parameters())]


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


def train_new_rows(model: Any, ids: list[int]) -> None:
    """Let the embedding rows `ids` train when the word embedding is frozen (swap in a
    `PartlyTrainableEmbedding`); re-enable them when a library froze an already swapped one."""
    emb = model.get_input_embeddings()
    if hasattr(emb, "new_rows"):
        emb.new_rows.requires_grad_(True)
    elif ids and not emb.weight.requires_grad:
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


def freeze(model: Any, cfg: TrainConfig) -> Any:
    """``partial``, ``head_only`` and ``bitfit`` (Ben Zaken et al. 2022: every bias term of the encoder,
    LayerNorm biases included, and the head train) by ``requires_grad``; new token rows keep training.

    Raises:
        ClinicalFTError: freeze_layers exceeds the encoder's layers, or the model has no head to train.
    """
    n_layers, encoder = num_layers(model), encoder_of(model)
    if cfg.method == "partial" and cfg.freeze_layers > n_layers:
        raise ClinicalFTError(f"freeze_layers: the encoder has {n_layers} layers, found {cfg.freeze_layers}")
    if encoder is model:
        raise ClinicalFTError(f"method {cfg.method}: {type(model).__name__} has no head outside its encoder")
    for name, p in encoder.named_parameters():
        d = depth(name, n_layers)
        if cfg.method == "bitfit":
            p.requires_grad_(name.rsplit(".", 1)[-1] == "bias")
        elif cfg.method == "head_only" or (cfg.freeze_embeddings and d == 0) or 1 <= d <= cfg.freeze_layers:
            p.requires_grad_(False)
    train_new_rows(model, new_token_ids(model))
    return model
