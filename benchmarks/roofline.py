"""Roofline of NER training and inference on this CPU, in ONE process: the fp32 matmul ceiling, the
model's FLOPs per token, and the real Trainer's throughput as GFLOP/s and % of that ceiling, per
phase of a training step.

- Ceiling: ``a @ b`` at 1024^2, 2048^2 and 4096x384 @ 384x1536 (the best of the three), measured
  in turns between training windows, so that training and ceiling see the same machine load; the
  GEMMs of a training batch (tokens x 384 @ 384 x 1536 and 384 x 384) are timed in the same turns.
- FLOPs: ``torch.utils.flop_counter.FlopCounterMode`` on the model itself (forward; training =
  forward + backward, attention included), at two sequence lengths, fitted to ``a*L + b*L^2`` per
  sequence; every batch is then counted on its real (unpadded) lengths, and on its padded shape.
- Training: ``trainer.train()`` of a Trainer subclass (our `trainer_class`, the shipped NER config on
  the NCBI training set) whose steps are timed by phase: data (sampler + collation), forward,
  backward, gradient clipping, optimizer, scheduler, zero_grad, log/save/evaluate, and the rest of
  the Trainer's step (callbacks, loss bookkeeping).
- Inference: ``model(**batch)`` under ``inference_mode`` on the dev split, length-sorted batches.
- ``--profile-steps N``: torch.profiler self CPU time of N more steps by operator class.

Run: python benchmarks/roofline.py --seconds 300 --out benchmarks/results/roofline.json [key=value ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, now_utc, write_json  # noqa: E402

SHAPES = ((1024, 1024, 1024), (2048, 2048, 2048), (4096, 384, 1536))
CONFIG_KEYS = ("per_device_train_batch_size", "batch_tokens", "learning_rate", "method", "freeze_embeddings", "attention_dropout", "hidden_dropout")
PHASES = ("data", "forward", "backward", "clip", "optimizer", "scheduler", "zero_grad", "log_save_eval", "other")
OP_CLASSES = (("matmul", ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::linear")),
              ("attention", ("scaled_dot_product", "_softmax", "flash_attention")),
              ("optimizer", ("adam", "_foreach")), ("dropout", ("bernoulli", "native_dropout")),
              ("embedding", ("embedding",)))


def gemm_rate(m: int, k: int, n: int, seconds: float) -> float:
    """GFLOP/s of ``(m x k) @ (k x n)`` fp32, repeated for about `seconds` after one warm-up product."""
    import torch

    a, b = torch.randn(m, k), torch.randn(k, n)
    a @ b
    reps, t0 = 0, time.perf_counter()
    while (dt := time.perf_counter() - t0) < seconds or reps < 2:
        a @ b
        reps += 1
    return 2 * m * k * n * reps / dt / 1e9


def flop_fit(model: Any, train: bool, lengths: tuple[int, int] = (32, 128)) -> tuple[float, float]:
    """(a, b) with FLOPs of one sequence of length L = a*L + b*L^2 (forward, or forward + backward).

    Counted in training mode with SDPA's math backend (the counter has no formula for the fused CPU
    attention kernel that inference, or training without attention dropout, runs; same FLOPs)."""
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode
    counts = []
    for n in lengths:
        batch = {"input_ids": torch.full((1, n), 1000), "attention_mask": torch.ones(1, n, dtype=torch.long),
                 "token_type_ids": torch.zeros(1, n, dtype=torch.long), "labels": torch.zeros(1, n, dtype=torch.long)}
        with FlopCounterMode(display=False) as fc, sdpa_kernel(SDPBackend.MATH):
            loss = model(**batch).loss
            if train:
                loss.backward()
        counts.append(fc.get_total_flops())
        model.zero_grad(set_to_none=True)
    (l1, l2), (f1, f2) = lengths, counts
    b = (f2 / l2 - f1 / l1) / (l2 - l1)
    return f1 / l1 - b * l1, b


def flops(mask: Any, fit: tuple[float, float]) -> tuple[float, float]:
    """(real, padded) FLOPs of a batch: on each sequence's real length, and on the padded shape."""
    a, b = fit
    lens = mask.sum(dim=1).double()
    n, width = mask.shape
    return float((a * lens + b * lens**2).sum()), n * (a * width + b * width**2)


