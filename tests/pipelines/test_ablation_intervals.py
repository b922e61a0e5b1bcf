"""The ablation over seeds on constructed per-image results: intervals over seeds and test
images, paired across variants, that include or exclude zero as the data say."""
import numpy as np
import pytest

from pipelines import ablation_intervals as intervals
from pipelines.ablation import BASE_VARIANT
from pipelines.ablation_seeds import aggregate, seeds_markdown

SEEDS, IMAGES = 3, 200
METRIC = "probe.linear_sev3"


def _runs(shuffle_seed: int | None = None):
    """Per seed: base right on ~60% of the images; full also right on a quarter of base's misses
    (better on the same images); mse_only right on a permutation of base's (same accuracy)."""
    rng = np.random.default_rng(0)
    keys = [f"class{i % 4}/img{i:03d}.png" for i in range(IMAGES)]
    reports, records = [], []
    for s in range(SEEDS):
        base = (rng.random(IMAGES) < 0.6).astype(float)
        full = np.where((base == 0) & (rng.random(IMAGES) < 0.25), 1.0, base)
        mse = rng.permutation(base)
        rows = {BASE_VARIANT: base, "full": full, "mse_only": mse}
        failed = s == 1  # an image the corruption failed on in this run: no value for any variant
        values = {name: [None if failed and i == 7 else 100.0 * v for i, v in enumerate(x)] for name, x in rows.items()}
        order = list(range(IMAGES))
        if shuffle_seed is not None and s == 2:  # another read order: aligned by key
            order = list(np.random.default_rng(shuffle_seed).permutation(IMAGES))
        records.append({"per_image": {METRIC: {"images": [keys[i] for i in order],
                                               "rows": {n: [v[i] for i in order] for n, v in values.items()}}}})
        table = [{"variant": n, METRIC: float(np.mean([v for v in values[n] if v is not None])),
                  "val_l2": 1.0 + 0.1 * s + 0.01 * j} for j, n in enumerate(rows)]
        reports.append({"table": table})
    return reports, records


def test_paired_intervals_over_seeds_and_images_include_or_exclude_zero():
    reports, records = _runs()
    summary = aggregate(reports, [], records, reps=1000)
    assert summary["intervals"] == {METRIC: intervals.IMAGES, "val_l2": intervals.SEEDS}
    full = summary["paired"]["full"]
    assert full["base"][METRIC]["excludes_zero"] and full["base"][METRIC]["low"] > 0
    assert full["mse_only"][METRIC]["excludes_zero"]
    same = summary["paired"]["mse_only"]["base"][METRIC]
    assert same["low"] < 0 < same["high"] and not same["excludes_zero"] and same["mean"] == pytest.approx(0, abs=1e-9)
    cell = summary["table"]["full"][METRIC]
    assert cell["n"] == SEEDS and cell["images"] == IMAGES and cell["low"] < cell["mean"] < cell["high"]
    # the estimate is the mean over every (seed, image) cell with a value
    per_seed = [r["table"][1][METRIC] for r in reports]
    assert cell["mean"] == pytest.approx(np.mean(per_seed), rel=1e-3)
    assert summary["table"]["full"]["val_l2"]["interval"] == intervals.SEEDS  # no per-image values: t over seeds


def test_runs_are_aligned_by_image_key_not_read_order():
    reports, records = _runs()
    a = aggregate(reports, [], records, reps=300)
    reports, records = _runs(shuffle_seed=5)
    b = aggregate(reports, [], records, reps=300)
    assert a["paired"]["full"]["base"][METRIC] == b["paired"]["full"]["base"][METRIC]


def test_a_run_on_other_images_falls_back_to_seeds_only():
    reports, records = _runs()
    records[2]["per_image"][METRIC]["images"][0] = "class0/other.png"
    summary = aggregate(reports, [], records, reps=100)
    assert summary["intervals"][METRIC] == intervals.SEEDS
    summary |= {"seeds": [0, 1, 2], "interval": "t"}
    assert "| full | base (base) |" in seeds_markdown(summary)
