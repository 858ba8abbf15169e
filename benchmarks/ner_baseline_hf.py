"""Reference NER fine-tuning: a plain `transformers.Trainer` set up as Hugging Face's
``examples/pytorch/token-classification/run_ner.py`` sets it up with its defaults.

Faithful to run_ner.py (huggingface/transformers, examples/pytorch/token-classification):
- fast tokenizer, ``truncation=True, max_length=max_seq_length`` (default: the tokenizer's
  ``model_max_length``; words past it are lost), ``padding=False`` (pad_to_max_length False);
- first subword of each word carries the label, other subwords and specials -100
  (label_all_tokens False); label list = sorted set of the training tags;
- ``DataCollatorForTokenClassification(tokenizer)`` (dynamic padding per batch);
- ``TrainingArguments`` defaults: lr 5e-5, linear schedule, no warmup, weight decay 0,
  default optimizer, random sampling (no length grouping), no evaluation during training;
  per_device_train_batch_size 8 (the value the issue fixes; it is also the Trainer default);
- ``compute_metrics``: argmax over labels, drop -100 positions, seqeval overall
  precision/recall/F1/accuracy (what ``evaluate.load("seqeval")`` computes).

It does not use clinical_ft's engine. It reads the CoNLL files with clinical_ft.ner.conll only so
that both sides see exactly the same sentences and tags.

Run: python benchmarks/ner_baseline_hf.py --out /tmp/ner_baseline --epochs 3
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CountingCollator, write_json  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ncbi_disease"


def read_split(path: Path, limit: int | None = None) -> dict[str, list]:
    from clinical_ft.ner.conll import read_conll

    sents, _ = read_conll(path)
    sents = sents if limit is None else sents[:limit]
    return {"tokens": [s.words for s in sents], "ner_tags": [s.tags for s in sents]}


def seqeval_metrics(true_predictions: list[list[str]], true_labels: list[list[str]]) -> dict[str, float]:
    """What the `evaluate` seqeval metric returns as overall_* (seqeval default mode)."""
    from seqeval.metrics import accuracy_score, classification_report

    report = classification_report(true_labels, true_predictions, output_dict=True, zero_division=0)
    micro = report.pop("micro avg")
    return {"precision": float(micro["precision"]), "recall": float(micro["recall"]),
            "f1": float(micro["f1-score"]), "accuracy": float(accuracy_score(true_labels, true_predictions))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="encoder directory (default: the bundled MiniLM)")
    p.add_argument("--data-dir", default=str(DATA), help="folder with train.tsv, devel.tsv, test.tsv")
    p.add_argument("--out", required=True, help="output directory (checkpoints, metrics.json)")
    p.add_argument("--epochs", type=float, default=3.0)
    p.add_argument("--max-steps", type=int, default=-1, help="stop after this many optimizer steps")
    p.add_argument("--max-train-examples", type=int, help="first N training sentences (max_train_samples)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--learning-rate", type=float, default=5e-5)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--do-eval", action="store_true", help="score devel after training (run_ner --do_eval)")
    p.add_argument("--do-predict", action="store_true", help="score test after training (run_ner --do_predict)")
    args = p.parse_args(argv)

    from datasets import Dataset
    from transformers import (
        AutoModelForTokenClassification,
        AutoTokenizer,
        DataCollatorForTokenClassification,
        Trainer,
        TrainingArguments,
        set_seed,
    )

    from clinical_ft.encoders import bundled_minilm

    model_dir = args.model or str(bundled_minilm())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = Path(args.data_dir)
    set_seed(args.seed)
    train_raw = Dataset.from_dict(read_split(data / "train.tsv", args.max_train_examples))
    label_list = sorted({t for tags in train_raw["ner_tags"] for t in tags})
    label_to_id = {t: i for i, t in enumerate(label_list)}

    tokenizer = AutoTokenizer.from_pretrained(model_dir, use_fast=True)
    model = AutoModelForTokenClassification.from_pretrained(
        model_dir, num_labels=len(label_list), id2label=dict(enumerate(label_list)), label2id=label_to_id)
    max_seq_length = tokenizer.model_max_length

    def tokenize_and_align_labels(examples: dict[str, list]) -> Any:
        enc = tokenizer(examples["tokens"], padding=False, truncation=True, max_length=max_seq_length,
                        is_split_into_words=True)
        labels = []
        for i, tags in enumerate(examples["ner_tags"]):
            prev, ids = None, []
            for w in enc.word_ids(batch_index=i):
                ids.append(-100 if w is None or w == prev else label_to_id[tags[w]])
                prev = w
            labels.append(ids)
        enc["labels"] = labels
        return enc

    def prepare(ds: Dataset) -> Dataset:
        return ds.map(tokenize_and_align_labels, batched=True, remove_columns=ds.column_names)

    train_ds = prepare(train_raw)
    eval_ds = prepare(Dataset.from_dict(read_split(data / "devel.tsv"))) if args.do_eval else None
    test_raw = Dataset.from_dict(read_split(data / "test.tsv")) if args.do_predict else None

    def compute_metrics(p: Any) -> dict[str, float]:
        predictions, labels = p
        predictions = np.argmax(predictions, axis=2)
        true_predictions = [[label_list[q] for q, lab in zip(pred, lbl) if lab != -100]
                            for pred, lbl in zip(predictions, labels)]
        true_labels = [[label_list[lab] for q, lab in zip(pred, lbl) if lab != -100]
                       for pred, lbl in zip(predictions, labels)]
        return seqeval_metrics(true_predictions, true_labels)

    training_args = TrainingArguments(
        output_dir=str(out / "checkpoints"), num_train_epochs=args.epochs, max_steps=args.max_steps,
        per_device_train_batch_size=args.batch_size, learning_rate=args.learning_rate, seed=args.seed,
        save_strategy="no", report_to=[], disable_tqdm=True, logging_steps=500,
    )
    collator = CountingCollator(DataCollatorForTokenClassification(tokenizer))
    trainer = Trainer(model=model, args=training_args, train_dataset=train_ds, eval_dataset=eval_ds,
                      processing_class=tokenizer, data_collator=collator, compute_metrics=compute_metrics)
    start = time.perf_counter()
    result = trainer.train()
    wall = time.perf_counter() - start
    runtime = result.metrics["train_runtime"]
    metrics: dict[str, Any] = {
        "side": "baseline (plain Trainer, run_ner.py defaults)", "train_examples": len(train_ds),
        "epochs_run": float(trainer.state.epoch or 0), "global_steps": trainer.state.global_step,
        "train_runtime_s": runtime, "train_wall_s": wall,
        "examples_seen": collator.examples, "tokens_seen": collator.tokens, "padded_tokens_seen": collator.padded,
        "train_examples_per_s": collator.examples / runtime, "train_tokens_per_s": collator.tokens / runtime,
        "hf_train_samples_per_second": result.metrics.get("train_samples_per_second"),
        "train_loss": result.metrics.get("train_loss"), "max_seq_length": max_seq_length,
        "batch_size": args.batch_size, "learning_rate": args.learning_rate, "optim": str(training_args.optim),
    }
    collator.active = False
    if eval_ds is not None:
        metrics["validation"] = trainer.evaluate()
    if test_raw is not None:
        test_ds = prepare(test_raw)
        n_words = sum(len(t) for t in test_raw["tokens"])
        n_labelled = sum(sum(1 for x in lab if x != -100) for lab in test_ds["labels"])
        start = time.perf_counter()
        pred = trainer.predict(test_ds, metric_key_prefix="predict")
        metrics["test"] = {k.removeprefix("predict_"): v for k, v in pred.metrics.items()}
        metrics["test"].update({"seconds": time.perf_counter() - start, "words": n_words,
                                "words_lost_to_truncation": n_words - n_labelled})
    metrics["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    write_json(out / "metrics.json", metrics)
    print(json.dumps({k: v for k, v in metrics.items() if not isinstance(v, dict)}, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
