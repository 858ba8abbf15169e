"""DDI-2013 relation extraction under a CPU budget: clinical_ft's relation task beside a plain
Hugging Face Trainer baseline on the same encoder, the same training pairs and hyperparameters.

Systems (each trained once, then scored on the FULL DDI Extraction test set, 5,716 pairs):
- ``clinical_ft markers+entity_start``: [E1]..[/E1] [E2]..[/E2] added as special tokens, entity-start pooling;
- ``clinical_ft typed markers+entity_start``: [E1:drug]..[/E1:drug] (the DDI entity type in the marker);
- ``clinical_ft mask+cls``: BioBERT masks (@DRUG$), [CLS] pooling, through clinical_ft's engine;
- ``HF Trainer mask+cls``: run_glue-style ``AutoModelForSequenceClassification`` + ``Trainer`` with
  ``truncation=True, max_length``, random sampling, ``DataCollatorWithPadding``; no clinical_ft engine.
  It gets its pairs and @DRUG$-masked text from clinical_ft's DDI reader, so both sides see the same data.

Metric: micro-P/R/F1 over advise/effect/int/mechanism (``false`` excluded), computed for the baseline
directly with sklearn. Budget: the first `--max-train` pairs of clinical_ft's seeded random order of
the training pairs (dev documents carved out), `--epochs` epochs. Limited runs are NOT comparable with
the published full-data scores, which are shown for orientation only.

Run: OMP_NUM_THREADS=1 python benchmarks/relation_ddi.py --max-train 2000 --epochs 1
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, now_utc, write_json, write_text  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
POS = ["advise", "effect", "int", "mechanism"]
PUBLISHED = [("PubMedBERT (BLURB), full training data", 82.36)]


def _cfg(args: argparse.Namespace, options: dict[str, str]) -> Any:
    from clinical_ft import registry
    from clinical_ft.relation import TASK

    return registry.load_config("relation/minilm", {
        "max_train_examples": args.max_train, "max_eval_examples": 200, "num_train_epochs": args.epochs,
        "eval_strategy": "no", "task_options": options, "max_length": args.max_length,
        "per_device_train_batch_size": args.batch_size}, TASK)


def run_clinical_ft(args: argparse.Namespace, card: Any, options: dict[str, str], out: Path) -> dict[str, Any]:
    from clinical_ft import engine
    from clinical_ft.relation import TASK

    cfg = _cfg(args, options)
    start = time.perf_counter()
    metrics = engine.train(TASK, card, cfg, out, overwrite=True)
    train_s = time.perf_counter() - start
    run = engine.load_run(TASK, out)
    test = TASK.load_split(card, "test", None)[: args.max_test]
    start = time.perf_counter()  # what engine.evaluate does, on the (possibly limited) test pairs
    preds = engine.predict(TASK, run, test)
    ev = {**TASK.score(test, preds, run.labels), "examples": len(test)}
    return {"train_s": metrics["train_runtime_s"], "wall_s": train_s, "test_s": time.perf_counter() - start,
            "steps": metrics["global_steps"],
            "train_examples": metrics["train_examples"], "precision": ev["precision"], "recall": ev["recall"],
            "f1": ev["f1"], "per_class_f1": {c: ev[f"{c}_f1"] for c in POS}, "test_examples": ev["examples"]}


def run_hf_baseline(args: argparse.Namespace, card: Any, out: Path) -> dict[str, Any]:
    import numpy as np
    from datasets import Dataset
    from sklearn.metrics import precision_recall_fscore_support
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
        set_seed,
    )

    from clinical_ft.encoders import bundled_minilm
    from clinical_ft.relation import TASK

    cfg = _cfg(args, {"marker": "mask", "pooling": "cls"})
    set_seed(cfg.seed)
    train = TASK.load_split(card, "train", None)[: args.max_train]
    test = TASK.load_split(card, "test", None)[: args.max_test]
    labels = list(card.labels)
    tok = AutoTokenizer.from_pretrained(bundled_minilm())

    def dataset(examples: list[Any]) -> Any:
        ds = Dataset.from_dict({"text": [e.marked("mask")[0] for e in examples],
                                "label": [labels.index(e.label) for e in examples]})
        return ds.map(lambda b: tok(b["text"], truncation=True, max_length=cfg.max_length), batched=True,
                      remove_columns=["text"])

    model = AutoModelForSequenceClassification.from_pretrained(
        bundled_minilm(), num_labels=len(labels), id2label=dict(enumerate(labels)),
        label2id={c: i for i, c in enumerate(labels)})
    targs = TrainingArguments(output_dir=str(out), learning_rate=cfg.learning_rate, weight_decay=cfg.weight_decay,
                              warmup_steps=cfg.warmup_ratio, lr_scheduler_type="linear",
                              num_train_epochs=cfg.num_train_epochs,
                              per_device_train_batch_size=cfg.per_device_train_batch_size,
                              per_device_eval_batch_size=cfg.per_device_eval_batch_size, seed=cfg.seed,
                              save_strategy="no", report_to=[], logging_steps=50, disable_tqdm=True)
    trainer = Trainer(model=model, args=targs, train_dataset=dataset(train),
                      data_collator=DataCollatorWithPadding(tok), processing_class=tok)
    start = time.perf_counter()
    result = trainer.train()
    train_s = time.perf_counter() - start
    start = time.perf_counter()
    pred = np.asarray(trainer.predict(dataset(test)).predictions).argmax(-1)
    test_s = time.perf_counter() - start
    gold = [e.label for e in test]
    guess = [labels[k] for k in pred]
    p, r, f, _ = precision_recall_fscore_support(gold, guess, labels=POS, average="micro", zero_division=0)
    per = precision_recall_fscore_support(gold, guess, labels=POS, average=None, zero_division=0)[2]
    return {"train_s": train_s, "test_s": test_s, "steps": result.global_step, "train_examples": len(train),
            "precision": float(p), "recall": float(r), "f1": float(f),
            "per_class_f1": {c: float(v) for c, v in zip(POS, per)}, "test_examples": len(test)}


def markdown(res: dict[str, Any]) -> str:
    base = res["systems"].get("HF Trainer mask+cls")
    rows = []
    for name, r in res["systems"].items():
        ratio = f"{r['train_s'] / base['train_s']:.2f}" if base else "n/a"
        rows.append(f"| {name} | {100 * r['precision']:.2f} | {100 * r['recall']:.2f} | {100 * r['f1']:.2f} | "
                    + " / ".join(f"{100 * r['per_class_f1'][c]:.1f}" for c in POS)
                    + f" | {r['train_examples']} | {r['steps']} | {r['train_s']:.0f} | {ratio} | {r['test_s']:.0f} |")
    pub = "\n".join(f"| {m} | | | {s:.2f} | | full | | | | |" for m, s in PUBLISHED)
    return f"""# DDI-2013 relation extraction: clinical_ft vs a plain Hugging Face Trainer (MiniLM-L6, CPU budget)

