"""Every registered runner honours the shared contract: outcomes in task order, retries then
a failed outcome (never raised), one signature; and a new runner is one registration away."""
import operator

import pytest

from corruptor.run import registry
from corruptor.run.registry import UnknownRunnerError, make_runner, register_runner, run_tasks, runner_names
from corruptor.run.runner import RunnerSettings, ShardOutcome


def positive_or_raise(x: int) -> int:
    """Module level: the local pool pickles it by name."""
    if x < 0:
        raise ValueError(f"negative: {x}")
    return x * 10


def test_runners_are_registered_without_importing_their_backends():
    import sys

    assert set(runner_names()) >= {"local", "ray"}
    ray_loaded = "ray" in sys.modules
    make_runner("ray", RunnerSettings())
    assert ("ray" in sys.modules) == ray_loaded   # building a Ray runner imports no Ray


@pytest.mark.slow
@pytest.mark.parametrize("name", runner_names())
@pytest.mark.parametrize("workers", [1, 2])
def test_runner_contract(name, workers):
    if name == "ray":
        pytest.importorskip("ray")
    runner = make_runner(name, RunnerSettings(workers=workers, retries=1))
    assert runner.name == name and isinstance(runner.single_process, bool)
    outcomes = runner.run([3, -1, 2], positive_or_raise, progress=False)
    assert [o.index for o in outcomes] == [0, 1, 2]
    assert [o.ok for o in outcomes] == [True, False, True] and [o.result for o in outcomes] == [30, None, 20]
    assert outcomes[1].attempts == 2 and "ValueError: negative: -1" in outcomes[1].error


def test_an_unknown_runner_names_the_allowed_ones():
    with pytest.raises(UnknownRunnerError, match="distributor 'dask' not allowed; allowed: local, ray"):
        make_runner("dask")


def test_a_new_runner_is_one_registration(monkeypatch):
    monkeypatch.setattr(registry, "RUNNERS", dict(registry.load_runners()))

    @register_runner("inline")
    class InlineRunner:
        name = "inline"

        def __init__(self, settings):
            self.settings = settings

        single_process = True

        def run(self, tasks, worker_fn, *, progress=False, desc="build", unit="pair"):
            return [ShardOutcome(i, worker_fn(t)) for i, t in enumerate(tasks)]

    assert "inline" in runner_names()
    assert [o.result for o in run_tasks([1, 2], operator.neg, runner="inline")] == [-1, -2]


@pytest.mark.slow
def test_ray_build_outlives_its_progress_mailbox(monkeypatch):
    """A lost progress actor (its node went) costs the bar's live counts, never the build."""
    ray = pytest.importorskip("ray")
    from corruptor.run import ray_runner

    made = ray_runner._progress_mailbox

    def dead_mailbox(ray_module):
        actor = made(ray_module)
        ray_module.kill(actor)
        return actor

    monkeypatch.setattr(ray_runner, "_progress_mailbox", dead_mailbox)
    try:
        outcomes = make_runner("ray", RunnerSettings(workers=2, retries=1)).run([3, 1, 2], operator.neg,
                                                                              progress="log")
    finally:
        if ray.is_initialized():
            ray.shutdown()
    assert [o.result for o in outcomes] == [-3, -1, -2] and all(o.ok for o in outcomes)


def pid_of(x: int) -> int:
    import os

    return positive_or_raise(x) and os.getpid()


@pytest.mark.slow
def test_ray_gpu_workers_are_long_lived_actors_and_a_cluster_without_gpus_is_refused():
    ray = pytest.importorskip("ray")
    from corruptor.run.runner import RunnerError

    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False)   # GPUs as resources only
    try:
        runner = make_runner("ray", RunnerSettings(workers=2, retries=1, gpus_per_worker=1))
        outcomes = runner.run([1, 2, -3, 4, 5, 6], pid_of)
        assert [o.ok for o in outcomes] == [True, True, False, True, True, True]
        assert outcomes[2].attempts == 2
        assert len({o.result for o in outcomes if o.ok}) <= 2   # one process per GPU worker, reused
        with pytest.raises(RunnerError, match="has 2 GPU"):
            make_runner("ray", RunnerSettings(gpus_per_worker=3)).run([1], pid_of)
    finally:
        ray.shutdown()
