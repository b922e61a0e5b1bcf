"""`maa-import-official PTH --out DIR`: the public release's `maa.pth` as an adapter checkpoint folder.

The file is read with `weights_only=True` (no code in it runs); anything that is not a state
dict of the release's adapter keys is refused with what was expected.
"""
from __future__ import annotations

import argparse
import sys

from maa_train.students.official import OfficialFormatError, convert_official


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="maa-import-official", description=__doc__.splitlines()[0])
    p.add_argument("pth", help="the release's adapter checkpoint (maa.pth)")
    p.add_argument("--out", required=True, help="folder for adapters.safetensors + adapter_config.json")
    p.add_argument("--base-model", default="", help="the LLaVA model the adapters belong to (recorded)")
    p.add_argument("--feature-layer", type=int, default=-2,
                   help="the LLaVA's vision_feature_layer (default -2, LLaVA-1.5/1.6): adapters after it are dropped")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        out = convert_official(args.pth, args.out, base_model=args.base_model, feature_layer=args.feature_layer)
    except (OfficialFormatError, ValueError, OSError) as exc:
        print(f"maa-import-official: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
