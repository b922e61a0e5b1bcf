"""`corruptor preview`: a labelled contact sheet of ops (rows) by severity (columns), or recipe samples."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from corruptor.cli.main import UsageError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("preview", help="render a contact sheet of ops or recipe samples",
                       description="Rows are ops and columns clean + severities 1..5 (--ops), or rows "
                                   "are samples of a recipe (--recipe). Without IMAGE the embedded "
                                   "sample photos are used.")
    p.add_argument("images", nargs="*", metavar="IMAGE", help="image files (default: embedded photos)")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--recipe", help="recipe YAML path or built-in name (e.g. maa-paper)")
    what.add_argument("--ops", help="comma-separated op names (default: every registered op)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--samples", type=int, default=8, help="rows for --recipe (default 8)")
    p.add_argument("--cell", type=int, default=160, help="thumbnail side in pixels (default 160)")
    p.add_argument("--work", type=int, default=384,
                   help="side of the centre square the ops run on before shrinking to --cell (default 384)")
    p.add_argument("--backend", default="native", choices=("native", "imagecorruptions"),
                   help="backend for --ops (a recipe names its own)")
    p.add_argument("--out", required=True, help="output PNG path")
    p.set_defaults(func=run)


def _read(path: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    from corruptor.build.image import to_rgb_uint8

    try:
        with Image.open(path) as im:
            return to_rgb_uint8(np.asarray(im.convert("RGBA") if im.mode in ("P", "LA", "CMYK") else im))
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise UsageError(f"cannot read image {path}: {exc}") from None


def run(args: argparse.Namespace) -> int:
    from corruptor import preview
    from corruptor.recipe.recipe import RecipeError, load_recipe
    from corruptor.ops.registry import UnknownOpError, get_op, load_all
    from corruptor.sources.samples import sample_photos
    from corruptor.ops.step import BackendError

    if args.cell < 16:
        raise UsageError(f"--cell must be at least 16 pixels, got {args.cell}")
    if args.work < args.cell:
        raise UsageError(f"--work ({args.work}) must be at least --cell ({args.cell})")
    if args.samples < 1:
        raise UsageError(f"--samples must be at least 1, got {args.samples}")
    images = [_read(p) for p in args.images] or list(sample_photos(("astronaut", "coffee", "chelsea")).values())
    if args.recipe:
        try:
            recipe = load_recipe(args.recipe)
        except RecipeError as exc:
            raise UsageError(str(exc)) from None
        sheet = preview.recipe_sheet(images, recipe, samples=args.samples, seed=args.seed, cell=args.cell,
                                      work=args.work)
    else:
        ops = [o.strip() for o in args.ops.split(",") if o.strip()] if args.ops else list(load_all())
        if not ops:
            raise UsageError("--ops names no op")
        try:
            for name in ops:
                get_op(name)
            sheet = preview.op_sheet(images, ops, seed=args.seed, cell=args.cell, backend=args.backend,
                                  work=args.work)
        except (UnknownOpError, BackendError) as exc:
            raise UsageError(str(exc)) from None
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    print(f"wrote {out} ({sheet.width} x {sheet.height})")
    return 0