Generated {res['date']} by `benchmarks/relation_ddi.py`. Command:

    {res['command']}

**Budget (LIMITED run, not comparable with published full-data scores):** {res['max_train']} training pairs
(the first pairs of clinical_ft's seeded random order of the DDI Train pairs, dev documents carved out),
{res['epochs']} epoch(s), train batch {res['batch_size']}, max_length {res['max_length']}, lr/warmup/weight decay
from `configs/relation/minilm.yaml`,
seed 42. Test: {res['test_examples']} pairs of the DDI Extraction test set (5,716 = all). Encoder: bundled MiniLM-L6
(all systems). Machine: {res['machine']['nproc']} shared CPU cores, torch threads {res['machine']['torch_threads']},
load average at start {res['machine']['loadavg'][0]:.1f}; times are wall seconds on a shared machine (noise):
compare the ratio column (train time / HF Trainer's train time in this same run), not absolute times.
`train s` is `Trainer.train()` alone for every system (clinical_ft's whole `engine.train`, with data reading,
encoding, a 200-pair dev evaluation and saving, is `wall_s` in relation_ddi.json).

| system | micro-P | micro-R | micro-F1 | F1 advise / effect / int / mechanism | train pairs | steps | train s | train time ratio vs HF | test predict s |
|---|---:|---:|---:|---|---:|---:|---:|---:|---:|
{chr(10).join(rows)}
{pub}

Notes: micro-P/R/F1 over the four positive types, `false` excluded (sklearn
`precision_recall_fscore_support(labels=positives, average="micro")`). clinical_ft windows pairs longer than
max_length (the window holding both markers); the HF baseline truncates them, as run_glue does. clinical_ft
also groups training batches by length. The published PubMedBERT score uses a BERT-base encoder trained on
the full training data ({res['train_available']} pairs here after the dev carve).
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--max-train", type=int, default=2000)
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=8, help="per-device train batch (more updates on a small budget)")
    p.add_argument("--max-test", type=int, help="first N test pairs only (smoke runs); default: all")
    p.add_argument("--systems", default="markers,hf,mask", help="comma list of markers, typed, hf, mask")
    p.add_argument("--out", default=str(RESULTS / "relation_ddi.json"))
    args = p.parse_args(argv)
    from clinical_ft import registry
    from clinical_ft.relation import TASK

    card = registry.load_card("relation/ddi2013")
    res: dict[str, Any] = {"date": now_utc(), "machine": machine(), "max_train": args.max_train, "epochs": args.epochs,
                           "max_length": args.max_length, "batch_size": args.batch_size, "command": f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '')} python benchmarks/relation_ddi.py "
                           + " ".join(argv if argv is not None else sys.argv[1:]),
                           "train_available": len(TASK.load_split(card, "train", None)),
                           "test_examples": len(TASK.load_split(card, "test", None)[: args.max_test]),
                           "systems": {}}
    names = {"markers": "clinical_ft markers+entity_start", "typed": "clinical_ft typed markers+entity_start",
             "mask": "clinical_ft mask+cls", "hf": "HF Trainer mask+cls"}
    options = {"markers": {"marker": "entity_markers", "pooling": "entity_start"},
               "typed": {"marker": "typed_markers", "pooling": "entity_start"},
               "mask": {"marker": "mask", "pooling": "cls"}}
    with tempfile.TemporaryDirectory() as tmp:
        for key in args.systems.split(","):
            if key == "hf":
                r = run_hf_baseline(args, card, Path(tmp) / "hf")
            else:
                r = run_clinical_ft(args, card, options[key], Path(tmp) / key)
            res["systems"][names[key]] = r
            print(names[key], {k: v for k, v in r.items() if k != "per_class_f1"}, flush=True)
            write_json(Path(args.out), res)
            write_text(Path(args.out).with_suffix(".md"), markdown(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
