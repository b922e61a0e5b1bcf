"""Where the patch tokens of a ViT sequence sit: prefix tokens, then a row-major grid."""

from __future__ import annotations

from dataclasses import dataclass

from maa_train.encoders.family import UnknownFamilyError, family_for_type


class GridMismatchError(ValueError):
    """The token count of a hidden state does not match the encoder's patch grid."""


@dataclass(frozen=True)
class PatchGrid:
    prefix: int
    height: int
    width: int

    def __post_init__(self) -> None:
        if self.prefix < 0:
            raise ValueError(f"PatchGrid.prefix must be >= 0, got {self.prefix}")
        if self.height < 1 or self.width < 1:
            raise ValueError(f"PatchGrid height and width must be >= 1, got {self.height}x{self.width}")

    @property
    def num_patches(self) -> int:
        return self.height * self.width

    @property
    def num_tokens(self) -> int:
        return self.prefix + self.num_patches

    def check(self, num_tokens: int) -> None:
        if num_tokens != self.num_tokens:
            raise GridMismatchError(
                f"expected {self.num_tokens} tokens ({self.prefix} prefix + {self.height}x{self.width} patches), "
                f"found {num_tokens}"
            )


def grid_for(vision_config, num_tokens: int | None = None, image_size: tuple[int, int] | None = None) -> PatchGrid:
    """The patch grid of one image (or one AnyRes crop: each crop goes through the tower at
    the base resolution, so crops share the base grid). ``image_size`` (H, W) is the input's
    size when it differs from the config's (DINOv2 interpolates its position embeddings).

    The prefix comes from the encoder family, never guessed from the sequence length: 577
    tokens could be CLS + 24x24 or a 1 x 577 strip."""
    model_type = getattr(vision_config, "model_type", None)
    try:
        prefix = family_for_type(model_type).prefix_tokens
    except UnknownFamilyError as exc:
        raise ValueError(f"vision config model_type {model_type!r} has no known patch layout: {exc}") from None
    # The patch convolution floors: SigLIP at 384 px with 14 px patches sees 27x27 patches.
    h, w = image_size or (vision_config.image_size, vision_config.image_size)
    patch = vision_config.patch_size
    grid = PatchGrid(prefix=prefix, height=h // patch, width=w // patch)
    if num_tokens is not None:
        grid.check(num_tokens)
    return grid
