"""The Ray runner: tasks on a Ray cluster (a local one unless an address or RAY_ADDRESS names one).

At most ``workers`` tasks are in flight: on a shared cluster that is the job's share.
Plain workers run as one Ray task per task; with ``gpus_per_worker`` the tasks run on
``workers`` long-lived actors, each holding its GPUs, so a model loads once per actor
(Ray starts a fresh process for every GPU task otherwise). Retries are the driver's, as
for every runner: a task that raised, or whose node or actor was lost, is submitted
again. Ray is imported only when a job runs.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Callable, Sequence

from corruptor.run import progress as progress_mod
from corruptor.run.progress import Progress, call_reporting
from corruptor.run.registry import register_runner
from corruptor.run.runner import Attempts, RunnerError, RunnerSettings, ShardOutcome, task_size
from corruptor.run.signals import terminate_raises

log = logging.getLogger(__name__)


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


@register_runner("ray")
class RayRunner:
    name = "ray"

    def __init__(self, settings: RunnerSettings):
        self.settings = settings

    @property
    def single_process(self) -> bool:
        return False

    def run(self, tasks: Sequence[Any], worker_fn: Callable[[Any], Any], *, progress: bool | str = False,
            desc: str = "build", unit: str = "pair") -> list[ShardOutcome]:
        import ray

        started = ensure_ray(self.settings.address, num_cpus=self.settings.workers)
        bar = Progress([task_size(t) for t in tasks], progress, desc, unit)
        counter = _progress_mailbox(ray) if bar.enabled else None
        slots = None
        try:
            slots = self._slots(ray, worker_fn, len(tasks))
            with terminate_raises():   # SIGTERM cancels the tasks in flight, as Ctrl-C does
                return _dispatch(ray, tasks, slots, Attempts(len(tasks), self.settings.retries), bar, counter)
        finally:
            bar.close()
            for actor in ([counter] if counter is not None else []) + (slots.actors if slots else []):
                try:
                    ray.kill(actor)
                except ray.exceptions.RayError:   # already gone with its node
                    pass
            if started:  # a local cluster we started must not outlive the job
                ray.shutdown()

    def _slots(self, ray, worker_fn: Callable[[Any], Any], count: int) -> "_Slots":
        gpus = self.settings.gpus_per_worker
        if gpus <= 0:
            return _Slots(ray, worker_fn, self.settings.workers)
        have = ray.cluster_resources().get("GPU", 0)
        if have < gpus:
            raise RunnerError(f"the Ray cluster has {have:g} GPU(s); each worker needs {gpus:g}")
        actors = max(1, min(self.settings.workers, count, int(have // gpus)))
        return _Slots(ray, worker_fn, actors, gpus)


class _Slots:
    """Where a task runs: a fresh Ray task, or the next idle long-lived actor."""

    def __init__(self, ray, worker_fn: Callable[[Any], Any], size: int, gpus: float = 0.0):
        self.ray, self.size, self.actors = ray, size, []
        if gpus > 0:
            cls = ray.remote(num_cpus=1, num_gpus=gpus, max_restarts=-1)(_RayWorker)
            self.actors = [cls.remote(worker_fn) for _ in range(size)]
            self.idle = list(self.actors)
        else:
            self.remote = ray.remote(num_cpus=1, max_retries=0)(_ray_call)
            self.fn_ref = ray.put(worker_fn)
        self.busy: dict[Any, Any] = {}   # ref -> the actor it runs on

    def free(self) -> bool:
        return len(self.busy) < self.size

    def submit(self, index: int, task: Any, counter: Any) -> Any:
        if self.actors:
            actor = self.idle.pop()
            ref = actor.call.remote(index, task, counter)
            self.busy[ref] = actor
        else:
            ref = self.remote.remote(self.fn_ref, index, task, counter)
            self.busy[ref] = None
        return ref

    def release(self, ref: Any) -> None:
        actor = self.busy.pop(ref)
        if actor is not None:
            self.idle.append(actor)


def _dispatch(ray, tasks: Sequence[Any], slots: _Slots, attempts: Attempts, bar: Progress,
              counter: Any) -> list[ShardOutcome]:
    outcomes: list[ShardOutcome | None] = [None] * len(tasks)
    queue = list(range(len(tasks)))[::-1]
    running: dict[Any, int] = {}
    try:
        while queue or running:
            while queue and slots.free():
                i = queue.pop()
                attempts.start(i)
                running[slots.submit(i, tasks[i], counter)] = i
            done, _ = ray.wait(list(running), num_returns=1,
                               timeout=progress_mod.REPORT_INTERVAL_S if counter else None)
            counter = _take_counts(ray, counter, bar)
            for ref in done:
                i = running.pop(ref)
                slots.release(ref)
                try:
                    outcomes[i] = attempts.done(i, ray.get(ref))
                except Exception as exc:
                    if attempts.may_retry(i):
                        queue.append(i)   # next in line: a retried task is not sent to the back
                        continue
                    outcomes[i] = attempts.failed(i, exc)
                bar.finish(i, outcomes[i].ok)
    except BaseException:   # Ctrl-C or SIGTERM: stop the tasks in flight instead of leaving them to the cluster
        for ref in running:
            ray.cancel(ref, force=not slots.actors)   # an actor's task cannot be force-cancelled; it is killed
        raise
    return outcomes  # type: ignore[return-value]


def _take_counts(ray, counter: Any, bar: Progress) -> Any:
    """Move the mailbox's counts to the bar; None once the mailbox is gone (progress per finished task only)."""
    if counter is None:
        return None
    try:
        counts = ray.get(counter.take.remote())
    except ray.exceptions.RayError:
        return None
    for i, n in counts.items():
        bar.update(i, n)
    return counter


def _progress_mailbox(ray):
    """The progress actor, on the driver's node: placed on another node it would die with that
    node, and a lost node must cost only its tasks' retries, never the job. Zero CPUs: it
    never takes a slot a task could use."""
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
    return call_reporting(worker_fn, index, task, send)


class _RayWorker:
    """A long-lived worker process (an actor) holding its GPUs; runs one task per call."""

    def __init__(self, worker_fn: Callable[[Any], Any]):
        self.worker_fn = worker_fn

    def call(self, index: int, task: Any, counter: Any) -> Any:
        return _ray_call(self.worker_fn, index, task, counter)
