"""Speed of the realistic degradations against the decode/encode floor of a dataset build.

The floor is what a build does per pair with an identity recipe: decode the source (JPEG)
and encode the clean and degraded images (PNG). Each op is timed interleaved with the
floor on the same images in one run, on one thread, as process CPU time: a shared,
overloaded machine preempts wall-clock timings at random, CPU time it barely moves.
Ratios use the mean over repeats that cycle through levels 1..5 and four photos (what a
build pays on average); the fastest repeat is listed too.

    python benchmarks/bench_realistic.py [--size 512] [--repeats 15]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np

from corruptor.ops.registry import get_op
from maa_format.rng import rng_for
from corruptor.sources.samples import sample_photo

OPS: tuple[str, ...] = (
    "low_light", "color_shift", "overexposure", "low_resolution", "jpeg", "webp", "haze", "rain",
    "realesrgan", "realesrgan_blur", "scan_low_contrast", "halftone", "stroke_blur",
)
PHOTOS: tuple[str, ...] = ("astronaut", "coffee", "chelsea", "rocket")
RESULTS = Path(__file__).resolve().parent / "results"


def floor_once(jpeg_bytes: np.ndarray, image: np.ndarray) -> None:
    cv2.imdecode(jpeg_bytes, cv2.IMREAD_COLOR)
    cv2.imencode(".png", image)
    cv2.imencode(".png", image)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    cv2.setNumThreads(1)  # one core, as a build worker runs; CPU time then equals busy time
    images = [cv2.resize(sample_photo(n), (args.size, args.size), interpolation=cv2.INTER_AREA) for n in PHOTOS]
    sources = [cv2.imencode(".jpg", im, [cv2.IMWRITE_JPEG_QUALITY, 95])[1] for im in images]
    rows = []
    for name in OPS:
        op = get_op(name)
        op_ms, floor_ms = [], []
        for i in range(args.repeats):
            k = i % len(images)
            params = op.params(rng_for(i, "bench", name), 1 + i % 5, images[k].shape[:2])
            t0 = time.process_time()
            op.fn(images[k], params)
            t1 = time.process_time()
            floor_once(sources[k], images[k])
            t2 = time.process_time()
            op_ms.append(1000 * (t1 - t0))
            floor_ms.append(1000 * (t2 - t1))
        op_mean, floor_mean = float(np.mean(op_ms)), float(np.mean(floor_ms))
        rows.append({"op": name, "family": op.family, "op_ms_mean": round(op_mean, 2),
                     "floor_ms_mean": round(floor_mean, 2), "op_ms_min": round(min(op_ms), 2),
                     "floor_ms_min": round(min(floor_ms), 2),
                     "op_over_floor": round(op_mean / floor_mean, 3),
                     "build_speed_vs_floor": round(floor_mean / (floor_mean + op_mean), 3)})
    header = (f"{'op':18s} {'family':11s} {'op ms':>8s} {'floor ms':>9s} {'op min':>8s} {'floor min':>10s} "
              f"{'op/floor':>9s} {'speed vs floor':>15s}")
    print(header)
    for r in rows:
        print(f"{r['op']:18s} {r['family']:11s} {r['op_ms_mean']:8.2f} {r['floor_ms_mean']:9.2f} "
              f"{r['op_ms_min']:8.2f} {r['floor_ms_min']:10.2f} "
              f"{r['op_over_floor']:9.3f} {r['build_speed_vs_floor']:15.3f}")
    meta = {"machine": f"{platform.node()} {platform.processor() or platform.machine()}",
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "size": args.size, "repeats": args.repeats, "opencv_threads": 1,
            "clock": "process CPU time", "load_average": list(os.getloadavg())}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "realistic.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    lines = [f"# Realistic degradations vs the decode/encode floor ({args.size} px, one core, CPU time)", "",
             f"{meta['date']} on {meta['machine']}; `{meta['command']}`", "",
             "Mean CPU ms over the repeats; fastest in brackets. Build speed vs floor = floor / (floor + op):",
             "the share of the identity-recipe throughput left when every pair runs this op.", "",
             "| op | family | op ms | floor ms | op/floor | build speed vs floor |",
             "|---|---|---:|---:|---:|---:|"]
    lines += [f"| {r['op']} | {r['family']} | {r['op_ms_mean']:.2f} ({r['op_ms_min']:.2f}) | "
              f"{r['floor_ms_mean']:.2f} ({r['floor_ms_min']:.2f}) | "
              f"{r['op_over_floor']:.3f} | {r['build_speed_vs_floor']:.3f} |" for r in rows]
    (RESULTS / "realistic.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
