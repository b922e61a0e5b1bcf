"""Tiny random HF vision models saved with save_pretrained, shared by the maa_train tests.

Import the `tiny_models` fixture into a test module to use it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=28,
              patch_size=7)  # 4x4 grid
TEXT = dict(model_type="llama", hidden_size=24, intermediate_size=48, num_hidden_layers=1, num_attention_heads=4,
            num_key_value_heads=4, vocab_size=64)
KINDS = ("clip", "siglip", "llava", "llava_next", "dinov2", "vit")


def save_tiny(kind: str, root: Path) -> Path:
    import transformers as T

    torch.manual_seed(0)
    if kind == "clip":
        model = T.CLIPVisionModel(T.CLIPVisionConfig(**VISION))
    elif kind == "siglip":
        model = T.SiglipVisionModel(T.SiglipVisionConfig(**VISION))
    elif kind == "llava":
        model = T.LlavaForConditionalGeneration(
            T.LlavaConfig(vision_config=T.CLIPVisionConfig(**VISION).to_dict(), text_config=TEXT, image_token_id=63)
        )
    elif kind == "llava_next":
        model = T.LlavaNextForConditionalGeneration(
            T.LlavaNextConfig(vision_config=T.CLIPVisionConfig(**VISION).to_dict(), text_config=TEXT,
                              image_token_id=63, image_grid_pinpoints=[[28, 56], [56, 28], [56, 56]])
        )
    elif kind == "dinov2":
        model = T.Dinov2Model(T.Dinov2Config(**VISION))
    elif kind == "vit":
        model = T.ViTModel(T.ViTConfig(**VISION), add_pooling_layer=False)
    else:
        raise ValueError(kind)
    path = root / kind
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    # Ops on these models take microseconds; on a shared 2-core machine intra-op threads cost
    # more in synchronisation than they save (measured 3-30x slower), so run them on one.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("tiny_models")
    yield {kind: save_tiny(kind, root) for kind in KINDS}
    torch.set_num_threads(threads)


def pixels(batch: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, VISION["image_size"], VISION["image_size"], generator=torch.Generator().manual_seed(seed))
