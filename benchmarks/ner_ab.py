"""Fine-grained interleaved A/B training throughput in ONE process: baseline (run_ner.py settings:
batch 8, random batches, lr 5e-5, no warmup, no weight decay) and ours (the shipped config: its batch
size and length grouping), each with its own model, optimizer and scheduler built by a Trainer
(``create_optimizer_and_scheduler``) and its own batches from the Trainer's sampler.

The two sides take turns of equal size (32 sentences: 4 baseline steps, then 1 ours step at batch
32), so a change in machine load hits both alike. Batches are the sampler's batches of a full
epoch in shuffled order (so the length-grouped side does not start with its longest batches).
A step is forward, backward, gradient clipping, optimizer and scheduler step, as in the Trainer.

``--a "key=value ..."`` replaces the baseline by our config with those overrides (A/B of one lever:
e.g. ``--a ""`` for the shipped config against ``method=partial freeze_embeddings=true`` as ours).
``--more "key=value ..."`` (repeatable) adds further sides of our config, named more1, more2, ...,
each in the same rotation. Every side gets the fine-tuning method of its config (``methods.apply``).
With ``batch_tokens`` a side's batches are the token-budget sampler's, and a turn is as many of its
steps as reach `--turn` sentences.

Sides are compared by ``epoch_sentences_per_s``: real tokens/s over the real tokens per sentence of a
whole epoch (the rate an epoch of sentences goes through), since a short run's raw examples/s depends
on which batches it drew.

Run: python benchmarks/ner_ab.py --seconds 480 --out /tmp/ner_ab.json [--a "key=value ..."] [key=value ...]
"""

from __future__ import annotations

import argparse
import json
import random
import shlex
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, now_utc, write_json  # noqa: E402

BASELINE = ["per_device_train_batch_size=8", "group_by_length=false", "learning_rate=5e-5", "warmup_ratio=0",
            "weight_decay=0", "max_length=512", "stride=0"]
MODEL_INPUTS = ("input_ids", "token_type_ids", "attention_mask", "labels")


def _side(name: str, overrides: list[str], seed: int) -> dict[str, Any]:
    from clinical_ft import encoders, methods, registry
    from clinical_ft.ner import TASK
    from clinical_ft.trainer import trainer_class, training_arguments

    card = registry.load_card("tasks/ner/ncbi_disease.yaml")
    cfg = registry.load_config("configs/ner/minilm.yaml", overrides + ["eval_strategy=no"], TASK)
    tok = encoders.load_tokenizer(cfg.encoder)
    train = TASK.load_split(card, "train", None)
    labels = TASK.label_list(card, train)
    model = methods.apply(TASK.build_model(cfg.encoder, labels, cfg), cfg)
    ds = TASK.encode(tok, train, cfg, labels).dataset
    targs = training_arguments(cfg, Path("/tmp/ner_ab") / name, False, "f1")
    trainer = trainer_class()(model=model, args=targs, train_dataset=ds, processing_class=tok)
    trainer.create_optimizer_and_scheduler(num_training_steps=10_000)
    trainer.batch_tokens = cfg.batch_tokens
    bs = cfg.per_device_train_batch_size
    order = list(trainer._get_train_sampler(ds))
    if cfg.batch_tokens:  # a batch sampler: its batches, already in a seeded random order
        batches, bs = order, round(len(ds) / len(order))
    else:
        batches = [order[i:i + bs] for i in range(0, len(order), bs)]
        random.Random(seed).shuffle(batches)
    rows = ds.select_columns(list(MODEL_INPUTS))
    model.train()
    return {"name": name, "model": model, "opt": trainer.optimizer, "sched": trainer.lr_scheduler,
            "clip": targs.max_grad_norm, "collator": TASK.collator(tok), "batches": batches, "rows": rows,
            "bs": bs, "next": 0, "overrides": overrides, "sentences": len(train),
            "epoch_tokens": sum(len(x) for x in ds["input_ids"]),
            "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad), "optim": str(targs.optim), "lr": cfg.learning_rate,
            "sec": 0.0, "examples": 0, "tokens": 0, "padded": 0, "steps": 0, "turns": []}


