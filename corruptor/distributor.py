"""Distributors: run shard tasks in parallel with retries, one signature for all.

    run_shards(tasks, worker_fn, *, workers, retries, progress, ...) -> list[ShardOutcome]

``local`` uses a spawn-context process pool (safe next to Ray, threads and CUDA; the
worker function must be importable at module level). ``ray`` submits one Ray task per
shard with ``max_retries``; it starts a local cluster unless an address is given.
Outcomes come back in task order whatever the completion order. A task that still
raises after its retries is returned as a failed outcome, never raised: the build
decides what a failed shard means.
"""
from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Callable, Sequence

DISTRIBUTORS: tuple[str, ...] = ("local", "ray")


@dataclass
class ShardOutcome:
    index: int            # position in the task list
    result: Any = None
    error: str | None = None
    attempts: int = 1

    @property
    def ok(self) -> bool:
        return self.error is None


class Progress:
    """tqdm over pairs (samples), advanced when a shard finishes: shows pairs/s and ETA."""

    def __init__(self, total: int, enabled: bool, desc: str = "build"):
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="pair", desc=desc, smoothing=0.1, dynamic_ncols=True)

    def advance(self, n: int, failed_shards: int = 0) -> None:
        if self.bar is not None:
            if failed_shards:
                self.bar.set_postfix(failed_shards=failed_shards)
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _size(task: Any) -> int:
    try:
        return len(task)
    except TypeError:
        return 1


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def run_local(tasks: Sequence[Any], worker_fn: Callable[[Any], Any], *, workers: int = 1, retries: int = 2,
              progress: bool = False) -> list[ShardOutcome]:
    outcomes: list[ShardOutcome | None] = [None] * len(tasks)
    bar = Progress(sum(_size(t) for t in tasks), progress)
    failed = 0
    try:
        if workers <= 1:
            # In-process: no spawn cost, same bytes (the worker is a pure function of its task).
            for i, task in enumerate(tasks):
                for attempt in range(1, retries + 2):
                    try:
                        outcomes[i] = ShardOutcome(i, worker_fn(task), None, attempt)
                        break
                    except Exception as exc:
                        outcomes[i] = ShardOutcome(i, None, _describe(exc), attempt)
                failed += not outcomes[i].ok
                bar.advance(_size(task), failed)
            return outcomes  # type: ignore[return-value]
        ctx = multiprocessing.get_context("spawn")
        attempts = {i: 0 for i in range(len(tasks))}
        todo = list(range(len(tasks)))
        while todo:
            # A killed worker breaks the whole pool: start a fresh one for what is left.
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
                pending = {}
                for i in todo:
                    attempts[i] += 1
                    pending[pool.submit(worker_fn, tasks[i])] = i
                todo = []
                while pending:
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in done:
                        i = pending.pop(fut)
                        try:
                            outcomes[i] = ShardOutcome(i, fut.result(), None, attempts[i])
                        except Exception as exc:
                            if attempts[i] <= retries:
                                if _pool_broken(exc):
                                    todo.append(i)
                                else:
                                    attempts[i] += 1
                                    pending[pool.submit(worker_fn, tasks[i])] = i
                                continue
                            outcomes[i] = ShardOutcome(i, None, _describe(exc), attempts[i])
                            failed += 1
                        bar.advance(_size(tasks[i]), failed)
            todo.sort()
    finally:
        bar.close()
    return outcomes  # type: ignore[return-value]


def _pool_broken(exc: BaseException) -> bool:
    from concurrent.futures.process import BrokenProcessPool

    return isinstance(exc, BrokenProcessPool)


def ensure_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Start (or join) Ray once per process. ``address`` or RAY_ADDRESS joins a cluster."""
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)


def run_ray(tasks: Sequence[Any], worker_fn: Callable[[Any], Any], *, workers: int = 1, retries: int = 2,
            progress: bool = False, address: str | None = None) -> list[ShardOutcome]:
    import ray

    ensure_ray(address, num_cpus=max(1, workers))
    remote = ray.remote(num_cpus=1, max_retries=retries, retry_exceptions=True)(worker_fn)
    outcomes: list[ShardOutcome | None] = [None] * len(tasks)
    bar = Progress(sum(_size(t) for t in tasks), progress)
    failed = 0
    # At most `workers` tasks in flight: on a shared cluster this is the build's share.
    queue = list(range(len(tasks)))[::-1]
    running: dict[Any, int] = {}
    try:
        while queue or running:
            while queue and len(running) < max(1, workers):
                i = queue.pop()
                running[remote.remote(tasks[i])] = i
            done, _ = ray.wait(list(running), num_returns=1)
            for ref in done:
                i = running.pop(ref)
                try:
                    outcomes[i] = ShardOutcome(i, ray.get(ref), None)
                except Exception as exc:
                    outcomes[i] = ShardOutcome(i, None, _describe(exc), retries + 1)
                    failed += 1
                bar.advance(_size(tasks[i]), failed)
    finally:
        bar.close()
    return outcomes  # type: ignore[return-value]


def run_shards(tasks: Sequence[Any], worker_fn: Callable[[Any], Any], *, distributor: str = "local",
               workers: int = 1, retries: int = 2, progress: bool = False,
               ray_address: str | None = None) -> list[ShardOutcome]:
    if distributor == "local":
        return run_local(tasks, worker_fn, workers=workers, retries=retries, progress=progress)
    if distributor == "ray":
        return run_ray(tasks, worker_fn, workers=workers, retries=retries, progress=progress, address=ray_address)
    raise ValueError(f"distributor '{distributor}' not allowed; allowed: {', '.join(DISTRIBUTORS)}")

