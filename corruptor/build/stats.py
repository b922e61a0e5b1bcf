"""Dataset statistics from the Parquet manifests: sources, ops, severities, failures.

Reads manifests only (no image decoding), so it is cheap on a 75K-pair dataset.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from maa_format.paths import check_inside


@dataclass
class DatasetStats:
    rows: int = 0
    status: Counter = field(default_factory=Counter)
    sources: Counter = field(default_factory=Counter)            # ok pairs per source
    ops: Counter = field(default_factory=Counter)                # op applications (ok pairs)
    severities: dict[str, Counter] = field(default_factory=dict)  # op -> severity -> count
    failures: Counter = field(default_factory=Counter)           # reason prefix -> count
    regions: Counter = field(default_factory=Counter)            # regions per ok pair

    def to_dict(self) -> dict:
        return {
            "rows": self.rows, "status": dict(self.status), "sources": dict(self.sources), "ops": dict(self.ops),
            "severities": {op: {str(k): v for k, v in sorted(c.items())} for op, c in sorted(self.severities.items())},
            "failures": dict(self.failures), "regions": {str(k): v for k, v in sorted(self.regions.items())},
        }


def _reason(status: str, error: str | None) -> str:
    """A failure's category: the error's first field (``truncated``, ``empty``, ...). Skips
    carry the recipe's note after ``skipped:``; its counts are blanked so one reason is one bar."""
    if not error:
        return "unknown"
    if status == "skipped" and error.startswith("skipped:"):
        note = error.split(":", 1)[1].strip()
        return re.sub(r"\bamong \d+ candidates\b", "among N candidates", note) or "unknown"
    head = error.split(":", 1)[0].strip()
    return head or "unknown"


def collect(root: str | Path) -> DatasetStats:
    import pyarrow.parquet as pq

    root = Path(root)
    # A link planted among the manifests must not make `stats` read a file outside the dataset.
    files = [check_inside(f, root, "shards/") for f in sorted((root / "shards").glob("*.parquet"))]
    if not files:
        raise FileNotFoundError(f"{root}: no manifests under shards/ (is this a built dataset?)")
    st = DatasetStats()
    for f in files:
        try:
            _count(st, pq.read_table(f, columns=["source", "status", "error", "ops_json", "n_regions"]).to_pylist())
        except Exception as exc:   # truncated, not Parquet, wrong columns or types: the file is named, no traceback
            raise ManifestError(f"{f}: unreadable manifest ({type(exc).__name__}: {_first_line(exc)}); "
                                "`corruptor validate` lists every fault") from None
    return st


class ManifestError(ValueError):
    """A shard manifest that `stats` cannot read."""


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0]


def _count(st: DatasetStats, rows: list[dict]) -> None:
    for row in rows:
        st.rows += 1
        st.status[row["status"]] += 1
        if row["status"] != "ok":
            st.failures[f"{row['status']}: {_reason(row['status'], row['error'])}"] += 1
            continue
        st.sources[row["source"]] += 1
        st.regions[int(row["n_regions"] or 0)] += 1
        for op in json.loads(row["ops_json"] or "[]"):
            name = op.get("op", "?")
            st.ops[name] += 1
            if op.get("severity") is not None:
                st.severities.setdefault(name, Counter())[int(op["severity"])] += 1


def format_table(st: DatasetStats) -> str:
    lines = [f"rows {st.rows}: " + ", ".join(f"{k} {v}" for k, v in sorted(st.status.items()))]

    def section(title: str, counter: Counter, total: int | None = None) -> None:
        lines.append("")
        lines.append(title)
        if not counter:
            lines.append("  (none)")
            return
        width = max(len(str(k)) for k in counter)
        denom = total or sum(counter.values())
        for k, v in counter.most_common():
            lines.append(f"  {str(k):<{width}}  {v:>8}  {100.0 * v / denom:5.1f}%")

    section("pairs by source", st.sources)
    section("op applications (ok pairs)", st.ops)
    lines.append("")
    lines.append("severity histogram (levels 1..5)")
    for op, c in sorted(st.severities.items()):
        lines.append(f"  {op:<24} " + " ".join(f"{c.get(level, 0):>6}" for level in range(1, 6)))
    section("local regions per pair", Counter({f"{k} region{'' if k == 1 else 's'}": v for k, v in st.regions.items()}))
    section("failures and skips by reason", st.failures, st.rows)
    return "\n".join(lines)


def plot(st: DatasetStats, out_dir: str | Path) -> list[Path]:
    """One PNG per view; returns the written paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []

    def bar(counter: Counter, title: str, fname: str) -> None:
        items = counter.most_common()
        fig, ax = plt.subplots(figsize=(max(4.0, 0.35 * len(items) + 2), 3.2))
        if items:
            ax.bar([str(k) for k, _ in items], [v for _, v in items], color="#4a7ab8")
            ax.tick_params(axis="x", rotation=60, labelsize=7)
        else:
            ax.text(0.5, 0.5, "none", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(title)
        fig.tight_layout()
        path = out_dir / fname
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)

    bar(st.sources, "pairs by source", "sources.png")
    bar(st.ops, "op applications", "ops.png")
    bar(st.failures, "failures and skips", "failures.png")
    ops = sorted(st.severities)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.35 * len(ops) + 2), 3.2))
    bottom = np.zeros(len(ops)) if ops else None
    for level in range(1, 6):
        vals = [st.severities[o].get(level, 0) for o in ops]
        if ops:
            ax.bar(ops, vals, bottom=bottom, label=f"severity {level}")
            bottom = bottom + np.asarray(vals)
    if ops:
        ax.legend(fontsize=7)
        ax.tick_params(axis="x", rotation=60, labelsize=7)
    ax.set_title("severities per op")
    fig.tight_layout()
    path = out_dir / "severities.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    written.append(path)
    return written

