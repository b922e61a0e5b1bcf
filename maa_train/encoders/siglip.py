"""SigLIP: no CLS token (all tokens are patches), [-1, 1] normalisation."""
from maa_train.encoders.clip import CLIP_BLOCKS, CLIP_LORA
from maa_train.encoders.family import HALF, EncoderFamily, register

SIGLIP = register(EncoderFamily(
    name="siglip", model_class="SiglipVisionModel", model_types=("siglip_vision_model", "siglip"),
    vision_types=("siglip_vision_model",), prefix_tokens=0, block_paths=CLIP_BLOCKS,
    mean=HALF, std=HALF, lora_targets=CLIP_LORA,
))
