"""Training state as safetensors + JSON: exact round trip of every type the trainer saves, no pickle."""
import json
import math
import random

import numpy as np
import pytest
import torch

from maa_train.train.state_file import JSON_NAME, TENSORS_NAME, StateFormatError, load_state, save_state


def same(a, b, where="state"):
    assert type(a) is type(b), (where, type(a), type(b))
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b), where
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and np.array_equal(a, b), where
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for k in a:
            same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b), where
    else:
        assert a == b, where


def trainer_like_state() -> dict:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, betas=(0.9, 0.95))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (s + 1))
    for _ in range(2):
        net(torch.randn(5, 3)).square().mean().backward()
        opt.step()
        sched.step()
    random.seed(3), np.random.seed(4)
    random.random(), np.random.normal()  # a cached Gaussian in NumPy's state
    return {"step": 2, "total_steps": 10, "best": [math.inf, None], "skipped": 0, "broken_shards": ["a.tar"],
            "loader": {"epoch": 0, "batch": 2, "raw": [3, 4]}, "model": {"kind": "maa", "adapter": {"window": 7}},
            "rng": {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()},
            "opt_g": opt.state_dict(), "sched_g": sched.state_dict(), "nan": float("nan"),
            "tricky": {"__tensor__": "not a tag", "x": 1}, "tag_alone": {"__tuple__": [1]},
            "bf16": torch.ones(2).bfloat16()}


def test_round_trip_is_exact_and_restores_optimiser_and_rngs(tmp_path):
    state = trainer_like_state()
    save_state(tmp_path, state)
    assert sorted(p.name for p in tmp_path.iterdir()) == [JSON_NAME, TENSORS_NAME]
    back = load_state(tmp_path)
    same(state, back)
    assert isinstance(back["opt_g"]["state"], dict) and set(back["opt_g"]["state"]) == {0, 1, 2, 3}
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    torch.optim.AdamW(net.parameters()).load_state_dict(back["opt_g"])
    random.setstate(back["rng"]["python"]), np.random.set_state(back["rng"]["numpy"])
    torch.set_rng_state(back["rng"]["torch"])
    expected = (random.random(), np.random.normal(), torch.rand(1))
    random.setstate(state["rng"]["python"]), np.random.set_state(state["rng"]["numpy"])
    torch.set_rng_state(state["rng"]["torch"])
    assert expected == (random.random(), np.random.normal(), torch.rand(1))


def test_unsupported_objects_fail_when_saving_and_name_their_place(tmp_path):
    with pytest.raises(TypeError, match=r"state\.opt\.hook: a builtins\.builtin_function_or_method cannot be saved"):
        save_state(tmp_path, {"opt": {"hook": print}})
    with pytest.raises(TypeError, match="dtype object cannot be saved"):
        save_state(tmp_path, {"a": np.array([None])})


@pytest.mark.parametrize("doc, says", [
    ({"x": {"__tensor__": "t999999"}}, r"state\.x: names tensor 't999999'"),
    ({"x": {"__ndarray__": {"dtype": "|O", "shape": [1], "data": [1]}}}, "not a numeric array"),
    ({"x": {"__ndarray__": {"dtype": "<u4", "shape": [3], "data": [1]}}}, "does not match 1 values"),
    ({"x": {"__items__": [[{"__tuple__": []}, 1], [[1], 2]]}}, "unhashable key"),
    ({"x": {"__tuple__": "abc"}}, "a tuple must hold a list"),
])
def test_a_hostile_state_json_is_a_clear_error(tmp_path, doc, says):
    save_state(tmp_path, {"t": torch.zeros(1)})
    (tmp_path / JSON_NAME).write_text(json.dumps({"format": "maa-train-state/1", "state": doc}))
    with pytest.raises(StateFormatError, match=says):
        load_state(tmp_path)


def test_wrong_format_and_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a complete training checkpoint"):
        load_state(tmp_path)
    save_state(tmp_path, {"t": torch.zeros(1)})
    (tmp_path / JSON_NAME).write_text('{"format": "other", "state": {}}')
    with pytest.raises(StateFormatError, match="format 'other' is not 'maa-train-state/1'"):
        load_state(tmp_path)
    (tmp_path / JSON_NAME).write_text("{truncated")
    with pytest.raises(StateFormatError, match="not valid JSON"):
        load_state(tmp_path)
