"""probe.json and probe.md of a ProbeResult."""
from __future__ import annotations

import json
from pathlib import Path

from maa_train.eval.probe import ProbeResult
from maa_train.eval.probe_scores import ALL, BASE, REF

CLASSIFIER_TITLES = {"linear": "Linear probe", "knn": "k-NN"}


def condition_label(cond: str) -> str:
    return "Ref" if cond == REF else f"Dis s{cond[3:]}"


def _pct(iv: dict, signed: bool = False) -> str:
    if iv is None or iv.get("value") is None:
        return "—"
    sign = "+" if signed else ""
    text = f"{100 * iv['value']:{sign}.1f}"
    if iv.get("lo") is not None:
        text += f" [{100 * iv['lo']:{sign}.1f}, {100 * iv['hi']:{sign}.1f}]"
    return text


def _table(rows: dict, conditions: list[str], signed: bool = False) -> list[str]:
    lines = ["| model | " + " | ".join(condition_label(c) for c in conditions) + " |",
             "|" + "---|" * (len(conditions) + 1)]
    for name, by_cond in rows.items():
        lines.append(f"| {name} | " + " | ".join(_pct(by_cond.get(c), signed) for c in conditions) + " |")
    return lines


def _family_table(groups: dict, conditions: list[str]) -> list[str]:
    lines = ["| family | images | model | " + " | ".join(condition_label(c) for c in conditions) + " |",
             "|" + "---|" * (len(conditions) + 3)]
    for fam, group in groups.items():
        if fam == ALL:
            continue
        for name, by_cond in group["rows"].items():
            lines.append(f"| {fam} | {group['images']} | {name} | "
                         + " | ".join(_pct(by_cond.get(c)) for c in conditions) + " |")
    return lines


def _counts(per_class: dict) -> str:
    return ", ".join(f"{c} {n}" for c, n in per_class.items())


def to_markdown(result: ProbeResult) -> str:
    m = result.meta
    enc = m["encoder"]
    conditions = m["conditions"]
    lin = m["probes"]["linear"]
    cv = lin.get("cv") or {}
    cv_text = (f"L2 {lin['l2']:g} chosen by {cv['folds']}-fold cross-validation on the training features"
               if cv.get("folds") else f"L2 {lin['l2']:g} ({cv.get('note', 'fixed')})")
    skipped = m["skipped"]
    lines = [
        "# Downstream probe", "",
        f"- encoder: `{m['model']}` ({enc['vision_model_type']}, width {enc['hidden_size']}, {enc['num_layers']} "
        f"blocks), input {m['input_size']} px; features: **{m['features']['text']}**, {m['features']['dim']} dims",
        f"- train: `{m['train']}`, {m['n_train']} images ({_counts(m['train_per_class'])})",
        f"- test: `{m['test']}`, {m['n_test']} images ({_counts(m['test_per_class'])}); split: {m['split']}",
        f"- probes, fitted once on the base encoder's clean training features and never refitted: multinomial "
        f"logistic regression on standardised features ({cv_text}; training accuracy "
        f"{100 * m['train_accuracy']['linear']:.1f}%), and {m['probes']['knn']['k']}-NN with cosine similarity "
        f"(training accuracy {100 * m['train_accuracy']['knn']:.1f}%)",
        f"- Dis: recipe `{m['recipe']['name']}` ({m['recipe']['hash']}) at severities "
        f"{', '.join(map(str, m['severities']))}: {m['severity_rule']}; corrupted at {m['corruption']['rule']}; "
        f"seed {m['corruption']['seed']} with {m['corruption']['key']} as key",
        f"- intervals: {int(100 * m['bootstrap']['level'])}% percentile bootstrap over test images "
        f"({m['bootstrap']['reps']} resamples, seed {m['bootstrap']['seed']}); paired differences are the adapter "
        "row minus base on the same images",
        f"- skipped: {len(skipped['train'])} training and {len(skipped['test'])} test image(s) unreadable, "
        f"{len(skipped['op_failures'])} corruption failure(s)"
        + (f" (e.g. {(skipped['train'] + skipped['test'] + skipped['op_failures'])[0]})"
           if skipped['train'] or skipped['test'] or skipped['op_failures'] else ""),
        f"- {m['machine']}; {m['device']}, {m['precision']}; {m['date']}; {m['seconds']['total']:.0f} s",
    ]
    if m.get("command"):
        lines.append(f"- command: `{m['command']}`")
    for name, rec in m["adapters"].items():
        lines.append(f"- `{name}`: {rec['kind']} adapters from `{rec['path']}`")
    for c, title in (("linear", "Linear probe"), ("knn", "k-NN")):
        groups = result.results[c]
        lines += ["", f"## {title}: accuracy (%), all {groups[ALL]['images']} test images", ""]
        lines += _table(groups[ALL]["rows"], conditions)
        if result.paired[c][ALL]:
            lines += ["", f"{title}, paired difference to `{BASE}` (points):", ""]
            lines += _table(result.paired[c][ALL], conditions, signed=True)
        for ref, by_clf in result.paired_vs.items():
            if by_clf[c][ALL]:
                lines += ["", f"{title}, paired difference to `{ref}` (points):", ""]
                lines += _table(by_clf[c][ALL], conditions, signed=True)
    fams = [f for f in result.results["linear"] if f != ALL]
    if fams:
        lines += ["", "## Per corruption family (linear probe, accuracy %)", "",
                  "Each test image counts under the families of the ops drawn for it; Ref is the same images clean.",
                  ""]
        lines += _family_table(result.results["linear"], conditions)
        lines += ["", "k-NN per family and all paired differences per family: see probe.json."]
    return "\n".join(lines) + "\n"


def write_outputs(result: ProbeResult, out_dir: str | Path) -> dict[str, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "probe.json", "md": out / "probe.md"}
    paths["json"].write_text(json.dumps(result.to_dict(), indent=2))
    paths["md"].write_text(to_markdown(result))
    return paths
