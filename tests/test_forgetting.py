"""Forgetting measure: seeded masking, the held-out MLM loss by hand, a run's encoder swapped in, the
fitted-and-cached head of an encoder that ships none."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from clinical_ft import encoders
from clinical_ft.errors import ClinicalFTError
from clinical_ft.pretrain import forgetting

TEXT = ["Mutations of the BRCA1 gene raise the risk of breast and ovarian cancer.",
        "Aspirin was given after the myocardial infarction; the patient recovered.",
        "No adverse events."]


def _mlm(tiny: str) -> torch.nn.Module:
    from transformers import BertConfig, BertForMaskedLM

    cfg = BertConfig.from_pretrained(tiny)
    cfg.tie_word_embeddings = False
    torch.manual_seed(1)
    return BertForMaskedLM(cfg).eval()


def test_masking_is_seeded_and_only_touches_words(tiny_encoder: str) -> None:
    tok = encoders.load_tokenizer(tiny_encoder)
    a, b = forgetting.masked_batch(tok, TEXT, 32, seed=3), forgetting.masked_batch(tok, TEXT, 32, seed=3)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["labels"], forgetting.masked_batch(tok, TEXT, 32, seed=4)["labels"])
    plain = tok(TEXT, truncation=True, max_length=32, padding=True, return_tensors="pt")
    masked = a["labels"] != -100
    assert (masked.sum(1) >= 1).all()  # at least one per text, even the 3-word one
    assert torch.equal(a["labels"][masked], plain["input_ids"][masked])
    assert (a["input_ids"][masked] == tok.mask_token_id).all()
    assert torch.equal(a["input_ids"][~masked], plain["input_ids"][~masked])
    specials = torch.isin(plain["input_ids"], torch.tensor([tok.cls_token_id, tok.sep_token_id, tok.pad_token_id]))
    assert not (masked & specials).any()


def test_mlm_loss_equals_the_hand_computed_cross_entropy(tiny_encoder: str) -> None:
    model = _mlm(tiny_encoder)
    batch = forgetting.masked_batch(encoders.load_tokenizer(tiny_encoder), TEXT, 32, seed=0)
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       token_type_ids=batch["token_type_ids"]).logits
    terms = []
    for i in range(len(TEXT)):
        for j in range(logits.shape[1]):
            gold = int(batch["labels"][i, j])
            if gold != -100:
                row = logits[i, j].double()
                terms.append(math.log(float(row.exp().sum())) - float(row[gold]))
    want = sum(terms) / len(terms)
    assert forgetting.mlm_loss(model, batch) == pytest.approx(want, rel=1e-5)
    assert forgetting.mlm_loss(model, batch, batch_size=1) == pytest.approx(want, rel=1e-5)  # padding-free


def test_a_runs_encoder_replaces_the_mlm_encoder_and_keeps_the_head(tiny_encoder: str, tmp_path: Path) -> None:
    from transformers import AutoModelForTokenClassification

    run = AutoModelForTokenClassification.from_pretrained(tiny_encoder, num_labels=3)
    run.resize_token_embeddings(run.config.vocab_size + 2)  # e.g. relation markers
    with torch.no_grad():
        run.bert.encoder.layer[0].attention.self.query.weight.add_(0.5)
    run.save_pretrained(tmp_path / "run")
    model = _mlm(tiny_encoder)
    batch = forgetting.masked_batch(encoders.load_tokenizer(tiny_encoder), TEXT, 32)
    head = {k: v.clone() for k, v in model.cls.state_dict().items()}
    forgetting.load_encoder(model, tmp_path / "run")
    assert torch.equal(model.bert.encoder.layer[0].attention.self.query.weight,
                       run.bert.encoder.layer[0].attention.self.query.weight)
    n = model.config.vocab_size
    assert torch.equal(model.bert.embeddings.word_embeddings.weight, run.bert.embeddings.word_embeddings.weight[:n])
    assert all(torch.equal(v, model.cls.state_dict()[k]) for k, v in head.items())
    other = _mlm(tiny_encoder)
    assert forgetting.mlm_loss(model, batch) != pytest.approx(forgetting.mlm_loss(other, batch))
    with pytest.raises(ClinicalFTError, match="no encoder matching"):
        (tmp_path / "bad").mkdir()
        from safetensors.torch import save_file

        save_file({"x.weight": torch.zeros(2)}, str(tmp_path / "bad" / "model.safetensors"))
        forgetting.load_encoder(model, tmp_path / "bad")


def test_a_missing_head_is_fitted_once_on_the_frozen_encoder_and_cached(tiny_encoder: str, tmp_path: Path) -> None:
    from transformers import AutoModel

    texts = TEXT * 4
    batch = forgetting.masked_batch(encoders.load_tokenizer(tiny_encoder), TEXT, 32)
    model, note = forgetting.fit_head(tiny_encoder, texts, tmp_path / "head", steps=40, batch_tokens=64,
                                      learning_rate=1e-2, max_length=32)
    assert "fitted on the frozen pre-trained encoder" in note and (tmp_path / "head" / "key.json").is_file()
    base = AutoModel.from_pretrained(tiny_encoder)
    assert torch.equal(model.cls.predictions.decoder.weight, base.embeddings.word_embeddings.weight)
    assert torch.equal(model.bert.encoder.layer[1].output.dense.weight, base.encoder.layer[1].output.dense.weight)
    assert not any(p.requires_grad for p in model.parameters())
    unfitted, _ = forgetting.fit_head(tiny_encoder, texts, tmp_path / "other", steps=0, max_length=32)
    assert forgetting.mlm_loss(model, batch) < forgetting.mlm_loss(unfitted, batch)
    again, _ = forgetting.fit_head(tiny_encoder, texts, tmp_path / "head", steps=40, batch_tokens=64,
                                   learning_rate=1e-2, max_length=32)  # from the cache
    assert torch.equal(again.cls.predictions.transform.dense.weight, model.cls.predictions.transform.dense.weight)


def test_other_texts_of_the_same_count_and_length_refit_the_head(tiny_encoder: str, tmp_path: Path) -> None:
    import json

    texts = TEXT * 4
    other = [t[::-1] for t in texts]  # same number of texts, same characters per text, other content
    assert [len(t) for t in other] == [len(t) for t in texts] and other != texts
    settings = {"steps": 20, "batch_tokens": 64, "learning_rate": 1e-2, "max_length": 32}
    first, _ = forgetting.fit_head(tiny_encoder, texts, tmp_path / "head", **settings)
    key = json.loads((tmp_path / "head" / "key.json").read_text())
    refit, _ = forgetting.fit_head(tiny_encoder, other, tmp_path / "head", **settings)
    assert json.loads((tmp_path / "head" / "key.json").read_text())["sha256"] != key["sha256"]
    w = "cls.predictions.transform.dense.weight"
    assert not torch.equal(refit.get_parameter(w), first.get_parameter(w))
    assert not (tmp_path / "head" / (forgetting.HEAD_FILE + ".tmp")).exists()
    again, _ = forgetting.fit_head(tiny_encoder, other, tmp_path / "head", **settings)  # the refitted head, cached
    assert torch.equal(again.get_parameter(w), refit.get_parameter(w))
