"""Where does an NER training step spend its time? Phase timing (data loader + collation, forward,
backward, gradient clipping + optimizer + scheduler) and a torch.profiler operator table, for the
batches a Trainer built from our config (or run_ner.py-like settings) would feed.

The model, optimizer, scheduler and data loader are the Trainer's own (``get_train_dataloader``,
``create_optimizer_and_scheduler``); the loop below only times them and trains nothing we keep.

Run: python benchmarks/ner_profile.py --steps 20 [--baseline] [key=value ...]
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=20, help="steps timed (after 3 warm-up steps)")
    p.add_argument("--baseline", action="store_true", help="batch 8, random batches, no weight decay (run_ner.py)")
    p.add_argument("--ops", type=int, default=15, help="rows of the operator table (0: no torch.profiler)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides for ours")
    args = p.parse_args(argv)

    import torch

    from clinical_ft import encoders, registry
    from clinical_ft.ner import TASK
    from clinical_ft.trainer import trainer_class, training_arguments

    over = ["per_device_train_batch_size=8", "group_by_length=false", "learning_rate=5e-5", "warmup_ratio=0",
            "weight_decay=0", "max_length=512", "stride=0"] if args.baseline else []
    card = registry.load_card("tasks/ner/ncbi_disease.yaml")
    cfg = registry.load_config("configs/ner/minilm.yaml", over + args.overrides + ["eval_strategy=no"], TASK)
    tok = encoders.load_tokenizer(cfg.encoder)
    train = TASK.load_split(card, "train", None)
    labels = TASK.label_list(card, train)
    model = TASK.build_model(cfg.encoder, labels, cfg)
    enc = TASK.encode(tok, train, cfg, labels)
    targs = training_arguments(cfg, __import__("pathlib").Path("/tmp/ner_profile"), False, "f1")
    trainer = trainer_class()(model=model, args=targs, train_dataset=enc.dataset,
                              data_collator=TASK.collator(tok), processing_class=tok)
    trainer.create_optimizer_and_scheduler(num_training_steps=1000)
    opt, sched = trainer.optimizer, trainer.lr_scheduler
    model.train()
    it = iter(trainer.get_train_dataloader())
    times: dict[str, float] = defaultdict(float)
    tokens = padded = 0

    def step(record: bool) -> None:
        nonlocal tokens, padded
        t0 = time.perf_counter()
        batch = next(it)
        t1 = time.perf_counter()
        loss = model(**batch).loss
        t2 = time.perf_counter()
        loss.backward()
        t3 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), targs.max_grad_norm)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        t4 = time.perf_counter()
        if record:
            for k, v in (("data+collate", t1 - t0), ("forward", t2 - t1), ("backward", t3 - t2),
                         ("clip+optimizer", t4 - t3)):
                times[k] += v
            tokens += int(batch["attention_mask"].sum())
            padded += int(batch["attention_mask"].numel())

    for _ in range(3):
        step(False)
    for _ in range(args.steps):
        step(True)
    total = sum(times.values())
    print(f"{'baseline-like' if args.baseline else 'ours'}: batch {cfg.per_device_train_batch_size}, "
          f"{args.steps} steps, {total / args.steps * 1000:.0f} ms/step, {tokens / total:.0f} real tok/s, "
          f"padding {padded / tokens:.2f}x, optimizer {targs.optim}, threads {torch.get_num_threads()}")
    for k, v in times.items():
        print(f"  {k:<15} {v / args.steps * 1000:8.1f} ms/step  {100 * v / total:5.1f}%")
    if args.ops:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(min(args.steps, 5)):
                step(False)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.ops))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
