import json

import pytest
import torch
from torch import nn

from maa_train.students.adapter import AdapterConfig
from maa_train.encoders.grid import PatchGrid
from maa_train.students.inject import AdaptedEncoder
from maa_train.encoders.load import BlocksNotFoundError, find_tower, load_vision_model
from tests.maa_train.tiny_models import KINDS, pixels, tiny_models  # noqa: F401

CFG = AdapterConfig(bottleneck=8, attn_dim=8, heads=2, window=3)


def _reference(model, kind, x, use_projector):
    """Features computed by transformers itself, before any adapter exists."""
    with torch.no_grad():
        if not kind.startswith("llava"):  # a bare encoder: last hidden state, prefix dropped
            return model(pixel_values=x).last_hidden_state[:, 0 if kind == "siglip" else 1:]
        tower = find_tower(model)
        feats = tower(pixel_values=x, output_hidden_states=True).hidden_states[-2][:, 1:]
        return model.model.multi_modal_projector(feats) if use_projector else feats


def _bump_gates(enc, value=0.5):
    with torch.no_grad():
        for adapter in enc.adapters:
            adapter.alpha_mlp.fill_(value)
            adapter.alpha_pool.fill_(value)


@pytest.mark.parametrize("kind", KINDS)
def test_identity_at_init_and_teacher_pass(tiny_models, kind):
    model, info = load_vision_model(tiny_models[kind])
    use_projector = kind.startswith("llava")
    x = pixels()
    ref = _reference(model, kind, x, use_projector)
    enc = AdaptedEncoder(model, CFG, use_projector=use_projector, info=info)
    assert enc.grid == PatchGrid(1 if kind != "siglip" else 0, 4, 4)
    assert enc.feature_layer == (-2 if use_projector else -1)
    with torch.no_grad():
        assert torch.equal(enc.features(x), ref)
        _bump_gates(enc)
        adapted = enc.features(x)
        assert not torch.allclose(adapted, ref)
        assert torch.equal(enc.features(x, adapters=False), ref)
        with enc.adapters_disabled():
            assert torch.equal(enc.features(x), ref)
        assert torch.equal(enc.features(x), adapted)


def test_llava_drops_language_model_by_default(tiny_models):
    model, info = load_vision_model(tiny_models["llava"])
    assert model.model.language_model is None and model.lm_head is None
    assert info.architecture == "LlavaForConditionalGeneration" and info.projector_dim == 24
    kept, _ = load_vision_model(tiny_models["llava"], keep_language_model=True)
    assert kept.model.language_model is not None


def test_gradients_reach_only_adapters_and_teacher_is_unchanged(tiny_models):
    model, _ = load_vision_model(tiny_models["clip"])
    x = pixels()
    ref = _reference(model, "clip", x, False)
    enc = AdaptedEncoder(model, CFG)
    enc.train()
    assert not model.training
    _bump_gates(enc, 0.1)
    opt = torch.optim.SGD(enc.trainable_parameters(), lr=0.1)
    with torch.no_grad():
        teacher = enc.features(x, adapters=False)
    loss = (enc.features(x + 0.5 * torch.randn_like(x)) - teacher).square().mean()
    loss.backward()
    adapter_ids = {id(p) for p in enc.adapters.parameters()}
    assert {id(p) for p in enc.trainable_parameters()} == adapter_ids
    for name, p in model.named_parameters():
        assert p.grad is None, name
    # every adapter parameter gets a gradient (gates are open)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in enc.adapters.parameters())
    before = [p.clone() for p in model.parameters()]
    opt.step()
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    with torch.no_grad():
        assert torch.equal(enc.features(x, adapters=False), ref)


def test_adapter_sees_block_input(tiny_models):
    # The adapter of block 0 changes block 0's input, so hidden_states[1] (block 0's output) moves,
    # while hidden_states[0] (the embeddings) does not.
    # (hidden state 0, the embeddings, is out of every adapter's reach: refused, not trained in vain)
    model, _ = load_vision_model(tiny_models["clip"])
    with pytest.raises(ValueError, match="feature_layer 0 is the embedding output"):
        AdaptedEncoder(model, CFG, feature_layer=0)
    x = pixels()
    enc1 = AdaptedEncoder(load_vision_model(tiny_models["clip"])[0], CFG, feature_layer=1)
    _bump_gates(enc1)
    with torch.no_grad():
        assert not torch.allclose(enc1.features(x), enc1.features(x, adapters=False))


