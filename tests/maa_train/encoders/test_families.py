"""Every registered encoder family satisfies the same contract, on a tiny random checkpoint
saved with save_pretrained and loaded back with from_pretrained."""
import pytest
import torch

from maa_train.data.preprocess import ProcessorSettings
from maa_train.encoders.family import FAMILIES, family_for_checkpoint, load_all
from maa_train.encoders.grid import PatchGrid
from maa_train.encoders.load import family_of, find_blocks, find_projector, find_tower, load_vision_model
from maa_train.students.adapter import AdapterConfig
from maa_train.students.baselines import make_student
from maa_train.students.checkpoint import save_adapters
from maa_train.students.export import attach_adapters
from maa_train.students.inject import AdaptedEncoder
from tests.maa_train.tiny_models import KINDS, VISION, pixels, tiny_models  # noqa: F401

CFG = AdapterConfig(bottleneck=8, attn_dim=8, heads=2, window=3)


def test_every_family_has_a_tiny_checkpoint():
    assert sorted(load_all()) == sorted(KINDS)


@pytest.mark.parametrize("name", KINDS)
def test_family_contract(tiny_models, name):
    family = FAMILIES[name]
    model, info = load_vision_model(tiny_models[name])
    assert family_for_checkpoint(info.model_type) is family
    tower = find_tower(model)
    tower_family = family_of(tower)
    assert len(find_blocks(model)) == VISION["num_hidden_layers"] == info.num_layers
    # processor defaults come from the tower's family, not from the model's name
    settings = ProcessorSettings.from_model_dir(tiny_models[name])
    assert (settings.size, settings.mean, settings.std) == (VISION["image_size"], tower_family.mean, tower_family.std)
    # identity at init, exactly, with the family's prefix dropped
    enc = AdaptedEncoder(model, CFG, info=info)
    side = VISION["image_size"] // VISION["patch_size"]
    assert enc.grid == PatchGrid(tower_family.prefix_tokens, side, side)
    x = pixels()
    with torch.no_grad():
        hidden = tower(pixel_values=x, output_hidden_states=True).hidden_states
        ref = (model(pixel_values=x).last_hidden_state if tower is model else hidden[enc.feature_layer])
        ref = ref[:, tower_family.prefix_tokens:]
        # a VLM's default features are what its language model reads: its own layer, projected
        assert enc.use_projector == (tower is not model)
        if enc.use_projector:
            assert enc.feature_layer == model.config.vision_feature_layer == -2
            ref = find_projector(model)(ref)
        assert torch.equal(enc.features(x), ref)
    enc.remove_hooks()


@pytest.mark.parametrize("name", KINDS)
def test_family_lora_targets_and_export(tiny_models, name, tmp_path):
    model, info = load_vision_model(tiny_models[name])
    lora = make_student("lora", model, CFG, info=info)
    assert lora.trainable_parameters(), "the family's LoRA targets matched nothing"
    # a trained MAA checkpoint attaches to a freshly loaded model and gives the student's features
    model, info = load_vision_model(tiny_models[name])
    student = AdaptedEncoder(model, CFG, info=info)
    with torch.no_grad():
        for adapter in student.adapters:
            adapter.alpha_mlp.fill_(0.5)
            adapter.alpha_pool.fill_(0.5)
    x = pixels()
    with torch.no_grad():
        want = student.features(x)
    save_adapters(tmp_path / "a", student)
    student.remove_hooks()
    fresh, _ = load_vision_model(tiny_models[name])
    attach_adapters(fresh, tmp_path / "a")
    tower, prefix = find_tower(fresh), family_of(find_tower(fresh)).prefix_tokens
    with torch.no_grad():
        out = tower(pixel_values=x, output_hidden_states=True)
        got = out.last_hidden_state if tower is fresh else out.hidden_states[student.feature_layer]
        got = got[:, prefix:]
        if student.use_projector:
            got = find_projector(fresh)(got)
    assert torch.allclose(got, want, atol=1e-5)
