"""The mechanism table's outputs: mechanism.md (a table per corruption family, with the
data, token and interval rules it was made under), mechanism.json and mechanism.png."""
from __future__ import annotations

import json
from pathlib import Path

from maa_train.eval.split_metrics import MIN_HALF_IMAGES
from maa_train.eval.table import CLEAN_ROW, LOWER_IS_BETTER, METRIC_LABELS, METRICS, MechanismResult, min_images


def _fmt(value) -> str:
    return "—" if value is None else f"{value:.4g}"


def _fmt_ci(value, ci) -> str:
    return _fmt(value) + (f" [{ci[0]:.3g}, {ci[1]:.3g}]" if value is not None and ci else "")


TOKEN_TEXT = {
    "pooled": "mean over patch tokens, one row per image",
    "sampled": "{k} random patch tokens per image (the same positions for every model)",
    "all": "every patch token",
}


def table_markdown(rows: dict[str, dict]) -> list[str]:
    arrows = {m: "↓" if LOWER_IS_BETTER[m] else "↑" for m in METRICS}
    head = "| model | " + " | ".join(f"{METRIC_LABELS[m]} {arrows[m]}" for m in METRICS) + " |"
    lines = [head, "|" + "---|" * (len(METRICS) + 1)]
    for name, row in rows.items():
        lines.append(f"| {name} | " + " | ".join(_fmt_ci(row.get(m), row.get(f"{m}_ci")) for m in METRICS) + " |")
    return lines


def to_markdown(result: MechanismResult) -> str:
    m = result.meta
    enc = m["encoder"]
    tokens = TOKEN_TEXT[m["tokens"]].format(k=m["per_image"])
    lines = [
        "# Mechanism table", "",
        f"- encoder: `{m['model']}` ({enc['vision_model_type']}, width {enc['hidden_size']}, "
        f"{enc['num_layers']} blocks), "
        f"feature layer {m['feature_layer']}, {'through the projector' if m['use_projector'] else 'patch tokens'}",
        f"- data: {m['samples']} held-out pairs from {len(m['shards'])} shard(s)"
        + (f" of `{m['data']}`" if m["data"] else "")
        + (f"; {m['samples_without_ops']} without corruption ops in their provenance (counted in 'all' only)"
           if m["samples_without_ops"] else ""),
        f"- tokens: **{m['tokens']}** ({tokens}) for MMD^2 (RBF, median bandwidth), KID (cubic kernel), "
        f"energy distance and linear CKA; paired MSE uses all patch tokens",
        f"- intervals: 95% percentile bootstrap, {m['bootstrap']} replicates (images resampled; the split "
        "metrics also draw a new split per replicate)",
        f"- {m['device']}, {m['precision']}, seed {m['seed']}; {m['machine']}; {m['date']}",
    ]
    if m.get("command"):
        lines.append(f"- command: `{m['command']}`")
    for name, rec in m["adapters"].items():
        extra = ", ".join(f"{k} {_fmt(rec[k]) if isinstance(rec[k], float) else rec[k]}" for k in ("step", "val_l2")
                          if k in rec)
        lines.append(f"- `{name}`: {rec['kind']} adapters from `{rec['path']}`" + (f" ({extra})" if extra else ""))
    lines += ["", "The images are split once into random halves A and B (fixed seed). MMD^2, KID and energy distance "
              "compare each row's features of the degraded images of A with the clean features of B, so the two "
              f"samples hold different images, as these unbiased estimators assume; '{CLEAN_ROW}' compares the "
              "clean features of A with the same clean features of B, i.e. what they read for one distribution "
              "(about 0). Paired MSE and CKA compare every image's degraded and clean features (all images); they "
              "are not defined for the reference."]
    skipped = {fam: g for fam, g in result.groups.items() if g["skipped"]}
    for fam, group in result.groups.items():
        if fam not in skipped:
            lines += ["", f"## {fam} ({group['samples']} samples)", ""] + table_markdown(group["rows"])
    if skipped:
        need = min_images(m["rows_per_image"])
        listed = ", ".join(f"{fam} ({g['samples']})" for fam, g in skipped.items())
        lines += ["", f"Families with fewer than {need} samples, not tabled: {listed}. "
                  f"The split metrics need at least {MIN_HALF_IMAGES} images in each half."]
    return "\n".join(lines) + "\n"


def plot(result: MechanismResult, path: str | Path) -> Path:
    """One panel per metric; bars grouped by corruption family, one colour per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    groups = [(fam, g) for fam, g in result.groups.items() if g["rows"]]
    names = result.row_names()
    fig, axes = plt.subplots(1, len(METRICS), figsize=(3.2 * len(METRICS) + 0.4 * len(groups), 4.0), squeeze=False)
    width = 0.8 / len(names)
    for ax, metric in zip(axes[0], METRICS):
        for j, name in enumerate(names):
            xs, ys, errs = [], [], [[], []]
            for i, (_, g) in enumerate(groups):
                value = g["rows"][name].get(metric)
                if value is not None:
                    xs.append(i + (j - (len(names) - 1) / 2) * width)
                    ys.append(value)
                    ci = g["rows"][name].get(f"{metric}_ci") or [value, value]
                    errs[0].append(max(0.0, value - ci[0]))
                    errs[1].append(max(0.0, ci[1] - value))
            ax.bar(xs, ys, width, label=name, color=f"C{j}", yerr=errs, error_kw={"elinewidth": 0.6, "capsize": 1})
        ax.set_xticks(range(len(groups)), [fam for fam, _ in groups], rotation=45, ha="right", fontsize=8)
        ax.set_title(f"{METRIC_LABELS[metric]} ({'lower' if LOWER_IS_BETTER[metric] else 'higher'} is closer)",
                     fontsize=9)
        ax.axhline(0, color="black", linewidth=0.5)
    # Explicit handles: a model may have no bar in a panel (the clean reference in paired metrics).
    handles = [Patch(color=f"C{j}", label=name) for j, name in enumerate(names)]
    fig.legend(handles=handles, loc="lower center", ncol=len(names), fontsize=8, frameon=False)
    fig.suptitle(f"mechanism metrics, tokens={result.meta['tokens']}, {result.meta['samples']} pairs", fontsize=10)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_outputs(result: MechanismResult, out_dir: str | Path, stem: str = "mechanism") -> dict[str, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / f"{stem}.json", "md": out / f"{stem}.md", "png": out / f"{stem}.png"}
    paths["json"].write_text(json.dumps(result.to_dict(), indent=2))
    paths["md"].write_text(to_markdown(result))
    plot(result, paths["png"])
    return paths
