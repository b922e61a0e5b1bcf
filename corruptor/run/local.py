"""The local runner: tasks in this process (one worker) or in a pool of spawned processes.

The pool uses the spawn context (safe next to Ray, threads and CUDA; the worker function
must be importable at module level). Its workers ignore Ctrl-C (the driver stops the
pool) and die with the driver however it dies. A killed worker breaks the whole pool, so
what is left runs on a fresh one. One worker runs the tasks in-process: no spawn cost,
same bytes (a worker is a pure function of its task).
"""
from __future__ import annotations

import multiprocessing
import os
import queue as queue_mod
import signal
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any, Callable, Sequence

from corruptor.run import progress as progress_mod
from corruptor.run.progress import Progress, call_reporting
from corruptor.run.registry import register_runner
from corruptor.run.runner import Attempts, RunnerSettings, ShardOutcome, task_size
from corruptor.run.signals import terminate_raises

PR_SET_PDEATHSIG = 1        # linux/prctl.h
WATCHDOG_INTERVAL_S = 1.0
_progress_queue: Any = None   # in a pool worker: the driver's progress queue, set by the initializer


@register_runner("local")
class LocalRunner:
    name = "local"

    def __init__(self, settings: RunnerSettings):
        self.settings = settings

    @property
    def single_process(self) -> bool:
        return self.settings.workers <= 1

    def run(self, tasks: Sequence[Any], worker_fn: Callable[[Any], Any], *, progress: bool | str = False,
            desc: str = "build", unit: str = "pair") -> list[ShardOutcome]:
        outcomes: list[ShardOutcome | None] = [None] * len(tasks)
        attempts = Attempts(len(tasks), self.settings.retries)
        bar = Progress([task_size(t) for t in tasks], progress, desc, unit)
        try:
            with terminate_raises():   # SIGTERM stops the pool as Ctrl-C does
                if self.single_process:
                    _run_in_process(tasks, worker_fn, attempts, outcomes, bar)
                else:
                    _run_in_pools(tasks, worker_fn, self.settings.workers, attempts, outcomes, bar)
        finally:
            bar.close()
        return outcomes  # type: ignore[return-value]


def _run_in_process(tasks, worker_fn, attempts: Attempts, outcomes: list, bar: Progress) -> None:
    send = bar.update if bar.enabled else None
    for i, task in enumerate(tasks):
        while True:
            attempts.start(i)
            try:
                outcomes[i] = attempts.done(i, call_reporting(worker_fn, i, task, send))
                break
            except Exception as exc:
                outcomes[i] = attempts.failed(i, exc)
                if not attempts.may_retry(i):
                    break
        bar.finish(i, outcomes[i].ok)


def _run_in_pools(tasks, worker_fn, workers: int, attempts: Attempts, outcomes: list, bar: Progress) -> None:
    ctx = multiprocessing.get_context("spawn")
    progress_queue = ctx.Queue() if bar.enabled else None
    todo = list(range(len(tasks)))
    while todo:
        # A killed worker breaks the whole pool: start a fresh one for what is left.
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_pool_worker,
                                 initargs=(progress_queue, os.getpid())) as pool:
            try:
                todo = _run_pool_round(pool, todo, tasks, worker_fn, attempts, outcomes, bar, progress_queue)
            except BaseException:   # Ctrl-C, SIGTERM or a driver failure: do not finish the queue first
                _stop_pool(pool)
                raise
        todo.sort()


def _run_pool_round(pool, todo, tasks, worker_fn, attempts: Attempts, outcomes, bar, progress_queue) -> list[int]:
    """Submit ``todo`` to one pool; returns the tasks to rerun on a fresh pool (it broke)."""
    pending = {}

    def submit(i: int) -> None:
        attempts.start(i)
        pending[pool.submit(_pool_call, worker_fn, i, tasks[i])] = i

    for i in todo:
        submit(i)
    todo = []
    while pending:
        done, _ = wait(pending, timeout=progress_mod.REPORT_INTERVAL_S if progress_queue else None,
                       return_when=FIRST_COMPLETED)
        if progress_queue is not None:
            _drain(progress_queue, bar)
        for fut in done:
            i = pending.pop(fut)
            try:
                outcomes[i] = attempts.done(i, fut.result())
            except Exception as exc:
                if attempts.may_retry(i):
                    if _pool_broken(exc):
                        todo.append(i)
                    else:
                        submit(i)
                    continue
                outcomes[i] = attempts.failed(i, exc)
            bar.finish(i, outcomes[i].ok)
    return todo


def _pool_broken(exc: BaseException) -> bool:
    from concurrent.futures.process import BrokenProcessPool

    return isinstance(exc, BrokenProcessPool)


def _stop_pool(pool: ProcessPoolExecutor) -> None:
    """Stop now: queued tasks are cancelled and running ones killed. A killed shard leaves
    only temp files, which the next run removes; nothing is marked done."""
    terminate = getattr(pool, "terminate_workers", None)   # Python >= 3.14
    if terminate is not None:
        terminate()
        return
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        process.terminate()
    pool.shutdown(wait=False, cancel_futures=True)


def _drain(q: Any, bar: Progress) -> None:
    while True:
        try:
            index, done = q.get_nowait()
        except queue_mod.Empty:
            return
        bar.update(index, done)


# --- in the pool's worker processes ------------------------------------------------------

def _init_pool_worker(progress_queue: Any, parent_pid: int | None = None) -> None:
    global _progress_queue
    # Ctrl-C reaches the whole process group; the driver alone handles it (by stopping the
    # pool), otherwise each worker would abort its shard and then take the next one.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if parent_pid is not None:
        _die_with_parent(parent_pid)
    _progress_queue = progress_queue


def _queue_send(index: int, done: int) -> None:
    _progress_queue.put_nowait((index, done))


def _pool_call(worker_fn: Callable[[Any], Any], index: int, task: Any) -> Any:
    return call_reporting(worker_fn, index, task, _queue_send if _progress_queue is not None else None)


def _die_with_parent(parent_pid: int) -> None:
    """Make this worker exit when the driver does, however it dies (SIGKILL included):
    otherwise orphaned workers finish their queue and then hang on a dead pipe.

    Linux: the kernel sends SIGKILL when the parent goes (PR_SET_PDEATHSIG). Everywhere,
    and in case the signal was armed too late or the spawning thread was not the driver's
    main one: a daemon thread polls the parent id and exits the process when it changes.
    """
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # no prctl (odd libc): the watchdog still works
            pass
    if os.getppid() != parent_pid:   # the driver died before the signal was armed
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(WATCHDOG_INTERVAL_S)
            if os.getppid() != parent_pid:
                os._exit(1)   # no cleanup: a half-written shard is only temp files, removed next run

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()
