"""Forgetting: the masked-LM loss of an encoder on a fixed held-out text, before and after fine-tuning.

The same masked positions (a seeded draw, `masked_batch`) and the same MLM head are used for every
encoder compared, so a change of loss is a change of the encoder alone. The head is frozen: the
encoder's own MLM head when its checkpoint has one; otherwise (the bundled MiniLM ships none) a head
fitted once on the frozen pre-trained encoder (`fit_head`: transform + output bias trained, decoder
= the pre-trained input embeddings, untied and frozen) and cached. A fine-tuned run's encoder weights
are copied into that model (`load_encoder`); rows of tokens the run added (relation markers) are
dropped: the held-out text never uses them.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from .. import encoders
from ..atomic import atomic_path, write_json
from ..errors import ClinicalFTError

log = logging.getLogger("clinical_ft.pretrain")
HEAD_FILE = "mlm_head.pt"


def masked_batch(tokenizer: Any, texts: list[str], max_length: int = 128, fraction: float = 0.15,
                 seed: int = 0) -> dict[str, Any]:
    """Tokenise `texts` (truncated to `max_length`) and replace a seeded `fraction` of the non-special
    tokens (at least one per text) by the mask token; ``labels`` hold the original ids there, -100 elsewhere.

    The draw is transformers' DataCollatorForLanguageModeling with a seed (every chosen token becomes the
    mask token); a text it left without one gets one seeded token masked afterwards."""
    import torch
    from transformers import DataCollatorForLanguageModeling

    enc = tokenizer(texts, truncation=True, max_length=max_length, return_special_tokens_mask=True)
    rows = [{k: enc[k][i] for k in enc} for i in range(len(texts))]
    special = tokenizer.pad(rows, return_tensors="pt")["special_tokens_mask"].bool()  # padding counts as special
    collate = DataCollatorForLanguageModeling(tokenizer, mlm_probability=fraction, mask_replace_prob=1.0,
                                              random_replace_prob=0.0, seed=seed)
    batch = dict(collate(rows))
    gen = torch.Generator().manual_seed(seed)
    for i in (~(batch["labels"] != -100).any(1)).nonzero().flatten().tolist():  # texts with no masked token
        words = (~special[i]).nonzero().flatten()
        if len(words):
            j = int(words[torch.randint(len(words), (1,), generator=gen)])
            batch["labels"][i, j] = int(batch["input_ids"][i, j])
            batch["input_ids"][i, j] = tokenizer.mask_token_id
    return batch


def mlm_loss(model: Any, batch: dict[str, Any], batch_size: int = 16) -> float:
    """Mean cross-entropy over every masked token of `batch` (each token weighs the same, whatever its
    text's length), evaluated in chunks of `batch_size` texts."""
    import torch

    total, count = 0.0, 0
    model.eval()
    with torch.inference_mode():
        for s in range(0, len(batch["input_ids"]), batch_size):
            part = {k: v[s:s + batch_size] for k, v in batch.items()}
            labels = part.pop("labels")
            logits = model(**part).logits.float()  # (B, T, V)
            keep = labels != -100
            total += float(torch.nn.functional.cross_entropy(logits[keep], labels[keep], reduction="sum"))
            count += int(keep.sum())
    return total / max(count, 1)


def _untied_mlm(encoder: str) -> tuple[Any, bool]:
    """AutoModelForMaskedLM on `encoder` with the decoder untied from the input embeddings; True when the
    checkpoint had its own head."""
    from transformers import AutoModelForMaskedLM

    model, info = encoders.load_model(AutoModelForMaskedLM, encoder, tie_word_embeddings=False, output_loading_info=True)
    missing = [k for k in info.get("missing_keys", []) if "position_ids" not in k]
    body = [k for k in missing if k.startswith(model.base_model_prefix + ".")]
    if body:
        raise ClinicalFTError(f"encoder {encoder!r}: {len(body)} encoder weights missing (e.g. {body[0]})")
    own = not missing
    if not own:  # no head: the decoder starts as (and stays) the pre-trained input embeddings
        model.get_output_embeddings().weight.data.copy_(model.get_input_embeddings().weight.data)
    return model, own


def fit_head(encoder: str, texts: list[str], cache: str | Path, *, steps: int = 300, batch_tokens: int = 512,
             learning_rate: float = 1e-3, max_length: int = 128, seed: int = 0) -> tuple[Any, str]:
    """The frozen MLM model that measures forgetting for `encoder`, with a sentence saying where its head
    came from. A head the checkpoint lacks is fitted on `texts` (masked tokens of the frozen encoder,
    `steps` AdamW steps of `batch_tokens` tokens; only the transform and output bias train) and cached in
    `cache`, reused while encoder, texts and settings are the same."""
    import torch

    model, own = _untied_mlm(encoder)
    for p in model.parameters():
        p.requires_grad_(False)
    if own:
        return model.eval(), "the encoder's own MLM head"
    digest = hashlib.sha256()
    for t in texts:  # length-prefixed: ["ab", "c"] and ["a", "bc"] differ
        digest.update(f"{len(t)}:".encode() + t.encode())
    key = {"encoder": encoders.resolve(encoder), "texts": len(texts), "sha256": digest.hexdigest(), "steps": steps,
           "batch_tokens": batch_tokens, "learning_rate": learning_rate, "max_length": max_length, "seed": seed}
    cache = Path(cache)
    head = [(n, p) for n, p in model.named_parameters()
            if not n.startswith(model.base_model_prefix + ".") and p is not model.get_output_embeddings().weight]
    note = (f"no MLM head in the checkpoint: one was fitted on the frozen pre-trained encoder ({steps} steps x "
            f"{batch_tokens} masked tokens from {len(texts)} texts; transform + output bias trained, decoder = the "
            "pre-trained input embeddings), then frozen")
    if (cache / "key.json").is_file() and json.loads((cache / "key.json").read_text()) == key:
        model.load_state_dict(torch.load(cache / HEAD_FILE, weights_only=True), strict=False)
        return model.eval(), note
    cls = model.cls.predictions if hasattr(model, "cls") else None
    if cls is None:
        raise ClinicalFTError(f"encoder {encoder!r}: fitting an MLM head is supported for BERT-style heads (cls.predictions)")
    tok = encoders.load_tokenizer(encoder)
    batch = masked_batch(tok, texts, max_length, seed=seed)
    labels = batch.pop("labels")
    base = getattr(model, model.base_model_prefix)
    model.eval()
    with torch.inference_mode():
        hidden = torch.cat([base(**{k: v[s:s + 16] for k, v in batch.items()}).last_hidden_state[labels[s:s + 16] != -100]
                            for s in range(0, len(labels), 16)])  # (N masked, H)
    targets = labels[labels != -100]
    for _, p in head:
        p.requires_grad_(True)
    opt = torch.optim.AdamW([p for _, p in head], lr=learning_rate)
    gen = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(steps):
        idx = torch.randint(len(targets), (batch_tokens,), generator=gen)
        loss = torch.nn.functional.cross_entropy(cls(hidden[idx].clone()), targets[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    for _, p in head:
        p.requires_grad_(False)
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "key.json").unlink(missing_ok=True)  # no key over a half-replaced head
    with atomic_path(cache / HEAD_FILE) as tmp:
        torch.save({n: p.detach() for n, p in head}, tmp)
    write_json(cache / "key.json", key)
    log.info("MLM head fitted in %d steps: batch loss %s", steps, f"{losses[0]:.3f} -> {losses[-1]:.3f}" if losses else "-")
    return model.eval(), note


def load_encoder(mlm: Any, run_dir: str | Path) -> Any:
    """Copy the encoder weights of a saved run (``model.safetensors``) into `mlm` (its head untouched);
    embedding rows beyond the MLM's vocabulary (tokens the run added) are dropped.

    Raises:
        ClinicalFTError: the run's encoder does not match `mlm`'s (missing or differently shaped weights).
    """
    from safetensors.torch import load_file

    saved = load_file(str(Path(run_dir) / "model.safetensors"))
    body = getattr(mlm, mlm.base_model_prefix)
    want = body.state_dict()
    prefixes = sorted({k.split(".", 1)[0] + "." for k in saved}, key=lambda p: -sum(k.startswith(p) for k in saved))
    for prefix in prefixes:  # the run's encoder: the prefix whose keys cover the MLM's encoder
        found = {k[len(prefix):]: v for k, v in saved.items() if k.startswith(prefix) and k[len(prefix):] in want}
        if all(k in found for k in want if "position_ids" not in k and "pooler" not in k):
            break
    else:
        raise ClinicalFTError(f"{run_dir}: no encoder matching {type(body).__name__} in model.safetensors")
    for k, v in found.items():
        if v.shape != want[k].shape:
            if v.shape[1:] != want[k].shape[1:] or v.shape[0] < want[k].shape[0]:
                raise ClinicalFTError(f"{run_dir}: {k} has shape {tuple(v.shape)}, expected {tuple(want[k].shape)}")
            found[k] = v[: want[k].shape[0]]  # added token rows
    body.load_state_dict(found, strict=False)
    return mlm
