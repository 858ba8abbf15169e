"""Work done once per job under torchrun/accelerate launch, with every rank getting the outcome.

Outside a launcher (``WORLD_SIZE`` unset or 1) every helper runs the work in place. Inside one, the
process group is accelerate's (``PartialState``; gloo on CPU, nccl on GPU), the same one the Trainer
uses afterwards: the main process (global rank 0) does the work while the other ranks wait for it,
then each rank receives its result, or its refusal as a :class:`ClinicalFTError`, so that no rank
trains on data rank 0 refused.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

from .errors import ClinicalFTError

T = TypeVar("T")


def world_size() -> int:
    """Processes in this job (``WORLD_SIZE``, set by torchrun and accelerate launch); 1 outside a launcher."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def single_process_as_plain() -> None:
    """Under a launcher that started one process in all (``torchrun --nproc_per_node 1``), forget its
    ``LOCAL_RANK``: accelerate then sets up no process group and does not wrap the model in
    DistributedDataParallel (on CPU it otherwise does, for one process), so the run is the plain one.
    Called before the Trainer's arguments are built."""
    if world_size() == 1:
        os.environ.pop("LOCAL_RANK", None)


def _state() -> Any:
    """accelerate's process state (it joins the launcher's process group on first use)."""
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def on_main_first(fn: Callable[[], T]) -> T:
    """Run `fn` on the main process only and hand its result to every rank.

    Raises:
        ClinicalFTError: what `fn` raised on the main process (re-raised there as it was; the other
            ranks raise a ClinicalFTError with its message instead of waiting for a job that will not come).
    """
    if world_size() <= 1:
        return fn()
    from accelerate.utils import broadcast_object_list

    state = _state()
    payload: list[Any] = [None]
    error: BaseException | None = None
    if state.is_main_process:
        try:
            payload = [("ok", fn())]
        except Exception as exc:  # every rank must hear of it, then the main process raises it as it was
            error, payload = exc, [("error", f"{type(exc).__name__}: {exc}" if not isinstance(exc, ClinicalFTError)
                                    else str(exc))]
    broadcast_object_list(payload, from_process=0)
    if error is not None:
        raise error
    kind, value = payload[0]
    if kind == "error":
        raise ClinicalFTError(f"the main process (rank 0) stopped: {value}")
    return value
