"""Entity-start pooling head for relation classification (Baldini Soares et al. 2019, "EM" variant):
the hidden states at the two argument start markers, concatenated, then a linear classifier.

A `PreTrainedModel`, so `save_pretrained`/`from_pretrained` write and read safetensors and a run
directory reloads through `Task.build_model(run_dir, ...)` like any Hugging Face head.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput


class EntityStartClassifier(PreTrainedModel):
    """Any Hugging Face encoder + a linear layer over [h(E1 start); h(E2 start)].

    Args:
        config: the encoder's config, with `num_labels`/`id2label` set.
        encoder: a loaded encoder (fresh fine-tuning); built from `config` when None (reloading).
    """

    config_class = AutoConfig
    base_model_prefix = "encoder"
    _supports_sdpa = True
    _supports_attention_backend = True

    def __init__(self, config: Any, encoder: Any = None):
        super().__init__(config)
        if encoder is None:
            try:
                encoder = AutoModel.from_config(config, add_pooling_layer=False)
            except TypeError:  # encoders without a pooler option
                encoder = AutoModel.from_config(config)
        self.encoder = encoder
        self.dropout = nn.Dropout(getattr(config, "hidden_dropout_prob", 0.1))
        self.classifier = nn.Linear(2 * config.hidden_size, config.num_labels)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.encoder.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.encoder.set_input_embeddings(value)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        entity_positions: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        **kwargs: Any,
    ) -> SequenceClassifierOutput:
        """`entity_positions`: (B, 2) token positions of the two argument start markers."""
        enc_kwargs = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask, output_attentions=output_attentions,
                           **enc_kwargs)
        hidden = out.last_hidden_state  # (B, T, H)
        if entity_positions is None:
            entity_positions = torch.zeros(hidden.size(0), 2, dtype=torch.long, device=hidden.device)
        idx = entity_positions.long().unsqueeze(-1).expand(-1, -1, hidden.size(-1))  # (B, 2, H)
        pooled = torch.gather(hidden, 1, idx).flatten(1)  # (B, 2H)
        logits = self.classifier(self.dropout(pooled))  # (B, C)
        loss = nn.functional.cross_entropy(logits, labels.view(-1)) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits, attentions=out.attentions)
