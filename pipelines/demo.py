"""`make demo`: the whole product on the embedded default, on CPU, in a few minutes.

1. build a small dataset (scikit-image sample photos + synthetic OCR pages, maa-paper recipe)
2. validate it
3. train adapters a few steps on a tiny random-weight CLIP (pipelines/configs/tiny-cpu.yaml)
4. write a short report (dataset counts, op families, losses, images/s, where things are)
"""
from __future__ import annotations

import argparse
import collections
import json
import shutil
import sys
from pathlib import Path

import pyarrow.parquet as pq

CONFIG = Path(__file__).resolve().parent / "configs" / "tiny-cpu.yaml"


def _step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def _family_counts(dataset: Path) -> tuple[collections.Counter, collections.Counter]:
    """Pairs per corruption family, for whole-image ops and for ops inside regions."""
    from corruptor.ops.registry import get_op

    whole: collections.Counter = collections.Counter()
    local: collections.Counter = collections.Counter()
    for manifest in sorted((dataset / "shards").glob("*.parquet")):
        for row in pq.read_table(manifest, columns=["status", "ops_json"]).to_pylist():
            if row["status"] != "ok" or not row["ops_json"]:
                continue
            ops = json.loads(row["ops_json"])
            whole.update({get_op(o["op"]).family for o in ops if "region" not in o})
            local.update({get_op(o["op"]).family for o in ops if "region" in o})
    return whole, local


def report(out: Path, dataset: Path, summary: dict) -> str:
    meta = json.loads((dataset / "dataset.json").read_text())
    metrics = [json.loads(x) for x in (Path(summary["out_dir"]) / "metrics.jsonl").read_text().splitlines()]
    losses = [m for m in metrics if "distill" in m]
    whole, local = _family_counts(dataset)
    lines = [
        "# MAA demo report", "",
        f"Dataset: `{dataset}` — recipe `{meta.get('recipe', {}).get('name', '?')}` "
        f"(hash {meta.get('recipe_hash', '?')}), counts {json.dumps(meta.get('counts', {}))}, "
        f"{len(meta.get('shards', []))} shards.", "",
        "Pairs per corruption family — whole image: " + ", ".join(f"{k} {v}" for k, v in whole.most_common())
        + "; inside regions: " + ", ".join(f"{k} {v}" for k, v in local.most_common()) + ".", "",
        "| step | distill | adv | disc |", "|---|---|---|---|",
        *[f"| {m['step']} | {m['distill']:.4f} | {m.get('adv', float('nan')):.4f} | {m.get('disc', float('nan')):.4f} |"
          for m in losses],
        "",
        "Validation L2 on held-out shards (corrected vs clean-teacher features): "
        + ", ".join(f"step {m['step']}: {m['val_l2']:.5f}" for m in metrics if "val_l2" in m) + ".",
        f"Training: {summary['steps']} steps, {summary['images_per_s']:.1f} images/s on CPU, "
        f"best validation L2 {summary['best_val_l2']:.5f} at step {summary['best_step']}, "
        f"{summary['skipped_samples']} skipped samples.",
        f"Adapters: `{summary['out_dir']}/final` (best: `{summary['out_dir']}/best`); checkpoints in "
        f"`{summary['out_dir']}/checkpoints`; TensorBoard logs in `{summary['out_dir']}/tensorboard`.",
    ]
    text = "\n".join(lines) + "\n"
    (out / "report.md").write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("runs/demo"))
    p.add_argument("--steps", type=int, default=12)
    a = p.parse_args(argv)
    out: Path = a.out
    dataset, model_dir = out / "dataset", out / "models" / "tiny-clip"

    from corruptor.cli.main import main as corruptor
    from maa_train.train.config import load_config
    from maa_train.random_models import save_random_model
    from maa_train.train.trainer import train

    # Every run starts fresh (the mask cache under dataset/masks is kept and reused), so
    # `make demo` also works over the output of an older version of the project.
    _step("1/4 build the demo dataset (corruptor build --demo)")
    if corruptor(["build", "--demo", "--out", str(dataset), "--shard-size", "12", "--mode", "overwrite"]) != 0:
        return 1
    _step("2/4 validate it (corruptor validate)")
    if corruptor(["validate", str(dataset)]) != 0:
        return 1
    _step("3/4 train adapters on a tiny random CLIP (maa-train, CPU)")
    shutil.rmtree(out / "train", ignore_errors=True)
    save_random_model("tiny-clip", model_dir)
    cfg = load_config(CONFIG, [f"model.path={model_dir}", f"data.train=[{dataset}]",
                               f"train.out_dir={out / 'train'}", f"train.max_steps={a.steps}"])
    summary = train(cfg).to_dict()
    _step("4/4 report")
    print(report(out, dataset, summary))
    print(f"report written to {out / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
