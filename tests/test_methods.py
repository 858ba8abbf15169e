"""Fine-tuning methods: partial freezing, head-only, LLRD groups, LoRA (train, save, merge, resume)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from clinical_ft import engine, methods
from clinical_ft.config import TaskCard, TrainConfig, from_dict, load
from clinical_ft.errors import ClinicalFTError, ConfigError
from clinical_ft.ner import TASK
from clinical_ft.trainer import trainer_class

CARD = "tests/fixtures/ncbi_mini.yaml"
DATA = "tests/fixtures"
LABELS = ["O", "B-Disease", "I-Disease"]
H, INTER, POS = 32, 37, 512  # the tiny_encoder's BertConfig (2 layers)


def _sizes(vocab: int) -> tuple[int, int, int]:
    """(embeddings, one transformer layer, token-classification head) parameter counts, by hand."""
    emb = vocab * H + POS * H + 2 * H + 2 * H  # word, position, token type, LayerNorm
    layer = 4 * (H * H + H) + 2 * H + (H * INTER + INTER) + (INTER * H + H) + 2 * H  # Q K V O, LN, FFN, LN
    head = H * len(LABELS) + len(LABELS)
    return emb, layer, head


def _model(tiny: str, **kw: object) -> tuple[torch.nn.Module, TrainConfig]:
    cfg = TrainConfig(encoder=tiny, **kw)
    return methods.apply(TASK.build_model(tiny, LABELS, cfg), cfg), cfg


def _cfg(tiny: str, **kw: object) -> TrainConfig:
    base = {"encoder": tiny, "max_steps": 2, "per_device_train_batch_size": 2, "max_length": 32, "stride": 8,
            "eval_strategy": "no", "logging_steps": 1}
    return from_dict(TrainConfig, {**base, **kw}, "test")


def test_partial_and_head_only_leave_exactly_the_expected_parameters_trainable(tiny_encoder: str) -> None:
    model, _ = _model(tiny_encoder, method="partial", freeze_embeddings=True, freeze_layers=1)
    emb, layer, head = _sizes(model.config.vocab_size)
    assert methods.count_trainable(model) == (layer + head, emb + 2 * layer + head)
    assert not model.bert.encoder.layer[0].attention.self.query.weight.requires_grad
    assert model.bert.encoder.layer[1].attention.self.query.weight.requires_grad

    model, _ = _model(tiny_encoder, method="partial", freeze_layers=2)
    assert methods.count_trainable(model)[0] == emb + head
    model, _ = _model(tiny_encoder, method="head_only")
    assert methods.count_trainable(model)[0] == head
    model, _ = _model(tiny_encoder)
    assert methods.count_trainable(model)[0] == emb + 2 * layer + head


def test_method_settings_are_validated(tiny_encoder: str) -> None:
    bad = {"method": "partial", "lora_dropout": 1.5, "layerwise_lr_decay": 0.0, "lora_r": 0}
    with pytest.raises(ConfigError) as err:
        from_dict(TrainConfig, bad, "cfg.yaml")
    text = str(err.value)
    for key in ("partial freezes nothing", "lora_dropout", "layerwise_lr_decay", "lora_r"):
        assert key in text
    with pytest.raises(ConfigError, match="only used with method: partial"):
        from_dict(TrainConfig, {"freeze_layers": 1}, "cfg.yaml")
    with pytest.raises(ClinicalFTError, match="has 2 layers"):
        _model(tiny_encoder, method="partial", freeze_layers=3)
    with pytest.raises(ClinicalFTError, match="not linear layers.*'query'"):
        _model(tiny_encoder, method="lora", lora_target_modules=["q_proj"])


def test_attention_dropout_sets_every_self_attention_and_is_validated(tiny_encoder: str) -> None:
    """attention_dropout reaches the dropout that BERT attention hands to SDPA; null keeps the encoder's."""
    def probs(model: torch.nn.Module) -> list[float]:
        return [m.dropout.p for m in model.modules() if type(m).__name__ == "BertSelfAttention"]

    model, _ = _model(tiny_encoder)
    assert probs(model) == [0.1, 0.1]
    model, _ = _model(tiny_encoder, attention_dropout=0.0)
    assert probs(model) == [0.0, 0.0] and model.config.attention_probs_dropout_prob == 0.0
    assert model.bert.encoder.layer[0].attention.output.dropout.p == 0.1  # hidden dropout untouched
    with pytest.raises(ConfigError, match="attention_dropout: expected a value in"):
        from_dict(TrainConfig, {"attention_dropout": 1.0}, "cfg.yaml")
    with pytest.raises(ClinicalFTError, match="no self-attention dropout"):
        methods.set_attention_dropout(torch.nn.Sequential(torch.nn.Linear(2, 2)), 0.0)


