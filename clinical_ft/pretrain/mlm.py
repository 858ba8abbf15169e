"""Domain-adaptive pre-training: continued masked-language-model training of an encoder, with the
leakage manifest and the --exclude-card filter (the command line and its documentation: cli.py)."""

from __future__ import annotations

import json
import logging
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from .. import __version__, encoders, leakage, registry
from ..atomic import write_text
from ..errors import ClinicalFTError
from ..methods import step_timer
from ..trainer import on_gpu, peak_memory_mb, precision_flags
from .text import read_sources

log = logging.getLogger("clinical_ft.pretrain")
def _excluded(cards: list[str], data_dir: str | None) -> tuple[dict[str, str], set[str]]:
    """sha256 -> card name of each test file that holds no training text (refused as a source), and
    the unit hashes of the test splits' examples as each card's task reads them (the texts that
    engine.train checks, see leakage.example_texts)."""
    shas: dict[str, str] = {}
    units: set[str] = set()
    for name in cards:
        card = registry.load_card(name)
        if not leakage.shared_with_train(card, "test"):
            shas.update({leakage.file_sha256(f): card.name for f in leakage.split_files(card, "test", data_dir)})
        examples = registry.for_card(card).load_split(card, "test", data_dir)
        units.update(*(leakage.unit_hashes(t) for fields in leakage.example_texts(examples) for t in fields))
        log.info("--exclude-card %s: %d test examples", card.name, len(examples))
    return shas, units


def _blocks(tokenizer: Any, docs: list[str], max_length: int) -> dict[str, list]:
    """run_mlm's group_texts: [CLS] doc [SEP] for every document, concatenated, cut into max_length
    blocks; the last, shorter block is padded (padding is never masked nor scored)."""
    cols = ("input_ids", "token_type_ids", "special_tokens_mask", "offset_mapping")
    stream: dict[str, list] = {c: [] for c in cols}
    for i in range(0, len(docs), 256):
        enc = tokenizer(docs[i:i + 256], return_special_tokens_mask=True, return_offsets_mapping=True,
                        return_token_type_ids=True, verbose=False)
        for c in cols:
            for row in enc[c]:
                stream[c].extend(row)
    n = len(stream["input_ids"])
    out: dict[str, list] = {c: [] for c in (*cols, "attention_mask")}
    for s in range(0, n, max_length):
        k = min(max_length, n - s)
        pad = max_length - k
        out["input_ids"].append(stream["input_ids"][s:s + k] + [tokenizer.pad_token_id] * pad)
        out["token_type_ids"].append(stream["token_type_ids"][s:s + k] + [0] * pad)
        out["special_tokens_mask"].append(stream["special_tokens_mask"][s:s + k] + [1] * pad)
        out["offset_mapping"].append([list(o) for o in stream["offset_mapping"][s:s + k]] + [[0, 0]] * pad)
        out["attention_mask"].append([1] * k + [0] * pad)
    return out


def load_mlm(encoder: str) -> tuple[Any, str]:
    """AutoModelForMaskedLM on `encoder`; a missing MLM head is initialised (transformers' _init_weights:
    dense N(0, initializer_range), LayerNorm 1/0, bias 0) with its decoder tied to the input embeddings.

    Returns:
        (model, a sentence saying what was done with the head, for the log and the README).
    """
    from transformers import AutoModelForMaskedLM

    model, info = encoders.load_model(AutoModelForMaskedLM, encoder, output_loading_info=True)
    prefix = model.base_model_prefix + "."
    missing = [k for k in info.get("missing_keys", []) if "position_ids" not in k]
    body = [k for k in missing if k.startswith(prefix) or not any(k.startswith(h) for h in ("cls.", "lm_head.", "generator_lm_head"))]
    if body:
        raise ClinicalFTError(f"encoder {encoder!r}: {len(body)} encoder weights missing (e.g. {body[0]}); "
                              "expected a BERT-family checkpoint")
    model.tie_weights()
    tied = model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    if not tied:
        raise ClinicalFTError(f"encoder {encoder!r}: the MLM decoder could not be tied to the input embeddings")
    if missing:
        note = (f"The base encoder has no MLM head: {len(missing)} head tensors ({', '.join(sorted(missing))}) were "
                f"initialised by transformers (dense ~ N(0, {model.config.initializer_range}), LayerNorm 1/0, "
                "bias 0), and the decoder is tied to the input word embeddings.")
    else:
        note = "The base encoder's own MLM head was used (decoder tied to the input word embeddings)."
    log.info(note)
    return model, note