def test_siglip_last_layer_includes_post_layernorm(tiny_models):
    model, _ = load_vision_model(tiny_models["siglip"])
    enc = AdaptedEncoder(model, CFG)
    x = pixels()
    with torch.no_grad():
        raw = model(pixel_values=x, output_hidden_states=True).hidden_states[-1]
        assert torch.allclose(enc.features(x), model.post_layernorm(raw))


def test_anyres_batch_of_crops(tiny_models):
    model, _ = load_vision_model(tiny_models["llava_next"])
    enc = AdaptedEncoder(model, CFG, use_projector=True)
    _bump_gates(enc)
    crops = torch.randn(2, 3, 3, 28, 28, generator=torch.Generator().manual_seed(1))  # [B, crops, 3, H, W]
    with torch.no_grad():
        out = enc.features(crops)
        assert out.shape == (6, 16, 24)
        one = enc.features(crops[1, 2:3])
    assert torch.allclose(out[5:6], one, atol=1e-5)


def test_unsupported_model_type_and_missing_projector(tiny_models, tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match=r"model_type 'bert'.*allowed"):
        load_vision_model(tmp_path)
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_vision_model(tmp_path / "nowhere")
    model, _ = load_vision_model(tiny_models["clip"])
    with pytest.raises(ValueError, match="CLIPVisionModel has no multimodal projector"):
        AdaptedEncoder(model, CFG, use_projector=True)
    with pytest.raises(ValueError, match="feature_layer"):
        AdaptedEncoder(model, CFG, feature_layer=7)


def test_model_without_blocks_names_class():
    class NoBlocks(nn.Module):
        def __init__(self):
            super().__init__()
            self.config = type("Cfg", (), {"model_type": "clip_vision_model", "image_size": 28, "patch_size": 7,
                                           "hidden_size": 32})()
            self.encoder = nn.Linear(2, 2)

    with pytest.raises(BlocksNotFoundError, match="NoBlocks: cannot find the vision encoder blocks"):
        AdaptedEncoder(NoBlocks(), CFG)


def test_bf16_autocast_encoder_within_bound(tiny_models):
    model, _ = load_vision_model(tiny_models["clip"])
    enc = AdaptedEncoder(model, CFG)
    _bump_gates(enc, 0.3)
    x = pixels()
    with torch.no_grad():
        ref = enc.features(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = enc.features(x)
    assert ((out.float() - ref).norm() / ref.norm()).item() < 1e-2


def test_grid_mismatch_inside_encoder_names_counts(tiny_models):
    from maa_train.encoders.grid import GridMismatchError

    model, _ = load_vision_model(tiny_models["clip"])
    model.config.image_size = 35  # the config now promises 5x5 patches; the embeddings still make 4x4
    enc = AdaptedEncoder(model, CFG)
    with pytest.raises(GridMismatchError, match=r"expected 26 tokens \(1 prefix \+ 5x5 patches\), found 17"):
        enc.features(pixels())


def test_llava_loads_without_language_model_layers(tiny_models):
    """Training loads no decoder layer of the LLM, and the vision features are unchanged."""
    import transformers as T

    model, _ = load_vision_model(tiny_models["llava"])
    full = T.LlavaForConditionalGeneration.from_pretrained(tiny_models["llava"])
    assert getattr(model.model, "language_model", None) is None
    assert model.config.text_config.num_hidden_layers == 0  # built without decoder layers
    x = torch.randn(2, 3, 28, 28, generator=torch.Generator().manual_seed(0))
    ours = AdaptedEncoder(model, feature_layer=-2, use_projector=True).features(x)
    ref = full.model.multi_modal_projector(
        full.model.vision_tower(pixel_values=x, output_hidden_states=True).hidden_states[-2][:, 1:])
    assert torch.equal(ours, ref)
