"""Adapters attached to a tiny random LLaVA reloaded with from_pretrained: identity at init,
active in generate(), removable, exported in the release's format."""
import pytest
import torch

from maa_train.students.adapter import AdapterConfig
from maa_train.students.checkpoint import CheckpointMismatchError, load_adapters, save_adapters
from maa_train.students.export import (ADAPTER_ATTR, adapter_state_dict, adapters_disabled, attach_adapters, detach_adapters,
                              load_llava_with_adapters, save_release_checkpoint)
from maa_train.students.inject import AdaptedEncoder
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
    assert len(model.maa_attachment.handles) == len(find_blocks(model))


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
    imported = import_official(save_release_checkpoint(model, tmp_path / "maa.pth"))
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
