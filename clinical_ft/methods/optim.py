"""Layer-wise learning-rate decay (LLRD) on the Trainer's own optimizer, and a step timer."""

from __future__ import annotations

import time
from typing import Any

from ..config import TrainConfig
from .freeze import depth, num_layers


def lr_scales(model: Any, decay: float) -> dict[str, float]:
    """Learning-rate multiplier of every trainable parameter under LLRD with factor `decay`."""
    n = num_layers(model)
    return {name: decay ** (n + 1 - depth(name, n)) for name, p in model.named_parameters() if p.requires_grad}


def optimizer_cls_and_kwargs(model: Any, cfg: TrainConfig, args: Any) -> tuple[type, dict[str, Any]] | None:
    """For Trainer(optimizer_cls_and_kwargs=...): the Trainer's own optimizer (AdamW by default), whose
    weight-decay groups are further split by LLRD learning rate. None (Trainer default) without LLRD."""
    if cfg.layerwise_lr_decay is None:
        return None
    from transformers import Trainer

    base_cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(args, model)
    scales = lr_scales(model, cfg.layerwise_lr_decay)
    by_id = {id(p): scales[n] for n, p in model.named_parameters() if n in scales}

    class LayerwiseLR(base_cls):  # type: ignore[valid-type,misc]
        """`base_cls` with each parameter group split by layer-wise learning-rate scale."""

        def __init__(self, params: Any, **kw: Any) -> None:
            groups = []
            for g in params:
                split: dict[float, list[Any]] = {}
                for p in g["params"]:
                    split.setdefault(by_id[id(p)], []).append(p)
                groups += [{**g, "params": ps, "lr": kw["lr"] * s, "lr_scale": s} for s, ps in sorted(split.items())]
            super().__init__(groups, **kw)

    return LayerwiseLR, kwargs


def step_timer() -> Any:
    """A TrainerCallback summing wall time of optimisation steps only (not evaluation or saving)."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.seconds, self.steps, self._t0 = 0.0, 0, None

        def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self._t0 = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if self._t0 is not None:
                self.seconds += time.perf_counter() - self._t0
                self.steps += 1
                self._t0 = None

    return StepTimer()
