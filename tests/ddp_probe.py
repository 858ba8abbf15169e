"""Run by tests/test_distributed.py under torchrun or accelerate launch (not a test module itself):
``readmission train`` through engine.train with a callback that writes each rank's weight digest at the
end of training into --digests, and with --stop-after-save N stops every rank (exit 3) right after the
checkpoint of step N was written whole, standing for a job killed there.

    torchrun --nproc_per_node 2 tests/ddp_probe.py --digests D [--stop-after-save N] --card C --data-dir T \
        --encoder E --out O key=value ...
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from clinical_ft import engine, taskcli
from clinical_ft.readmission.task import TASK


class Probe(TrainerCallback):
    def __init__(self, digests: Path, stop_at: int | None) -> None:
        self.digests, self.stop_at = digests, stop_at

    def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if state.global_step == self.stop_at:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.barrier()  # rank 0 has written the whole checkpoint
            os._exit(3)

    def on_train_end(self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any) -> None:
        h = hashlib.sha256()
        for name, tensor in sorted(model.state_dict().items()):
            h.update(name.encode())
            h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        self.digests.mkdir(parents=True, exist_ok=True)
        (self.digests / f"rank{os.environ.get('RANK', '0')}.sha256").write_text(h.hexdigest())


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    for flag in ("--digests", "--card", "--data-dir", "--encoder", "--out"):
        p.add_argument(flag, required=True)
    p.add_argument("--stop-after-save", type=int)
    p.add_argument("overrides", nargs="*")
    a = p.parse_args(argv)
    taskcli.setup_logging()
    task, card, cfg = taskcli.load_card_and_config(a.card, None, a.overrides, a.encoder, (TASK,))
    engine.train(task, card, cfg, a.out, data_dir=a.data_dir, callbacks=[Probe(Path(a.digests), a.stop_after_save)])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
