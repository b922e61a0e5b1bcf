"""`maa-eval`: the mechanism table of an encoder and its adapters on held-out pairs.

    maa-eval --model PATH --data DIR [--adapters NAME=DIR ...] [--val-fraction F | --all-shards]
             [--max-samples N] [--tokens pooled|sampled|all] --out DIR

Writes mechanism.md, mechanism.json and mechanism.png to --out and prints the markdown.

    maa-eval probe --model PATH --train DIR --recipe R ... --out DIR

the downstream check (linear probe and k-NN, clean and corrupted); `maa-eval probe --help`.
"""
from __future__ import annotations

import argparse
import logging
import shlex
import sys

from maa_train.students.checkpoint import CheckpointMismatchError
from maa_train.eval.evaluate import (TOKEN_MODES, AdapterSpec, EvalOptions, EvaluationError, evaluate, heldout_shards,
                                to_markdown, write_outputs)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="maa-eval", description=__doc__.splitlines()[0],
                                epilog="maa-eval probe --help: the downstream probe (maa_train/eval/probe_cli.py, "
                                       "corrupting with corruptor's recipes through pipelines/probe.py)")
    p.add_argument("--model", required=True,
                   help="local folder of the HF encoder (or LLaVA model) the adapters were trained on")
    p.add_argument("--data", required=True, help="built dataset folder, shard glob, .tar or .txt list of URLs")
    p.add_argument("--adapters", action="append", default=[], metavar="NAME=DIR",
                   help="an adapter checkpoint folder (e.g. runs/x/best) to compare; repeatable")
    split = p.add_mutually_exclusive_group()
    split.add_argument("--val-fraction", type=float, default=0.05,
                       help="evaluate the shards training held out at this fraction (default 0.05, as training)")
    split.add_argument("--all-shards", action="store_true", help="evaluate every shard (a separate test set)")
    p.add_argument("--max-samples", type=int, default=None, help="stop after this many pairs")
    p.add_argument("--tokens", choices=TOKEN_MODES, default="pooled",
                   help="token rows for MMD^2/KID/energy/CKA: mean-pooled per image (default), sampled or all")
    p.add_argument("--per-image", type=int, default=16, help="patches per image with --tokens sampled")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto",
                   help="auto: bf16 autocast on CUDA, fp32 on CPU")
    p.add_argument("--feature-layer", type=int, default=None,
                   help="hidden state to compare (default: the checkpoints', else the model's default)")
    p.add_argument("--use-projector", action="store_true", default=None,
                   help="compare features after the multimodal projector (LLaVA models)")
    p.add_argument("--image-size", type=int, default=None,
                   help="encoder input side in pixels (default: the adapters' training size, else the model's)")
    p.add_argument("--seed", type=int, default=0, help="the split into halves and the bootstrap")
    p.add_argument("--bootstrap", type=int, default=200, help="bootstrap replicates for the intervals (0: none)")
    p.add_argument("--workers", type=int, default=0, help="data loader processes")
    p.add_argument("--max-rows", type=int, default=10_000,
                   help="largest feature set (rows) the pairwise metrics accept; their time grows with rows^2")
    p.add_argument("--out", required=True, help="folder for mechanism.{md,json,png}")
    return p


def main(argv: list[str] | None = None, *, make_corruption=None) -> int:
    """``make_corruption(recipe, ProbeOptions) -> Corruption`` is what ``probe`` corrupts
    with; the installed ``maa-eval`` (pipelines.probe.maa_eval) passes corruptor's."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["probe"]:
        from maa_train.eval.probe_cli import main as probe_main

        return probe_main(argv[1:], make_corruption)
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        opts = EvalOptions(tokens=args.tokens, per_image=args.per_image, batch_size=args.batch_size,
                           max_samples=args.max_samples, device=args.device, precision=args.precision,
                           feature_layer=args.feature_layer, use_projector=args.use_projector, image_size=args.image_size, seed=args.seed,
                           bootstrap=args.bootstrap,
                           workers=args.workers, max_rows=args.max_rows)
        specs = [AdapterSpec.parse(text) for text in args.adapters]
        shards = heldout_shards(args.data, args.val_fraction, args.all_shards)
        result = evaluate(args.model, shards, specs, opts, data=args.data,
                          command=shlex.join(["maa-eval", *argv]))
    except (EvaluationError, CheckpointMismatchError, FileNotFoundError, ValueError) as exc:
        print(f"maa-eval: error: {exc}", file=sys.stderr)
        return 2
    paths = write_outputs(result, args.out)
    print(to_markdown(result))
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
