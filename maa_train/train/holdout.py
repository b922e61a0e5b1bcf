"""The trainer's data: training shards per dataset and the held-out shards it validates on.

Without data.val, whole shards of the first dataset are held out; variants of the same
source image can sit in other shards, so those are skipped in training too.
pipelines/ablation.py evaluates on the same held-out choice.
"""
from __future__ import annotations

import logging

from maa_train.data.shards import holdout_groups, resolve_shards, split_holdout, without_groups
from maa_train.train.config import TrainConfig

log = logging.getLogger(__name__)


def training_data(cfg: TrainConfig):
    """(training shards per dataset, held-out shards, the held-out images' groups)."""
    datasets = [resolve_shards(spec) for spec in cfg.data.train]
    if cfg.data.val:
        val = [s for spec in cfg.data.val for s in resolve_shards(spec)]
    else:
        datasets[0], val = split_holdout(datasets[0], cfg.data.val_fraction)
    groups = holdout_groups(val)
    kept = [without_groups(d, groups) for d in datasets]
    _report_holdout(datasets, kept, val, groups)
    return kept, val, groups


def _report_holdout(before, after, val, groups) -> None:
    n_val = sum(s.count or 0 for s in val)
    total, left = (sum(s.count or 0 for d in ds for s in d) for ds in (before, after))
    log.info("validation: %d held-out shard(s), %d pairs of %d source images", len(val), n_val, len(groups))
    dropped = total - left
    if dropped:
        share = dropped / max(1, total)
        (log.warning if share > 0.2 else log.info)(
            "%d of %d training pairs (%.0f%%) are variants of held-out images and are skipped%s", dropped, total,
            100 * share, "; the dataset has many variants per source image: give data.val (pairs from other "
            "images) to keep them" if share > 0.2 else "")
