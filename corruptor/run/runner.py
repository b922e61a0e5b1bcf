"""The runner interface: run tasks in parallel, retry failed ones, report progress, stop cleanly.

    runner = make_runner("local", RunnerSettings(workers=4, retries=2))
    outcomes = runner.run(tasks, worker_fn, progress=True)   # one ShardOutcome per task, in task order

Both jobs use it: the dataset build (one task per shard) and the mask job (one task per
batch of images). ``worker_fn`` is a picklable, module-level callable (or an instance of
one) of one task; a worker that loads something heavy (a model) keeps it per process.

What every runner shares, so that it behaves the same whichever runs: outcomes in task
order whatever the completion order; a task that still raises after ``retries`` more
attempts comes back as a failed outcome, never raised (the caller decides what a failed
task means); progress counted in items through `corruptor.run.progress`; Ctrl-C and
SIGTERM (`corruptor.run.signals`) stop the tasks in flight and raise in the driver.
Implementations are registered by name in `corruptor.run.registry`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Protocol, Sequence

from pydantic import BaseModel, ConfigDict, Field


class RunnerSettings(BaseModel):
    """How a runner runs: shared by every runner; a runner ignores what does not apply to it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    workers: int = Field(default=1, ge=1, description="tasks in flight at once (processes, Ray tasks or actors)")
    retries: int = Field(default=2, ge=0, description="attempts per failed task after the first")
    address: str | None = Field(default=None, description="Ray: join this cluster (else RAY_ADDRESS, else a "
                                                          "local one)")
    gpus_per_worker: float = Field(default=0.0, ge=0.0, description="Ray: GPUs each worker holds; > 0 runs the "
                                                                    "tasks on long-lived actors")


@dataclass
class ShardOutcome:
    index: int            # position in the task list
    result: Any = None
    error: str | None = None
    attempts: int = 1

    @property
    def ok(self) -> bool:
        return self.error is None


class Runner(Protocol):
    """What `corruptor.run.registry.register_runner` registers: built from its settings, runs a task list."""

    name: ClassVar[str]

    def __init__(self, settings: RunnerSettings) -> None: ...

    @property
    def single_process(self) -> bool:
        """True when every task runs in the driver's own process, one at a time."""

    def run(self, tasks: Sequence[Any], worker_fn: Callable[[Any], Any], *, progress: bool | str = False,
            desc: str = "build", unit: str = "pair") -> list[ShardOutcome]:
        """One outcome per task, in task order; ``progress``: a bar (True), log lines ("log") or none."""


class Attempts:
    """Retry bookkeeping every runner shares: how often each task ran, and whether it may run again."""

    def __init__(self, count: int, retries: int):
        self.counts = [0] * count
        self.retries = retries

    def start(self, index: int) -> None:
        self.counts[index] += 1

    def may_retry(self, index: int) -> bool:
        return self.counts[index] <= self.retries

    def failed(self, index: int, exc: BaseException) -> ShardOutcome:
        return ShardOutcome(index, None, describe(exc), self.counts[index])

    def done(self, index: int, result: Any) -> ShardOutcome:
        return ShardOutcome(index, result, None, self.counts[index])


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def task_size(task: Any) -> int:
    """Items in a task (progress counts items): its ``len``, else 1."""
    try:
        return len(task)
    except TypeError:
        return 1


class RunnerError(RuntimeError):
    """A runner that cannot run these tasks at all (e.g. a Ray cluster without the GPUs asked for)."""
