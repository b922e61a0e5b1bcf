"""Write a converted DINOv2 backbone as a transformers folder `Dinov2Model.from_pretrained` loads.

Weights are saved under the hub names (``attention.attention.query`` ...) that every
``facebook/dinov2-*`` checkpoint uses, so transformers 4.x loads them directly and 5.x
through its own legacy-name mapping; the folder is checked by loading it back.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from maa_train.models.dinov2_arch import Dinov2Arch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocessing:
    """The input the weights were trained with; written to preprocessor_config.json."""
    size: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    note: str = ""   # how the original package resized (kept in maa_source.json)

    def processor_config(self) -> dict:
        # BitImageProcessor is what HF DINOv2 folders use; the project's ProcessorSettings
        # reads crop_size / image_mean / image_std from the same file.
        return {"image_processor_type": "BitImageProcessor", "do_resize": True,
                "size": {"shortest_edge": self.size}, "resample": 3, "do_center_crop": True,
                "crop_size": {"height": self.size, "width": self.size}, "do_rescale": True,
                "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": list(self.mean),
                "image_std": list(self.std), "do_convert_rgb": True}


def write_dinov2_folder(out: Path, arch: Dinov2Arch, state_dict: dict[str, np.ndarray],
                        preprocessing: Preprocessing, provenance: dict) -> None:
    import torch
    from safetensors.torch import save_file
    from transformers import Dinov2Config

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config = Dinov2Config(**arch.hf_config_kwargs(), architectures=["Dinov2Model"])
    config.save_pretrained(out)
    tensors = {k: torch.from_numpy(np.array(v, dtype=np.float32, copy=True)) for k, v in sorted(state_dict.items())}
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "preprocessor_config.json").write_text(json.dumps(preprocessing.processor_config(), indent=2) + "\n")
    (out / "maa_source.json").write_text(json.dumps(
        {**provenance, "arch": arch.as_dict(), "preprocessing": asdict(preprocessing)}, indent=2) + "\n")
    _check_loads(out, state_dict)


def _check_loads(out: Path, state_dict: dict[str, np.ndarray]) -> None:
    """Load the folder back and compare every tensor: a renamed key would otherwise load as random init."""
    import torch
    from transformers import Dinov2Model

    model, info = Dinov2Model.from_pretrained(out, output_loading_info=True)
    bad = {k: v for k, v in info.items() if v and k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    if bad:
        raise RuntimeError(f"transformers did not load the converted folder {out} cleanly: {bad}")
    loaded = sum(p.numel() for p in model.parameters())
    expected = sum(v.size for v in state_dict.values())
    if loaded != expected:
        raise RuntimeError(f"loaded model has {loaded} parameters, converted state dict {expected}")
    cls = model.embeddings.cls_token.detach().numpy()
    if not np.array_equal(cls, state_dict["embeddings.cls_token"]):
        raise RuntimeError("loaded cls_token differs from the converted one")
    with torch.no_grad():
        q = model.state_dict()
    for name in ("encoder.layer.0.attention.attention.query.weight", "encoder.layer.0.attention.q_proj.weight"):
        if name in q and not np.array_equal(q[name].numpy(), state_dict["encoder.layer.0.attention.attention.query.weight"]):
            raise RuntimeError(f"loaded {name} differs from the converted query weight")
