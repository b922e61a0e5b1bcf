"""Distributors: run shard tasks in parallel with retries, one signature for all.

    run_shards(tasks, worker_fn, *, workers, retries, progress, ...) -> list[ShardOutcome]

``local`` uses a spawn-context process pool (safe next to Ray, threads and CUDA; the
worker function must be importable at module level). ``ray`` submits one Ray task per
shard with ``max_retries``; it starts a local cluster unless an address is given.
Outcomes come back in task order whatever the completion order. A task that still
raises after its retries is returned as a failed outcome, never raised: the build
decides what a failed shard means.

Progress is counted in items (samples), not tasks: a worker function calls
``report_progress(done)`` with how many items of its current task are finished, and
the distributor forwards that to the driver's bar (a queue for processes, a small
actor for Ray), at most a few times a second. A retried task restarts its count, so
the bar keeps each task's highest count and never counts an item twice.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import queue as queue_mod
import signal
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Callable, Sequence

log = logging.getLogger(__name__)


@dataclass
class ShardOutcome:
    index: int            # position in the task list
    result: Any = None
    error: str | None = None
    attempts: int = 1

    @property
    def ok(self) -> bool:
        return self.error is None


LOG_INTERVAL_S = 30.0   # seconds between progress lines when stderr is a log, not a terminal


class _LogLines:
    """The tqdm calls Progress makes, written as one plain line every LOG_INTERVAL_S seconds
    (a bar's carriage returns are unreadable in a log file, and silence looks like a hang)."""

    def __init__(self, total: int, desc: str, stream: Any = None):
        self.total, self.desc, self.n, self.failed = total, desc, 0, 0
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
        return (f"{self.desc}: {self.n}/{self.total} pairs ({pct:.1f}%), {rate:.2f} pairs/s, "
                f"ETA {eta}, {elapsed:.0f} s elapsed{failed}")

    def _line(self, now: float) -> None:
        stream = self.stream or sys.stderr
        print(self.line(now), file=stream, flush=True)

    def close(self) -> None:
        self._line(time.monotonic())


class Progress:
    """tqdm over items (pairs): each task's count is its highest reported ``done``, so a
    retried task is not counted twice; pairs/s and ETA move with every report.
    ``enabled="log"`` writes periodic plain lines instead of a bar (stderr is not a terminal)."""

    def __init__(self, sizes: Sequence[int], enabled: bool | str, desc: str = "build"):
        self.bar = None
        self.sizes = list(sizes)
        self.done = [0] * len(self.sizes)
        self.failed = 0
        if enabled == "log":
            self.bar = _LogLines(sum(self.sizes), desc)
        elif enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=sum(self.sizes), unit="pair", desc=desc, smoothing=0.05, dynamic_ncols=True)

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
_progress_queue: Any = None                       # process pool: the queue given by the initializer


def report_progress(done: int) -> None:
    """Called by worker functions: ``done`` items of the current task are finished.
    A no-op when nobody listens (progress off, or called outside a distributor)."""
    if _reporter is not None:
        _reporter(done)


class _Throttled:
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


def _call_reporting(worker_fn: Callable[[Any], Any], index: int, task: Any,
                    send: Callable[[int, int], None] | None) -> Any:
    global _reporter
    _reporter = _Throttled(index, send) if send is not None else None
    try:
        return worker_fn(task)
    finally:
        _reporter = None


PR_SET_PDEATHSIG = 1        # linux/prctl.h
WATCHDOG_INTERVAL_S = 1.0


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


def _init_pool_worker(progress_queue: Any, parent_pid: int | None = None) -> None:
    global _progress_queue
    # Ctrl-C reaches the whole process group; the driver alone handles it (by stopping the
    # pool), otherwise each worker would abort its shard and then take the next one.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if parent_pid is not None:
        _die_with_parent(parent_pid)
    _progress_queue = progress_queue


def _stop_pool(pool: ProcessPoolExecutor) -> None:
    """Stop now: queued shards are cancelled and running ones killed. A killed shard
    leaves only temp files, which the next run removes; nothing is marked done."""
    terminate = getattr(pool, "terminate_workers", None)   # Python >= 3.14
    if terminate is not None:
        terminate()
        return
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        process.terminate()
    pool.shutdown(wait=False, cancel_futures=True)


