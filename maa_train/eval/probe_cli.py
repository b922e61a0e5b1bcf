"""`maa-eval probe`: linear-probe and k-NN accuracy of an encoder and its adapters, clean and corrupted.

    maa-eval probe --model PATH --train DIR [--test DIR] --recipe R [--adapters NAME=DIR ...]
                   [--severities 3,5] [--train-per-class N] [--test-per-class N] --out DIR

Writes probe.json and probe.md to --out and prints the markdown. See maa_train/eval/probe.py for
the rules (features, intervals) and pipelines/probe.py for the corruption (pinned severities,
geometry), which maa_train cannot do itself: it does not import corruptor. So this command
runs as the installed ``maa-eval probe`` or ``python -m pipelines.probe``, which pass it
corruptor's recipes.
"""
from __future__ import annotations

import argparse
import logging
import shlex
import sys

from maa_train.eval.probe import CORRUPT_NATIVE, CORRUPT_RECIPE, FEATURE_MODES, ProbeError, ProbeOptions, run_probe


def _severities(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}': expected comma-separated levels 1..5, e.g. 3,5") from None
    if not values or any(not 1 <= v <= 5 for v in values) or len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"'{text}': expected distinct levels 1..5, e.g. 3,5")
    return values


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _corrupt_size(text: str) -> int:
    if text == "recipe":
        return CORRUPT_RECIPE
    if text == "native":
        return CORRUPT_NATIVE
    try:
        return _positive(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"'{text}': expected recipe, native or a side in pixels") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="maa-eval probe", description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="local folder of the HF encoder (or LLaVA model)")
    p.add_argument("--train", required=True, help="labelled folder, ImageFolder layout (ROOT/CLASS/IMAGE)")
    p.add_argument("--test", default=None,
                   help="labelled folder to test on (default: --train, split by --train-per-class)")
    p.add_argument("--recipe", required=True, help="recipe YAML path or built-in name for the Dis conditions")
    p.add_argument("--adapters", action="append", default=[], metavar="NAME=DIR",
                   help="an adapter checkpoint folder to score; repeatable")
    p.add_argument("--severities", type=_severities, default=(3, 5), help="Dis severities (default 3,5)")
    p.add_argument("--train-per-class", "--per-class-train", dest="train_per_class", type=_positive, default=None,
                   help="first N images per class (sorted) train; with one folder the rest test")
    p.add_argument("--test-per-class", type=_positive, default=None, help="at most N test images per class")
    p.add_argument("--features", choices=FEATURE_MODES, default="auto",
                   help="auto: CLS token when the encoder has one, else mean of patch tokens")
    p.add_argument("--knn-k", type=_positive, default=10)
    p.add_argument("--corrupt-size", type=_corrupt_size, default=CORRUPT_RECIPE, metavar="recipe|native|N",
                   help="size images are corrupted at: the recipe's output (default), as decoded, or short side N")
    p.add_argument("--batch-size", type=_positive, default=32)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto",
                   help="auto: bf16 autocast on CUDA, fp32 on CPU")
    p.add_argument("--feature-layer", type=int, default=None,
                   help="hidden state to read (default: the checkpoints', else the model's default)")
    p.add_argument("--versus", action="append", default=[], metavar="NAME",
                   help="also report paired differences against this adapter row (e.g. mse_only); repeatable")
    p.add_argument("--image-size", type=_positive, default=None,
                   help="encoder input side in pixels (default: the adapters' training size, else the model's)")
    p.add_argument("--seed", type=int, default=0, help="corruption draws and bootstrap")
    p.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples (0: no intervals)")
    p.add_argument("--out", required=True, help="folder for probe.{json,md}")
    return p


def main(argv: list[str], make_corruption=None) -> int:
    """``make_corruption(recipe, ProbeOptions) -> Corruption`` (pipelines.probe.recipe_corruption)."""
    from maa_train.students.checkpoint import CheckpointMismatchError
    from maa_train.eval.evaluate import AdapterSpec, EvaluationError
    from maa_train.eval.probe_report import to_markdown, write_outputs

    args = build_parser().parse_args(argv)
    if make_corruption is None:
        print("maa-eval probe: error: this entry point has no corruption library (maa_train does not import "
              "corruptor); run the installed `maa-eval probe ...` or `python -m pipelines.probe ...`",
              file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        opts = ProbeOptions(severities=args.severities, train_per_class=args.train_per_class,
                            test_per_class=args.test_per_class, features=args.features, knn_k=args.knn_k,
                            batch_size=args.batch_size, device=args.device, precision=args.precision,
                            feature_layer=args.feature_layer, image_size=args.image_size, versus=tuple(args.versus),
                            seed=args.seed, bootstrap=args.bootstrap,
                            corrupt_size=args.corrupt_size)
        specs = [AdapterSpec.parse(text) for text in args.adapters]
        corruption = make_corruption(args.recipe, opts)
        result = run_probe(args.model, args.train, args.test, corruption, specs, opts,
                           command=shlex.join(["maa-eval", "probe", *argv]))
    except (ProbeError, EvaluationError, CheckpointMismatchError, FileNotFoundError, ValueError) as exc:
        print(f"maa-eval probe: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    paths = write_outputs(result, args.out)
    print(to_markdown(result))
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
