"""Dataset build throughput: the paper recipe against the decode/encode floor, and Ray scaling.

1. One core, one run: the same sources and plan built with an identity recipe (decode,
   resize/crop, PNG-encode clean and degraded: the floor of any build) and with the
   paper recipe (global + local ops; masks warm in the cache, as in any build after the
   mask stage, and cold, segmenting with the CPU fallback). Builds alternate so both
   see the same machine load.
2. Ray scaling: the paper recipe (masks warm) with 1..N Ray workers on one local
   cluster started once; efficiency = rate(N) / (N * rate(1)).
3. The time to build 75K pairs at the best measured rate.

    python benchmarks/bench_build.py [--pairs 48] [--max-workers 2] [--size 512]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import cv2

from corruptor.build.builder import BuildConfig, build
from corruptor.recipe.recipe import builtin_recipe
from maa_format.rng import rng_for
from corruptor.sources.samples import SAMPLE_PHOTOS, sample_photo
from corruptor.sources.sources import SourceSpec

RESULTS = Path(__file__).resolve().parent / "results"
PAPER_PAIRS = 75_000


def write_sources(root: Path, ocr_pages: int) -> list[SourceSpec]:
    """Embedded photos and synthetic pages as JPEG files: a build decodes real files."""
    from corruptor.sources.ocr_pages import render_page

    (root / "photos").mkdir(parents=True)
    (root / "ocr").mkdir(parents=True)
    for name in SAMPLE_PHOTOS:
        img = sample_photo(name)
        cv2.imwrite(str(root / "photos" / f"{name}.jpg"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, 92])
    for i in range(ocr_pages):
        page = render_page(rng_for(0, "bench-ocr", str(i)), size=(768, 640))
        cv2.imwrite(str(root / "ocr" / f"page{i:03d}.jpg"), cv2.cvtColor(page, cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, 92])
    return [SourceSpec("photos", str(root / "photos"), "photo", 2.0),
            SourceSpec("ocr", str(root / "ocr"), "ocr", 1.0)]


def timed_build(cfg: BuildConfig) -> tuple[float, int]:
    t0 = time.perf_counter()
    report = build(cfg)
    return time.perf_counter() - t0, report.ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=48)
    parser.add_argument("--max-workers", type=int, default=min(16, os.cpu_count() or 1))
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=2, help="alternating rounds of the one-core builds")
    args = parser.parse_args()
    cv2.setNumThreads(1)  # one core per worker, as in a pool or a Ray task

    paper = builtin_recipe("maa-paper").to_dict()
    paper["output"] = {**paper["output"], "size": args.size, "crop": "center"}
    identity = {"name": "identity", "output": paper["output"]}
    masks = {"kind": "felzenszwalb"}
    work = Path(tempfile.mkdtemp(prefix="bench_build_"))
    try:
        sources = write_sources(work / "src", ocr_pages=8)
        common = dict(sources=sources, target=args.pairs, shard_size=max(1, args.pairs // 8), seed=0,
                      mask_source=masks, mode="overwrite")

        # Cold masks once (segments every source image), which also fills the cache reused below.
        cold_s, cold_ok = timed_build(BuildConfig(recipe=paper, out=work / "paper", **common))
        one_core: dict[str, list[float]] = {"identity": [], "paper": []}
        for _ in range(args.repeats):
            for name, recipe in (("identity", identity), ("paper", paper)):
                s, ok = timed_build(BuildConfig(recipe=recipe, out=work / name, **common))
                one_core[name].append(ok / s)
        rate = {k: max(v) for k, v in one_core.items()}   # best of: least disturbed by other load
        ratio = rate["paper"] / rate["identity"]

        from corruptor.run.distributor import ensure_ray

        ensure_ray(num_cpus=args.max_workers)
        # Untimed warm-up: every Ray worker process imports the package and loads the recipe once.
        shutil.copytree(work / "paper" / "masks", work / "warm" / "masks")
        build(BuildConfig(recipe=paper, out=work / "warm", distributor="ray", workers=args.max_workers,
                          **{**common, "target": 2 * args.max_workers, "shard_size": 1}))
        scaling = []
        workers_list = sorted({1, *[w for w in (2, 4, 8, 16) if w <= args.max_workers], args.max_workers})
        ray_pairs = max(args.pairs, 4 * args.max_workers)
        for w in workers_list:
            out = work / f"ray{w}"
            shutil.copytree(work / "paper" / "masks", out / "masks")
            cfg = BuildConfig(recipe=paper, out=out, distributor="ray", workers=w, **{**common, "target": ray_pairs,
                              "shard_size": max(1, ray_pairs // (2 * args.max_workers))})
            s, ok = timed_build(cfg)
            scaling.append({"workers": w, "seconds": round(s, 3), "pairs": ok, "pairs_per_s": round(ok / s, 3)})
        base = scaling[0]["pairs_per_s"]
        for row in scaling:
            row["efficiency"] = round(row["pairs_per_s"] / (row["workers"] * base), 3)
        best = max(r["pairs_per_s"] for r in scaling)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    result = {
        "meta": {
            "machine": f"{platform.node() or 'vm'} {platform.machine()}, {os.cpu_count()} cores (shared)",
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": "python " + " ".join(sys.argv),
            "python": platform.python_version(),
            "load_average_1m_at_end": round(os.getloadavg()[0], 2),
            "size": args.size, "pairs": args.pairs, "mask_source": masks,
        },
        "one_core": {
            "identity_pairs_per_s": round(rate["identity"], 3),
            "paper_pairs_per_s": round(rate["paper"], 3),
            "paper_over_floor": round(ratio, 3),
            "paper_cold_masks_pairs_per_s": round(cold_ok / cold_s, 3),
            "runs": {k: [round(x, 3) for x in v] for k, v in one_core.items()},
        },
        "ray_scaling": scaling,
        "hours_for_75k_pairs": {
            "one_core_paper": round(PAPER_PAIRS / rate["paper"] / 3600, 2),
            f"ray_{scaling[-1]['workers']}_workers": round(PAPER_PAIRS / best / 3600, 2),
        },
    }
    print(f"one core, {args.size} px, masks warm: identity {rate['identity']:.2f} pairs/s, "
          f"maa-paper {rate['paper']:.2f} pairs/s, ratio {ratio:.2f} (cold masks {cold_ok / cold_s:.2f} pairs/s)")
    print(f"{'workers':>8} {'pairs/s':>9} {'efficiency':>11}")
    for row in scaling:
        print(f"{row['workers']:>8} {row['pairs_per_s']:>9.2f} {row['efficiency']:>11.2f}")
    print(f"75K pairs: {result['hours_for_75k_pairs']}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "build.json").write_text(json.dumps(result, indent=2) + "\n")
    write_markdown(result)
    return 0


def write_markdown(result: dict) -> None:
    m, one = result["meta"], result["one_core"]
    lines = [
        "# Dataset build throughput",
        "",
        f"Machine: {m['machine']}; date {m['date']}; command `{m['command']}`; "
        f"load average {m['load_average_1m_at_end']} at the end (other jobs shared the cores).",
        f"Output {m['size']} px PNG, {m['pairs']} pairs per one-core build, masks from "
        f"{m['mask_source']['kind']} (CPU fallback).",
        "",
        "| one core | pairs/s |",
        "|---|---|",
        f"| identity recipe (decode/resize/encode floor) | {one['identity_pairs_per_s']:.2f} |",
        f"| maa-paper, masks cached | {one['paper_pairs_per_s']:.2f} |",
        f"| maa-paper, masks computed in the build | {one['paper_cold_masks_pairs_per_s']:.2f} |",
        f"| **maa-paper / floor** | **{one['paper_over_floor']:.2f}x** (target >= 0.5x) |",
        "",
        "| Ray workers | pairs/s | efficiency |",
        "|---|---|---|",
        *[f"| {r['workers']} | {r['pairs_per_s']:.2f} | {r['efficiency']:.2f} |" for r in result["ray_scaling"]],
        "",
        "Time for 75K pairs: " + "; ".join(f"{k.replace('_', ' ')}: {v} h"
                                            for k, v in result["hours_for_75k_pairs"].items()) + ".",
        "",
        *([f"This machine has {os.cpu_count()} cores, so scaling was measured up to "
           f"{result['ray_scaling'][-1]['workers']} workers only; the 16-worker efficiency target "
           "needs a 16-core machine (`--max-workers 16`)."] if (os.cpu_count() or 1) < 16 else []),
    ]
    (RESULTS / "build.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
