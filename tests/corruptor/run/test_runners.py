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
