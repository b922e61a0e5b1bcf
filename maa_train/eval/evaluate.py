"""The mechanism table: where do corrupted and corrected features sit relative to the clean ones?

One pass over held-out pairs extracts, per batch and on the same images:

    clean       the frozen encoder on the clean image (the reference set)
    base        the frozen encoder on the degraded image          -> row "base (corrupted)"
    <name>      each adapter checkpoint on the degraded image     -> one row per checkpoint

Token rows per image (`tokens`): mean-pooled by default, a fixed random sample of patches,
or all patches. The images are split once into halves A and B (fixed seed, over the images
sorted by key): the two-sample metrics (MMD^2, KID, energy distance) compare a row's
features of A with the clean features of B, so the samples are independent as these
estimators assume (maa_train/eval/split_metrics.py); the "clean reference" row compares the clean
features of A with the same clean features of B and reads ~0. The paired metrics, paired
MSE on all patch tokens and linear CKA, compare each image with itself over all images (not
defined for the reference). Every value carries a bootstrap interval (images resampled; for
the split metrics each replicate also draws a new split).

Rows are computed for all samples ("all") and per corruption family read from each sample's
provenance; a sample with several ops counts under each of its families.

The parts: options (what is asked), heldout (which pairs, which families), model_rows (the
base encoder and each checkpoint), features (the pass over the pairs), split_metrics (the
numbers), table (row and metric names, the result) and mechanism_report (md, json, png).
This module ties them together; the names other code imports from it stay here.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import asdict
from pathlib import Path

import torch

from maa_train.data.shards import ShardInfo, op_families
from maa_train.eval.features import Features, autocast_for, extract, machine_text
from maa_train.eval.heldout import families_of, heldout_shards
from maa_train.eval.mechanism_report import plot, to_markdown, write_outputs
from maa_train.eval.model_rows import build_models, input_settings
from maa_train.eval.options import TOKEN_MODES, AdapterSpec, EvalOptions, EvaluationError
from maa_train.eval.split_metrics import MIN_HALF_IMAGES, SplitSettings, group_rows
from maa_train.eval.table import (ALL, BASE_ROW, CLEAN_ROW, LOWER_IS_BETTER, METRIC_LABELS, METRICS, MIN_ROWS,
                                  MechanismResult, min_images)
from maa_train.train.distributed import pick_device


def group_table(feats: Features, idx: torch.Tensor, opts: EvalOptions, replicates: dict | None = None
                ) -> dict[str, dict]:
    """Rows of the mechanism table for the samples `idx` (see maa_train/eval/split_metrics.py)."""
    idx_dev = idx.to(feats.clean.device)
    return group_rows(feats.clean[idx_dev], {name: rows[idx_dev] for name, rows in feats.rows.items()},
                      {name: err[idx_dev] for name, err in feats.sq_err.items()},
                      [feats.keys[i] for i in idx.tolist()], CLEAN_ROW,
                      SplitSettings(seed=opts.seed, reps=opts.bootstrap), replicates)


def _too_small(n: int, rows_per_image: int, what: str) -> str | None:
    need = min_images(rows_per_image)
    if n >= need:
        return None
    return (f"{what} has {n} image(s), fewer than {need}: MMD^2, KID and energy distance compare one half of the "
            f"images with the other, and each half needs at least {MIN_HALF_IMAGES} images")


def evaluate(model_path: str | Path, shards: list[ShardInfo], adapters: list[AdapterSpec] = (),
             opts: EvalOptions = EvalOptions(), *, data: str | None = None, command: str | None = None
             ) -> MechanismResult:
    """Build the mechanism table of the base encoder and each adapter checkpoint on `shards`."""
    if not shards:
        raise EvaluationError("no held-out shards to evaluate")
    try:
        device = pick_device(opts.device)
    except RuntimeError as exc:
        raise EvaluationError(str(exc).replace("train.device", "device")) from None
    models, info, feature_layer, use_projector = build_models(model_path, list(adapters), opts, device)
    settings = input_settings(model_path, list(adapters), opts.image_size)
    feats = extract(models, shards, settings, opts, device)
    n, rows_per_image = feats.clean.shape[0], feats.clean.shape[1]
    reason = _too_small(n, rows_per_image, "the held-out set")
    if reason:
        raise EvaluationError(reason + "; evaluate more samples (--max-samples, more held-out shards)")
    replicates: dict = {}
    groups, missing = _groups(feats, op_families(shards), opts, replicates)
    _, precision = autocast_for(device, opts.precision)
    meta = {
        "model": str(model_path), "encoder": info.to_dict(), "data": data, "shards": [s.url for s in shards],
        "samples": n, "samples_without_ops": missing, "tokens": opts.tokens, "input_size": settings.size,
        "rows_per_image": rows_per_image, "per_image": opts.per_image if opts.tokens == "sampled" else None,
        "feature_layer": feature_layer, "use_projector": use_projector, "device": str(device),
        "precision": precision, "seed": opts.seed, "bootstrap": opts.bootstrap,
        "split": "halves A/B of the images sorted by key, permuted with the seed; model rows: features of A vs "
                 "clean features of B; clean reference: clean A vs clean B; paired MSE and CKA over all images",
        "adapters": {m.name: m.record for m in models[1:]}, "options": asdict(opts),
        "machine": machine_text(device), "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
    }
    per_image = {"images": list(feats.keys), "paired_mse": {k: v.tolist() for k, v in feats.sq_err.items()}}
    return MechanismResult(meta, groups, per_image, replicates)


def _groups(feats: Features, table: dict, opts: EvalOptions, replicates: dict) -> tuple[dict[str, dict], int]:
    """({"all" and each family: its rows, or why it is skipped}, samples without ops); the
    replicates of group "all" go into ``replicates``."""
    n, rows_per_image = feats.clean.shape[0], feats.clean.shape[1]
    families: dict[str, list[int]] = {}
    missing = 0
    for i, meta in enumerate(feats.metas):
        fams = families_of(meta, table)
        if not fams:
            missing += 1
        for fam in fams:
            families.setdefault(fam, []).append(i)
    groups = {ALL: {"samples": n, "rows": group_table(feats, torch.arange(n), opts, replicates), "skipped": None}}
    for fam in sorted(families):
        idx = families[fam]
        reason = _too_small(len(idx), rows_per_image, f"family {fam!r}")
        groups[fam] = {"samples": len(idx), "skipped": reason,
                       "rows": None if reason else group_table(feats, torch.tensor(idx), opts)}
    return groups, missing


__all__ = [
    "ALL", "BASE_ROW", "CLEAN_ROW", "LOWER_IS_BETTER", "METRIC_LABELS", "METRICS", "MIN_ROWS", "TOKEN_MODES",
    "AdapterSpec", "EvalOptions", "EvaluationError", "MechanismResult", "evaluate", "families_of", "heldout_shards",
    "input_settings", "min_images", "plot", "to_markdown", "write_outputs",
]