def test_hidden_dropout_sets_the_encoder_states_not_attention_or_head(tiny_encoder: str) -> None:
    """hidden_dropout reaches embeddings, attention output and feed-forward output dropouts; the attention
    probabilities and the head keep theirs, also in the saved config (classifier_dropout pinned)."""
    def rates(model: torch.nn.Module) -> dict[str, float]:
        return {n: m.p for n, m in model.named_modules() if isinstance(m, torch.nn.Dropout)}

    model, _ = _model(tiny_encoder, hidden_dropout=0.0)
    got = rates(model)
    hidden = [n for n in got if n.startswith("bert.") and not n.endswith("attention.self.dropout")]
    assert len(hidden) == 1 + 2 * 2 and all(got[n] == 0.0 for n in hidden)  # embeddings + 2 per layer
    assert got["dropout"] == 0.1 and got["bert.encoder.layer.0.attention.self.dropout"] == 0.1
    assert model.config.hidden_dropout_prob == 0.0 and model.config.classifier_dropout == 0.1
    with pytest.raises(ConfigError, match="hidden_dropout: expected a value in"):
        from_dict(TrainConfig, {"hidden_dropout": -0.1}, "cfg.yaml")
    with pytest.raises(ClinicalFTError, match="no hidden-state dropout"):
        methods.set_hidden_dropout(torch.nn.Sequential(torch.nn.Linear(2, 2)), 0.0)


def test_llrd_groups_have_lrs_decayed_by_layer(tiny_encoder: str, tmp_path: Path) -> None:
    model, cfg = _model(tiny_encoder, layerwise_lr_decay=0.5, learning_rate=1e-3)
    assert methods.optimizer_cls_and_kwargs(model, TrainConfig(), None) is None  # no LLRD: Trainer default
    args = engine.training_arguments(cfg, tmp_path, has_eval=False, metric="f1")
    trainer = trainer_class()(model=model, args=args,
                                      optimizer_cls_and_kwargs=methods.optimizer_cls_and_kwargs(model, cfg, args))
    opt = trainer.create_optimizer()
    where = {id(p): (g["lr"], g["weight_decay"]) for g in opt.param_groups for p in g["params"]}
    expected = {"embeddings": 1e-3 * 0.5**3, "layer.0.": 1e-3 * 0.5**2, "layer.1.": 1e-3 * 0.5, "classifier": 1e-3}
    named = dict(model.named_parameters())
    assert len(where) == len(named)
    for name, p in named.items():
        lr, wd = where[id(p)]
        assert lr == pytest.approx(next(v for k, v in expected.items() if k in name)), name
        assert wd == (0.0 if "bias" in name or "LayerNorm" in name else cfg.weight_decay), name


