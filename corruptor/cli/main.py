"""`corruptor` command line: one sub-command per module in corruptor.cli.

Each command module exposes ``register(subparsers)`` which adds its parser and sets
``func``; ``func(args) -> int`` is the exit status. Errors the user can fix are raised
as ``UsageError`` and printed as one line, without a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

COMMANDS: tuple[str, ...] = ("list", "preview", "masks", "build", "rebuild", "validate", "stats")


class UsageError(Exception):
    """A problem with the user's input: printed as ``corruptor: error: ...``, exit 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="corruptor",
        description="Build clean/degraded image pairs into WebDataset shards.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"corruptor.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # Library warnings (e.g. a target far beyond the sources) as one plain line each.
    logging.basicConfig(level=logging.WARNING, format=f"corruptor {args.command}: %(levelname)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except UsageError as exc:
        print(f"corruptor {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `corruptor stats DIR | head`: the reader left, nothing to report
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130

