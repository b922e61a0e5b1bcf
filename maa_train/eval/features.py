"""Feature extraction for the mechanism table: one pass over held-out pairs gives, per batch
and on the same images, the frozen encoder's features of the clean image (the reference
set), the base row's features of the degraded image and every checkpoint's.

Token rows per image (``tokens``): mean-pooled, a fixed random sample of patches (the same
positions for every model, drawn from the image's key) or all patches. The paired squared
error of each row against the clean features is kept per image over all patch tokens.
"""
from __future__ import annotations

import platform
import zlib
from contextlib import nullcontext
from dataclasses import dataclass

import torch

from maa_train.data.loader import ValStream, make_loader
from maa_train.data.preprocess import ProcessorSettings, normalise_pairs
from maa_train.data.shards import ShardInfo
from maa_train.eval.model_rows import Model
from maa_train.eval.options import EvalOptions, EvaluationError
from maa_train.eval.table import BASE_ROW


def autocast_for(device: torch.device, precision: str):
    """(autocast context, "bf16" or "fp32"): precision auto is bf16 on CUDA, fp32 on CPU."""
    use_bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    if use_bf16:
        return torch.autocast(device.type, dtype=torch.bfloat16), "bf16"
    return nullcontext(), "fp32"


def machine_text(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    return f"CPU ({platform.machine()}, {torch.get_num_threads()} threads), torch {torch.__version__}"


def _select(features: torch.Tensor, mode: str, positions: torch.Tensor | None) -> torch.Tensor:
    """[B, P, D] -> [B, r, D] token rows per image."""
    if mode == "pooled":
        return features.mean(dim=1, keepdim=True)
    if mode == "sampled":
        idx = positions.to(features.device)
        return torch.gather(features, 1, idx[..., None].expand(*idx.shape, features.shape[-1]))
    return features


@dataclass
class Features:
    clean: torch.Tensor  # [N, r, D] token rows of the clean images
    rows: dict[str, torch.Tensor]  # model -> [N, r, D] rows on degraded images
    sq_err: dict[str, torch.Tensor]  # model -> [N] mean squared error over all patch tokens, vs clean
    metas: list[dict | None]
    keys: list[str]


def _positions(keys: list[str], patches: int, k: int, seed: int) -> torch.Tensor:
    """Sampled patch positions per image, from its key: the same whatever the read order."""
    rows = []
    for key in keys:
        g = torch.Generator().manual_seed(zlib.crc32(f"{seed}:{key}".encode()))
        rows.append(torch.randperm(patches, generator=g)[:k])
    return torch.stack(rows)


def _check_rows(total: int, opts: EvalOptions) -> None:
    if total > opts.max_rows:  # before the feature sets grow any further
        raise EvaluationError(
            f"tokens={opts.tokens} gives {total} rows per feature set (or more), above "
            f"max_rows={opts.max_rows}: MMD^2 and energy distance take rows^2 time (and the feature sets "
            "rows x width memory on the device); use tokens=pooled or sampled with a smaller per_image, "
            "fewer samples, or raise max_rows")


@torch.no_grad()
def extract(models: list[Model], shards: list[ShardInfo], settings: ProcessorSettings, opts: EvalOptions,
            device: torch.device) -> Features:
    stream = ValStream(shards, settings, batch_size=opts.batch_size, with_meta=True)
    loader = make_loader(stream, min(opts.workers, len(shards)), pin_memory=device.type == "cuda")
    autocast, _ = autocast_for(device, opts.precision)
    clean_rows, metas, keys = [], [], []
    rows = {m.name: [] for m in models}
    errs = {m.name: [] for m in models}
    seen = 0
    for batch in loader:
        take = batch["pairs"].shape[0]
        if opts.max_samples is not None:
            take = min(take, opts.max_samples - seen)
        clean_px, degraded_px = normalise_pairs(batch["pairs"][:take].to(device, non_blocking=True), settings)
        with models[0].active(), autocast:
            clean = models[0].student.features(clean_px, adapters=False).float()
        positions = None
        if opts.tokens == "sampled":
            positions = _positions(batch["keys"][:take], clean.shape[1], min(opts.per_image, clean.shape[1]),
                                   opts.seed)
        clean_rows.append(_select(clean, opts.tokens, positions))
        _check_rows((seen + take) * clean_rows[-1].shape[1], opts)
        for m in models:
            with m.active(), autocast:
                feats = m.student.features(degraded_px, adapters=m.name != BASE_ROW).float()
            errs[m.name].append((feats.double() - clean.double()).pow(2).mean(dim=(1, 2)))
            rows[m.name].append(_select(feats, opts.tokens, positions))
        metas.extend(batch["meta"][:take])
        keys.extend(batch["keys"][:take])
        seen += take
        if opts.max_samples is not None and seen >= opts.max_samples:
            break
    if seen == 0:
        raise EvaluationError(f"the held-out shards gave no readable sample ({len(shards)} shard(s): "
                              f"{[s.url for s in shards][:3]})")
    return Features(torch.cat(clean_rows), {k: torch.cat(v) for k, v in rows.items()},
                    {k: torch.cat(v) for k, v in errs.items()}, metas, keys)