def phase_trainer(base: type, rec: dict[str, Any], turn: Any) -> type:
    """`base` (our Trainer class) with every phase of a training step timed into `rec`; `turn()`
    (ceiling and inference measurements) runs between steps, outside every timed phase."""

    class PhaseTrainer(base):
        def get_batch_samples(self, *a: Any, **kw: Any) -> Any:
            now = time.perf_counter()
            if rec["step_start"] is not None:  # the previous step ends here
                rec["t"]["other"] += now - rec["step_start"] - rec["timed"]
                rec["step_seconds"].append(now - rec["step_start"])
            if rec["steps"] % rec["turn_every"] == 0:
                turn()
            rec["step_start"], rec["timed"] = time.perf_counter(), 0.0
            return self._timed("data", super().get_batch_samples, *a, **kw)

        def _timed(self, phase: str, fn: Any, *a: Any, **kw: Any) -> Any:
            t0 = time.perf_counter()
            out = fn(*a, **kw)
            dt = time.perf_counter() - t0
            rec["t"][phase] += dt
            rec["timed"] += dt
            return out

        def compute_loss(self, model: Any, inputs: dict[str, Any], *a: Any, **kw: Any) -> Any:
            real, padded = flops(inputs["attention_mask"], rec["fit_train"])
            rec["flops"] += real
            rec["flops_padded"] += padded
            rec["tokens"] += int(inputs["attention_mask"].sum())
            rec["padded_tokens"] += int(inputs["attention_mask"].numel())
            rec["examples"] += int(inputs["attention_mask"].shape[0])
            t0 = time.perf_counter()
            out = super().compute_loss(model, inputs, *a, **kw)
            rec["forward_now"] = time.perf_counter() - t0
            return out

        def training_step(self, *a: Any, **kw: Any) -> Any:
            t0 = time.perf_counter()
            out = super().training_step(*a, **kw)
            dt = time.perf_counter() - t0
            rec["t"]["forward"] += rec["forward_now"]
            rec["t"]["backward"] += dt - rec["forward_now"]
            rec["timed"] += dt
            rec["steps"] += 1
            if rec["steps"] >= rec["max_steps"] or time.perf_counter() > rec["deadline"]:
                self.control.should_training_stop = True
            return out

        def _clip_grad_norm(self, model: Any) -> Any:
            return self._timed("clip", super()._clip_grad_norm, model)

        def _maybe_log_save_evaluate(self, *a: Any, **kw: Any) -> Any:
            return self._timed("log_save_eval", super()._maybe_log_save_evaluate, *a, **kw)

        def create_scheduler(self, *a: Any, **kw: Any) -> Any:
            out = super().create_scheduler(*a, **kw)
            for phase, obj, name in (("optimizer", self.optimizer, "step"), ("scheduler", self.lr_scheduler, "step"),
                                     ("zero_grad", self.model, "zero_grad")):
                fn = getattr(obj, name)
                setattr(obj, name, lambda *a, _f=fn, _p=phase, **kw: self._timed(_p, _f, *a, **kw))
            return out

    return PhaseTrainer


