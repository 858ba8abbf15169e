"""The rest of the fine-tuning toolbox: bitfit, ia3, prefix and prompt tuning on every task kind
(train, save, reload, predict), their trainable sets, task positions under virtual tokens, qlora
refused on CPU."""

from __future__ import annotations

import builtins
import json
import re
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from clinical_ft import encoders, engine, methods
from clinical_ft.config import TaskCard, TrainConfig, from_dict, load
from clinical_ft.errors import ClinicalFTError, ConfigError
from clinical_ft.ner import TASK as NER
from clinical_ft.ner.conll import Sentence
from clinical_ft.registry import for_card

H, INTER, LAYERS = 32, 37, 2  # the tiny_encoder's BertConfig
LABELS = ["O", "B-Disease", "I-Disease"]
CARDS = {"ner": ("tests/fixtures/ncbi_mini.yaml", "tests/fixtures"),
         "relation": ("tests/fixtures/relation/gad_mini.yaml", "tests/fixtures"),
         "qa": ("tests/fixtures/qa/covid_mini.yaml", "tests/fixtures/qa"),
         "readmission": ("tests/fixtures/readmission/notes_mini.yaml", "tests/fixtures")}
NEW = ["bitfit", "ia3", "prefix", "prompt"]


def _cfg(tiny: str, method: str, **kw: object) -> TrainConfig:
    base = {"encoder": tiny, "method": method, "max_steps": 2, "per_device_train_batch_size": 2, "max_length": 48,
            "stride": 8, "eval_strategy": "no", "logging_steps": 1, "learning_rate": 1e-2}
    if method in ("prefix", "prompt"):
        base["num_virtual_tokens"] = 4
    return from_dict(TrainConfig, {**base, **kw}, "test")


