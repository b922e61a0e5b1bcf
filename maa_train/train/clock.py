"""Training throughput without what is not training (validation, checkpoints), timed from
the end of the first step: loader start-up and compilation are warm-up, reported apart."""
from __future__ import annotations

import time
from contextlib import contextmanager

import torch


class ThroughputClock:
    def __init__(self, device: torch.device):
        # Host clocks run ahead of queued GPU work: read them only after a sync.
        self._sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        self._start = time.perf_counter()
        self._first: tuple[float, int] | None = None  # (time, images) at the end of the first step
        self._paused = 0.0

    def first_step(self, images: int) -> None:
        if self._first is None:
            self._sync()
            self._first = (time.perf_counter(), images)

    @contextmanager
    def paused(self):
        self._sync()
        t = time.perf_counter()
        try:
            yield
        finally:
            if self._first is not None:
                self._sync()
                self._paused += time.perf_counter() - t

    def rates(self, images: int) -> tuple[float | None, float | None]:
        """(images/s after the first step, seconds to the end of the first step)."""
        self._sync()
        if self._first is None:
            return None, None
        t1, done = self._first
        steady = (images - done) / max(time.perf_counter() - t1 - self._paused, 1e-9) if images > done else None
        return steady, t1 - self._start
