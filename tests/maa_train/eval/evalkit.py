"""Tiny shards with corruption provenance and a tiny CLIP, for the evaluation and ablation tests."""
from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from corruptor.ops.registry import load_all
from maa_format import FORMAT
from tests.maa_train.data.shardkit import png

SIZE = 28


@pytest.fixture(scope="module")
def one_thread():
    """Tiny matrices run fastest on one thread; on a shared 2-core runner extra threads only contend."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
# Op name -> how the test degrades the clean image; families come from the real registry.
DEGRADE = {
    "gaussian_noise": lambda im, rng: im.astype(int) + rng.normal(0, 40, im.shape).astype(int),
    "gaussian_blur": lambda im, rng: (im.astype(int) + np.roll(im, 1, 0) + np.roll(im, 1, 1)) // 3,
    "jpeg": lambda im, rng: (im.astype(int) // 32) * 32,
}


def tiny_clip(out: Path, layers: int = 2, hidden: int = 32) -> Path:
    from transformers import CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(0)
    CLIPVisionModel(CLIPVisionConfig(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                                     num_attention_heads=2, image_size=SIZE, patch_size=4)).save_pretrained(out)
    return out


def sample_ops(i: int) -> list[list[str]]:
    """Global ops and local-region ops of sample i: noise, blur, noise+jpeg (jpeg in a region)."""
    return [[["gaussian_noise"], []], [["gaussian_blur"], []], [["gaussian_noise"], ["jpeg"]]][i % 3]


def write_labelled_dataset(root: Path, counts: list[int], no_json: set[str] = frozenset()) -> Path:
    (root / "shards").mkdir(parents=True, exist_ok=True)
    names = []
    for s, n in enumerate(counts):
        name = f"{s:06d}"
        rng = np.random.default_rng(s)
        with tarfile.open(root / "shards" / f"{name}.tar", "w") as tar:
            for j in range(n):
                key = f"s{s}-k{j:03d}"
                clean = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
                global_ops, local_ops = sample_ops(j)
                degraded = clean
                for op in global_ops + local_ops:
                    degraded = np.clip(DEGRADE[op](degraded, rng), 0, 255).astype(np.uint8)
                meta = {"key": key, "ops": [{"op": o, "severity": 3, "params": {}} for o in global_ops],
                        "regions": [{"ops": [{"op": o, "severity": 2, "params": {}}]} for o in local_ops]}
                members = {"clean.png": png(clean), "degraded.png": png(degraded)}
                if key not in no_json:
                    members["json"] = json.dumps(meta).encode()
                for ext, data in members.items():
                    info = tarfile.TarInfo(f"{key}.{ext}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        (root / "shards" / f"{name}.stats.json").write_text(json.dumps({"ok": n}))
        names.append(name)
    families = {name: op.family for name, op in load_all().items()}
    (root / "dataset.json").write_text(json.dumps({"format": FORMAT, "shards": names, "op_families": families}))
    return root


def train_config(model: Path, data: Path, out: Path, **over) -> dict:
    return {
        "model": {"path": str(model)},
        "adapter": {"bottleneck": 8, "attn_dim": 8, "heads": 2},
        "discriminator": {"width": 16, "blocks": 1},
        "optim": {"adapter_lr": 3e-3, "disc_lr": 1e-3, "warmup_frac": 0.0},
        "data": {"train": [str(data)], "val_fraction": 0.34, "batch_size": 4, "workers": 0, "shuffle_buffer": 4},
        "train": {"max_steps": 2, "precision": "fp32", "device": "cpu", "deterministic": True, "log_every": 1,
                  "val_every": 2, "ckpt_every": 100, "out_dir": str(out), "progress": False},
    }


def save_fresh_and_moved(model, root, adapter) -> None:
    """Adapter checkpoints `root/fresh` (identity at init) and `root/moved` (random weights, seed 1)."""
    import torch

    from maa_train.encoders.load import load_vision_model
    from maa_train.students.checkpoint import save_adapters
    from maa_train.students.inject import AdaptedEncoder

    enc, _ = load_vision_model(model)
    student = AdaptedEncoder(enc, adapter)
    save_adapters(root / "fresh", student)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in student.adapters.parameters():
            p.copy_(0.3 * torch.randn_like(p))
    save_adapters(root / "moved", student)
