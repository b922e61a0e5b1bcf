"""SAM2 automatic masks, batched: the expensive stage of the data pipeline made cheap.

The stock generator runs one image at a time, upsamples every candidate mask (3 per point
prompt) to full resolution, filters there and round-trips each one through RLE on the CPU.
Here the image encoder runs on several images per forward, point prompts go to the
decoder in large chunks, and all filtering (predicted IoU, stability, box NMS) happens on
the decoder's low-resolution logits on the device. Only the few masks that survive are
upsampled to the image's resolution. Box IoU is invariant to per-axis scaling, so NMS in
the low-resolution frame keeps the same masks as NMS at full size up to rounding; the
stability score is measured on the low-resolution logits, which is close to but not
bit-identical with the stock full-resolution figure.

Device memory at the 1024 px model input (measured in fp32 on CPU; bf16 autocast needs less):
the decoder holds about 26 MB per point prompt of a chunk (``points_per_batch``), the tiny
model's encoder about 0.3 GB per image of ``images_per_batch``. A batch that runs out of
device memory is retried one image at a time; only an image that alone does not fit fails.
"""
from __future__ import annotations

import importlib.resources
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from corruptor.masks.registry import register_mask_source
from corruptor.masks.source import (
    FALLBACK_HINT,
    MaskError,
    MaskOutcome,
    MaskSet,
    MaskSourceConfig,
    MaskSourceError,
    check_image,
    working_scale,
)
from corruptor.masks.sam2_checkpoint import read_sam2_checkpoint

_UPSAMPLE_CHUNK = 64
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


def resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def build_model(cfg: MaskSourceConfig, device: str):
    """The real `sam2.build_sam.build_sam2`; load failures name the checkpoint and fallbacks."""
    from sam2.build_sam import build_sam2

    s = cfg.sam2
    overrides = [f"++model.image_size={s.image_size}"] if s.image_size else []
    ckpt = str(s.checkpoint) if s.checkpoint is not None else None
    try:
        # Our weights_only read, before any model is built; sam2 gets no path to load itself.
        state = read_sam2_checkpoint(ckpt) if ckpt is not None else None
        model = build_sam2(s.config, None, device=device, hydra_overrides_extra=overrides)
        if state is not None:
            model.load_state_dict(state)  # strict: missing or unexpected keys raise
        return model
    except Exception as exc:  # torch.load / state-dict / Hydra errors all mean "cannot use this"
        raise MaskSourceError(
            f"could not load SAM2 config '{s.config}' with checkpoint '{ckpt}': {type(exc).__name__}: {exc}; "
            + FALLBACK_HINT
        ) from exc


def point_grid(n_per_side: int) -> np.ndarray:
    """Cell-centred n x n grid in [0, 1]^2 as (x, y) rows, like the stock generator's."""
    c = (np.arange(n_per_side) + 0.5) / n_per_side
    xs, ys = np.meshgrid(c, c)
    return np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float32)


def sam2_config_exists(name: str) -> bool:
    """SAM2 configs are resolved by Hydra inside the installed `sam2` package."""
    try:
        root = importlib.resources.files("sam2")
    except ModuleNotFoundError:
        return False
    return name.endswith(".yaml") and root.joinpath(name).is_file()


def sam2_config_names() -> list[str]:
    try:
        root = Path(str(importlib.resources.files("sam2"))) / "configs"
    except ModuleNotFoundError:
        return []
    return sorted(str(p.relative_to(root.parent)) for p in root.rglob("*.yaml") if "training" not in p.parts[-2])


def check_sam2(cfg: MaskSourceConfig) -> None:
    fallbacks = FALLBACK_HINT
    s = cfg.sam2
    if not sam2_config_exists(s.config):
        known = ", ".join(sam2_config_names()) or "(sam2 package not installed)"
        raise MaskSourceError(f"unknown SAM2 config '{s.config}'; known configs: {known}; or {fallbacks}")
    if s.checkpoint is None:
        if not s.allow_random_weights:
            raise MaskSourceError(f"SAM2 needs a checkpoint path (sam2.checkpoint); none given; {fallbacks}")
    else:
        ckpt = Path(s.checkpoint)
        if not ckpt.is_file():
            raise MaskSourceError(f"SAM2 checkpoint '{ckpt}' does not exist or is not a file; {fallbacks}")
        if not os.access(ckpt, os.R_OK):
            raise MaskSourceError(f"SAM2 checkpoint '{ckpt}' is not readable; {fallbacks}")
    if s.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise MaskSourceError("sam2.device is 'cuda' but no CUDA device is visible; use device 'auto' or 'cpu'")


