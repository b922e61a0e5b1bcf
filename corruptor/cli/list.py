"""`corruptor list`: every registered op with its family, suites, severities, backends, override keys."""
from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="list every op with its family, severities and backends")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def describe() -> list[dict]:
    from corruptor.ops.registry import IMAGENET_C, load_all

    rows = []
    for name, op in load_all().items():
        rows.append({
            "name": name, "family": op.family, "suites": list(op.suites),
            "severities": json.loads(json.dumps(list(op.severities), default=repr)),
            "backends": ["native"] + (["imagecorruptions"] if name in IMAGENET_C else []),
            "override_keys": list(op.override_keys()), "doc": op.doc,
        })
    return rows


def run(args: argparse.Namespace) -> int:
    rows = describe()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    header = ("op", "family", "suites", "backends", "params")
    table = [(r["name"], r["family"], ",".join(r["suites"]) or "-", ",".join(r["backends"]),
              ",".join(r["override_keys"])) for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *table)]
    for line in (header, *table):
        print("  ".join(str(x).ljust(w) for x, w in zip(line, widths)).rstrip())
    print(f"{len(rows)} ops; severities per op: corruptor list --json")
    return 0
