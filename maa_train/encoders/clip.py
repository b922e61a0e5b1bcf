"""CLIP ViT (the LLaVA towers' encoder): CLS + patch grid, OpenAI's normalisation."""
from maa_train.encoders.family import EncoderFamily, register

# transformers 5 dropped the `vision_model` level in CLIPVisionModel; earlier releases had it.
CLIP_BLOCKS = (("encoder", "layers"), ("vision_model", "encoder", "layers"))
CLIP_LORA = r".*encoder\.layers\.\d+\.self_attn\.(q_proj|k_proj|v_proj|out_proj)"

CLIP = register(EncoderFamily(
    name="clip", model_class="CLIPVisionModel", model_types=("clip_vision_model", "clip"),
    vision_types=("clip_vision_model",), prefix_tokens=1, block_paths=CLIP_BLOCKS,
    mean=(0.48145466, 0.4578275, 0.40821073), std=(0.26862954, 0.26130258, 0.27577711),
    lora_targets=CLIP_LORA,
))
