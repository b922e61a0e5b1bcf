"""data.image_size / --image-size: another input side for encoders whose positions interpolate; adapters
record it and evaluation follows it; the adapters load at any grid for such a family."""
from __future__ import annotations

import pytest
import torch

from maa_train.data.preprocess import ImageSizeError, ProcessorSettings
from maa_train.encoders.load import load_vision_model
from maa_train.eval.evaluate import AdapterSpec, EvaluationError, input_settings
from maa_train.students.checkpoint import load_adapters, read_config, save_adapters
from maa_train.students.inject import AdaptedEncoder
from maa_train.train.config import ConfigError, load_config
from tests.maa_train.tiny_models import tiny_models  # noqa: F401 (fixture)

ADAPTER = dict(bottleneck=8, attn_dim=8, heads=2, window=2)


def test_size_override_for_interpolating_families_only(tiny_models):  # noqa: F811
    own = ProcessorSettings.from_model_dir(tiny_models["dinov2"])
    assert own.size == 28
    assert ProcessorSettings.from_model_dir(tiny_models["dinov2"], 56) == ProcessorSettings(56, own.mean, own.std)
    with pytest.raises(ImageSizeError, match="multiple of the patch size 7"):
        ProcessorSettings.from_model_dir(tiny_models["dinov2"], 30)
    with pytest.raises(ImageSizeError, match="fixed to 28 px"):
        ProcessorSettings.from_model_dir(tiny_models["clip"], 56)
    assert ProcessorSettings.from_model_dir(tiny_models["clip"], 28).size == 28  # its own size is fine


def test_config_field():
    cfg = load_config(None, ["model.path=m", "data.train=d", "data.image_size=112"])
    assert cfg.data.image_size == 112
    with pytest.raises(ConfigError, match="data.image_size"):
        load_config(None, ["model.path=m", "data.train=d", "data.image_size=0"])


def test_adapters_trained_at_another_grid_load_and_set_the_eval_size(tiny_models, tmp_path):  # noqa: F811
    from maa_train.students.adapter_config import AdapterConfig

    enc, _ = load_vision_model(tiny_models["dinov2"])
    student = AdaptedEncoder(enc, AdapterConfig(**ADAPTER))
    student.features(torch.randn(1, 3, 56, 56))   # an 8x8 grid, not the config's 4x4
    assert (student.grid.height, student.grid.width) == (8, 8)
    save_adapters(tmp_path / "a", student, extra={"image_size": 56})
    assert read_config(tmp_path / "a")["image_size"] == 56

    fresh, _ = load_vision_model(tiny_models["dinov2"])
    load_adapters(tmp_path / "a", AdaptedEncoder(fresh, AdapterConfig(**ADAPTER)))  # grid follows the input
    spec = [AdapterSpec("a", tmp_path / "a")]
    assert input_settings(tiny_models["dinov2"], spec).size == 56
    assert input_settings(tiny_models["dinov2"], spec, 28).size == 28
    save_adapters(tmp_path / "b", student, extra={"image_size": 28})
    with pytest.raises(EvaluationError, match="disagree on image_size"):
        input_settings(tiny_models["dinov2"], spec + [AdapterSpec("b", tmp_path / "b")])