def test_partial_with_llrd_trains_through_engine_and_keeps_frozen_weights(tiny_encoder: str, tmp_path: Path) -> None:
    card = load(TaskCard, CARD)
    cfg = _cfg(tiny_encoder, method="partial", freeze_embeddings=True, freeze_layers=1, layerwise_lr_decay=0.8,
               learning_rate=1e-2)
    metrics = engine.train(TASK, card, cfg, tmp_path / "run", data_dir=DATA)
    base = load_file(str(Path(tiny_encoder) / "model.safetensors"))
    emb, layer, head = _sizes(base["embeddings.word_embeddings.weight"].shape[0])
    assert metrics["trainable_parameters"] == layer + head and metrics["method"] == "partial"
    assert metrics["seconds_per_step"] > 0
    saved = load_file(str(tmp_path / "run" / "model.safetensors"))
    for key in ("embeddings.word_embeddings.weight", "encoder.layer.0.attention.self.query.weight"):
        assert torch.equal(saved["bert." + key], base[key]), key
    assert not torch.equal(saved["bert.encoder.layer.1.attention.self.query.weight"],
                           base["encoder.layer.1.attention.self.query.weight"])
    assert "partial(frozen: embeddings, layers 0-0) + llrd(0.8)" in (tmp_path / "run" / "README.md").read_text()


def test_lora_saves_adapter_and_merged_model_that_predicts_like_the_adapter(tiny_encoder: str, tmp_path: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForTokenClassification, DataCollatorForTokenClassification

    card = load(TaskCard, CARD)
    cfg = _cfg(tiny_encoder, method="lora", lora_r=4, learning_rate=1e-2)
    out = tmp_path / "run"
    metrics = engine.train(TASK, card, cfg, out, data_dir=DATA)
    # LoRA on query+value: A (r x H) + B (H x r) per module, 2 modules x 2 layers; plus the head (modules_to_save)
    assert metrics["trainable_parameters"] == 2 * 2 * (2 * 4 * H) + _sizes(0)[2]
    assert (out / "adapter" / "adapter_config.json").is_file() and (out / "adapter" / "adapter_model.safetensors").is_file()
    merged = load_file(str(out / "model.safetensors"))
    assert not any("lora" in k for k in merged)
    base = load_file(str(Path(tiny_encoder) / "model.safetensors"))
    q = "encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(merged["bert." + q], base[q])  # the adapter was merged in
    assert torch.equal(merged["bert.encoder.layer.0.attention.self.key.weight"], base["encoder.layer.0.attention.self.key.weight"])

    run = engine.load_run(TASK, out)  # no peft needed: a plain token classifier
    examples = TASK.load_split(run.card, "test", DATA)
    enc = TASK.encode(run.tokenizer, examples, run.cfg, run.labels)
    batch = DataCollatorForTokenClassification(run.tokenizer)([{k: v for k, v in r.items() if k != "length"} for r in enc.dataset])
    batch.pop("labels")
    adapter = PeftModel.from_pretrained(AutoModelForTokenClassification.from_pretrained(tiny_encoder, num_labels=3),
                                        str(out / "adapter"))
    run.model.eval(), adapter.eval()
    with torch.no_grad():
        torch.testing.assert_close(run.model(**batch).logits, adapter(**batch).logits, atol=1e-5, rtol=1e-4)


class _Interrupt(Exception):
    pass


def test_lora_run_resumes_from_its_checkpoint(tiny_encoder: str, tmp_path: Path) -> None:
    from transformers import TrainerCallback

    class StopAfterFirstSave(TrainerCallback):
        def on_save(self, args, state, control, **kw):  # noqa: ANN001
            raise _Interrupt

    class RecordStart(TrainerCallback):
        start = -1

        def on_train_begin(self, args, state, control, **kw):  # noqa: ANN001
            RecordStart.start = state.global_step

    card = load(TaskCard, CARD)
    cfg = _cfg(tiny_encoder, method="lora", eval_strategy="steps", eval_steps=1, early_stopping_patience=0)
    out = tmp_path / "run"
    with pytest.raises(_Interrupt):
        engine.train(TASK, card, cfg, out, data_dir=DATA, callbacks=[StopAfterFirstSave()])
    assert (out / "checkpoints" / "checkpoint-1" / "adapter_model.safetensors").is_file()
    metrics = engine.train(TASK, card, cfg, out, data_dir=DATA, callbacks=[RecordStart()])
    assert RecordStart.start == 1 and metrics["global_steps"] == 2
    assert json.loads((out / "metrics.json").read_text())["method"] == "lora"
    assert (out / "adapter" / "adapter_model.safetensors").is_file()


REL_LABELS = ["false", "advise"]


@pytest.mark.parametrize(("method", "extra"), [("head_only", {}), ("partial", {"freeze_embeddings": True}), ("lora", {}),
                                               ("bitfit", {}), ("ia3", {}), ("prefix", {}), ("prompt", {})])
def test_added_marker_rows_train_while_old_rows_stay(tiny_encoder: str, method: str, extra: dict) -> None:
    from clinical_ft.encoders import load_tokenizer
    from clinical_ft.relation import TASK as REL
    from clinical_ft.relation.pairs import RelExample

    cfg = TrainConfig(encoder=tiny_encoder, method=method, task_options={"marker": "typed_markers"}, **extra)
    model = REL.build_model(tiny_encoder, REL_LABELS, cfg)
    new = methods.new_token_ids(model)
    before = model.get_input_embeddings().weight.detach().clone()
    model = methods.apply(model, cfg)
    ex = RelExample("p", "Milk may impair the absorption of EMCYT.", "advise", "f", None, "d", ((0, 4), (34, 39)),
                    ("group", "brand"))
    row = REL.encode(load_tokenizer(tiny_encoder), [ex], cfg, REL_LABELS).dataset[0]
    batch = {k: torch.tensor([row[k]]) for k in ("input_ids", "attention_mask", "token_type_ids", "entity_positions", "labels")}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.1)
    model.train()
    model(**batch).loss.backward()
    opt.step()
    final = methods.merge_new_rows(model.merge_and_unload() if methods.is_peft(model) else model)
    after = final.get_input_embeddings().weight.detach()
    assert type(final.get_input_embeddings()) is torch.nn.Embedding  # merged back: saves like any model
    used = sorted(set(row["input_ids"]) & set(new))  # [E1:group] [/E1:group] [E2:brand] [/E2:brand]
    assert len(used) == 4 and all(not torch.equal(after[i], before[i]) for i in used)
    old = torch.ones(len(before), dtype=torch.bool)
    old[new] = False
    assert int(old.sum()) == len(before) - 20 and torch.equal(after[old], before[old])


