"""The probe's test record and its scores: accuracy per row, condition and corruption
family, and paired differences on the same images, each with a 95% percentile bootstrap
interval over test images (maa_train.eval.bootstrap)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from maa_train.eval.bootstrap import DEFAULT_REPS, mean_interval

BASE = "base"
REF = "ref"
ALL = "all"
CLASSIFIERS = ("linear", "knn")


def condition_name(severity: int) -> str:
    return f"sev{severity}"


@dataclass
class TestRecord:
    refs: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    families: list[list[str]] = field(default_factory=list)
    # (classifier, model, condition) -> per-image prediction, -1 where the condition failed
    preds: dict = field(default_factory=dict)
    skipped: list[dict] = field(default_factory=list)
    op_failures: list[dict] = field(default_factory=list)


def scores(rec: TestRecord, models: list[str], conditions: list[str], versus: tuple[str, ...] = (),
           reps: int = DEFAULT_REPS, seed: int = 0) -> tuple[dict, dict, dict]:
    """Accuracy per row, and paired differences (same images) against the base and against each
    row named in ``versus``."""
    labels = np.asarray(rec.labels)
    families = sorted({f for fams in rec.families for f in fams})
    groups = {ALL: np.arange(len(labels))}
    groups |= {f: np.asarray([i for i, fams in enumerate(rec.families) if f in fams], dtype=np.int64)
               for f in families}
    references = (BASE, *versus)
    results: dict = {}
    paired: dict = {ref: {} for ref in references}
    for c in CLASSIFIERS:
        results[c] = {}
        for ref in references:
            paired[ref][c] = {}
        for group, idx in groups.items():
            rows: dict = {}
            diffs: dict = {ref: {} for ref in references}
            for cond in conditions:
                base = np.asarray(rec.preds[(c, BASE, cond)])[idx]
                valid = base >= 0  # the same images fail for every model: corruption happens once
                correct = {m: (np.asarray(rec.preds[(c, m, cond)])[idx][valid] == labels[idx][valid])
                           .astype(np.float64) for m in models}
                for m in models:
                    rows.setdefault(m, {})[cond] = mean_interval(correct[m], reps, seed)
                    for ref in references:
                        if m != ref and m != BASE:
                            diffs[ref].setdefault(m, {})[cond] = mean_interval(correct[m] - correct[ref], reps, seed)
            results[c][group] = {"images": len(idx), "rows": rows}
            for ref in references:
                paired[ref][c][group] = diffs[ref]
    return results, paired.pop(BASE), paired


def per_image_correct(rec: TestRecord, models: list[str], conditions: list[str]) -> dict:
    """classifier -> model -> condition -> per test image 1.0 (right), 0.0 (wrong) or None (failed)."""
    labels = np.asarray(rec.labels)
    out: dict = {}
    for c in CLASSIFIERS:
        for m in models:
            for cond in conditions:
                valid = np.asarray(rec.preds[(c, BASE, cond)]) >= 0
                right = np.asarray(rec.preds[(c, m, cond)]) == labels
                out.setdefault(c, {}).setdefault(m, {})[cond] = [float(r) if v else None for r, v in zip(right, valid)]
    return out

