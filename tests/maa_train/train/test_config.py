import pytest

from maa_train.students.adapter_config import AdapterConfig
from maa_train.train.config import ConfigError, load_config

BASE = {"model": {"path": "m"}, "data": {"train": ["d"]}}


def test_adapter_settings_are_validated_before_any_model_loads():
    with pytest.raises(ConfigError, match="divisible"):
        load_config(base=BASE, overrides=["adapter.heads=7"])


def test_adapter_precision_is_settable_from_yaml():
    cfg = load_config(base=BASE, overrides=["adapter.fp32=false", "adapter.full_fp32=true"])
    assert isinstance(cfg.adapter, AdapterConfig) and not cfg.adapter.fp32 and cfg.adapter.full_fp32


def test_overrides_leave_the_callers_base_alone():
    # pipelines.ablation builds every variant from one base: one variant's overrides must not
    # leak into the next (no_pool after mlp_only would train without attention too).
    base = {"model": {"path": "m"}, "data": {"train": ["d"]}, "adapter": {"bottleneck": 8}}
    first = load_config(base=base, overrides=["adapter.use_attn=false", "data.batch_size=2"])
    second = load_config(base=base, overrides=["adapter.use_pool=false"])
    assert not first.adapter.use_attn and second.adapter.use_attn and not second.adapter.use_pool
    assert base == {"model": {"path": "m"}, "data": {"train": ["d"]}, "adapter": {"bottleneck": 8}}
