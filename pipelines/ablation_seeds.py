"""The ablation over several seeds: one `pipelines.ablation.run` per seed, then every metric
as a mean with a 95% t-interval over seeds, and paired differences per seed against
mse_only, the untrained base and each variant's MSE-only twin (pipelines/seed_stats.py)."""
from __future__ import annotations

import json
from pathlib import Path

from maa_train.eval.evaluate import CLEAN_ROW, METRIC_LABELS
from maa_train.train.config import ConfigError, load_config
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
    per_seed = []
    for k in range(seeds):
        report = run(config, [*overrides, f"train.seed={seed0 + k}"], out / f"seed-{k}", variants, base=base,
                     command=command, **run_kw)
        per_seed.append(report)
    summary = aggregate(per_seed, variants)
    summary |= {"seeds": [seed0 + k for k in range(seeds)], "command": command, "interval": seed_stats.INTERVAL}
    (out / "ablation-seeds.json").write_text(json.dumps(summary, indent=2))
    (out / "ablation-seeds.md").write_text(seeds_markdown(summary))
    return summary


def _rows(report: dict) -> dict[str, dict]:
    """{variant or 'base': {metric: value}}; the clean reference is a noise floor, not a variant."""
    out = {}
    for row in report["table"]:
        if row["variant"] == CLEAN_ROW:
            continue
        name = BASE if row["variant"] == BASE_VARIANT else row["variant"]
        out[name] = {k: v for k, v in row.items() if k not in NOT_METRICS and isinstance(v, (int, float))}
    return out


def aggregate(reports: list[dict], variants: list[Variant]) -> dict:
    seeds = [_rows(r) for r in reports]
    names = list(seeds[0])
    metrics = [m for m in seeds[0][names[0]]] + [m for n in names for m in seeds[0][n] if m not in seeds[0][names[0]]]
    metrics = list(dict.fromkeys(metrics))

    def series(name: str, metric: str) -> list[float | None]:
        return [s.get(name, {}).get(metric) for s in seeds]

    table = {n: {m: seed_stats.mean_interval(series(n, m)) for m in metrics} for n in names}
    twins = {v.name: v.twin for v in variants if v.twin and v.twin in names}
    refs = {"mse_only": "mse_only", "base": BASE}
    paired = {}
    for n in names:
        if n == BASE:
            continue
        against = {label: ref for label, ref in refs.items() if ref in names and ref != n}
        if n in twins and twins[n] != "mse_only":
            against["twin"] = twins[n]
        paired[n] = {label: {"reference": ref, **{m: seed_stats.paired(series(n, m), series(ref, m))
                                                  for m in metrics}}
                     for label, ref in against.items()}
    return {"n_seeds": len(reports), "metrics": metrics, "table": table, "paired": paired,
            "per_seed": [{n: s[n] for n in names} for s in seeds]}


def _label(metric: str) -> str:
    return METRIC_LABELS.get(metric, metric.replace("val_l2", "val L2"))


def seeds_markdown(summary: dict) -> str:
    metrics = summary["metrics"]
    lines = ["# Ablation over seeds", "",
             f"- seeds {summary['seeds']}; each cell: mean [{summary['interval']}]",
             "- paired differences: per seed, variant minus reference on the same held-out pairs; "
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