@register_mask_source("sam2", check=check_sam2)
class Sam2MaskSource:
    name = "sam2"

    def __init__(self, cfg: MaskSourceConfig, model=None):
        import torch

        self.config = cfg
        s = cfg.sam2
        self.device = resolve_device(s.device)
        self.model = model if model is not None else build_model(cfg, self.device)
        self.resolution = int(self.model.image_size)
        self._grid = torch.as_tensor(point_grid(s.points_per_side), device=self.device) * self.resolution
        self._mean = torch.tensor(_MEAN, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(_STD, device=self.device).view(1, 3, 1, 1)
        self._pe = None

    def _autocast(self):
        import contextlib

        import torch

        if self.device.startswith("cuda") and self.config.sam2.bf16:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def generate(self, images: list[np.ndarray], keys: Sequence[Sequence[str]] | None = None) -> list[MaskOutcome]:
        import torch

        out: list[MaskOutcome | None] = [check_image(self.config, im) for im in images]
        todo = [i for i, o in enumerate(out) if o is None]
        step = self.config.sam2.images_per_batch
        with torch.inference_mode(), self._autocast():
            for start in range(0, len(todo), step):
                idx = todo[start:start + step]
                for i, r in zip(idx, self._generate_or_split([images[i] for i in idx])):
                    out[i] = r
        return out  # type: ignore[return-value]

    def _generate_or_split(self, images: list[np.ndarray]) -> list[MaskOutcome]:
        """A batch that does not fit the device is retried one image at a time (large
        images share a batch with small ones), so only an image that alone does not fit fails."""
        import torch

        try:
            return self._generate_batch(images)
        except torch.cuda.OutOfMemoryError as exc:
            error = str(exc).splitlines()[0]
        torch.cuda.empty_cache()  # outside the except block: the failed frames are gone by now
        if len(images) > 1:
            return [r for im in images for r in self._generate_or_split([im])]
        s = self.config.sam2
        return [MaskError(f"SAM2 ran out of device memory on a {images[0].shape[1]}x{images[0].shape[0]} image "
                          f"(points_per_batch={s.points_per_batch}; lower it, or max_side): {error}")]

    # -- stages -----------------------------------------------------------------------

    def _encode(self, images: list[np.ndarray]):
        """Image encoder on the whole batch; resize and normalise on the device."""
        import torch
        import torch.nn.functional as F

        r = self.resolution
        batch = []
        for im in images:
            h, w = im.shape[:2]
            scale = working_scale(self.config, h, w)
            if scale < 1.0:
                import cv2

                im = cv2.resize(im, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
            t = torch.from_numpy(np.ascontiguousarray(im)).to(self.device, non_blocking=True)
            t = t.permute(2, 0, 1)[None].float() / 255.0
            batch.append(F.interpolate(t, size=(r, r), mode="bilinear", align_corners=False, antialias=True))
        x = (torch.cat(batch) - self._mean) / self._std
        model = self.model
        backbone_out = model.forward_image(x)
        _, feats, _, sizes = model._prepare_backbone_features(backbone_out)
        if model.directly_add_no_mem_embed:
            feats[-1] = feats[-1] + model.no_mem_embed
        b = x.shape[0]
        maps = [f.permute(1, 2, 0).reshape(b, -1, *hw) for f, hw in zip(feats, sizes)]
        return maps[-1], maps[:-1]

    def _dense_pe(self):
        # Depends on the model only; computed once instead of per image.
        if self._pe is None:
            self._pe = self.model.sam_prompt_encoder.get_dense_pe()
        return self._pe

    def _decode(self, embed, high_res):
        """All grid prompts of one image, in chunks: (logits M x r x r, predicted IoU M)."""
        import torch

        model = self.model
        s = self.config.sam2
        pe = self._dense_pe()
        logits, scores = [], []
        for start in range(0, self._grid.shape[0], s.points_per_batch):
            pts = self._grid[start:start + s.points_per_batch]
            labels = torch.ones(pts.shape[0], 1, dtype=torch.int, device=self.device)
            sparse, dense = model.sam_prompt_encoder(points=(pts[:, None, :], labels), boxes=None, masks=None)
            low, iou, _, _ = model.sam_mask_decoder(
                image_embeddings=embed, image_pe=pe, sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense, multimask_output=True,
                repeat_image=pts.shape[0] > 1, high_res_features=high_res,
            )
            low, iou = low.flatten(0, 1).float(), iou.flatten(0, 1).float()
            # Filter each chunk at once so memory holds survivors only.
            keep = iou > s.pred_iou_thresh if s.pred_iou_thresh > 0 else torch.ones_like(iou, dtype=torch.bool)
            low, iou = low[keep], iou[keep]
            inner = (low > s.stability_score_offset).sum((-1, -2), dtype=torch.int32)
            outer = (low > -s.stability_score_offset).sum((-1, -2), dtype=torch.int32)
            stability = inner / outer.clamp(min=1)
            keep = (stability >= s.stability_score_thresh) & ((low > 0).flatten(1).any(1))
            logits.append(low[keep])
            scores.append(iou[keep])
        return torch.cat(logits), torch.cat(scores)

    def _select(self, logits, scores, height: int, width: int) -> MaskSet:
        """NMS on low-res boxes, then upsample only the kept masks to the image size."""
        import torch
        import torch.nn.functional as F
        from torchvision.ops import batched_nms

        cfg = self.config
        if logits.shape[0] == 0:
            return MaskSet()
        binary = logits > 0
        boxes = _mask_boxes(binary)
        keep = batched_nms(boxes, scores, torch.zeros_like(scores, dtype=torch.long), cfg.sam2.box_nms_thresh)
        r2 = logits.shape[-1] * logits.shape[-2]
        floor = max(1, cfg.min_area_px(height, width))
        est_area = binary[keep].flatten(1).sum(1).float() * (height * width / r2)
        # Estimated area decides candidates; a margin keeps borderline masks for the exact test.
        keep = keep[est_area >= 0.5 * floor][: 2 * cfg.max_masks]
        if keep.numel() == 0:
            return MaskSet()
        # Full-size float logits are 4 bytes a pixel: upsample in chunks so a large
        # max_masks (or no cap) cannot turn the survivors into gigabytes at once.
        masks, kept_scores = [], []
        kept = scores[keep].cpu().tolist()
        for start in range(0, keep.numel(), _UPSAMPLE_CHUNK):
            part = keep[start:start + _UPSAMPLE_CHUNK]
            full = F.interpolate(logits[part][:, None], size=(height, width), mode="bilinear",
                                 align_corners=False)[:, 0] > 0
            ok = (full.flatten(1).sum(1) >= floor).cpu().tolist()
            full = full.cpu().numpy()
            for j, good in enumerate(ok):
                if good and len(masks) < cfg.max_masks:
                    masks.append(full[j])
                    kept_scores.append(kept[start + j])
            if len(masks) >= cfg.max_masks:
                break
        return MaskSet(masks, kept_scores)

    def _generate_batch(self, images: list[np.ndarray]) -> list[MaskOutcome]:
        embed, high_res = self._encode(images)
        results: list[MaskOutcome] = []
        for i, im in enumerate(images):
            logits, scores = self._decode(embed[i:i + 1], [f[i:i + 1] for f in high_res])
            results.append(self._select(logits, scores, im.shape[0], im.shape[1]))
        return results


def _mask_boxes(masks):
    """XYXY boxes of bool masks (N x H x W), vectorised; masks are known non-empty."""
    import torch

    rows = masks.any(-1)
    cols = masks.any(-2)
    h, w = masks.shape[-2:]
    ar_h = torch.arange(h, device=masks.device)
    ar_w = torch.arange(w, device=masks.device)
    y0 = torch.where(rows, ar_h, h).amin(1)
    y1 = torch.where(rows, ar_h, -1).amax(1)
    x0 = torch.where(cols, ar_w, w).amin(1)
    x1 = torch.where(cols, ar_w, -1).amax(1)
    return torch.stack([x0, y0, x1, y1], 1).float()
