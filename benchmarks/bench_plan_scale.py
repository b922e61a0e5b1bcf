"""Planning at scale: 75,000 pairs over a list of 1,000,000 source files.

Creates the files once under --work (hard links to one tiny file per folder of 1,000:
the scan stats every listed file, the plan never reads them), writes the list, then
times scanning, planning and serialising the plan in this process and reports the peak
resident memory. Goal: under 60 s and 2 GB. Writes plan_scale.json and plan_scale.md.

    nice -n 10 .venv/bin/python benchmarks/bench_plan_scale.py --work /tmp/plan1m
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from corruptor.build.planner import plan  # noqa: E402
from corruptor.sources.sources import SourceSpec, scan_sources  # noqa: E402

PER_DIR = 1000  # below the file system's hard-link limit per inode


def make_files(work: Path, files: int) -> Path:
    listing = work / f"list-{files}.txt"
    if listing.is_file():
        return listing
    tiny = work / "tiny"
    work.mkdir(parents=True, exist_ok=True)
    tiny.write_bytes(b"x")
    lines = []
    for d in range((files + PER_DIR - 1) // PER_DIR):
        folder = work / "set" / f"{d:05d}"
        folder.mkdir(parents=True, exist_ok=True)
        base = folder / ".base"
        if not base.exists():
            shutil.copy(tiny, base)
        for i in range(d * PER_DIR, min(files, (d + 1) * PER_DIR)):
            path = folder / f"img_{i:07d}.jpg"
            if not path.exists():
                os.link(base, path)
            lines.append(f"{path}\n")
    listing.write_text("".join(lines))
    return listing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="folder for the generated files (kept for reruns)")
    parser.add_argument("--files", type=int, default=1_000_000)
    parser.add_argument("--pairs", type=int, default=75_000)
    parser.add_argument("--shard-size", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    if args.files < 1 or args.pairs < 1 or args.shard_size < 1:
        parser.error("--files, --pairs and --shard-size must be >= 1")
    listing = make_files(args.work, args.files)
    t0, c0 = time.perf_counter(), time.process_time()
    sources = scan_sources([SourceSpec("big", str(listing), "photo", 1.0)])
    t1 = time.perf_counter()
    the_plan = plan(sources, args.pairs, 0, args.shard_size)
    t2 = time.perf_counter()
    text = the_plan.to_json()
    t3, c3 = time.perf_counter(), time.process_time()
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {
        "benchmark": "plan_scale", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "python " + " ".join(sys.argv), "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared)",
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "files": args.files, "pairs": args.pairs, "scan_s": round(t1 - t0, 2), "plan_s": round(t2 - t1, 2),
        "serialise_s": round(t3 - t2, 2), "total_s": round(t3 - t0, 2), "cpu_s": round(c3 - c0, 2),
        "peak_rss_mib": round(peak_mib), "plan_json_mib": round(len(text) / 2**20, 1),
        "goal": "total < 60 s and peak < 2048 MiB",
    }
    result["meets_goal"] = result["total_s"] < 60 and peak_mib < 2048
    print(json.dumps(result, indent=2))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "plan_scale.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "plan_scale.md").write_text(
        "# Planning at scale\n\n"
        f"- date {result['date']}; machine {result['machine']}; load average {result['load_average']}; "
        f"command `{result['command']}`\n\n"
        "| files | pairs | scan s | plan s | serialise s | total s (CPU s) | peak RSS MiB | plan.json MiB | goal met |\n"
        "|---:|---:|---:|---:|---:|---:|---:|---:|:---:|\n"
        f"| {args.files:,} | {args.pairs:,} | {result['scan_s']} | {result['plan_s']} | {result['serialise_s']} | "
        f"{result['total_s']} ({result['cpu_s']}) | {result['peak_rss_mib']} | {result['plan_json_mib']} | "
        f"{'yes' if result['meets_goal'] else 'no'} |\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
