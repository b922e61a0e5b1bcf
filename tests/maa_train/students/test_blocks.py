"""`adapter.blocks`: adapters on a chosen subset of blocks (default: every block up to the
feature layer, unchanged), recorded in checkpoints, checked on load, exported in the release's
format with identity adapters elsewhere."""
import json

import pytest
import torch
from pydantic import ValidationError

from maa_train.encoders.load import find_blocks, load_vision_model
from maa_train.students.adapter import AdapterConfig
from maa_train.students.baselines import make_student
from maa_train.students.checkpoint import CheckpointMismatchError, load_adapters, read_config, save_adapters
from maa_train.students.export import attach_adapters, release_state_dict, save_release_checkpoint
from maa_train.students.inject import AdaptedEncoder, adapter_blocks
from maa_train.students.official import import_official
from maa_train.train.config import ConfigError, load_config
from tests.maa_train.tiny_models import VISION, pixels, save_tiny

CFG = dict(bottleneck=8, attn_dim=8, heads=2, window=3)
LAYERS = 4


def _model(kind: str, layers: int = LAYERS):
    import transformers as T

    torch.manual_seed(0)
    config = {**VISION, "num_hidden_layers": layers}
    if kind == "clip":
        return T.CLIPVisionModel(T.CLIPVisionConfig(**config)).eval()
    return T.Dinov2Model(T.Dinov2Config(**config)).eval()


def _bump(enc, value=0.5):
    with torch.no_grad():
        for adapter in enc.adapters:
            adapter.alpha_mlp.fill_(value)
            adapter.alpha_pool.fill_(value)


def test_default_keeps_keys_and_config_bytes(tmp_path):
    """blocks unset: one adapter per block up to the feature layer, the same keys and the same
    config file as before the setting existed (no `blocks`, no `adapter_blocks`)."""
    model, info = load_vision_model(save_tiny("llava", tmp_path / "models"))
    enc = AdaptedEncoder(model, AdapterConfig(**CFG), info=info)
    assert enc.adapter_blocks == (0,) and enc.num_adapters == 1  # LLaVA's -2 on 2 blocks
    assert sorted({k.split(".")[1] for k in enc.trainable_state_dict()}) == ["0"]
    save_adapters(tmp_path / "ckpt", enc)
    saved = read_config(tmp_path / "ckpt")
    assert "adapter_blocks" not in saved and "blocks" not in saved["adapter"]
    assert "blocks" not in AdapterConfig().to_dict()
    assert "blocks" not in load_config(base={"model": {"path": "m"}, "data": {"train": ["d"]}}).model_dump()["adapter"]
    clip = AdaptedEncoder(_model("clip"), AdapterConfig(**CFG))
    assert clip.adapter_blocks == tuple(range(LAYERS))
    assert sorted({k.split(".")[1] for k in clip.trainable_state_dict()}) == [str(i) for i in range(LAYERS)]


