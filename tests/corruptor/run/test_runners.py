"""Every runner honours the shared contract: outcomes in task order, retries, one signature."""
import operator

import pytest

from corruptor.run.distributor import RUNNERS


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(RUNNERS))
def test_runner_contract(name):
    if name == "ray":
        pytest.importorskip("ray")
    outcomes = RUNNERS[name]([3, 1, 2], operator.neg, workers=2, retries=1, progress=False, address=None)
    assert [o.index for o in outcomes] == [0, 1, 2]
    assert [o.ok for o in outcomes] == [True] * 3 and [o.result for o in outcomes] == [-3, -1, -2]


@pytest.mark.slow
def test_ray_build_outlives_its_progress_mailbox(monkeypatch):
    """A lost progress actor (its node went) costs the bar's live counts, never the build."""
    ray = pytest.importorskip("ray")
    from corruptor.run import distributor

    made = distributor._progress_mailbox

    def dead_mailbox(ray_module):
        actor = made(ray_module)
        ray_module.kill(actor)
        return actor

    monkeypatch.setattr(distributor, "_progress_mailbox", dead_mailbox)
    try:
        outcomes = distributor.run_ray([3, 1, 2], operator.neg, workers=2, retries=1, progress="log", address=None)
    finally:
        if ray.is_initialized():
            ray.shutdown()
    assert [o.result for o in outcomes] == [-3, -1, -2] and all(o.ok for o in outcomes)
