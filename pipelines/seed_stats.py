"""Mean and 95% interval over seeds, and paired differences between variants.

The interval is Student's t over seeds: mean +- t(0.975, n-1) * sd / sqrt(n), with the seed
as the unit (each seed retrains every variant on the same data). It reflects run-to-run
variation only, not the finite test set. Paired differences take, per seed, variant minus
reference (same seed, same held-out pairs) and put the t-interval on those differences, which
removes what the seeds share. With one seed the interval is undefined (None).
"""
from __future__ import annotations

import math

from scipy import stats

INTERVAL = "95% t-interval over seeds"


def mean_interval(values: list[float]) -> dict:
    """{"mean", "low", "high", "n", "sd"}; low/high None with fewer than two values."""
    xs = [float(v) for v in values if v is not None and math.isfinite(v)]
    n = len(xs)
    if n == 0:
        return {"mean": None, "low": None, "high": None, "n": 0, "sd": None}
    mean = sum(xs) / n
    if n < 2:
        return {"mean": mean, "low": None, "high": None, "n": 1, "sd": None}
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
    half = float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
    return {"mean": mean, "low": mean - half, "high": mean + half, "n": n, "sd": sd}


def paired(values: list[float | None], reference: list[float | None]) -> dict:
    """Interval of the per-seed differences values[s] - reference[s] (seeds missing either are left out)."""
    diffs = [v - r for v, r in zip(values, reference) if v is not None and r is not None]
    out = mean_interval(diffs)
    out["excludes_zero"] = out["low"] is not None and (out["low"] > 0 or out["high"] < 0)
    return out


def fmt(cell: dict | None, signed: bool = False) -> str:
    if not cell or cell.get("mean") is None:
        return "—"
    f = "{:+.4g}" if signed else "{:.4g}"
    if cell.get("low") is None:
        return f.format(cell["mean"])
    return f"{f.format(cell['mean'])} [{f.format(cell['low'])}, {f.format(cell['high'])}]"
