"""BuildConfig: a typed, frozen settings object; every mistake is one BuildError line naming the field."""
from pathlib import Path

import pytest
from pydantic import ValidationError

from corruptor.build.config import BuildConfig, BuildError
from corruptor.run.runner import RunnerSettings
from corruptor.sources.sources import SourceError, SourceSpec

BASE = dict(recipe="maa-global", sources=[SourceSpec("a", "/data/a")], out="/tmp/out", target=10)


def test_defaults_types_and_runner_settings():
    cfg = BuildConfig(**BASE, workers=3, ray_address="ray://head:10001")
    assert isinstance(cfg.out, Path) and (cfg.seed, cfg.shard_size, cfg.distributor, cfg.mode) == (0, 256, "local", "resume")
    assert cfg.runner_settings() == RunnerSettings(workers=3, retries=2, address="ray://head:10001")
    with pytest.raises(ValidationError, match="frozen"):
        cfg.seed = 1


@pytest.mark.parametrize("change, says", [
    ({"target": "many"}, "build settings: target: Input should be a valid integer"),
    ({"shard_sise": 8}, "build settings: shard_sise: unknown key"),
    ({"workers": 0}, "workers must be >= 1, got 0"),
    ({"distributor": "dask"}, "distributor 'dask' not allowed; allowed: local, ray"),
    ({"max_failed": 2.0}, "max_failed must be a fraction in [0, 1]"),
])
def test_a_bad_field_is_one_line_naming_it(change, says):
    with pytest.raises(BuildError) as info:
        BuildConfig(**{**BASE, **change})
    assert says in str(info.value) and "\n" not in str(info.value)


def test_source_spec_is_a_frozen_model_taking_positional_fields():
    spec = SourceSpec("a", Path("/data/a"), "ocr", 2)
    assert spec.to_dict() == {"name": "a", "path": "/data/a", "kind": "ocr", "weight": 2}
    assert spec == SourceSpec(name="a", path="/data/a", kind="ocr", weight=2) and hash(spec)
    with pytest.raises(SourceError, match="^kind: source 'a': kind 'x' not allowed"):
        SourceSpec("a", "/d", "x")
    with pytest.raises(SourceError, match="^wieght: unknown key"):
        SourceSpec("a", "/d", wieght=1)
