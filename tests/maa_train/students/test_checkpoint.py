import json

import pytest
import torch

from maa_train.students.adapter import AdapterConfig
from maa_train.students.checkpoint import CONFIG_NAME, WEIGHTS_NAME, CheckpointMismatchError, load_adapters, save_adapters
from maa_train.students.inject import AdaptedEncoder
from maa_train.encoders.load import load_vision_model
from tests.maa_train.tiny_models import VISION, pixels, tiny_models  # noqa: F401

CFG = AdapterConfig(bottleneck=8, attn_dim=8, heads=2, window=3)


def _trained(tiny_models, cfg=CFG):
    model, info = load_vision_model(tiny_models["clip"])
    enc = AdaptedEncoder(model, cfg, info=info)
    with torch.no_grad():
        for p in enc.trainable_parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return enc


def test_round_trip_restores_function_and_records_config(tiny_models, tmp_path):
    enc = _trained(tiny_models)
    out = save_adapters(tmp_path / "ckpt", enc, extra={"step": 7})
    assert sorted(p.name for p in out.iterdir()) == sorted([WEIGHTS_NAME, CONFIG_NAME])  # no temp files left
    config = json.loads((out / CONFIG_NAME).read_text())
    assert config["num_layers"] == 2 and config["hidden_size"] == 32 and config["feature_layer"] == -1
    assert config["model_type"] == "clip_vision_model" and config["base_model"] == str(tiny_models["clip"])
    assert config["adapter"]["bottleneck"] == 8 and config["step"] == 7 and config["package_version"]

    fresh = AdaptedEncoder(load_vision_model(tiny_models["clip"])[0], CFG)
    x = pixels()
    with torch.no_grad():
        assert not torch.equal(fresh.features(x), enc.features(x))
        load_adapters(out, fresh)
        assert torch.equal(fresh.features(x), enc.features(x))


def test_precision_flags_may_differ(tiny_models, tmp_path):
    save_adapters(tmp_path, _trained(tiny_models))
    fresh = AdaptedEncoder(load_vision_model(tiny_models["clip"])[0], AdapterConfig(**{**CFG.to_dict(), "full_fp32": True}))
    load_adapters(tmp_path, fresh)


def test_wrong_depth_is_reported(tiny_models, tmp_path):
    save_adapters(tmp_path, _trained(tiny_models))
    import transformers as T

    deeper = T.CLIPVisionModel(T.CLIPVisionConfig(**{**VISION, "num_hidden_layers": 3}))
    with pytest.raises(CheckpointMismatchError, match=r"num_layers: checkpoint has 2, model has 3") as err:
        load_adapters(tmp_path, AdaptedEncoder(deeper, CFG))
    assert "missing keys (14): ['adapters.2." in str(err.value)


def test_wrong_width_is_reported(tiny_models, tmp_path):
    save_adapters(tmp_path, _trained(tiny_models))
    import transformers as T

    wider = T.CLIPVisionModel(T.CLIPVisionConfig(**{**VISION, "hidden_size": 48}))
    with pytest.raises(CheckpointMismatchError, match=r"hidden_size: checkpoint has 32, model has 48") as err:
        load_adapters(tmp_path, AdaptedEncoder(wider, CFG))
    assert "adapters.0.mlp.0.weight: checkpoint (8, 32), model (8, 48)" in str(err.value)


def test_wrong_adapter_settings_are_reported(tiny_models, tmp_path):
    save_adapters(tmp_path, _trained(tiny_models))
    other = AdaptedEncoder(load_vision_model(tiny_models["clip"])[0], AdapterConfig(bottleneck=16, attn_dim=8, heads=2,
                                                                                     window=3, use_pool=False))
    with pytest.raises(CheckpointMismatchError, match=r"'bottleneck': \(8, 16\)") as err:
        load_adapters(tmp_path, other)
    assert "'use_pool': (True, False)" in str(err.value) and "unexpected keys" in str(err.value)


def test_missing_checkpoint_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=CONFIG_NAME):
        load_adapters(tmp_path, None)
