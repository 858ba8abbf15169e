"""``prefix`` (P-tuning v2 style: trainable key/value vectors in every layer) and ``prompt`` (soft
prompt vectors before the input) tuning with peft, applied to the ENCODER of the task model.

peft's own task wrappers do not keep the task's positions: with prompt tuning,
``PeftModelForTokenClassification`` returns num_virtual_tokens more logits than labels (its loss fails:
"Expected input batch_size (9) to match target batch_size (4)") and ``PeftModelForQuestionAnswering``
returns start/end logits shifted by the prompt; relation's entity-start head is not a peft task type.
So the encoder (``model.base_model``) is replaced by a `VirtualTokenEncoder`: peft
(``PeftModelForFeatureExtraction``) holds, trains and saves the virtual tokens; the encoder's outputs
(hidden states, attentions) are cut back to the real tokens, so the task head sees exactly the
positions it would without the method: one logit per input token (NER windows), the entity-start
marker positions (relation), the QA span offsets, the [CLS] of a readmission window. The BERT
pooler is re-applied to the real [CLS]. Token type ids are kept (prompt: the virtual tokens get type 0).
Attention maps (explain) cover the real tokens only: the weight put on virtual tokens is left out.

Prefix tuning passes the vectors as the key/value cache; BERT in transformers 5 takes it (``cache``,
formerly ``past_key_values``) and numbers the real tokens after the prefix. Both methods therefore
need ``max_length + num_virtual_tokens <= max_position_embeddings``. The virtual tokens cannot be
merged into weights: the run saves them under ``adapter/`` with the plain encoder + head as the model,
and `restore` (called by load_run) re-applies them, so loading such a run needs peft.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from ..config import TrainConfig
from ..errors import ClinicalFTError
from .freeze import new_token_ids, num_layers, train_new_rows

METHODS = ("prefix", "prompt")
DEFAULT_VIRTUAL_TOKENS = 20


def virtual_tokens(cfg: TrainConfig) -> int:
    """The number of virtual tokens `cfg` asks for (``num_virtual_tokens``, default 20)."""
    return cfg.num_virtual_tokens if cfg.num_virtual_tokens is not None else DEFAULT_VIRTUAL_TOKENS


def _wrapper_class() -> type:
    import torch

    class VirtualTokenEncoder(torch.nn.Module):
        """An encoder with peft virtual tokens whose outputs cover the real tokens only.

        Args:
            peft_model: a ``PeftModelForFeatureExtraction`` (prefix or prompt tuning) around the encoder.
        """

        def __init__(self, peft_model: Any) -> None:
            super().__init__()
            self.peft = peft_model
            pc = peft_model.active_peft_config
            self.n, self.prefix = pc.num_virtual_tokens, pc.peft_type.value == "PREFIX_TUNING"

        @property
        def config(self) -> Any:
            return self.peft.get_base_model().config

        def get_input_embeddings(self) -> Any:
            return self.peft.get_base_model().get_input_embeddings()

        def set_input_embeddings(self, value: Any) -> None:
            self.peft.get_base_model().set_input_embeddings(value)

        def forward(self, input_ids: Any = None, attention_mask: Any = None, token_type_ids: Any = None,
                    position_ids: Any = None, inputs_embeds: Any = None, **kw: Any) -> Any:
            if position_ids is not None:
                raise ClinicalFTError("prefix/prompt tuning: explicit position_ids are not supported")
            base = self.peft.get_base_model()
            ref = input_ids if input_ids is not None else inputs_embeds
            b, t = ref.shape[0], ref.shape[1]
            if attention_mask is None:
                attention_mask = torch.ones(b, t, dtype=torch.long, device=ref.device)
            mask = torch.cat([torch.ones(b, self.n, dtype=attention_mask.dtype, device=ref.device), attention_mask], 1)
            if self.prefix:
                kw[_cache_name()] = self.peft.get_prompt(b)
                if token_type_ids is not None:
                    kw["token_type_ids"] = token_type_ids
                out = base(input_ids=input_ids, inputs_embeds=inputs_embeds, attention_mask=mask, **kw)
                if out.get("attentions") is not None:  # keys include the prefix: keep the real tokens' columns
                    out["attentions"] = tuple(a[..., self.n:] for a in out.attentions)
                return out
            if inputs_embeds is None:
                inputs_embeds = base.get_input_embeddings()(input_ids)
            prompts = self.peft.get_prompt(batch_size=b).to(inputs_embeds.dtype)
            if token_type_ids is not None:
                kw["token_type_ids"] = torch.cat([token_type_ids.new_zeros(b, self.n), token_type_ids], 1)
            out = base(inputs_embeds=torch.cat([prompts, inputs_embeds], 1), attention_mask=mask, **kw)
            out["last_hidden_state"] = out.last_hidden_state[:, self.n:]
            if out.get("pooler_output") is not None:
                out["pooler_output"] = base.pooler(out.last_hidden_state)
            if out.get("hidden_states") is not None:
                out["hidden_states"] = tuple(h[:, self.n:] for h in out.hidden_states)
            if out.get("attentions") is not None:
                out["attentions"] = tuple(a[..., self.n:, self.n:] for a in out.attentions)
            return out

    return VirtualTokenEncoder


def _cache_name() -> str:
    """The keyword the encoder takes the prefix under: peft's answer for this transformers version."""
    try:
        from peft.import_utils import get_transformers_cache_name
    except ImportError:  # older peft: transformers 4 naming
        return "past_key_values"
    return get_transformers_cache_name()


