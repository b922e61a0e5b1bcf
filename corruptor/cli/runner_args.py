"""The runner flags every job command takes (`corruptor build`, `rebuild`, `masks`), read into
the runner's name and `RunnerSettings`."""
from __future__ import annotations

import argparse


def int_at_least(low: int):
    """argparse type: an integer >= ``low``; a bad value is one usage line naming the flag."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not an integer") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


def add_runner_args(p, what: str = "shard") -> None:
    from corruptor.run.registry import runner_names

    p.add_argument("--distributor", default="local", choices=runner_names(),
                   help="local: processes on this machine; ray: a Ray cluster (RAY_ADDRESS or --ray-address, "
                        "else a local one)")
    p.add_argument("--workers", type=int_at_least(1), default=1,
                   help=f"parallel {what} workers (processes, Ray tasks or actors)")
    p.add_argument("--ray-address", default=None, help="join this Ray cluster (default: RAY_ADDRESS, else local)")
    p.add_argument("--retries", type=int_at_least(0), default=2, help=f"attempts per failed {what} after the first")


def runner_settings(args):
    from corruptor.run.runner import RunnerSettings

    return RunnerSettings(workers=args.workers, retries=args.retries, address=args.ray_address)
