"""The ablation over several seeds: one `pipelines.ablation.run` per seed, then every metric
as a mean with a 95% interval, and paired differences against mse_only, the untrained base
and each variant's MSE-only twin.

Metrics with values per test image (probe accuracies, paired MSE) or with bootstrap
replicates drawn alike in every run (MMD^2, KID, energy) get intervals over seeds and test
images (pipelines/ablation_intervals.py); the others a t-interval over seeds
(pipelines/seed_stats.py). Each cell says which (``interval``); the markdown lists them.
"""
from __future__ import annotations

import json
from pathlib import Path

from maa_train.eval.evaluate import CLEAN_ROW, METRIC_LABELS
from maa_train.train.config import ConfigError, load_config
from maa_train.eval.bootstrap import DEFAULT_REPS
from pipelines import ablation_intervals as intervals
from pipelines import seed_stats
from pipelines.ablation import BASE_VARIANT, Variant, run

NOT_METRICS = {"variant", "description", "steps", "best_step", "images_per_s"}
BASE = "base"


def run_seeds(config, overrides: list[str], out, variants: list[Variant], seeds: int, *, base: dict | None = None,
              command: str | None = None, **run_kw) -> dict:
    if seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {seeds}")
    out = Path(out)
    seed0 = load_config(config, overrides, base=base).train.seed
    per_seed, per_image = [], []
    for k in range(seeds):
        report = run(config, [*overrides, f"train.seed={seed0 + k}"], out / f"seed-{k}", variants, base=base,
                     command=command, **run_kw)
        per_seed.append(report)
        per_image.append(json.loads((out / f"seed-{k}" / intervals.PER_IMAGE_FILE).read_text()))
    summary = aggregate(per_seed, variants, per_image)
    summary |= {"seeds": [seed0 + k for k in range(seeds)], "command": command, "interval": _interval_text(summary)}
    (out / "ablation-seeds.json").write_text(json.dumps(summary, indent=2))
    (out / "ablation-seeds.md").write_text(seeds_markdown(summary))
    return summary


def _name(variant: str) -> str:
    return BASE if variant == BASE_VARIANT else variant


def _rows(report: dict) -> dict[str, dict]:
    """{variant or 'base': {metric: value}}; the clean reference is a noise floor, not a variant."""
    out = {}
    for row in report["table"]:
        if row["variant"] == CLEAN_ROW:
            continue
        out[_name(row["variant"])] = {k: v for k, v in row.items()
                                      if k not in NOT_METRICS and isinstance(v, (int, float))}
    return out


def _renamed(record: dict) -> dict:
    """A run's per-image record with the base row named as in the summary."""
    return {"per_image": {m: {"images": e["images"], "rows": {_name(r): v for r, v in e["rows"].items()}}
                          for m, e in record.get("per_image", {}).items()},
            "replicates": {m: {_name(r): v for r, v in rows.items()}
                           for m, rows in record.get("replicates", {}).items()}}


def aggregate(reports: list[dict], variants: list[Variant], per_image: list[dict] | None = None,
              reps: int = DEFAULT_REPS, seed: int = 0) -> dict:
    """Means and intervals per variant and metric over the seeds' reports; ``per_image``: each
    run's per-image record (per-image.json), for intervals over seeds and test images."""
    seeds = [_rows(r) for r in reports]
    names = list(seeds[0])
    metrics = [m for m in seeds[0][names[0]]] + [m for n in names for m in seeds[0][n] if m not in seeds[0][names[0]]]
    metrics = list(dict.fromkeys(metrics))

    def series(name: str, metric: str) -> list[float | None]:
        return [s.get(name, {}).get(metric) for s in seeds]

    records = [_renamed(r) for r in per_image or []]
    draws = {m: intervals.draws_for(records, names, m, {n: seed_stats.mean_interval(series(n, m))["mean"]
                                                        for n in names}, reps, seed) for m in metrics}

    def cell(name: str, metric: str) -> dict:
        if draws[metric] is not None:
            return intervals.cell(draws[metric], name)
        return seed_stats.mean_interval(series(name, metric)) | {"interval": intervals.SEEDS}

    def paired_cell(name: str, ref: str, metric: str) -> dict:
        if draws[metric] is not None:
            return intervals.paired_cell(draws[metric], name, ref)
        return seed_stats.paired(series(name, metric), series(ref, metric)) | {"interval": intervals.SEEDS}

    table = {n: {m: cell(n, m) for m in metrics} for n in names}
    twins = {v.name: v.twin for v in variants if v.twin and v.twin in names}
    refs = {"mse_only": "mse_only", "base": BASE}
    paired = {}
    for n in names:
        if n == BASE:
            continue
        against = {label: ref for label, ref in refs.items() if ref in names and ref != n}
        if n in twins and twins[n] != "mse_only":
            against["twin"] = twins[n]
        paired[n] = {label: {"reference": ref, **{m: paired_cell(n, ref, m) for m in metrics}}
                     for label, ref in against.items()}
    kinds = {m: intervals.SEEDS if draws[m] is None else draws[m].kind for m in metrics}
    return {"n_seeds": len(reports), "metrics": metrics, "table": table, "paired": paired, "intervals": kinds,
            "bootstrap": {"reps": reps, "seed": seed, "level": 0.95, "method": "percentile"},
            "per_seed": [{n: s[n] for n in names} for s in seeds]}


def _interval_text(summary: dict) -> str:
    """Which metrics have which 95% interval (the markdown's header line)."""
    groups: dict[str, list[str]] = {}
    for metric, kind in summary["intervals"].items():
        groups.setdefault(kind, []).append(_label(metric))
    text = {intervals.IMAGES: "bootstrap over seeds and test images", intervals.REPLICATES:
            "bootstrap over seeds and test images (images resampled in each run)", intervals.SEEDS: seed_stats.INTERVAL}
    return "; ".join(f"{text[k]}: {', '.join(groups[k])}" for k in intervals.KINDS if k in groups)


def _label(metric: str) -> str:
    return METRIC_LABELS.get(metric, metric.replace("val_l2", "val L2"))


def seeds_markdown(summary: dict) -> str:
    metrics = summary["metrics"]
    lines = ["# Ablation over seeds", "",
             f"- seeds {summary['seeds']}; each cell: mean [95% interval]",
             f"- intervals: {summary['interval']}",
             "- paired differences: variant minus reference on the same seeds and test images; "
             "`*` marks an interval that excludes zero"]
    if summary.get("command"):
        lines.append(f"- command: `{summary['command']}`")
    lines += ["", "| variant | " + " | ".join(_label(m) for m in metrics) + " |", "|" + "---|" * (1 + len(metrics))]
    for name, cells in summary["table"].items():
        lines.append(f"| {name} | " + " | ".join(seed_stats.fmt(cells[m]) for m in metrics) + " |")
    lines += ["", "## Paired differences", "", "| variant | minus | " + " | ".join(_label(m) for m in metrics) + " |",
              "|" + "---|" * (2 + len(metrics))]
    for name, refs in summary["paired"].items():
        for label, cells in refs.items():
            row = [seed_stats.fmt(cells[m], signed=True) + ("*" if cells[m].get("excludes_zero") else "")
                   for m in metrics]
            lines.append(f"| {name} | {cells['reference']} ({label}) | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"