def _no_peft(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make `import peft` fail, as on a machine without the training library."""
    for name in [m for m in sys.modules if m == "peft" or m.startswith("peft.")]:
        monkeypatch.delitem(sys.modules, name)
    real = builtins.__import__

    def guarded(name: str, *a: object, **kw: object) -> object:
        if name == "peft" or name.startswith("peft."):
            raise ImportError(f"no module named {name} (blocked by the test)")
        return real(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", guarded)


@pytest.mark.parametrize("kind", list(CARDS))
@pytest.mark.parametrize("method", NEW)
def test_method_trains_saves_reloads_predicts(method: str, kind: str, tiny_encoder: str, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    card_path, data = CARDS[kind]
    card = load(TaskCard, card_path)
    task = for_card(card)
    out = tmp_path / "run"
    metrics = engine.train(task, card, _cfg(tiny_encoder, method), out, data_dir=data)
    assert metrics["global_steps"] == 2 and metrics["method"] == method
    assert metrics["trainable_parameters"] < metrics["total_parameters"]
    saved = load_file(str(out / "model.safetensors"))
    assert not any(k for k in saved if "lora" in k or "ia3" in k or "prompt_encoder" in k or "new_rows" in k)
    merged = method in ("bitfit", "ia3")
    assert (out / "adapter" / "adapter_config.json").is_file() == (method != "bitfit")
    if merged:
        _no_peft(monkeypatch)  # a plain model: evaluate/predict need no peft
    run = engine.load_run(task, out)
    assert hasattr(run.model.base_model, "peft") == (not merged)  # prefix/prompt: virtual tokens re-applied
    examples = task.load_split(run.card, "test", data)
    preds = engine.predict(task, run, examples)
    assert len(preds) == len(examples)
    if kind == "ner":
        assert all(len(p) == len(ex.words) for ex, p in zip(examples, preds))
    if kind == "qa" and task.kind == "qa":  # spans are offsets into the context, whatever the prompt length
        assert all(ex.context[c["start"]:c["end"]] == c["text"] for ex, cands in zip(examples, preds) for c in cands)
    if not merged:  # without its adapter the saved model predicts differently: the adapter is part of the run
        plain = task.build_model(str(out), run.labels, run.cfg)
        enc = task.encode(run.tokenizer, examples[:2], run.cfg, run.labels)
        batch = task.collator(run.tokenizer)([{k: v for k, v in r.items() if k != "length"} for r in enc.dataset])
        batch = {k: v for k, v in batch.items() if k not in ("labels", "start_positions", "end_positions")}
        run.model.eval(), plain.eval()
        with torch.no_grad():
            a, b = run.model(**batch), plain(**batch)
        key = "start_logits" if "start_logits" in a else "logits"
        assert a[key].shape == b[key].shape and not torch.allclose(a[key], b[key])


def _ner(tiny: str, method: str, **kw: object) -> torch.nn.Module:
    cfg = _cfg(tiny, method, **kw)
    return methods.apply(NER.build_model(tiny, LABELS, cfg), cfg)


def _trainable(model: torch.nn.Module) -> dict[str, int]:
    return {n: p.numel() for n, p in model.named_parameters() if p.requires_grad}


def test_trainable_sets_are_what_each_method_promises(tiny_encoder: str) -> None:
    head = H * len(LABELS) + len(LABELS)
    model = _ner(tiny_encoder, "bitfit")
    names = _trainable(model)
    assert all(n.endswith(".bias") or n.startswith("classifier.") for n in names)
    biases = H + LAYERS * (4 * H + H + INTER + H + H)  # embedding LN; Q K V O, LN, FFN in and out, LN
    assert sum(names.values()) == biases + head and "bert.encoder.layer.1.output.LayerNorm.bias" in names

    model = _ner(tiny_encoder, "ia3")  # key, value (scale outputs), output.dense x2 per layer (scale inputs)
    names = _trainable(model)
    ia3 = {n: k for n, k in names.items() if "ia3_l" in n}
    assert sum(ia3.values()) == LAYERS * (H + H + H + INTER) and len(ia3) == 4 * LAYERS
    assert sum(names.values()) == sum(ia3.values()) + head  # + the head, trained in full

    model = _ner(tiny_encoder, "prefix", num_virtual_tokens=5)  # key and value vectors in every layer
    assert sum(_trainable(model).values()) == 5 * 2 * LAYERS * H + head
    model = _ner(tiny_encoder, "prompt", num_virtual_tokens=5)  # input vectors only
    assert sum(_trainable(model).values()) == 5 * H + head
    assert all(n.startswith("classifier.") or "prompt_encoder" in n for n in _trainable(model))


@pytest.mark.parametrize("method", ["prefix", "prompt"])
def test_virtual_tokens_keep_ner_alignment_on_a_windowed_600_token_sentence(method: str, tiny_encoder: str,
                                                                            tmp_path: Path) -> None:
    card = load(TaskCard, CARDS["ner"][0])
    out = tmp_path / "run"
    engine.train(NER, card, _cfg(tiny_encoder, method, max_length=64, stride=16), out, data_dir="tests/fixtures")
    run = engine.load_run(NER, out)
    words = [("fever", "cough", "of", "the", "breast", "cancer", "patients")[i % 7] for i in range(600)]
    sent = Sentence(words, None, "long.txt", 1)
    enc = NER.encode(run.tokenizer, [sent], run.cfg, run.labels)
    assert len(enc.dataset) > 10  # windowed
    raw = engine.predict_raw(NER, run, enc)
    (pred,) = NER.decode([sent], enc, raw, run.labels, run.cfg)
    assert len(pred) == 600
    # each window's logits cover its own tokens (not the virtual ones): row i of the model output is token i
    run.model.eval()
    with torch.no_grad():
        for w, row in enumerate(enc.dataset.select(range(3))):
            ids = torch.tensor([row["input_ids"]])
            logits = run.model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0]
            assert logits.shape[0] == len(row["input_ids"])
            reduced = raw[w][: len(row["input_ids"])]
            assert (torch.as_tensor(reduced) == logits.argmax(-1)).all()


def test_relation_entity_start_and_qa_positions_under_prompt(tiny_encoder: str) -> None:
    """The head reads the encoder output at the real token positions: it equals the encoder run on
    [prompt; tokens] with the prompt positions dropped."""
    from clinical_ft.relation import TASK as REL

    cfg = _cfg(tiny_encoder, "prompt")
    model = methods.apply(REL.build_model(tiny_encoder, ["0", "1"], cfg), cfg).eval()
    wrapper = model.base_model
    ids = torch.tensor([[101, 2000, 2001, 2002, 102]])
    prompts = wrapper.peft.get_prompt(batch_size=1)
    plain = wrapper.peft.get_base_model()
    with torch.no_grad():
        full = plain(inputs_embeds=torch.cat([prompts, plain.get_input_embeddings()(ids)], 1)).last_hidden_state
        out = model(input_ids=ids, entity_positions=torch.tensor([[1, 3]]))
        want = model.classifier(torch.cat([full[0, 4 + 1], full[0, 4 + 3]])[None])
    torch.testing.assert_close(out.logits, want)


def test_method_options_are_validated_together(tiny_encoder: str) -> None:
    bad = {"method": "lora", "num_virtual_tokens": 8, "ia3_target_modules": ["key"]}
    with pytest.raises(ConfigError) as err:
        from_dict(TrainConfig, bad, "cfg.yaml")
    assert "num_virtual_tokens: only used with method: prefix or prompt" in str(err.value)
    assert "ia3_target_modules: only used with method: ia3" in str(err.value)
    bad = {"method": "ia3", "ia3_target_modules": ["key"], "ia3_feedforward_modules": ["output.dense"]}
    with pytest.raises(ConfigError, match=r"ia3_feedforward_modules: \['output.dense'\] are not in"):
        from_dict(TrainConfig, bad, "cfg.yaml")
    with pytest.raises(ConfigError, match="num_virtual_tokens: expected a positive integer"):
        from_dict(TrainConfig, {"method": "prompt", "num_virtual_tokens": 0}, "cfg.yaml")
    with pytest.raises(ConfigError, match="method: expected one of"):
        from_dict(TrainConfig, {"method": "adapter"}, "cfg.yaml")
    with pytest.raises(ClinicalFTError, match=r"max_length 500 \+ num_virtual_tokens 20 exceeds the encoder's 512"):
        _ner(tiny_encoder, "prefix", max_length=500, stride=8, num_virtual_tokens=20)
    with pytest.raises(ClinicalFTError, match="ia3_target_modules: \\['q_proj'\\] are not linear layers"):
        _ner(tiny_encoder, "ia3", ia3_target_modules=["q_proj"])


def test_prefix_is_refused_for_an_encoder_without_a_key_value_cache(tmp_path: Path) -> None:
    from transformers import DistilBertConfig, DistilBertForTokenClassification

    model = DistilBertForTokenClassification(DistilBertConfig(vocab_size=50, dim=16, n_layers=1, n_heads=2,
                                                              hidden_dim=20, num_labels=3))
    with pytest.raises(ClinicalFTError, match="DistilBertModel.forward takes no key/value cache.*use method: prompt"):
        methods.apply(model, TrainConfig(method="prefix", max_length=32, stride=8))
    model = methods.apply(model, TrainConfig(method="prompt", num_virtual_tokens=3, max_length=32, stride=8))
    assert model(input_ids=torch.tensor([[1, 2, 3]])).logits.shape == (1, 3, 3)


def test_qlora_without_a_gpu_fails_before_anything_loads(tiny_encoder: str, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    def never(*a: object, **kw: object) -> None:
        raise AssertionError("loaded something")

    monkeypatch.setattr(encoders, "load_tokenizer", never)
    monkeypatch.setattr(NER, "build_model", never)
    monkeypatch.setattr(NER, "load_split", never)
    card = load(TaskCard, CARDS["ner"][0])
    with pytest.raises(ClinicalFTError, match="method: qlora needs a CUDA GPU.*use method: lora"):
        engine.train(NER, card, _cfg(tiny_encoder, "qlora"), tmp_path / "run", data_dir="tests/fixtures")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("method", ["prefix", "prompt"])
def test_explain_loads_a_virtual_token_run(method: str, tiny_encoder: str, tmp_path: Path) -> None:
    from clinical_ft.ner import cli as ner_cli

    card = load(TaskCard, CARDS["ner"][0])
    engine.train(NER, card, _cfg(tiny_encoder, method), tmp_path / "run", data_dir="tests/fixtures")
    out = tmp_path / "ner.html"
    text = "Familial breast cancer and cystic fibrosis were ruled out."
    assert ner_cli.main(["explain", "--model", str(tmp_path / "run"), "--text", text, "--out", str(out),
                         "--n-steps", "4"]) == 0
    data = json.loads(re.search(r'class="data">(.*?)</script>', out.read_text(encoding="utf-8")).group(1))
    run = engine.load_run(NER, tmp_path / "run")
    n_tokens = len(run.tokenizer(text)["input_ids"])
    assert [c["T"] for c in data["chunks"]] == [n_tokens]  # attention maps over the real tokens only
