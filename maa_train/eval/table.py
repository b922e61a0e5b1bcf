"""The mechanism table's vocabulary and its result: row names, metric names and which way
each metric is better, and the table of every corruption family's rows."""
from __future__ import annotations

from dataclasses import dataclass, field

from maa_train.eval.split_metrics import MIN_HALF_IMAGES

BASE_ROW = "base (corrupted)"
CLEAN_ROW = "clean reference"
ALL = "all"
METRICS = ("paired_mse", "mmd2", "kid", "energy", "cka")
METRIC_LABELS = {"paired_mse": "paired MSE", "mmd2": "MMD^2", "kid": "KID", "energy": "energy", "cka": "CKA"}
LOWER_IS_BETTER = {"paired_mse": True, "mmd2": True, "kid": True, "energy": True, "cka": False}
PAIRED_METRICS = ("paired_mse", "cka")  # need the same images on both sides
# Images each half of the split needs (the unbiased sums pair distinct images).
MIN_ROWS = {"paired_mse": 1, "mmd2": MIN_HALF_IMAGES, "kid": MIN_HALF_IMAGES, "energy": MIN_HALF_IMAGES, "cka": 2}


def min_images(rows_per_image: int) -> int:
    """Images a group needs: two halves of MIN_HALF_IMAGES each (whatever the rows per image)."""
    return 2 * MIN_HALF_IMAGES


@dataclass
class MechanismResult:
    meta: dict
    groups: dict[str, dict]  # family -> {"samples": n, "rows": {row: {metric: value}}, "skipped": reason}
    # For analyses over several runs on the same images (pipelines/ablation_seeds.py); not in
    # mechanism.json. Group "all": {"images": [key], "paired_mse": {row: [per image]}}, and
    # {row: {metric: [per bootstrap replicate]}} of MMD^2, KID and energy (split_metrics.group_rows).
    per_image: dict = field(default_factory=dict)
    replicates: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"meta": self.meta, "groups": self.groups}

    def row_names(self) -> list[str]:
        return list(self.groups[ALL]["rows"])
