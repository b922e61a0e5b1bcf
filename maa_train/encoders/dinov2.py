"""DINOv2 (transformers Dinov2Model): CLS + patch grid, no register tokens, ImageNet
normalisation, 14 px patches; position embeddings interpolate to the input size."""
from maa_train.encoders.family import IMAGENET_MEAN, IMAGENET_STD, EncoderFamily, register

DINOV2 = register(EncoderFamily(
    name="dinov2", model_class="Dinov2Model", model_types=("dinov2",), vision_types=("dinov2",),
    prefix_tokens=1, block_paths=(("encoder", "layer"),), mean=IMAGENET_MEAN, std=IMAGENET_STD,
    fixed_size=False, lora_targets=r".*encoder\.layer\.\d+\.attention\.(q_proj|k_proj|v_proj|o_proj)",
))
