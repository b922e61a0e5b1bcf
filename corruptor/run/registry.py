"""Runners by name: ``--distributor local|ray`` picks one. A dict plus a decorator.

A runner module registers its class with ``@register_runner("name")``; the modules listed
in RUNNER_MODULES are imported on first lookup. None imports its backend (Ray, Dask, ...)
at import time, only when it runs, so listing the names costs nothing. Adding a runner is
one module plus one line in RUNNER_MODULES; tests/corruptor/run/test_runners.py checks
every registered runner against the shared contract.
"""
from __future__ import annotations

import importlib
from typing import Any, Callable, Sequence

from corruptor.run.runner import Runner, RunnerSettings, ShardOutcome

RUNNER_MODULES: tuple[str, ...] = (
    "corruptor.run.local",
    "corruptor.run.ray_runner",
)
RUNNERS: dict[str, type] = {}


class UnknownRunnerError(ValueError):
    """A runner name that is not registered; the message lists the allowed ones."""


def register_runner(name: str) -> Callable[[type], type]:
    def add(cls: type) -> type:
        if name in RUNNERS and RUNNERS[name] is not cls:
            raise ValueError(f"runner '{name}' is registered twice")
        RUNNERS[name] = cls
        return cls

    return add


def load_runners() -> dict[str, type]:
    for module in RUNNER_MODULES:
        importlib.import_module(module)
    return RUNNERS


def runner_names() -> tuple[str, ...]:
    return tuple(sorted(load_runners()))


def make_runner(name: str, settings: RunnerSettings | None = None) -> Runner:
    runners = load_runners()
    if name not in runners:
        raise UnknownRunnerError(f"distributor '{name}' not allowed; allowed: {', '.join(sorted(runners))}")
    return runners[name](settings or RunnerSettings())


def run_tasks(tasks: Sequence[Any], worker_fn: Callable[[Any], Any], *, runner: str = "local",
              settings: RunnerSettings | None = None, progress: bool | str = False, desc: str = "build",
              unit: str = "pair") -> list[ShardOutcome]:
    """``make_runner(runner, settings).run(...)``: one outcome per task, in task order."""
    return make_runner(runner, settings).run(tasks, worker_fn, progress=progress, desc=desc, unit=unit)
