"""`maa-train --config FILE [--set key=value ...]`: train adapters on built shards.

Run on several GPUs with `torchrun --nproc-per-node N -m maa_train.train.cli --config FILE`.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from maa_train.train.config import ConfigError, load_config


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="maa-train", description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True, help="YAML training config (see pipelines/configs/)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.max_steps=100 (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in train.out_dir")
    p.add_argument("--overwrite", action="store_true",
                   help="train.out_dir holds another run: delete its checkpoints and logs and start over")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    overrides = (args.overrides + (["train.resume=true"] if args.resume else [])
                 + (["train.overwrite=true"] if args.overwrite else []))
    try:
        cfg = load_config(args.config, overrides)
    except ConfigError as exc:
        print(f"maa-train: error: {exc}", file=sys.stderr)
        return 2
    if args.print_config:
        print(json.dumps(cfg.model_dump(), indent=2))
        return 0
    from maa_train.train.trainer import TrainingDiverged, TrainingInterrupted, train

    try:
        summary = train(cfg)
    except (FileNotFoundError, ValueError) as exc:
        print(f"maa-train: error: {exc}", file=sys.stderr)
        return 2
    except TrainingDiverged as exc:
        print(f"maa-train: stopped: {exc}", file=sys.stderr)
        return 3
    except TrainingInterrupted as exc:
        print(f"maa-train: interrupted: {exc}", file=sys.stderr)
        return 130
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one summary rather than one per rank
        print(json.dumps(summary.to_dict(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