def test_head_only_relation_run_saves_plain_embeddings_with_trained_markers(tiny_encoder: str, tmp_path: Path) -> None:
    from test_relation_data import zip_ddi
    from transformers import set_seed

    from clinical_ft.relation import TASK as REL

    zip_ddi(tmp_path / "data" / "ddi_mini" / "DDICorpus-mini.zip")
    card = load(TaskCard, "tests/fixtures/relation/ddi_mini.yaml")
    cfg = _cfg(tiny_encoder, method="head_only", learning_rate=1e-2, task_options={"marker": "typed_markers"})
    set_seed(cfg.seed)  # engine.train builds the model right after seeding: same initial marker rows
    initial = REL.build_model(tiny_encoder, card.labels, cfg).get_input_embeddings().weight.detach().clone()
    metrics = engine.train(REL, card, cfg, tmp_path / "run", data_dir=tmp_path / "data")
    assert metrics["trainable_parameters"] == 20 * H + (2 * H * len(card.labels) + len(card.labels))
    saved = load_file(str(tmp_path / "run" / "model.safetensors"))
    assert not any("new_rows" in k for k in saved)
    emb = saved["encoder.embeddings.word_embeddings.weight"]
    base = load_file(str(Path(tiny_encoder) / "model.safetensors"))["embeddings.word_embeddings.weight"]
    n = len(base)
    assert emb.shape[0] == n + 20 and torch.equal(emb[:n], base) and torch.equal(initial[:n], base)
    assert not torch.equal(emb[n:], initial[n:])  # the markers trained
