"""Plain ViT (transformers ViTModel): CLS + patch grid, [-1, 1] normalisation."""
from maa_train.encoders.family import HALF, EncoderFamily, register

# transformers 5 keeps the blocks at `layers`; earlier releases at `encoder.layer`.
VIT = register(EncoderFamily(
    name="vit", model_class="ViTModel", model_types=("vit",), vision_types=("vit",), prefix_tokens=1,
    block_paths=(("layers",), ("encoder", "layer")), mean=HALF, std=HALF,
    lora_targets=r".*layers\.\d+\.attention\.(q_proj|k_proj|v_proj|o_proj)",
))