def _queue_send(index: int, done: int) -> None:
    _progress_queue.put_nowait((index, done))


def _pool_call(worker_fn: Callable[[Any], Any], index: int, task: Any) -> Any:
    return _call_reporting(worker_fn, index, task, _queue_send if _progress_queue is not None else None)


def _drain(q: Any, bar: Progress) -> None:
    while True:
        try:
            index, done = q.get_nowait()
        except queue_mod.Empty:
            return
        bar.update(index, done)


def _size(task: Any) -> int:
    try:
        return len(task)
    except TypeError:
        return 1


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def run_local(tasks: Sequence[Any], worker_fn: Callable[[Any], Any], *, workers: int = 1, retries: int = 2,
              progress: bool = False, address: str | None = None) -> list[ShardOutcome]:
    """Local processes (``address`` is unused: the shared runner signature)."""
    outcomes: list[ShardOutcome | None] = [None] * len(tasks)
    bar = Progress([_size(t) for t in tasks], progress)
    try:
        if workers <= 1:
            # In-process: no spawn cost, same bytes (the worker is a pure function of its task).
            send = bar.update if bar.enabled else None
            for i, task in enumerate(tasks):
                for attempt in range(1, retries + 2):
                    try:
                        outcomes[i] = ShardOutcome(i, _call_reporting(worker_fn, i, task, send), None, attempt)
                        break
                    except Exception as exc:
                        outcomes[i] = ShardOutcome(i, None, _describe(exc), attempt)
                bar.finish(i, outcomes[i].ok)
            return outcomes  # type: ignore[return-value]
        ctx = multiprocessing.get_context("spawn")
        progress_queue = ctx.Queue() if bar.enabled else None
        attempts = {i: 0 for i in range(len(tasks))}
        todo = list(range(len(tasks)))
        while todo:
            # A killed worker breaks the whole pool: start a fresh one for what is left.
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_pool_worker,
                                     initargs=(progress_queue, os.getpid())) as pool:
                try:
                    todo = _run_pool_round(pool, todo, tasks, worker_fn, attempts, retries, outcomes, bar,
                                           progress_queue)
                except BaseException:   # Ctrl-C or a driver failure: do not finish the queue first
                    _stop_pool(pool)
                    raise
            todo.sort()
    finally:
        bar.close()
    return outcomes  # type: ignore[return-value]


def _run_pool_round(pool, todo, tasks, worker_fn, attempts, retries, outcomes, bar, progress_queue) -> list[int]:
    """Submit ``todo`` to one pool; returns the tasks to rerun on a fresh pool (it broke)."""
    pending = {}
    for i in todo:
        attempts[i] += 1
        pending[pool.submit(_pool_call, worker_fn, i, tasks[i])] = i
    todo = []
    while pending:
        done, _ = wait(pending, timeout=REPORT_INTERVAL_S if progress_queue else None,
                       return_when=FIRST_COMPLETED)
        if progress_queue is not None:
            _drain(progress_queue, bar)
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
                        pending[pool.submit(_pool_call, worker_fn, i, tasks[i])] = i
                    continue
                outcomes[i] = ShardOutcome(i, None, _describe(exc), attempts[i])
            bar.finish(i, outcomes[i].ok)
    return todo


def _pool_broken(exc: BaseException) -> bool:
    from concurrent.futures.process import BrokenProcessPool

    return isinstance(exc, BrokenProcessPool)


