"""Progress: counted in items (samples, images), not tasks, on the driver; reported by workers.

A worker function calls ``report_progress(done)`` with how many items of its current task
are finished; the runner forwards that to the driver's `Progress` (a queue for processes,
a small actor for Ray), at most every REPORT_INTERVAL_S seconds. A retried task restarts
its count, so the bar keeps each task's highest count and never counts an item twice.
On a terminal it is a tqdm bar; in a log, a plain line every LOG_INTERVAL_S seconds.
"""
from __future__ import annotations

import sys
import time
from typing import Any, Callable, Sequence

LOG_INTERVAL_S = 30.0   # seconds between progress lines when stderr is a log, not a terminal


class _LogLines:
    """The tqdm calls Progress makes, written as one plain line every LOG_INTERVAL_S seconds
    (a bar's carriage returns are unreadable in a log file, and silence looks like a hang)."""

    def __init__(self, total: int, desc: str, stream: Any = None, unit: str = "pair"):
        self.total, self.desc, self.n, self.failed, self.unit = total, desc, 0, 0, unit
        self.stream = stream
        self.start = self.last = time.monotonic()

    def update(self, n: int) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last >= LOG_INTERVAL_S:
            self.last = now
            self._line(now)

    def set_postfix(self, failed_shards: int = 0, refresh: bool = False) -> None:
        self.failed = failed_shards

    def line(self, now: float) -> str:
        elapsed = max(now - self.start, 1e-9)
        rate = self.n / elapsed
        left = self.total - self.n
        eta = f"{left / rate:.0f} s" if rate > 0 else "unknown"
        pct = 100.0 * self.n / self.total if self.total else 100.0
        failed = f", {self.failed} failed shard(s)" if self.failed else ""
        units = f"{self.unit}s"
        return (f"{self.desc}: {self.n}/{self.total} {units} ({pct:.1f}%), {rate:.2f} {units}/s, "
                f"ETA {eta}, {elapsed:.0f} s elapsed{failed}")

    def _line(self, now: float) -> None:
        stream = self.stream or sys.stderr
        print(self.line(now), file=stream, flush=True)

    def close(self) -> None:
        self._line(time.monotonic())


class Progress:
    """tqdm over items (pairs, images): each task's count is its highest reported ``done``, so a
    retried task is not counted twice; pairs/s and ETA move with every report.
    ``enabled="log"`` writes periodic plain lines instead of a bar (stderr is not a terminal)."""

    def __init__(self, sizes: Sequence[int], enabled: bool | str, desc: str = "build", unit: str = "pair"):
        self.bar = None
        self.sizes = list(sizes)
        self.done = [0] * len(self.sizes)
        self.failed = 0
        if enabled == "log":
            self.bar = _LogLines(sum(self.sizes), desc, unit=unit)
        elif enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=sum(self.sizes), unit=unit, desc=desc, smoothing=0.05, dynamic_ncols=True)

    @property
    def enabled(self) -> bool:
        return self.bar is not None

    def update(self, index: int, done: int) -> None:
        """Task ``index`` has finished ``done`` of its items (reports may come out of order)."""
        done = min(int(done), self.sizes[index])
        if done > self.done[index]:
            if self.bar is not None:
                self.bar.update(done - self.done[index])
            self.done[index] = done

    def finish(self, index: int, ok: bool) -> None:
        if not ok:
            self.failed += 1
            if self.bar is not None:
                self.bar.set_postfix(failed_shards=self.failed, refresh=False)
        self.update(index, self.sizes[index])

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# --- worker side of progress reporting ---------------------------------------------------

REPORT_INTERVAL_S = 0.5
_reporter: Callable[[int], None] | None = None   # set only while a task runs with progress on


def report_progress(done: int) -> None:
    """Called by worker functions: ``done`` items of the current task are finished.
    A no-op when nobody listens (progress off, or called outside a runner)."""
    if _reporter is not None:
        _reporter(done)


class Throttled:
    """Sends ``(index, done)`` through ``send`` at most every REPORT_INTERVAL_S seconds."""

    def __init__(self, index: int, send: Callable[[int, int], None]):
        self.index, self.send, self.last = index, send, 0.0

    def __call__(self, done: int) -> None:
        now = time.monotonic()
        if now - self.last >= REPORT_INTERVAL_S:
            self.last = now
            try:
                self.send(self.index, done)
            except Exception:  # progress is advisory: a lost report must not fail the shard
                pass


def call_reporting(worker_fn: Callable[[Any], Any], index: int, task: Any,
                   send: Callable[[int, int], None] | None) -> Any:
    global _reporter
    _reporter = Throttled(index, send) if send is not None else None
    try:
        return worker_fn(task)
    finally:
        _reporter = None
