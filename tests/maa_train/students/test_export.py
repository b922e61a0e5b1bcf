"""Adapters attached to a tiny random LLaVA reloaded with from_pretrained: identity at init,
active in generate(), removable, exported in the release's format."""
import pytest
import torch

from maa_train.students.adapter import AdapterConfig
from maa_train.students.checkpoint import CheckpointMismatchError, load_adapters, save_adapters
from maa_train.students.export import (ADAPTER_ATTR, adapter_state_dict, adapters_disabled, attach_adapters, detach_adapters,
                              load_llava_with_adapters, save_release_checkpoint)
from maa_train.students.inject import AdaptedEncoder, adapters_for
from maa_train.encoders.load import find_blocks, load_vision_model
from maa_train.students.official import import_official
from tests.maa_train.tiny_models import VISION, save_tiny
from tests.maa_train.eval.evalkit import one_thread  # noqa: F401 (fixture)

pytestmark = pytest.mark.usefixtures("one_thread")

ADAPTER = AdapterConfig(bottleneck=8, attn_dim=8, heads=2)
IMAGE_TOKEN = 63
PATCHES = (VISION["image_size"] // VISION["patch_size"]) ** 2


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    llava = save_tiny("llava", root)
    tower, _ = load_vision_model(llava)  # adapters are trained on the tower alone
    student = AdaptedEncoder(tower, ADAPTER)
    save_adapters(root / "zero", student)
    torch.manual_seed(3)
    with torch.no_grad():
        for p in student.adapters.parameters():
            p.copy_(0.5 * torch.randn_like(p))
    save_adapters(root / "trained", student)
    return {"llava": llava, "zero": root / "zero", "trained": root / "trained", "root": root}


def _inputs():
    ids = torch.tensor([[1] + [IMAGE_TOKEN] * PATCHES + [5, 6]])
    pixels = torch.randn(1, 3, VISION["image_size"], VISION["image_size"], generator=torch.Generator().manual_seed(0))
    return ids, pixels


def test_zero_init_adapters_leave_logits_identical(setup):
    model, _ = load_vision_model(setup["llava"], keep_language_model=True)
    ids, pixels = _inputs()
    with torch.no_grad():
        before = model(input_ids=ids, pixel_values=pixels).logits
        attach_adapters(model, setup["zero"])
        after = model(input_ids=ids, pixel_values=pixels).logits
    assert torch.equal(before, after)
    # LLaVA reads hidden state -2: the last block's adapter could never matter and is not built
    assert len(model.maa_attachment.handles) == adapters_for(-2, len(find_blocks(model))) == len(find_blocks(model)) - 1


def test_trained_adapters_change_features_and_generate_runs(setup):
    model = load_llava_with_adapters(setup["llava"], setup["trained"])
    ids, pixels = _inputs()
    with torch.no_grad():
        on = model.get_image_features(pixel_values=pixels).pooler_output
        with adapters_disabled(model):
            off = model.get_image_features(pixel_values=pixels).pooler_output
        logits_on = model(input_ids=ids, pixel_values=pixels).logits
        with adapters_disabled(model):
            logits_off = model(input_ids=ids, pixel_values=pixels).logits
        out = model.generate(input_ids=ids, pixel_values=pixels, max_new_tokens=3, do_sample=False)
    assert not torch.allclose(logits_on, logits_off)  # the language model sees the adapted features
    on, off = torch.cat(list(on)), torch.cat(list(off))
    assert on.shape == off.shape and not torch.allclose(on, off, atol=1e-4)
    assert out.shape == (1, ids.shape[1] + 3) and torch.equal(out[:, : ids.shape[1]], ids)

    # the adapters are submodules under the release's names and detach restores the stock model
    keys = adapter_state_dict(model)
    assert keys and all(f".{ADAPTER_ATTR}." in k for k in keys)
    detach_adapters(model)
    assert not any(ADAPTER_ATTR in n for n, _ in model.named_modules())
    with torch.no_grad():
        plain = torch.cat(list(model.get_image_features(pixel_values=pixels).pooler_output))
    assert torch.equal(plain, off)


def test_release_checkpoint_round_trips(setup, tmp_path):
    model = load_llava_with_adapters(setup["llava"], setup["trained"])
    imported = import_official(save_release_checkpoint(model, tmp_path / "maa.pth"), feature_layer=-2)
    tower, _ = load_vision_model(setup["llava"])
    reference = AdaptedEncoder(tower, ADAPTER)
    load_adapters(setup["trained"], reference)
    expected = reference.trainable_state_dict()
    assert imported.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(imported[key].reshape(value.shape), value), key


def test_mismatched_or_double_attach_is_refused(setup, tmp_path):
    model, _ = load_vision_model(setup["llava"], keep_language_model=True)
    from transformers import CLIPVisionConfig, CLIPVisionModel

    wide = CLIPVisionModel(CLIPVisionConfig(**{**VISION, "hidden_size": 48}))
    save_adapters(tmp_path / "wide", AdaptedEncoder(wide, ADAPTER))
    with pytest.raises(CheckpointMismatchError, match="hidden_size"):
        attach_adapters(model, tmp_path / "wide")
    attach_adapters(model, setup["zero"])
    with pytest.raises(ValueError, match="already attached"):
        attach_adapters(model, setup["zero"])


def test_llava_next_anyres_features_go_through_adapters(tmp_path):
    path = save_tiny("llava_next", tmp_path)
    tower, _ = load_vision_model(path)
    student = AdaptedEncoder(tower, ADAPTER)
    with torch.no_grad():
        for p in student.adapters.parameters():
            p.copy_(0.5 * torch.randn_like(p))
    save_adapters(tmp_path / "adapters", student)
    model = load_llava_with_adapters(path, tmp_path / "adapters")
    pixels = torch.randn(1, 3, 3, VISION["image_size"], VISION["image_size"])  # base view + 2 AnyRes crops
    sizes = torch.tensor([[28, 56]])
    with torch.no_grad():
        on = torch.cat(list(model.get_image_features(pixel_values=pixels, image_sizes=sizes).pooler_output))
        with adapters_disabled(model):
            off = torch.cat(list(model.get_image_features(pixel_values=pixels, image_sizes=sizes).pooler_output))
    assert on.shape == off.shape and not torch.allclose(on, off, atol=1e-4)


def release_loader(path, model: torch.nn.Module):
    """The release's documented key handling, written from its description (not our code):
    unwrap {adapter_state_dict|state_dict|model}, strip `module.`, accept `.content_adapter.`,
    keep `.maa_adapter.` keys, load_state_dict(strict=False) into the original LLaVA naming."""
    obj = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("adapter_state_dict", "state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    state = {}
    for key, value in obj.items():
        key = key[len("module."):] if key.startswith("module.") else key
        key = key.replace(".content_adapter.", ".maa_adapter.")
        if ".maa_adapter." in key:
            state[key] = value
    return model.load_state_dict(state, strict=False)


class _OriginalLlava(torch.nn.Module):
    """The original LLaVA code's module tree down to the adapters:
    model.vision_tower.vision_tower.vision_model.encoder.layers.{i}.maa_adapter."""

    def __init__(self, layers: int, dim: int, cfg: AdapterConfig):
        super().__init__()
        from maa_train.students.adapter import MAAAdapter

        def node(**children):
            m = torch.nn.Module()
            for name, child in children.items():
                m.add_module(name, child)
            return m

        blocks = torch.nn.ModuleList(node(maa_adapter=MAAAdapter(dim, cfg)) for _ in range(layers))
        self.model = node(vision_tower=node(vision_tower=node(vision_model=node(encoder=node(layers=blocks)))))


def test_release_loader_finds_every_adapter_tensor(setup, tmp_path):
    model = load_llava_with_adapters(setup["llava"], setup["trained"])
    path = save_release_checkpoint(model, tmp_path / "maa.pth")
    layers = VISION["num_hidden_layers"]
    original = _OriginalLlava(layers, VISION["hidden_size"], ADAPTER)
    result = release_loader(path, original)
    assert [k for k in result.missing_keys if ".maa_adapter." in k] == []
    assert [k for k in result.unexpected_keys if ".maa_adapter." in k] == []
    # the trained adapters arrive with their values; the block after LLaVA's feature layer
    # (-2) gets an identity adapter, as the release would initialise it
    loaded = original.model.vision_tower.vision_tower.vision_model.encoder.layers
    trained = find_blocks(model)[0].maa_adapter.state_dict()
    for name, value in loaded[0].maa_adapter.state_dict().items():
        assert torch.equal(value, trained[name].float()), name
    last = loaded[layers - 1].maa_adapter
    assert float(last.alpha_mlp) == 0.0 and float(last.alpha_pool) == 0.0
    # wrapped, prefixed and legacy-named copies of the file load the same
    raw = torch.load(path, weights_only=True)
    legacy = {"module." + k.replace(".maa_adapter.", ".content_adapter."): v for k, v in raw.items()}
    torch.save({"adapter_state_dict": legacy}, tmp_path / "legacy.pth")
    assert import_official(tmp_path / "legacy.pth").keys() == import_official(path).keys()
