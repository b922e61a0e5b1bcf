"""Random-weight encoders saved with `save_pretrained`, for demos, tests and GPU benchmarks.

No model hub is reachable from these machines; the training path is still the real
`from_pretrained(local_path)`, pointed at a folder made here. Real weights are a path the
user gives instead.
"""
from __future__ import annotations

import json
from pathlib import Path

from maa_train.data.preprocess import CLIP_MEAN, CLIP_STD

# name -> CLIPVisionConfig kwargs
ARCHS: dict[str, dict] = {
    # CLIP ViT-L/14 at 336 px: the vision tower of LLaVA-1.6 (24 blocks, width 1024, 24x24 patches).
    "clip-vit-l-14-336": dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                              num_attention_heads=16, image_size=336, patch_size=14, projection_dim=768),
    # A tiny CLIP for CPU demos and tests: 7x7 patch grid, one 7x7 attention window.
    "tiny-clip": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
                      image_size=56, patch_size=8, projection_dim=32),
}


def save_random_model(arch: str, out_dir: str | Path, seed: int = 0) -> Path:
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModel

    if arch not in ARCHS:
        raise ValueError(f"unknown arch '{arch}'; allowed: {', '.join(ARCHS)}")
    out = Path(out_dir)
    if (out / "config.json").exists():
        return out
    torch.manual_seed(seed)
    config = CLIPVisionConfig(**ARCHS[arch])
    CLIPVisionModel(config).save_pretrained(out)
    size = config.image_size
    (out / "preprocessor_config.json").write_text(json.dumps({
        "crop_size": {"height": size, "width": size}, "size": {"shortest_edge": size},
        "image_mean": list(CLIP_MEAN), "image_std": list(CLIP_STD), "do_center_crop": True,
        "image_processor_type": "CLIPImageProcessor"}, indent=2))
    return out


if __name__ == "__main__":
    import argparse

    p = argparse.ArgumentParser(description="Save a random-weight vision encoder with save_pretrained.")
    p.add_argument("--arch", choices=sorted(ARCHS), required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    print(save_random_model(a.arch, a.out, a.seed))
