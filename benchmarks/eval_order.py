"""Dev evaluation inside training: the Trainer's prediction loop over the dev features in dataset order
(as before issue 18) vs longest-first (engine.length_order, as `engine.train` now hands them to the
Trainer), in ONE process, alternating rounds; the decoded predictions must be identical after
`engine.restore_order`. A third arm, ``raw_forward``, runs ``model(**batch)`` under ``inference_mode``
on the same length-sorted batches, collated beforehand: the Trainer loop's share of that speed is
``trainer_vs_raw``.

Run: python benchmarks/eval_order.py --model RUN_DIR --out benchmarks/results/eval_order.json [--rounds 2]
(RUN_DIR: a trained NER run, e.g. from configs/ner/minilm.yaml on NCBI-disease.)
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, now_utc, write_json  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    from transformers import TrainingArguments

    from clinical_ft import engine
    from clinical_ft.ner import TASK as task
    from clinical_ft.trainer import trainer_class

    run = engine.load_run(task, args.model)
    dev = task.load_split(run.card, "validation", None)
    enc = task.encode(run.tokenizer, dev, run.cfg, run.labels)
    order = engine.length_order(enc.dataset)
    targs = TrainingArguments(output_dir="/tmp/eval_order", per_device_eval_batch_size=run.cfg.per_device_eval_batch_size,
                              report_to=[], disable_tqdm=True, use_cpu=True)
    tr = trainer_class()(model=run.model, args=targs, data_collator=task.collator(run.tokenizer),
                         processing_class=run.tokenizer, preprocess_logits_for_metrics=task.reduce_logits)
    sides = {"dataset_order": (enc.dataset, None), "length_sorted": (enc.dataset.select(order.tolist()), order),
             "raw_forward": (None, None)}
    import torch

    rows, bs, collate = enc.dataset.select(order.tolist()), targs.per_device_eval_batch_size, task.collator(run.tokenizer)
    rows = rows.select_columns([c for c in ("input_ids", "token_type_ids", "attention_mask") if c in rows.column_names])
    batches = [collate([rows[i] for i in range(s, min(s + bs, len(rows)))]) for s in range(0, len(rows), bs)]
    start, rounds, decoded = machine(), [], {}
    for r in range(args.rounds):
        row = {}
        for name in (list(sides) if r % 2 == 0 else list(sides)[::-1]):
            ds, perm = sides[name]
            t0 = time.perf_counter()
            if ds is None:
                run.model.eval()
                with torch.inference_mode():
                    for b in batches:
                        run.model(**b)
                row[name] = time.perf_counter() - t0
                continue
            preds = tr.predict(ds).predictions
            row[name] = time.perf_counter() - t0
            decoded[name] = task.decode(dev, enc, preds if perm is None else engine.restore_order(preds, perm),
                                        run.labels, run.cfg)
        rounds.append(row)
    speedup = [r["dataset_order"] / r["length_sorted"] for r in rounds]
    out = {"date": now_utc(), "machine_start": start, "loadavg_end": list(__import__("os").getloadavg()),
           "command": "python benchmarks/eval_order.py " + shlex.join(argv if argv is not None else sys.argv[1:]),
           "features": len(enc.dataset), "eval_batch_size": run.cfg.per_device_eval_batch_size, "rounds": rounds,
           "speedup_per_round": speedup, "speedup_median": statistics.median(speedup),
           "trainer_vs_raw_median": statistics.median(r["raw_forward"] / r["length_sorted"] for r in rounds),
           "identical_predictions": decoded["dataset_order"] == decoded["length_sorted"]}
    write_json(Path(args.out), out)
    print(json.dumps({k: v for k, v in out.items() if k != "machine_start"}, indent=1))
    return 0 if out["identical_predictions"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
