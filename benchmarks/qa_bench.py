"""Limited-budget QA quality benchmark: clinical_ft.qa vs a plain Hugging Face example pipeline
(benchmarks/qa_hf_baseline.py) on the same encoder, same examples, same budget, in the same run;
beside the published reference numbers of the card.

COVID-QA (extractive, fixed split by article) and PubMedQA PQA-L (yes/no/maybe). Budgets are
explicit flags and are written into the results file; they are far below the published protocols,
so the absolute numbers are NOT comparable with the references, only the two pipelines with each other.

Run (2 shared CPU cores):
  python benchmarks/qa_bench.py --task covid_qa --train-examples 40 --test-examples 10 --negative-fraction 0.02 --threads 1
  python benchmarks/qa_bench.py --task pubmedqa --train-examples 160 --test-examples 150 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import qa_hf_baseline  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def _ours(task: Any, card: Any, cfg: Any, test: list[Any], out: Path) -> dict[str, Any]:
    from clinical_ft import engine

    metrics = engine.train(task, card, cfg, out, overwrite=True)
    run = engine.load_run(task, out)
    t0 = time.perf_counter()
    enc = task.encode(run.tokenizer, test, run.cfg, run.labels)
    preds = task.decode(test, enc, engine.predict_raw(task, run, enc), run.labels, run.cfg)
    predict_s = time.perf_counter() - t0
    return {"scores": task.score(test, preds, run.labels), "train_seconds": metrics["train_runtime_s"],
            "predict_seconds": predict_s, "train_features": metrics["train_features"], "test_features": len(enc.dataset)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--task", choices=["covid_qa", "pubmedqa"], required=True)
    p.add_argument("--train-examples", type=int, required=True, help="first N questions of the train split")
    p.add_argument("--test-examples", type=int, required=True, help="N questions sampled from the test split")
    p.add_argument("--sample-seed", type=int, default=13, help="seed of the test sample")
    p.add_argument("--negative-fraction", type=float, default=1.0, help="extractive: training windows without the answer kept")
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)

    import torch
    from sklearn.metrics import accuracy_score, f1_score

    from clinical_ft import encoders, qa, registry
    from clinical_ft.qa.post import squad_scores

    torch.set_num_threads(args.threads)
    card = registry.load_card(f"tasks/qa/{args.task}.yaml")
    task = registry.for_card(card)
    cfg = registry.load_config("configs/qa/minilm.yaml", {
        "num_train_epochs": args.epochs, "max_train_examples": args.train_examples, "eval_strategy": "no",
        "max_eval_examples": 0,  # no validation pass: the budget goes to the test sample
        "learning_rate": args.lr, "per_device_train_batch_size": args.batch,
        "task_options": {"train_negative_fraction": args.negative_fraction}}, task)
    train = task.load_split(card, "train", None)[: args.train_examples]
    full_test = task.load_split(card, "test", None)
    keep = sorted(random.Random(args.sample_seed).sample(range(len(full_test)), min(args.test_examples, len(full_test))))
    test = [full_test[i] for i in keep]  # a seeded sample: the files are ordered by article / by label
    tmp = Path(tempfile.mkdtemp(prefix="qa_bench_"))
    try:
        ours = _ours(task, card, cfg, test, tmp / "ours")
        common = {"lr": args.lr, "batch": args.batch, "epochs": args.epochs, "seed": cfg.seed}
        enc_path = encoders.resolve(cfg.encoder)
        if task is qa.EXTRACTIVE:
            hf = qa_hf_baseline.extractive(enc_path, train, test, str(tmp / "hf"), negative_fraction=args.negative_fraction, **common)
            hf["scores"] = squad_scores(hf.pop("answers"), [e.gold for e in test])
        else:
            labels = list(card.labels)
            hf = qa_hf_baseline.yesno(enc_path, train, test, labels, str(tmp / "hf"), **common)
            gold, pred = [x.label for x in test], hf.pop("labels")
            hf["scores"] = {"accuracy": float(accuracy_score(gold, pred)),
                            "macro_f1": float(f1_score(gold, pred, labels=labels, average="macro", zero_division=0))}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    keys = ["exact_match", "f1"] if task is qa.EXTRACTIVE else ["accuracy", "macro_f1"]
    majority = None
    if task is not qa.EXTRACTIVE:  # the floor a collapsed classifier reaches: the training questions' majority class
        top = Counter(x.label for x in train).most_common(1)[0][0]
        gold = [x.label for x in test]
        majority = {"label": top, "accuracy": float(accuracy_score(gold, [top] * len(gold))),
                    "macro_f1": float(f1_score(gold, [top] * len(gold), labels=list(card.labels), average="macro",
                                               zero_division=0))}
    result = {"task": args.task, "command": "python benchmarks/qa_bench.py " + " ".join(argv or sys.argv[1:]),
              "encoder": cfg.encoder, "budget": {"train_questions": len(train), "test_questions": len(test), **vars(args)},
              "loadavg": list(os.getloadavg()), "clinical_ft": ours, "hf_baseline": hf, "majority_class": majority,
              "references": [vars(r) for r in card.references]}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"qa_{args.task}.json").write_text(json.dumps(result, indent=2, default=float) + "\n")
    rows = [f"| {name} | " + " | ".join(f"{100 * r['scores'][k]:.2f}" for k in keys)
            + f" | {r['train_features']} | {r['train_seconds']:.0f} | {r['test_features']} | {r['predict_seconds']:.0f} |"
            for name, r in (("clinical_ft.qa", ours), ("HF example pipeline", hf))]
    ratio = {k: (ours["scores"][k] / hf["scores"][k] if hf["scores"][k] else float("nan")) for k in keys}
    md = [f"# QA benchmark: {args.task} (LIMITED budget, bundled MiniLM-L6, CPU)", "",
          f"Command: `{result['command']}`", "",
          f"Budget: first {len(train)} train questions and a seeded sample (seed {args.sample_seed}) of {len(test)} of the "
          f"{len(full_test)} test questions of the card's fixed split, "
          f"{args.epochs:g} epoch(s), lr {args.lr:g}, batch {args.batch}, seed {cfg.seed}"
          + (f", training windows without the answer kept with probability {args.negative_fraction:g} (both pipelines)"
             if task is qa.EXTRACTIVE else "") + f"; torch threads {args.threads}; load average at the end {result['loadavg']}.",
          "", "| pipeline | " + " | ".join(keys) + " | train windows | train s | test windows | predict s |",
          "|---|" + "---|" * (len(keys) + 4), *rows,
          *([f"| always {majority['label']!r} (training majority) | " + " | ".join(f"{100 * majority[k]:.2f}" for k in keys)
             + " | | | | |"] if majority else []), "",
          "Ratio clinical_ft / HF baseline: " + ", ".join(f"{k} {v:.3f}" for k, v in ratio.items()), "",
          "Published references (full data, larger encoders, other protocols: NOT comparable with this budget):", ""]
    md += [f"- {r.model}: {r.score} ({r.metric}; {r.source})" for r in card.references]
    md += ["", "Scores in percent. Times are wall seconds on 2 CPU cores shared with other jobs (noise; compare within this run only).",
           "The HF baseline is benchmarks/qa_hf_baseline.py (run_qa/utils_qa or run_glue set-up; its docstring lists the one deviation)."]
    (RESULTS / f"qa_{args.task}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
