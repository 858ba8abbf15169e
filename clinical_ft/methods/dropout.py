"""Dropout rates while training, for any method: on the attention probabilities (``attention_dropout``)
and on the encoder's hidden states (``hidden_dropout``: after the embeddings, after each attention
output and each feed-forward output). Both are recorded in the model config; the head's own dropout
(``classifier_dropout``) is left alone."""

from __future__ import annotations

from typing import Any

from ..errors import ClinicalFTError
from .freeze import encoder_of


def _self_attention_dropouts(model: Any) -> list[Any]:
    import torch

    return [m.dropout for m in model.modules()
            if type(m).__name__.endswith("SelfAttention") and isinstance(getattr(m, "dropout", None), torch.nn.Dropout)]


def set_attention_dropout(model: Any, p: float) -> None:
    """Dropout `p` on the attention probabilities of every self-attention module (the ``dropout``
    that BERT-family attention passes to SDPA), recorded in the model config.

    Raises:
        ClinicalFTError: the model has no self-attention module with a ``dropout`` layer.
    """
    found = _self_attention_dropouts(model)
    if not found:
        raise ClinicalFTError(f"attention_dropout: {type(model).__name__} has no self-attention dropout to set")
    for layer in found:
        layer.p = p
    if hasattr(model.config, "attention_probs_dropout_prob"):
        model.config.attention_probs_dropout_prob = p


def hidden_dropouts(model: Any) -> list[Any]:
    """Every ``nn.Dropout`` of the encoder except those on the attention probabilities."""
    import torch

    attention = {id(d) for d in _self_attention_dropouts(model)}
    return [m for m in encoder_of(model).modules() if isinstance(m, torch.nn.Dropout) and id(m) not in attention]


def set_hidden_dropout(model: Any, p: float) -> None:
    """Dropout `p` on the encoder's hidden states (embeddings, attention output, feed-forward output),
    recorded in the model config as ``hidden_dropout_prob``; the head keeps its dropout (pinned as
    ``classifier_dropout`` when the config has that field and it was unset).

    Raises:
        ClinicalFTError: the encoder has no hidden-state dropout layer.
    """
    found = hidden_dropouts(model)
    if not found:
        raise ClinicalFTError(f"hidden_dropout: {type(model).__name__} has no hidden-state dropout to set")
    config = model.config
    if hasattr(config, "classifier_dropout") and config.classifier_dropout is None and hasattr(config, "hidden_dropout_prob"):
        config.classifier_dropout = config.hidden_dropout_prob  # the head's dropout stays what it was
    for layer in found:
        layer.p = p
    if hasattr(config, "hidden_dropout_prob"):
        config.hidden_dropout_prob = p
