"""LLaVA-1.5 and LLaVA-NeXT: a CLIP tower and a projector inside a VLM.

The tower's own family (CLIP) describes its blocks, grid and processor; these families
say where the tower and projector sit and that ``vision_feature_layer`` picks the features.
"""
from maa_train.encoders.clip import CLIP
from maa_train.encoders.family import EncoderFamily, register

_VLM = dict(
    tower_paths=(("model", "vision_tower"), ("vision_tower",)),
    projector_paths=(("model", "multi_modal_projector"), ("multi_modal_projector",)),
    mean=CLIP.mean, std=CLIP.std, lora_targets=CLIP.lora_targets, multimodal=True,
)

LLAVA = register(EncoderFamily(name="llava", model_class="LlavaForConditionalGeneration",
                               model_types=("llava",), **_VLM))
LLAVA_NEXT = register(EncoderFamily(name="llava_next", model_class="LlavaNextForConditionalGeneration",
                                    model_types=("llava_next",), **_VLM))
