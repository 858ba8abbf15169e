"""torch.compile (inductor, dynamic shapes) against eager for NER training steps of the bundled MiniLM
(frozen word embeddings, attention dropout 0: configs/ner/minilm_fast.yaml's model), at four batch
shapes, in one process: forward, backward, clipping and fused AdamW; 3 alternating rounds, median
tokens/s per side. Also shows how a bigger batch (more tokens per step) speeds up eager training.

Run: OMP_NUM_THREADS=2 python benchmarks/train_compile_probe.py
"""

from __future__ import annotations

import time
from typing import Any

import torch

SHAPES = [(16, 34), (64, 32), (20, 100), (40, 50)]  # (sentences, tokens): batch 16 of NCBI, then ~2,000-token batches


def _model() -> Any:
    from transformers import AutoModelForTokenClassification

    from clinical_ft import methods
    from clinical_ft.encoders import bundled_minilm

    m = AutoModelForTokenClassification.from_pretrained(bundled_minilm(), num_labels=3, attn_implementation="sdpa")
    methods.set_attention_dropout(m, 0.0)
    m.bert.embeddings.word_embeddings.weight.requires_grad_(False)
    return m.train()


def _step(fn: Any, model: Any, opt: Any, bs: int, length: int) -> None:
    ids, labels = torch.randint(1000, 20000, (bs, length)), torch.randint(0, 3, (bs, length))
    fn(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels).loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    opt.zero_grad()


def main() -> None:
    torch.manual_seed(0)
    eager, plain = _model(), _model()
    sides = {}
    t0 = time.perf_counter()
    for name, model in (("eager", eager), ("compiled", plain)):
        fn = torch.compile(model, dynamic=True) if name == "compiled" else model
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5, fused=True)
        sides[name] = (fn, model, opt)
    for bs, length in SHAPES:  # compiles (and warms up eager likewise)
        for fn, model, opt in sides.values():
            _step(fn, model, opt, bs, length)
    print(f"compilation and first steps: {time.perf_counter() - t0:.1f} s", flush=True)
    rates: dict[tuple[str, int, int], list[float]] = {}
    for _ in range(3):
        for name, (fn, model, opt) in sides.items():
            for bs, length in SHAPES:
                t = time.perf_counter()
                for _ in range(2):
                    _step(fn, model, opt, bs, length)
                rates.setdefault((name, bs, length), []).append(2 * bs * length / (time.perf_counter() - t))
    for bs, length in SHAPES:
        e, c = (sorted(rates[(n, bs, length)])[1] for n in ("eager", "compiled"))
        print(f"batch {bs} x {length} tokens: eager {e:.0f}, compiled {c:.0f} tokens/s, compiled/eager {c / e:.2f}")


if __name__ == "__main__":
    main()
