"""The names earlier code imports from here, now in their own modules.

The runner interface is `corruptor.run.runner`, the runners are registered in
`corruptor.run.registry` (``local``: `corruptor.run.local`, ``ray``:
`corruptor.run.ray_runner`), progress is `corruptor.run.progress`. New code imports
from those; ``run_shards`` is ``run_tasks`` with the old keyword names.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

from corruptor.run.progress import Progress, report_progress
from corruptor.run.ray_runner import ensure_ray
from corruptor.run.registry import run_tasks
from corruptor.run.runner import RunnerSettings, ShardOutcome

__all__ = ["Progress", "ShardOutcome", "ensure_ray", "report_progress", "run_shards"]


def run_shards(tasks: Sequence[Any], worker_fn: Callable[[Any], Any], *, distributor: str = "local",
               workers: int = 1, retries: int = 2, progress: bool | str = False,
               ray_address: str | None = None) -> list[ShardOutcome]:
    settings = RunnerSettings(workers=workers, retries=retries, address=ray_address)
    return run_tasks(tasks, worker_fn, runner=distributor, settings=settings, progress=progress)