def base_pooler(encoder: str, mlm: Any) -> tuple[Any | None, str]:
    """The base checkpoint's pooler ([CLS] -> dense -> tanh), which masked-LM models drop, to be put
    back into the saved encoder (MLM training neither uses nor changes it).

    Returns:
        (the pooler module or None, a sentence saying what happens to it, for the README).
    """
    from transformers import AutoModel

    if not hasattr(getattr(mlm, mlm.base_model_prefix, None), "pooler"):
        return None, f"{type(mlm).__name__} has no pooler (none is saved)."
    base, info = encoders.load_model(AutoModel, encoder, output_loading_info=True)
    pooler = getattr(base, "pooler", None)
    if pooler is None or any("pooler" in k for k in info.get("missing_keys", [])):
        return None, "The base checkpoint has no trained pooler; sequence-classification heads initialise theirs."
    return pooler, ("The base checkpoint's pooler was copied unchanged into this encoder, so sequence-classification "
                    "heads built on it keep the pretrained pooler.")


def pretrain(encoder: str, texts: list[str], out: str | Path, *, max_steps: int = 500, max_length: int = 128,
             whole_word_masking: bool = False, mlm_probability: float = 0.15, batch_size: int = 16,
             learning_rate: float = 5e-5, warmup_ratio: float = 0.06, weight_decay: float = 0.01, seed: int = 42,
             text_column: str = "text", exclude_cards: list[str] | None = None, data_dir: str | None = None,
             eval_blocks: int = 64, overwrite: bool = False) -> dict[str, Any]:
    """Continue MLM pre-training of `encoder` on `texts`; write an encoder directory to `out`.

    Returns:
        The metrics written to ``pretrain_metrics.json``.

    Raises:
        ClinicalFTError: `out` exists (without `overwrite`), a source is an excluded card's test
            file (one that holds no training split), no text is left, or the encoder cannot do MLM.
    """
    import numpy as np
    import torch
    from datasets import Dataset
    from transformers import DataCollatorForLanguageModeling, Trainer, TrainingArguments, set_seed

    out = Path(out)
    if out.exists() and not overwrite:
        raise ClinicalFTError(f"{out} already exists; pass --overwrite or choose another --out")
    set_seed(seed)
    tokenizer = encoders.load_tokenizer(encoder)
    test_shas, test_units = _excluded(exclude_cards or [], data_dir)
    base_manifest = leakage.load_manifest(encoders.resolve(encoder)) if Path(encoders.resolve(encoder)).is_dir() else None
    sources, docs, used = [], [], set(base_manifest["unit_hashes"]) if base_manifest else set()
    for path, file_docs in read_sources(texts, text_column):
        sha = leakage.file_sha256(path)
        if sha in test_shas:
            raise ClinicalFTError(f"{path} is the test split of card {test_shas[sha]!r} (--exclude-card); "
                                  "remove it from --text")
        kept = 0
        for doc in file_docs:
            hashes = leakage.unit_hashes(doc)
            if hashes & test_units:
                continue
            docs.append(doc)
            used |= hashes
            kept += 1
        sources.append({"path": str(path), "sha256": sha, "documents": len(file_docs), "documents_used": kept})
        if kept < len(file_docs):
            log.warning("%s: %d documents dropped: they contain test-split text of %s", path, len(file_docs) - kept,
                        sorted(set(test_shas.values())))
    if not docs:
        raise ClinicalFTError("no pre-training text left after reading --text and applying --exclude-card")

    blocks = _blocks(tokenizer, docs, max_length)
    order = np.random.default_rng(seed).permutation(len(blocks["input_ids"]))
    n_eval = min(eval_blocks, len(order) // 10)
    train_ds = Dataset.from_dict(blocks).select(order[n_eval:].tolist())
    mlm = DataCollatorForLanguageModeling(tokenizer, mlm_probability=mlm_probability, whole_word_mask=whole_word_masking)
    eval_ds = None
    if n_eval:  # masked once with a fixed seed, so before/after losses score the same masks
        fixed = DataCollatorForLanguageModeling(tokenizer, mlm_probability=mlm_probability,
                                                whole_word_mask=whole_word_masking, seed=seed)
        batch = fixed([{k: blocks[k][i] for k in blocks} for i in order[:n_eval].tolist()])
        eval_ds = Dataset.from_dict({k: v.tolist() for k, v in batch.items()})

    def collate(examples: list[dict[str, Any]]) -> dict[str, Any]:
        if "labels" in examples[0]:  # pre-masked evaluation blocks
            return {k: torch.tensor([e[k] for e in examples]) for k in examples[0]}
        return mlm(examples)

    model, head_note = load_mlm(encoder)
    pooler, pooler_note = base_pooler(encoder, model)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    args = TrainingArguments(
        output_dir=str(tmp / "checkpoints"), max_steps=max_steps, per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=batch_size, learning_rate=learning_rate, warmup_steps=warmup_ratio,
        weight_decay=weight_decay, lr_scheduler_type="linear", save_strategy="no", logging_steps=max(1, max_steps // 10),
        report_to=[], seed=seed, data_seed=seed, remove_unused_columns=False, dataloader_pin_memory=on_gpu(),
        disable_tqdm=not sys.stderr.isatty(), **precision_flags("auto"))
    timer = step_timer()
    trainer = Trainer(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds, data_collator=collate,
                      callbacks=[timer])
    def heldout_loss() -> float | None:  # None without held-out blocks (or masked tokens) to score
        loss = trainer.evaluate()["eval_loss"] if eval_ds is not None else float("nan")
        return None if loss != loss else float(loss)

    before = heldout_loss()
    start = time.perf_counter()
    result = trainer.train()
    wall = time.perf_counter() - start
    after = heldout_loss()

    metrics = {
        "base_encoder": encoder, "clinical_ft_version": __version__, "documents": len(docs),
        "blocks_train": len(train_ds), "blocks_heldout": n_eval, "max_length": max_length, "max_steps": max_steps,
        "batch_size": batch_size, "learning_rate": learning_rate, "whole_word_masking": whole_word_masking,
        "mlm_probability": mlm_probability, "seed": seed, "train_loss": result.metrics.get("train_loss"),
        "tokens_seen": trainer.state.global_step * batch_size * max_length, "train_runtime_s": wall,
        "seconds_per_step": timer.seconds / max(timer.steps, 1), "peak_memory_mb": peak_memory_mb(),
        "heldout_mlm_loss_before": before, "heldout_mlm_loss_after": after, "mlm_head": head_note,
        "pooler": pooler_note,
    }
    if pooler is not None:  # saved as <prefix>.pooler.*, which AutoModel(ForSequenceClassification) loads
        getattr(model, model.base_model_prefix).pooler = pooler.to(model.device)
    model.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    shutil.rmtree(tmp / "checkpoints", ignore_errors=True)
    manifest = {
        "created_by": f"clinical_ft.pretrain {__version__}", "base_encoder": encoder, "excluded_cards": exclude_cards or [],
        "unit_hash": f"sha256[:16] of NFKC-casefolded text without whitespace, documents and sentences >= {leakage.MIN_CHARS} chars",
        "sources": sources + (base_manifest["sources"] if base_manifest else []),
        "unit_hashes": sorted(used),
    }
    (tmp / leakage.MANIFEST).write_text(json.dumps(manifest) + "\n", encoding="utf-8")
    (tmp / "pretrain_metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    _write_readme(tmp, metrics, sources, exclude_cards or [], bool(base_manifest))
    if out.exists():
        shutil.rmtree(out)
    tmp.replace(out)
    return metrics


def _write_readme(out: Path, m: dict[str, Any], sources: list[dict[str, Any]], excluded: list[str], inherited: bool) -> None:
    lines = [
        f"# Domain-adapted encoder from `{m['base_encoder']}`",
        "",
        f"Continued masked-language-model pre-training with clinical_ft {m['clinical_ft_version']} "
        "(`python -m clinical_ft.pretrain`). Use it as `--encoder` of any clinical_ft task.",
        "",
        f"- **MLM head**: {m['mlm_head']}",
        f"- **pooler**: {m['pooler']}",
        f"- steps {m['max_steps']}, batch {m['batch_size']}, max_length {m['max_length']}, "
        f"~{m['tokens_seen']} tokens seen, learning rate {m['learning_rate']}, "
        f"whole-word masking {m['whole_word_masking']}, mlm probability {m['mlm_probability']}, seed {m['seed']}",
        f"- held-out MLM loss ({m['blocks_heldout']} blocks, fixed masks): before {m['heldout_mlm_loss_before']}, "
        f"after {m['heldout_mlm_loss_after']}",
        f"- test splits excluded (documents holding their sentences dropped): {excluded or 'none'}",
        "- sources:",
        *[f"  - `{s['path']}` sha256 {s['sha256'][:12]}…: {s['documents_used']} of {s['documents']} documents" for s in sources],
        "",
        f"`{leakage.MANIFEST}` lists every source's sha256 and a hash of every document and sentence used"
        + (" (including those of the base encoder's own manifest)" if inherited else "")
        + ". clinical_ft refuses to train on or evaluate a benchmark whose test text is in it.",
    ]
    write_text(out / "README.md", "\n".join(lines) + "\n")
