"""Validation during training: mean squared error of the corrected features against the
clean teacher's on the held-out pairs, summed over every rank's share of them."""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from maa_train.data.loader import ValStream, make_loader
from maa_train.data.preprocess import normalise_pairs
from maa_train.train import distributed
from maa_train.train.config import DataSettings

log = logging.getLogger(__name__)


@torch.no_grad()
def validation_l2(student, val_shards: list, settings, data: DataSettings, dist, autocast,
                  broken: set[str]) -> float:
    """The mean per-image feature MSE; shards found missing or broken are added to ``broken``."""
    student.eval()
    gone = [s.url for s in val_shards if "://" not in s.url and not Path(s.url).is_file()]
    if gone:  # a held-out shard deleted since the start counts like a broken training shard
        log.warning("%d held-out shard(s) are missing and skipped in validation: %s", len(gone), gone[:3])
        broken.update(gone)
    ds = ValStream(val_shards, settings, batch_size=data.batch_size, rank=dist.rank, world=dist.world,
                   max_samples=data.val_max_samples)
    total, count = 0.0, 0
    dev = dist.device
    for batch in make_loader(ds, min(data.workers, len(val_shards)), dev.type == "cuda"):
        broken.update(batch.get("broken_shards", ()))
        clean, degraded = normalise_pairs(batch["pairs"].to(dev, non_blocking=True), settings)
        with autocast():
            teacher = student.features(clean, adapters=False)
            corrected = student.features(degraded)
        err = (corrected.float() - teacher.float()).pow(2).mean(dim=(1, 2))
        total += float(err.sum())
        count += err.numel()
    student.train()
    total, count = distributed.reduce_sum([total, float(count)], dev, dist.world)
    if count == 0:
        raise ValueError("validation read no sample: the held-out shards are empty or unreadable")
    return total / count
