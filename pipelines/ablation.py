"""Ablation of the adapter's paths and of the adversarial term, on the same data and budget.

    python -m pipelines.ablation --config FILE [--set key=value ...] --out DIR [--variants a,b]
                                 [--seeds N] [--evaluators mechanism,probe]

Every variant trains from the same config (data, steps, seed) with a few overrides, in one
process, one after the other; then one pass of `maa_train.eval.evaluate` over the held-out shards
builds the mechanism table of all of them next to the untrained base, and the ablation table
adds each variant's best validation L2.

Variants (the overrides win over --set for the keys they name):

    full      MLP + window attention + max-pool, adversarial term (MAA as in the paper)
    no_attn   without the window-attention path
    no_pool   without the max-pool path
    mlp_only  MLP path only, with the adversarial term
    mse_only  all paths, lambda = 0
    mse_no_attn, mse_no_pool, mse_mlp_only
              lambda = 0 with the adapter of no_attn, no_pool, mlp_only: each adversarial
              variant's twin, so an architecture effect is not read as an adversarial one

With ``--seeds N`` every variant trains N times (train.seed = the config's seed + 0..N-1, in
``DIR/seed-K/``), and ``ablation-seeds.{md,json}`` reports each metric as the mean with a
95% interval, plus paired differences against mse_only, the base (untrained) encoder and each
variant's MSE-only twin. The probe accuracies (clean and per severity) and the mechanism
metrics paired MSE, MMD^2, KID and energy get intervals over seeds AND test images (a
two-level bootstrap: seeds resampled, then the test images in the same draw, paired across
variants, which all see the same images; pipelines/ablation_intervals.py); val L2 and CKA a
t-interval over seeds (pipelines/seed_stats.py). Each seed folder keeps per-image.json.
Evaluators (pipelines/evaluators.py) compute the metrics: `mechanism` always runs; `probe`
adds the downstream probe's accuracies (--probe-train/--probe-test/--probe-recipe).

"MSE-only" and "full without the adversarial loss" are one training here: the same adapters
(all paths) trained on the distillation loss alone. The `mse_only` student kind exists only
to record that intent in the checkpoint; with lambda = 0 the trainer builds no discriminator
either way, so a separate `no_adv` run would repeat `mse_only` step for step. `no_adv` is
accepted as another name for it.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from maa_train.train.config import ConfigError, TrainConfig, load_config
from maa_train.eval.evaluate import (ALL, BASE_ROW, CLEAN_ROW, METRIC_LABELS, METRICS, EvalOptions, EvaluationError,
                                     MechanismResult)
from pipelines.ablation_intervals import PER_IMAGE_FILE, per_image_record
from pipelines.evaluators import EvalContext, get_evaluators, preflight
from maa_train.data.shards import ShardInfo, resolve_shards, split_holdout
from maa_train.train.trainer import TrainingDiverged, train

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Variant:
    name: str
    overrides: tuple[str, ...]
    description: str
    twin: str | None = None  # the MSE-only variant with the same adapter architecture


# Discriminator settings a config may carry for its adversarial variants: an MSE-only run has
# no discriminator, and config validation refuses them there.
_NO_DISC = ("discriminator.r1_weight=0", "discriminator.warmup_steps=0")
_NO_ATTN, _NO_POOL = ("adapter.use_attn=false",), ("adapter.use_pool=false",)


VARIANTS: dict[str, Variant] = {v.name: v for v in (
    Variant("full", ("train.student=maa",), "MLP + window attention + max-pool, adversarial", "mse_only"),
    Variant("no_attn", ("train.student=maa", *_NO_ATTN), "without window attention", "mse_no_attn"),
    Variant("no_pool", ("train.student=maa", *_NO_POOL), "without max-pool", "mse_no_pool"),
    Variant("mlp_only", ("train.student=maa", *_NO_ATTN, *_NO_POOL), "MLP path only, adversarial", "mse_mlp_only"),
    Variant("mse_only", ("train.student=mse_only", *_NO_DISC), "all paths, lambda = 0 (= full w/o adversarial loss)"),
    Variant("mse_no_attn", ("train.student=mse_only", *_NO_DISC, *_NO_ATTN), "no_attn's adapter, lambda = 0"),
    Variant("mse_no_pool", ("train.student=mse_only", *_NO_DISC, *_NO_POOL), "no_pool's adapter, lambda = 0"),
    Variant("mse_mlp_only", ("train.student=mse_only", *_NO_DISC, *_NO_ATTN, *_NO_POOL),
            "MLP path only, lambda = 0"),
)}
ALIASES = {"no_adv": "mse_only", "maa": "full"}
DEFAULT_ORDER = ("mse_only", "mlp_only", "no_attn", "no_pool", "full", "mse_mlp_only", "mse_no_attn", "mse_no_pool")


def parse_variants(text: str | None) -> list[Variant]:
    names = [n.strip() for n in (text.split(",") if text else DEFAULT_ORDER) if n.strip()]
    out: list[Variant] = []
    for name in names:
        key = ALIASES.get(name, name)
        if key not in VARIANTS:
            raise ConfigError(f"--variants: unknown variant {name!r}; allowed: "
                              f"{', '.join([*VARIANTS, *ALIASES])}")
        if VARIANTS[key] not in out:
            out.append(VARIANTS[key])
    if not out:
        raise ConfigError("--variants: no variant given")
    return out


def variant_config(config: str | Path | None, overrides: list[str], variant: Variant, out: Path,
                   base: dict | None = None) -> TrainConfig:
    # Each variant owns its folder: a run found there without summary.json (an interrupted one)
    # is started over rather than mixed with the new run (the trainer refuses that otherwise).
    return load_config(config, [*overrides, *variant.overrides, f"train.out_dir={out / variant.name}",
                                "train.overwrite=true"], base=base)


def heldout_for(cfg: TrainConfig) -> list[ShardInfo]:
    """The shards the trainer validates on (the same choice as maa_train.train.holdout)."""
    if cfg.data.val:
        return [s for spec in cfg.data.val for s in resolve_shards(spec)]
    return split_holdout(resolve_shards(cfg.data.train[0]), cfg.data.val_fraction)[1]


def run(config: str | Path | None, overrides: list[str], out: str | Path, variants: list[Variant], *,
        checkpoint: str = "best", eval_opts: EvalOptions | None = None, reuse: bool = False,
        base: dict | None = None, command: str | None = None, evaluators: list[str] = ("mechanism",),
        eval_options: dict | None = None) -> dict:
    """Train every variant, evaluate them together, write ablation.{md,json}, mechanism.* and
    per-image.json (the values per test image behind the means, for the seeds' intervals)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfgs = {v.name: variant_config(config, overrides, v, out, base) for v in variants}
    summaries = {}
    for v in variants:
        run_dir = Path(cfgs[v.name].train.out_dir)
        if reuse and (run_dir / "summary.json").exists():
            log.info("%s: reusing %s", v.name, run_dir)
            summaries[v.name] = json.loads((run_dir / "summary.json").read_text())
            continue
        log.info("%s: training (%s)", v.name, v.description)
        summaries[v.name] = train(cfgs[v.name]).to_dict()

    first = cfgs[variants[0].name]
    adapters = {}
    for v in variants:
        run_dir = Path(cfgs[v.name].train.out_dir)
        chosen = run_dir / checkpoint
        if not chosen.exists():  # no validation ran (e.g. val_every > steps): the final weights
            chosen = run_dir / "final"
        adapters[v.name] = chosen
    opts = eval_opts or EvalOptions(batch_size=first.data.batch_size, device=first.train.device,
                                    max_samples=first.data.val_max_samples)
    ctx = EvalContext(first.model.path, adapters, heldout_for(first), opts, out, data=", ".join(first.data.train),
                      command=command, options=dict(eval_options or {}))
    names = ["mechanism", *(n for n in evaluators if n != "mechanism")]  # the table is built on mechanism
    results = {name: fn(ctx) for name, fn in get_evaluators(names).items()}
    (out / PER_IMAGE_FILE).write_text(json.dumps(per_image_record(results, _variant_of_row)))
    report = ablation_report(results.pop("mechanism").raw, variants, summaries, cfgs, checkpoint, command)
    _merge_rows(report, results)
    (out / "ablation.json").write_text(json.dumps(report, indent=2))
    (out / "ablation.md").write_text(ablation_markdown(report))
    return report


def ablation_report(result: MechanismResult, variants: list[Variant], summaries: dict, cfgs: dict,
                    checkpoint: str, command: str | None) -> dict:
    rows = result.groups[ALL]["rows"]
    table = [{"variant": BASE_VARIANT, "description": "frozen encoder on degraded images",
              "steps": 0, "val_l2": rows[BASE_ROW]["paired_mse"], **_metrics(rows[BASE_ROW])}]
    for v in variants:
        s = summaries[v.name]
        table.append({"variant": v.name, "description": v.description, "steps": s.get("steps"),
                      "val_l2": s.get("best_val_l2"), "best_step": s.get("best_step"),
                      "images_per_s": s.get("images_per_s"), **_metrics(rows[v.name])})
    table.append({"variant": CLEAN_ROW, "description": "clean half vs clean half (noise floor)",
                  "steps": None, "val_l2": None, **_metrics(rows[CLEAN_ROW])})
    first = cfgs[variants[0].name]
    return {
        "table": table, "checkpoint": checkpoint, "samples": result.meta["samples"], "tokens": result.meta["tokens"],
        "budget": {"max_steps": first.train.max_steps, "epochs": first.train.epochs,
                   "batch_size": first.data.batch_size, "seed": first.train.seed},
        "overrides": {v.name: list(v.overrides) for v in variants}, "model": first.model.path,
        "data": first.data.train, "machine": result.meta["machine"], "device": result.meta["device"],
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "command": command,
    }


def _variant_of_row(row: str) -> str | None:
    """An evaluator's row -> the table's variant name (None: the clean reference, no variant)."""
    return None if row == CLEAN_ROW else BASE_VARIANT if row == BASE_ROW else row


def _merge_rows(report: dict, results: dict) -> None:
    """Other evaluators' metrics into the table, as '<evaluator>.<metric>'."""
    for name, res in results.items():
        for row in report["table"]:
            key = BASE_ROW if row["variant"] == BASE_VARIANT else row["variant"]
            for metric, value in (res.rows.get(key) or {}).items():
                row[f"{name}.{metric}"] = value
        report.setdefault("evaluators", ["mechanism"]).append(name)


BASE_VARIANT = "base (no adapters)"


def _metrics(row: dict) -> dict:
    return {m: row.get(m) for m in METRICS}


def _fmt(value) -> str:
    if value is None:
        return "—"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def ablation_markdown(report: dict) -> str:
    b = report["budget"]
    lines = [
        "# Ablation", "",
        f"- model `{report['model']}`, data {', '.join(f'`{d}`' for d in report['data'])}",
        f"- same budget for every variant: max_steps {b['max_steps']}, epochs {b['epochs']}, batch {b['batch_size']}, "
        f"seed {b['seed']}; `{report['checkpoint']}` checkpoints",
        f"- metrics on {report['samples']} held-out pairs, tokens={report['tokens']}; val L2 is the trainer's best "
        "validation feature MSE (for the base row: its paired MSE on the same pairs)",
        f"- {report['device']}; {report['machine']}; {report['date']}",
    ]
    if report.get("command"):
        lines.append(f"- command: `{report['command']}`")
    labels = [METRIC_LABELS[m] for m in METRICS]
    lines += ["", "| variant | what | steps | val L2 | " + " | ".join(labels) + " |",
              "|" + "---|" * (4 + len(METRICS))]
    for row in report["table"]:
        lines.append(f"| {row['variant']} | {row['description']} | {_fmt(row['steps'])} | {_fmt(row['val_l2'])} | "
                     + " | ".join(_fmt(row[m]) for m in METRICS) + " |")
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipelines.ablation", description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True, help="training config YAML (e.g. pipelines/configs/tiny-cpu.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value for every variant (repeatable)")
    p.add_argument("--out", required=True, help="folder: one sub-folder per variant, ablation.{md,json}, mechanism.*")
    p.add_argument("--variants", default=None,
                   help=f"comma-separated subset of {','.join(DEFAULT_ORDER)} (default: all)")
    p.add_argument("--checkpoint", choices=("best", "final"), default="best",
                   help="which checkpoint of each variant to evaluate (best by validation L2, as the paper)")
    p.add_argument("--tokens", choices=("pooled", "sampled", "all"), default="pooled")
    p.add_argument("--max-samples", type=int, default=None, help="held-out pairs to evaluate (default: all)")
    p.add_argument("--reuse", action="store_true", help="skip variants whose run folder already has a summary.json")
    p.add_argument("--seeds", type=int, default=None,
                   help="train every variant N times (seeds: the config's + 0..N-1) and report means with 95%% "
                        "intervals over seeds and test images (val L2, CKA: t over seeds) and paired differences "
                        "(ablation-seeds.{md,json})")
    p.add_argument("--evaluators", default="mechanism",
                   help="comma-separated evaluators (pipelines/evaluators.py): mechanism (always), probe")
    p.add_argument("--probe-train", default=None, help="probe evaluator: labelled training image folder")
    p.add_argument("--probe-test", default=None, help="probe evaluator: labelled test image folder")
    p.add_argument("--probe-recipe", default=None,
                   help="probe evaluator: corruption recipe for the test images (default maa-global)")
    p.add_argument("--probe-train-per-class", type=int, default=None,
                   help="probe evaluator: first N images per class train (without --probe-test the rest test)")
    p.add_argument("--probe-test-per-class", type=int, default=None,
                   help="probe evaluator: at most N test images per class")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        variants = parse_variants(args.variants)
        probe = load_config(args.config, args.overrides)
        opts = EvalOptions(tokens=args.tokens, batch_size=probe.data.batch_size, device=probe.train.device,
                           max_samples=args.max_samples or probe.data.val_max_samples)
        evaluators = [n.strip() for n in args.evaluators.split(",") if n.strip()]
        eval_options = {"probe_train": args.probe_train, "probe_test": args.probe_test,
                        "probe_recipe": args.probe_recipe, "probe_train_per_class": args.probe_train_per_class,
                        "probe_test_per_class": args.probe_test_per_class}
        preflight(evaluators, eval_options)  # unknown or unusable evaluators fail before any training
        kw = dict(checkpoint=args.checkpoint, eval_opts=opts, reuse=args.reuse, evaluators=evaluators,
                  eval_options=eval_options,
                  command=shlex.join(["python", "-m", "pipelines.ablation", *argv]))
        if args.seeds is not None:
            from pipelines.ablation_seeds import run_seeds, seeds_markdown

            summary = run_seeds(args.config, args.overrides, args.out, variants, args.seeds, **kw)
            print(seeds_markdown(summary))
            return 0
        report = run(args.config, args.overrides, args.out, variants, **kw)
    except (ConfigError, EvaluationError, FileNotFoundError, ValueError) as exc:
        print(f"ablation: error: {exc}", file=sys.stderr)
        return 2
    except TrainingDiverged as exc:
        print(f"ablation: stopped: {exc}", file=sys.stderr)
        return 3
    print(ablation_markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