@pytest.mark.parametrize("kind", ["clip", "dinov2"])
def test_last_two_blocks_identity_and_gradients(kind):
    model = _model(kind)
    x = pixels()
    with torch.no_grad():
        ref = model(pixel_values=x).last_hidden_state[:, 1:]
    enc = AdaptedEncoder(model, AdapterConfig(**CFG, blocks=[-2, -1]))
    assert enc.adapter_blocks == (LAYERS - 2, LAYERS - 1) and len(enc.adapters) == 2
    assert enc.config["adapter_blocks"] == [2, 3] and enc.config["adapter"]["blocks"] == [-2, -1]
    with torch.no_grad():
        assert torch.equal(enc.features(x), ref)  # identity at init, exactly
    # Each adapter sits on its block's input: record what block 2 and 3 receive.
    seen = {}
    hooks = [find_blocks(model)[b].register_forward_pre_hook(
        lambda m, a, kw, b=b: seen.__setitem__(b, (kw["hidden_states"] if not a else a[0]).clone()),
        with_kwargs=True) for b in range(LAYERS)]
    _bump(enc)
    with torch.no_grad():
        plain_inputs = {}
        enc.features(x, adapters=False)
        plain_inputs.update(seen)
        out = enc.features(x)
    for h in hooks:
        h.remove()
    assert not torch.allclose(out, ref)
    # Blocks 0 and 1 see unchanged inputs (no adapter in front of them), block 2 an adapted one.
    assert torch.equal(seen[0], plain_inputs[0]) and torch.equal(seen[1], plain_inputs[1])
    assert not torch.allclose(seen[2], plain_inputs[2])
    assert torch.equal(enc.features(x, adapters=False), ref)
    # Training touches only the two adapters.
    opt = torch.optim.SGD(enc.trainable_parameters(), lr=0.1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for _ in range(2):
        opt.zero_grad()
        (enc.features(x + 0.3 * torch.randn_like(x)) - ref).square().mean().backward()
        opt.step()
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert {id(p) for p in enc.trainable_parameters()} == {id(p) for p in enc.adapters.parameters()}


def test_subset_with_a_feature_layer_and_bottleneck_student():
    enc = make_student("bottleneck", _model("clip"), AdapterConfig(**CFG, blocks=[0, 2]), feature_layer=-2)
    assert enc.adapter_blocks == (0, 2) and len(enc.adapters) == 2
    assert adapter_blocks(-1, 12, (10, -1)) == (10, 11) and adapter_blocks(-2, 24, None) == tuple(range(23))


@pytest.mark.parametrize("blocks, feature_layer, match", [
    ([4], None, r"adapter.blocks \[4\]: \[4\] out of range for a model of depth 4"),
    ([-5, 0], None, r"adapter.blocks \[-5, 0\]: \[-5\] out of range for a model of depth 4"),
    ([-1], -2, r"adapter.blocks \[-1\]: block\(s\) \[3\] at or after feature layer -2 of a model of depth 4"),
    ([3, -1], None, r"adapter.blocks \[3, -1\] names a block twice .* depth 4"),
])
def test_model_load_errors_name_setting_value_and_depth(blocks, feature_layer, match):
    with pytest.raises(ValueError, match=match) as err:
        AdaptedEncoder(_model("clip"), AdapterConfig(**CFG, blocks=blocks), feature_layer=feature_layer)
    assert "\n" not in str(err.value)


def test_config_time_errors():
    with pytest.raises(ValidationError, match=r"repeats block\(s\) \[1\]"):
        AdapterConfig(blocks=[1, 2, 1])
    with pytest.raises(ValidationError, match="empty"):
        AdapterConfig(blocks=[])
    base = {"model": {"path": "m"}, "data": {"train": ["d"]}}
    with pytest.raises(ConfigError, match=r"adapter.blocks: .*repeats"):
        load_config(base=base, overrides=["adapter.blocks=[-1, -1]"])
    with pytest.raises(ConfigError, match=r"adapter.blocks=\[-1\] but train.student=lora"):
        load_config(base=base, overrides=["adapter.blocks=[-1]", "train.student=lora"])
    assert load_config(base=base, overrides=["adapter.blocks=[-2, -1]"]).adapter.blocks == (-2, -1)


def test_checkpoint_round_trip_and_mismatch_names_both_sides(tmp_path):
    model = _model("clip")
    enc = AdaptedEncoder(model, AdapterConfig(**CFG, blocks=[-2, -1]))
    _bump(enc, 0.3)
    save_adapters(tmp_path / "subset", enc)
    saved = json.loads((tmp_path / "subset" / "adapter_config.json").read_text())
    assert saved["adapter_blocks"] == [2, 3] and saved["num_adapters"] == 2
    # Same blocks spelled positively: accepted, same function.
    again = AdaptedEncoder(_model("clip"), AdapterConfig(**CFG, blocks=[2, 3]))
    load_adapters(tmp_path / "subset", again)
    x = pixels()
    with torch.no_grad():
        assert torch.equal(again.features(x), enc.features(x))
    other = AdaptedEncoder(_model("clip"), AdapterConfig(**CFG, blocks=[0, 1]))
    with pytest.raises(CheckpointMismatchError, match=r"adapter.blocks: checkpoint has adapters on blocks \[2, 3\] "
                                                      r".*model on \[0, 1\]"):
        load_adapters(tmp_path / "subset", other)
    default = AdaptedEncoder(_model("clip"), AdapterConfig(**CFG))
    with pytest.raises(CheckpointMismatchError, match=r"\[2, 3\] .*model on \[0, 1, 2, 3\] \(adapter.blocks null\)"):
        load_adapters(tmp_path / "subset", default)
    save_adapters(tmp_path / "all", default)
    with pytest.raises(CheckpointMismatchError, match=r"checkpoint has adapters on blocks \[0, 1, 2, 3\]"):
        load_adapters(tmp_path / "all", other)


def test_export_subset_attaches_on_its_blocks_and_release_round_trips(tmp_path):
    save = _model("clip")
    path = tmp_path / "clip"
    save.save_pretrained(path)
    tower, _ = load_vision_model(path)
    enc = AdaptedEncoder(tower, AdapterConfig(**CFG, blocks=[-2, -1]))
    torch.manual_seed(3)
    with torch.no_grad():
        for p in enc.adapters.parameters():
            p.copy_(0.5 * torch.randn_like(p))
    save_adapters(tmp_path / "adapters", enc)
    x = pixels()
    with torch.no_grad():
        expected = enc.features(x)
    model, _ = load_vision_model(path)
    attach_adapters(model, tmp_path / "adapters")
    assert [i for i, b in enumerate(find_blocks(model)) if "maa_adapter" in b._modules] == [2, 3]
    with torch.no_grad():
        assert torch.allclose(model(pixel_values=x).last_hidden_state[:, 1:], expected, atol=1e-6)
    # The release format has an adapter for every block: identity ones (gates 0) on blocks 0, 1.
    release = release_state_dict(model)
    assert sorted({k.split(".layers.")[1].split(".")[0] for k in release}, key=int) == ["0", "1", "2", "3"]
    assert all(v.abs().sum() == 0 for k, v in release.items() if ".layers.0." in k and "alpha" in k)
    imported = import_official(save_release_checkpoint(model, tmp_path / "maa.pth"), feature_layer=-1)
    ours = enc.trainable_state_dict()
    for slot, block in enumerate(enc.adapter_blocks):
        for name, value in ours.items():
            if name.startswith(f"adapters.{slot}."):
                key = f"adapters.{block}." + name.split(".", 2)[2]
                assert torch.equal(imported[key].reshape(value.shape), value), key
    full = AdaptedEncoder(load_vision_model(path)[0], AdapterConfig(**CFG))
    full.load_trainable_state_dict({k: v.reshape(full.trainable_state_dict()[k].shape) for k, v in imported.items()})
    with torch.no_grad():
        assert torch.allclose(full.features(x), expected, atol=1e-6)
