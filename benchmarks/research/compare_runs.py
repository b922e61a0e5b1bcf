"""Compare two harness result folders: python compare_runs.py A/results B/results [NAME ...] [--tol 1e-6]

For each NAME.json in both (all shared ones when no NAME is given): the largest absolute difference over
every number (config, step history, gates, eval metrics, per-image correctness), timings left out.
Exit status 1 when one exceeds --tol or the structures differ. Used for the port-equality check (README.md)."""
import argparse
import json
import math
import os
import sys

TIMINGS = {"elapsed", "train_s", "eval_s"}


def walk(a, b, path, out):
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) - TIMINGS != set(b) - TIMINGS:
            out["structure"].append(f"{path}: keys {sorted(set(a) ^ set(b))}")
        for k in a:
            if k in b and k not in TIMINGS:
                walk(a[k], b[k], f"{path}.{k}", out)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out["structure"].append(f"{path}: lengths {len(a)} vs {len(b)}")
        for i, (x, y) in enumerate(zip(a, b)):
            walk(x, y, f"{path}[{i}]", out)
    elif isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
            return
        d = abs(a - b)
        out["n"] += 1
        if d > out["max"]:
            out["max"], out["where"] = d, path
    elif a != b:
        out["structure"].append(f"{path}: {a!r} vs {b!r}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("names", nargs="*")
    ap.add_argument("--tol", type=float, default=1e-6)
    args = ap.parse_args()
    names = args.names or sorted(f[:-5] for f in os.listdir(args.a) if f.endswith(".json")
                                 and os.path.exists(os.path.join(args.b, f)))
    bad = False
    for n in names:
        out = {"n": 0, "max": 0.0, "where": "", "structure": []}
        with open(os.path.join(args.a, n + ".json")) as fa, open(os.path.join(args.b, n + ".json")) as fb:
            walk(json.load(fa), json.load(fb), n, out)
        ok = out["max"] <= args.tol and not out["structure"]
        bad |= not ok
        print(f"{'OK  ' if ok else 'DIFF'} {n}: {out['n']} numbers, max |diff| {out['max']:.3g}"
              + (f" at {out['where']}" if out["max"] else "") + "".join(f"\n     {s}" for s in out["structure"][:5]))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