def _step(s: dict[str, Any], record: bool) -> None:
    import torch

    idx = s["batches"][s["next"] % len(s["batches"])]
    s["next"] += 1
    t0 = time.perf_counter()
    batch = s["collator"]([s["rows"][i] for i in idx])
    loss = s["model"](**batch).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(s["model"].parameters(), s["clip"])
    s["opt"].step()
    s["sched"].step()
    s["opt"].zero_grad(set_to_none=True)
    dt = time.perf_counter() - t0
    if record:
        s["sec"] += dt
        s["steps"] += 1
        s["examples"] += len(idx)
        s["tokens"] += int(batch["attention_mask"].sum())
        s["padded"] += int(batch["attention_mask"].numel())


def _turn(s: dict[str, Any], sentences: int, record: bool) -> None:
    """Steps of side `s` until they have taken at least `sentences` sentences."""
    done = 0
    while done < sentences:
        done += len(s["batches"][s["next"] % len(s["batches"])])
        _step(s, record)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=480, help="stop starting turns after this long")
    p.add_argument("--turn", type=int, default=32, help="sentences per turn and side")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--a", default=None, help="side A: our config with these overrides instead of run_ner.py's")
    p.add_argument("--more", action="append", default=[], help="a further side: our config with these overrides")
    p.add_argument("--out", required=True, help="JSON results")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides for ours")
    args = p.parse_args(argv)
    import torch

    torch.manual_seed(args.seed)
    start_info = machine()
    side_a = ("baseline", BASELINE) if args.a is None else ("a", args.a.split())
    sides = [_side(*side_a, args.seed), _side("ours", list(args.overrides), args.seed)]
    sides += [_side(f"more{i}", more.split(), args.seed) for i, more in enumerate(args.more, 1)]
    for s in sides:  # warm-up turn, not recorded
        _turn(s, args.turn, False)
    t_end = time.perf_counter() + args.seconds
    turns = 0
    while time.perf_counter() < t_end:
        for s in sides if turns % 2 == 0 else sides[::-1]:  # ABBA order
            before = (s["sec"], s["tokens"])
            _turn(s, args.turn, True)
            s["turns"].append({"seconds": s["sec"] - before[0], "tokens": s["tokens"] - before[1]})
        turns += 1
    out: dict[str, Any] = {"date": now_utc(), "machine_start": start_info, "loadavg_end": list(__import__("os").getloadavg()),
                           "turns": turns, "sentences_per_turn": args.turn, "command": "python benchmarks/ner_ab.py "
                           + shlex.join(argv if argv is not None else sys.argv[1:])}
    for s in sides:
        out[s["name"]] = {"batch_size": s["bs"], "learning_rate": s["lr"], "optim": s["optim"], "steps": s["steps"],
                          "examples": s["examples"], "tokens": s["tokens"], "padded_tokens": s["padded"],
                          "seconds": s["sec"], "examples_per_s": s["examples"] / s["sec"],
                          "tokens_per_s": s["tokens"] / s["sec"], "padding_ratio": s["padded"] / s["tokens"],
                          "overrides": s["overrides"], "trainable_parameters": s["trainable"],
                          # sentences of a whole epoch per second: real tokens/s over the epoch's real tokens per
                          # sentence (a short run's raw examples/s depends on which batches it drew)
                          "epoch_sentences_per_s": s["tokens"] / s["sec"] * s["sentences"] / s["epoch_tokens"]}
    b, o = out[sides[0]["name"]], out["ours"]
    out["ratio_examples_per_s"] = o["examples_per_s"] / b["examples_per_s"]
    out["ratio_tokens_per_s"] = o["tokens_per_s"] / b["tokens_per_s"]
    for s in sides[1:]:
        for key in ("examples_per_s", "epoch_sentences_per_s", "tokens_per_s"):
            out[s["name"]][f"ratio_{key}"] = out[s["name"]][key] / b[key]
    write_json(Path(args.out), out)
    print(json.dumps({k: v for k, v in out.items() if k not in ("machine_start",)}, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
