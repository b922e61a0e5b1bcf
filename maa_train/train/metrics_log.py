"""Training metrics to JSONL and TensorBoard (main rank only)."""
from __future__ import annotations

import json
import time
from pathlib import Path


class MetricsLog:
    """``purge_after=step`` (a resumed run) drops what a killed run logged after its checkpoint,
    so the resumed run's records replace them instead of appearing twice."""

    def __init__(self, out_dir: Path, enabled: bool = True, purge_after: int | None = None):
        self.enabled = enabled
        self._tb = None
        if not enabled:
            return
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / "metrics.jsonl"
        if purge_after is not None and path.exists():
            kept = [line for line in path.read_text().splitlines() if _step(line) <= purge_after]
            path.write_text("".join(f"{line}\n" for line in kept))
        self._jsonl = open(path, "a")
        try:
            from torch.utils.tensorboard import SummaryWriter

            purge = None if purge_after is None else purge_after + 1
            self._tb = SummaryWriter(str(out_dir / "tensorboard"), purge_step=purge)
        except ImportError:  # tensorboard is an optional extra; JSONL is always written
            self._tb = None

    def write(self, step: int, values: dict) -> None:
        if not self.enabled:
            return
        self._jsonl.write(json.dumps({"step": step, "time": time.time(), **values}) + "\n")
        self._jsonl.flush()
        if self._tb is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)):
                    self._tb.add_scalar(k, v, step)
                elif isinstance(v, list) and all(isinstance(x, (int, float)) for x in v):
                    for i, x in enumerate(v):  # per-block / per-rank values: one curve each
                        self._tb.add_scalar(f"{k}/{i}", x, step)

    def close(self) -> None:
        if self.enabled:
            self._jsonl.close()
            if self._tb is not None:
                self._tb.close()


def _step(line: str) -> float:
    try:
        return json.loads(line).get("step", -1)
    except json.JSONDecodeError:  # a line cut by a kill
        return float("inf")