def op_classes(prof: Any) -> dict[str, float]:
    """Self CPU seconds of a profile by operator class (OP_CLASSES, else other)."""
    out: dict[str, float] = defaultdict(float)
    for ev in prof.key_averages():
        if not ev.key.startswith("aten::"):
            continue
        name = ev.key.lower()
        cls = next((c for c, keys in OP_CLASSES if any(k.lower() in name for k in keys)), "other elementwise/copy")
        out[cls] += ev.self_cpu_time_total / 1e6
    return dict(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=300, help="training time budget (ceiling turns excluded)")
    p.add_argument("--max-steps", type=int, default=400), p.add_argument("--out", required=True, help="JSON results")
    p.add_argument("--turn-every", type=int, default=10, help="training steps between ceiling/inference turns")
    p.add_argument("--turn-seconds", type=float, default=0.4, help="seconds per GEMM shape in a turn")
    p.add_argument("--profile-steps", type=int, default=5, help="torch.profiler steps at the end (0: none)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides (shipped NER config)")
    args = p.parse_args(argv)
    import torch

    from clinical_ft import encoders, methods, registry
    from clinical_ft.engine import length_order
    from clinical_ft.ner import TASK
    from clinical_ft.trainer import trainer_class, training_arguments

    card = registry.load_card("tasks/ner/ncbi_disease.yaml")
    cfg = registry.load_config("configs/ner/minilm.yaml", list(args.overrides) + ["eval_strategy=no"], TASK)
    tok = encoders.load_tokenizer(cfg.encoder)
    train, dev = TASK.load_split(card, "train", None), TASK.load_split(card, "validation", None)
    labels = TASK.label_list(card, train)
    model = methods.apply(TASK.build_model(cfg.encoder, labels, cfg), cfg)
    ds, dev_ds = TASK.encode(tok, train, cfg, labels).dataset, TASK.encode(tok, dev, cfg, labels).dataset
    model.train()  # dropout on while counting: the training kernels
    fit_train, fit_fwd = flop_fit(model, True), flop_fit(model, False)
    collate = TASK.collator(tok)
    dev_rows = dev_ds.select(length_order(dev_ds).tolist()).select_columns(["input_ids", "token_type_ids",
                                                                            "attention_mask", "labels"])
    eb, bs = cfg.per_device_eval_batch_size, cfg.per_device_train_batch_size
    dev_batches = [collate([dev_rows[i] for i in range(s, min(s + eb, len(dev_rows)))]) for s in range(0, len(dev_rows), eb)]
    dev_len = [len(x) for x in dev_ds["input_ids"]]
    dev_pad = {name: sum(max(ls[i:i + eb]) * len(ls[i:i + eb]) for i in range(0, len(ls), eb)) / sum(ls)
               for name, ls in (("dataset_order", dev_len), ("length_sorted", sorted(dev_len, reverse=True)))}
    start = machine()
    rec: dict[str, Any] = {"t": defaultdict(float), "step_start": None, "timed": 0.0, "steps": 0, "step_seconds": [],
                           "turn_every": args.turn_every, "max_steps": args.max_steps, "fit_train": fit_train,
                           "flops": 0.0, "flops_padded": 0.0, "tokens": 0, "padded_tokens": 0, "examples": 0,
                           "deadline": float("inf"), "turns": [], "infer": {"sec": 0.0, "flops": 0.0, "tokens": 0}}
    mean_tokens = cfg.batch_tokens or int(sum(min(len(x), cfg.max_length) for x in ds["input_ids"]) / len(ds) * bs)

    def turn() -> None:
        ceil = {f"{m}x{k}x{n}": gemm_rate(m, k, n, args.turn_seconds) for m, k, n in SHAPES}
        gemm = {f"{mean_tokens}x384x1536": gemm_rate(mean_tokens, 384, 1536, args.turn_seconds / 2),
                f"{mean_tokens}x384x384": gemm_rate(mean_tokens, 384, 384, args.turn_seconds / 2)}
        was = model.training
        model.eval()
        t0, fl, tk = time.perf_counter(), 0.0, 0
        with torch.inference_mode():
            for b in dev_batches[len(rec["turns"]) % len(dev_batches)::max(1, len(dev_batches) // 3)]:
                model(**{k: v for k, v in b.items() if k != "labels"})
                fl += flops(b["attention_mask"], fit_fwd)[0]
                tk += int(b["attention_mask"].sum())
        dt = time.perf_counter() - t0
        model.train(was)
        rec["infer"]["sec"] += dt
        rec["infer"]["flops"] += fl
        rec["infer"]["tokens"] += tk
        rec["turns"].append({"ceiling": max(ceil.values()), "shapes": ceil, "train_gemms": gemm,
                             "inference_gflops": fl / dt / 1e9, "train_flops_so_far": rec["flops"],
                             "train_seconds_so_far": sum(rec["t"].values()), "loadavg": list(__import__("os").getloadavg())})

    targs = dataclasses.replace(training_arguments(cfg, Path("/tmp/roofline"), False, "f1"), max_steps=10_000,
                                save_strategy="no", disable_tqdm=True)
    trainer = phase_trainer(trainer_class(), rec, turn)(model=model, args=targs, train_dataset=ds,
                                                        data_collator=collate, processing_class=tok)
    trainer.batch_tokens = cfg.batch_tokens
    rec["deadline"] = time.perf_counter() + args.seconds + 60  # turns included: stops on max-steps or time
    trainer.train()
    turn()  # the ceiling after the last window
    prof_classes: dict[str, float] = {}
    if args.profile_steps:
        from torch.profiler import ProfilerActivity, profile

        it = iter(trainer.get_train_dataloader())
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(args.profile_steps):
                loss = model(**next(it)).loss
                loss.backward()
                trainer._clip_grad_norm(model)
                trainer.optimizer.step()
                model.zero_grad()
        prof_classes = op_classes(prof)
    out = report(rec, fit_train, fit_fwd, prof_classes, cfg)
    out["dev_evaluation_padding_ratio"] = dev_pad  # padded / real positions at the eval batch size
    out.update({"date": now_utc(), "machine_start": start, "loadavg_end": list(__import__("os").getloadavg()),
                "torch_threads": torch.get_num_threads(), "overrides": list(args.overrides),
                "command": "python benchmarks/roofline.py " + " ".join(argv if argv is not None else sys.argv[1:])})
    write_json(Path(args.out), out)
    print(json.dumps({k: v for k, v in out.items() if k not in ("turns", "machine_start")}, indent=1, default=float))
    return 0


def report(rec: dict[str, Any], fit_train: tuple[float, float], fit_fwd: tuple[float, float],
           prof_classes: dict[str, float], cfg: Any) -> dict[str, Any]:
    """Throughput and % of ceiling overall, per training window (between two ceiling turns) and per phase."""
    turns = rec["turns"]
    ceiling = statistics.median(t["ceiling"] for t in turns)
    windows = []
    for a, b in zip(turns, turns[1:]):
        sec = b["train_seconds_so_far"] - a["train_seconds_so_far"]
        if sec > 0:
            gf = (b["train_flops_so_far"] - a["train_flops_so_far"]) / sec / 1e9
            windows.append(gf / ((a["ceiling"] + b["ceiling"]) / 2))
    total = sum(rec["t"].values())
    train_gf = rec["flops"] / total / 1e9
    infer_gf = rec["infer"]["flops"] / rec["infer"]["sec"] / 1e9
    fwd_bwd = rec["t"]["forward"] + rec["t"]["backward"]
    gemm_keys = turns[0]["train_gemms"].keys()
    return {
        "config": {k: getattr(cfg, k) for k in CONFIG_KEYS},
        "ceiling_gflops_median": ceiling, "ceiling_gflops_range": [min(t["ceiling"] for t in turns),
                                                                   max(t["ceiling"] for t in turns)],
        "train_gemm_pct_of_ceiling": {k: 100 * statistics.median(t["train_gemms"][k] / t["ceiling"] for t in turns)
                                      for k in gemm_keys},
        "flops_per_token": {"forward_linear": fit_fwd[0], "forward_attention_per_L": fit_fwd[1],
                            "train_linear": fit_train[0], "train_attention_per_L": fit_train[1],
                            "train_per_real_token_measured": rec["flops"] / rec["tokens"]},
        "train": {"steps": rec["steps"], "examples": rec["examples"], "tokens": rec["tokens"],
                  "padding_ratio": rec["padded_tokens"] / rec["tokens"], "seconds": total,
                  "examples_per_s": rec["examples"] / total, "tokens_per_s": rec["tokens"] / total,
                  "gflops_real": train_gf, "pct_of_ceiling_real": 100 * train_gf / ceiling,
                  "pct_of_ceiling_padded": 100 * rec["flops_padded"] / total / 1e9 / ceiling,
                  "pct_of_ceiling_per_window_median": 100 * statistics.median(windows) if windows else None,
                  "fwd_bwd_only_pct_of_ceiling": 100 * rec["flops"] / fwd_bwd / 1e9 / ceiling,
                  "step_ms_median": 1000 * statistics.median(rec["step_seconds"]) if rec["step_seconds"] else None},
        "phases": {k: {"seconds": rec["t"][k], "share_pct": 100 * rec["t"][k] / total,
                       "ms_per_step": 1000 * rec["t"][k] / max(rec["steps"], 1)} for k in PHASES},
        "inference": {"tokens": rec["infer"]["tokens"], "tokens_per_s": rec["infer"]["tokens"] / rec["infer"]["sec"],
                      "gflops_real": infer_gf, "pct_of_ceiling_real": 100 * infer_gf / ceiling},
        "profile_self_cpu_s_by_class": prof_classes,
        "turns": turns,
    }


if __name__ == "__main__":
    raise SystemExit(main())