def _peft_config(encoder: Any, cfg: TrainConfig) -> Any:
    from peft import PrefixTuningConfig, PromptTuningConfig

    make = PrefixTuningConfig if cfg.method == "prefix" else PromptTuningConfig
    c = encoder.config
    heads = getattr(c, "num_attention_heads", None) or getattr(c, "n_heads", None)  # stated: DistilBERT names differ
    return make(task_type="FEATURE_EXTRACTION", num_virtual_tokens=virtual_tokens(cfg), num_layers=num_layers(encoder),
                token_dim=encoder.get_input_embeddings().embedding_dim, num_attention_heads=heads)


def _check(model: Any, encoder: Any, cfg: TrainConfig) -> None:
    prefix_name = getattr(model, "base_model_prefix", "")
    if encoder is model or getattr(model, prefix_name, None) is not encoder:
        raise ClinicalFTError(f"method {cfg.method}: {type(model).__name__} has no encoder under "
                              f"`{prefix_name or 'base_model_prefix'}` to put virtual tokens into")
    n, limit = virtual_tokens(cfg), getattr(encoder.config, "max_position_embeddings", None)
    if limit is not None and cfg.max_length + n > limit:
        raise ClinicalFTError(f"method {cfg.method}: max_length {cfg.max_length} + num_virtual_tokens {n} exceeds the "
                              f"encoder's {limit} positions; lower max_length to {limit - n} or num_virtual_tokens")
    params = inspect.signature(encoder.forward).parameters
    if cfg.method == "prefix" and not {"cache", "past_key_values"} & set(params):
        raise ClinicalFTError(f"method prefix: {type(encoder).__name__}.forward takes no key/value cache "
                              "(past_key_values), which prefix tuning needs; use method: prompt")


def apply(model: Any, encoder: Any, cfg: TrainConfig, adapter_dir: Path | None = None) -> Any:
    """Put trainable (or, with `adapter_dir`, saved) virtual tokens into `model`'s encoder; the encoder is
    frozen, the head and the rows of added tokens train.

    Raises:
        ClinicalFTError: no separate encoder, too many positions, or prefix on an encoder without a cache.
    """
    from peft import PeftModel, get_peft_model

    _check(model, encoder, cfg)
    ids = new_token_ids(model)
    if adapter_dir is not None:
        wrapped = PeftModel.from_pretrained(encoder, str(adapter_dir))
    else:
        for p in encoder.parameters():
            p.requires_grad_(False)
        train_new_rows(model, ids)  # before peft finds the word embedding
        wrapped = get_peft_model(encoder, _peft_config(encoder, cfg))
        train_new_rows(model, ids)  # peft froze the swapped embedding with the encoder
    emb = wrapped._modules.pop("word_embeddings", None)  # peft's second handle on the encoder's embedding:
    if emb is not None:  # kept as a plain attribute, so checkpoints do not hold the same tensor twice
        object.__setattr__(wrapped, "word_embeddings", emb)
    setattr(model, model.base_model_prefix, _wrapper_class()(wrapped))
    return model


def unwrap(model: Any, adapter_dir: Path) -> Any:
    """Save the virtual tokens to `adapter_dir` and put the plain encoder back into `model`."""
    wrapper = getattr(model, getattr(model, "base_model_prefix", ""), None)
    if not hasattr(wrapper, "peft"):
        return model
    wrapper.peft.save_pretrained(str(adapter_dir))
    setattr(model, model.base_model_prefix, wrapper.peft.get_base_model())
    return model