def ensure_ray(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Start (or join) Ray once per process; True when this call did it (the caller shuts it
    down). ``address`` or RAY_ADDRESS joins a cluster."""
    import ray

    if ray.is_initialized():
        available = ray.cluster_resources().get("CPU", 0)
        if num_cpus and available < num_cpus:
            log.warning("the running Ray cluster has %s CPUs, fewer than the %s workers asked for",
                        available, num_cpus)
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    return True


def run_ray(tasks: Sequence[Any], worker_fn: Callable[[Any], Any], *, workers: int = 1, retries: int = 2,
            progress: bool = False, address: str | None = None) -> list[ShardOutcome]:
    import ray

    started = ensure_ray(address, num_cpus=max(1, workers))
    remote = ray.remote(num_cpus=1, max_retries=retries, retry_exceptions=True)(_ray_call)
    outcomes: list[ShardOutcome | None] = [None] * len(tasks)
    bar = Progress([_size(t) for t in tasks], progress)
    counter = _progress_mailbox(ray) if bar.enabled else None
    fn_ref = ray.put(worker_fn)
    # At most `workers` tasks in flight: on a shared cluster this is the build's share.
    queue = list(range(len(tasks)))[::-1]
    running: dict[Any, int] = {}
    from corruptor.run.signals import terminate_raises

    try:
        with terminate_raises():  # SIGTERM cancels the shards in flight, as Ctrl-C does
            while queue or running:
                while queue and len(running) < max(1, workers):
                    i = queue.pop()
                    running[remote.remote(fn_ref, i, tasks[i], counter)] = i
                done, _ = ray.wait(list(running), num_returns=1, timeout=REPORT_INTERVAL_S if counter else None)
                if counter is not None:
                    try:
                        counts = ray.get(counter.take.remote())
                    except ray.exceptions.RayError:   # the mailbox is gone: progress per finished shard only
                        counter, counts = None, {}
                    for i, n in counts.items():
                        bar.update(i, n)
                for ref in done:
                    i = running.pop(ref)
                    try:
                        outcomes[i] = ShardOutcome(i, ray.get(ref), None)
                    except Exception as exc:
                        outcomes[i] = ShardOutcome(i, None, _describe(exc), retries + 1)
                    bar.finish(i, outcomes[i].ok)
    except BaseException:   # Ctrl-C or SIGTERM: stop the shards in flight instead of leaving them to the cluster
        for ref in running:
            ray.cancel(ref, force=True)
        raise
    finally:
        bar.close()
        if counter is not None:
            try:
                ray.kill(counter)
            except ray.exceptions.RayError:   # already gone with its node
                pass
        if started:  # a local cluster we started must not outlive the build
            ray.shutdown()
    return outcomes  # type: ignore[return-value]


def _progress_mailbox(ray):
    """The progress actor, on the driver's node: placed on another node it would die with that
    node, and a lost node must cost only its shards' retries, never the build. Zero CPUs: it
    never takes a slot a shard could use."""
    try:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        here = NodeAffinitySchedulingStrategy(node_id=ray.get_runtime_context().get_node_id(), soft=True)
        return ray.remote(num_cpus=0, scheduling_strategy=here)(_RayProgress).remote()
    except (ImportError, AttributeError, TypeError):   # an older Ray without node affinity
        return ray.remote(num_cpus=0)(_RayProgress).remote()


class _RayProgress:
    """Driver-side mailbox for Ray tasks' progress: highest count per task since last take."""

    def __init__(self):
        self.counts: dict[int, int] = {}

    def put(self, index: int, done: int) -> None:
        self.counts[index] = max(done, self.counts.get(index, 0))

    def take(self) -> dict[int, int]:
        counts, self.counts = self.counts, {}
        return counts


def _ray_call(worker_fn: Callable[[Any], Any], index: int, task: Any, counter: Any) -> Any:
    # Fire-and-forget actor calls: a report never waits on the driver.
    send = (lambda i, n: counter.put.remote(i, n)) if counter is not None else None
    return _call_reporting(worker_fn, index, task, send)


Runner = Callable[..., "list[ShardOutcome]"]
# Every runner: (tasks, worker_fn, *, workers, retries, progress, address) -> outcomes in task order.
RUNNERS: dict[str, Runner] = {"local": run_local, "ray": run_ray}
DISTRIBUTORS: tuple[str, ...] = tuple(RUNNERS)


def run_shards(tasks: Sequence[Any], worker_fn: Callable[[Any], Any], *, distributor: str = "local",
               workers: int = 1, retries: int = 2, progress: bool = False,
               ray_address: str | None = None) -> list[ShardOutcome]:
    if distributor not in RUNNERS:
        raise ValueError(f"distributor '{distributor}' not allowed; allowed: {', '.join(DISTRIBUTORS)}")
    return RUNNERS[distributor](tasks, worker_fn, workers=workers, retries=retries, progress=progress,
                                address=ray_address)

