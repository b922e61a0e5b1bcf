"""`maa-models`: list and fetch pretrained encoders as local transformers folders.

    maa-models list
    maa-models fetch NAME [--out DIR] [--cache DIR]

fetch prints the folder to load with `from_pretrained`: DIR when --out is given (a copy of
the cached folder), else the cache path. Cache: --cache, else $MAA_CACHE_DIR, else
~/.cache/maa-toolkit. Errors are one line on stderr and exit status 2.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from maa_train.models import MODELS, ModelFetchError, get_model
from maa_train.models.cache import atomic_copy_tree, resolve_cache_dir
from maa_train.models.onnx_wheel_source import SOURCE_FILE


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="maa-models", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="models this command can fetch")
    f = sub.add_parser("fetch", help="download (once) and convert a model; print its folder")
    f.add_argument("name", help="a name from `maa-models list`")
    f.add_argument("--out", type=Path, default=None, help="copy the converted folder here")
    f.add_argument("--cache", type=Path, default=None,
                   help="cache folder (default: $MAA_CACHE_DIR or ~/.cache/maa-toolkit)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "list":
            for name in sorted(MODELS):
                m = get_model(name)
                print(f"{name}\t{m.summary}\n\tsource: {m.source}")
            return 0
        model = get_model(args.name)
        folder = model.fetch(resolve_cache_dir(args.cache))
        print(_copy_out(folder, args.out) if args.out else folder)
        return 0
    except ModelFetchError as e:
        print(f"maa-models: error: {e}", file=sys.stderr)
        return 2


def _copy_out(folder: Path, out: Path) -> Path:
    out = out.expanduser().resolve()
    if out == folder.resolve():
        return out
    if out.exists() and any(out.iterdir()):
        mine, theirs = out / SOURCE_FILE, folder / SOURCE_FILE
        if not mine.exists():
            raise ModelFetchError(f"--out {out} exists and is not a maa-models folder; remove it or choose another")
        if json.loads(mine.read_text()) == json.loads(theirs.read_text()):
            return out   # already this exact conversion
        if json.loads(mine.read_text()).get("model") != json.loads(theirs.read_text()).get("model"):
            raise ModelFetchError(f"--out {out} holds another model ({json.loads(mine.read_text()).get('model')}); "
                                  "remove it or choose another folder")
    return atomic_copy_tree(folder, out)   # replaces an empty folder or an older conversion in one rename


if __name__ == "__main__":
    sys.exit(main())
