"""Helpers shared by benchmark scripts: machine facts, per-configuration subprocesses with their
own peak memory, token-counting collator, atomic JSON/markdown writes."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any


class CountingCollator:
    """Wraps a collator; counts examples, real (attention_mask) tokens and padded tokens it batches.

    Counting is one tensor sum per batch, the same small cost for every configuration measured.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.examples = self.tokens = self.padded = 0
        self.active = True

    def __call__(self, features: list[dict[str, Any]]) -> Any:
        batch = self.inner(features)
        if self.active:
            mask = batch["attention_mask"]
            self.examples += int(mask.shape[0])
            self.tokens += int(mask.sum())
            self.padded += int(mask.numel())
        return batch


def machine() -> dict[str, Any]:
    """CPU count, load average, Python/torch/transformers versions, CPU model."""
    import torch
    import transformers

    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "loadavg": list(os.getloadavg()), "cpu": model,
            "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.is_available()}


def start_measured(cmd: list[str], log_path: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Start `cmd` as a child process writing to `log_path`; finish it with `wait_measured`."""
    log = log_path.open("w", encoding="utf-8")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    log.close()
    return {"proc": proc, "start": time.perf_counter(), "loadavg_before": list(os.getloadavg()),
            "started": now_utc(), "log": str(log_path)}


def wait_measured(job: dict[str, Any]) -> dict[str, Any]:
    """Wait for a `start_measured` child; return exit code, wall time, its own peak RSS (``os.wait4``
    reports this child alone, not the sum over earlier children) and load averages."""
    proc = job["proc"]
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {"rc": proc.returncode, "wall_s": time.perf_counter() - job["start"], "peak_rss_mb": usage.ru_maxrss / 1024,
            "loadavg_before": job["loadavg_before"], "loadavg_after": list(os.getloadavg()),
            "started": job["started"], "finished": now_utc(), "log": job["log"]}


def run_measured(cmd: list[str], log_path: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run `cmd` as a child process to the end; see `wait_measured` for what is returned."""
    return wait_measured(start_measured(cmd, log_path, env))


def now_utc() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=float) + "\n", encoding="utf-8")
    tmp.replace(path)


def write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
