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
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import io

import cv2
import numpy as np

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


def link_sources(root: Path, folder: Path, images: int) -> list[SourceSpec]:
    """The first ``images`` files of a real photo folder (sorted), linked into one source."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp"))[:images]
    if not files:
        raise SystemExit(f"error: --source {folder}: no .jpg/.jpeg/.png/.webp files")
    (root / "photos").mkdir(parents=True)
    for f in files:
        (root / "photos" / f.name).symlink_to(f.resolve())
    return [SourceSpec("photos", str(root / "photos"), "photo", 1.0)]


def timed_build(cfg: BuildConfig) -> tuple[float, int, float]:
    """(wall s, ok pairs, CPU s); one worker runs in this process, so process_time is all of it."""
    t0, c0 = time.perf_counter(), time.process_time()
    report = build(cfg)
    return time.perf_counter() - t0, report.ok, time.process_time() - c0


def hand_loop(sources: list[SourceSpec], pairs: int, size: int, out: Path) -> tuple[float, int, float]:
    """The floor written by hand: read, decode, resize the short side, centre-crop, PNG-encode
    twice (clean and an identical degraded), append to a tar. Same PNG level as the build."""
    import tarfile

    files = sorted(p for s in sources for p in Path(s.path).iterdir())
    t0, c0 = time.perf_counter(), time.process_time()
    out.mkdir(parents=True, exist_ok=True)
    done = 0
    with tarfile.open(out / "hand.tar", "w") as tar:
        for i in range(pairs):
            data = files[i % len(files)].read_bytes()
            img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            h, w = img.shape[:2]
            scale = size / min(h, w)
            sw, sh = max(1, round(w * scale)), max(1, round(h * scale))
            img = cv2.resize(img, (sw, sh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
            x, y = (sw - size) // 2, (sh - size) // 2
            crop = np.ascontiguousarray(img[y: y + size, x: x + size])
            for name in ("clean", "degraded"):
                buf = cv2.imencode(".png", crop, [cv2.IMWRITE_PNG_COMPRESSION, 1])[1].tobytes()
                info = tarfile.TarInfo(f"{i:06d}.{name}.png")
                info.size = len(buf)
                tar.addfile(info, io.BytesIO(buf))
            done += 1
    return time.perf_counter() - t0, done, time.process_time() - c0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=48)
    parser.add_argument("--max-workers", type=int, default=min(16, os.cpu_count() or 1))
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=2, help="alternating rounds of the one-core builds")
    parser.add_argument("--source", type=Path, default=None,
                        help="folder of real photos (e.g. ../shared/data/imagenet-samples) instead of the embedded ones")
    parser.add_argument("--images", type=int, default=0,
                        help="with --source: use this many photos (default: pairs / 1.5, i.e. 1.5 pairs per image)")
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray scaling part")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.pairs < 1 or args.repeats < 1 or args.images < 0:
        parser.error("--pairs and --repeats must be >= 1, --images >= 0")
    if args.source is not None and not args.source.is_dir():
        parser.error(f"--source {args.source}: not a folder")
    cv2.setNumThreads(1)  # one core per worker, as in a pool or a Ray task

    paper = builtin_recipe("maa-paper").to_dict()
    paper["output"] = {**paper["output"], "size": args.size, "crop": "center"}
    identity = {"name": "identity", "output": paper["output"]}
    masks = {"kind": "felzenszwalb"}
    work = Path(tempfile.mkdtemp(prefix="bench_build_"))
    scaling: list[dict] = []
    try:
        if args.source is not None:
            images = args.images or max(1, round(args.pairs / 1.5))
            sources = link_sources(work / "src", args.source, images)
            source_desc = f"{images} photos from {args.source} ({args.pairs / images:.2f} pairs per image)"
        else:
            sources = write_sources(work / "src", ocr_pages=8)
            source_desc = "embedded sample photos + 8 synthetic pages"
        common = dict(sources=sources, target=args.pairs, shard_size=max(1, args.pairs // 8), seed=0,
                      mask_source=masks, mode="overwrite")

        # Every kind runs once per round, alternating, so all see the same machine load; the
        # ratios are taken per round (same load) and reported as median with min-max.
        runs: dict[str, list[dict]] = {"hand": [], "identity": [], "paper": [], "paper_cold": []}
        for r in range(args.repeats):
            shutil.rmtree(work / "paper", ignore_errors=True)  # cold: segments every source image
            for name in ("paper_cold", "hand", "identity", "paper"):
                if name == "hand":
                    wall, ok, cpu = hand_loop(sources, args.pairs, args.size, work / "hand")
                else:
                    recipe = identity if name == "identity" else paper
                    out = work / ("paper" if name.startswith("paper") else name)
                    wall, ok, cpu = timed_build(BuildConfig(recipe=recipe, out=out, **common))
                runs[name].append({"wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "pairs": ok,
                                   "pairs_per_s": round(ok / wall, 3), "pairs_per_cpu_s": round(ok / cpu, 3)})

        def ratios(a: str, b: str, key: str) -> dict:
            vals = [x[key] / y[key] for x, y in zip(runs[a], runs[b])]
            return {"median": round(statistics.median(vals), 3), "min": round(min(vals), 3), "max": round(max(vals), 3)}

        one_core = {
            "runs": runs,
            "ratios_cpu": {"identity_over_hand": ratios("identity", "hand", "pairs_per_cpu_s"),
                           "paper_over_identity": ratios("paper", "identity", "pairs_per_cpu_s"),
                           "paper_cold_over_identity": ratios("paper_cold", "identity", "pairs_per_cpu_s")},
            "ratios_wall": {"identity_over_hand": ratios("identity", "hand", "pairs_per_s"),
                            "paper_over_identity": ratios("paper", "identity", "pairs_per_s"),
                            "paper_cold_over_identity": ratios("paper_cold", "identity", "pairs_per_s")},
        }
        if not args.no_ray:
            from corruptor.run.distributor import ensure_ray

            ensure_ray(num_cpus=args.max_workers)
            # Untimed warm-up: every Ray worker process imports the package and loads the recipe once.
            shutil.copytree(work / "paper" / "masks", work / "warm" / "masks")
            build(BuildConfig(recipe=paper, out=work / "warm", distributor="ray", workers=args.max_workers,
                              **{**common, "target": 2 * args.max_workers, "shard_size": 1}))
            workers_list = sorted({1, *[w for w in (2, 4, 8, 16) if w <= args.max_workers], args.max_workers})
            ray_pairs = max(args.pairs, 4 * args.max_workers)
            for w in workers_list:
                out = work / f"ray{w}"
                shutil.copytree(work / "paper" / "masks", out / "masks")
                cfg = BuildConfig(recipe=paper, out=out, distributor="ray", workers=w,
                                  **{**common, "target": ray_pairs,
                                     "shard_size": max(1, ray_pairs // (2 * args.max_workers))})
                s, ok, _ = timed_build(cfg)
                scaling.append({"workers": w, "seconds": round(s, 3), "pairs": ok, "pairs_per_s": round(ok / s, 3)})
            base = scaling[0]["pairs_per_s"]
            for row in scaling:
                row["efficiency"] = round(row["pairs_per_s"] / (row["workers"] * base), 3)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    best_paper = max(x["pairs_per_s"] for x in runs["paper"])
    result = {
        "meta": {
            "machine": f"{platform.node() or 'vm'} {platform.machine()}, {os.cpu_count()} cores (shared)",
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": "python " + " ".join(sys.argv),
            "python": platform.python_version(),
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
            "size": args.size, "pairs": args.pairs, "mask_source": masks, "sources": source_desc,
            "repeats": args.repeats,
        },
        "one_core": one_core,
        "ray_scaling": scaling,
        "hours_for_75k_pairs": {"one_core_paper": round(PAPER_PAIRS / best_paper / 3600, 2),
                                **({f"ray_{scaling[-1]['workers']}_workers":
                                    round(PAPER_PAIRS / max(r["pairs_per_s"] for r in scaling) / 3600, 2)}
                                   if scaling else {})},
    }
    for kind, rs in one_core["ratios_cpu"].items():
        print(f"{kind:28s} CPU {rs['median']:.2f}x [{rs['min']:.2f}-{rs['max']:.2f}]  "
              f"wall {one_core['ratios_wall'][kind]['median']:.2f}x")
    for row in scaling:
        print(f"ray {row['workers']:>3} workers {row['pairs_per_s']:>8.2f} pairs/s  efficiency {row['efficiency']:.2f}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "build.json").write_text(json.dumps(result, indent=2) + "\n")
    write_markdown(result, args.out)
    return 0


def write_markdown(result: dict, out: Path = RESULTS) -> None:
    m, one = result["meta"], result["one_core"]
    goals = {"identity_over_hand": 0.95, "paper_over_identity": 0.8, "paper_cold_over_identity": 0.5}
    lines = [
        "# Dataset build throughput",
        "",
        f"Machine: {m['machine']}; date {m['date']}; command `{m['command']}`; load average "
        f"{m['load_average_at_end']} at the end (other jobs shared the cores, so absolute rates are low "
        "and the ratios, taken per alternating round, are the figures to read).",
        f"Sources: {m['sources']}. Output {m['size']} px PNG, {m['pairs']} pairs per one-core build, "
        f"{m['repeats']} rounds; masks from {m['mask_source']['kind']} (CPU fallback).",
        "",
        "| ratio (one core) | CPU time: median [min-max] | wall time: median | goal |",
        "|---|---|---|---|",
        *[f"| {k.replace('_', ' ')} | {v['median']:.2f}x [{v['min']:.2f}-{v['max']:.2f}] | "
          f"{one['ratios_wall'][k]['median']:.2f}x | >= {goals[k]}x |" for k, v in one["ratios_cpu"].items()],
        "",
        "| kind | pairs per CPU s (each round) | pairs per wall s (each round) |",
        "|---|---|---|",
        *[f"| {k} | {', '.join(str(r['pairs_per_cpu_s']) for r in rs)} | "
          f"{', '.join(str(r['pairs_per_s']) for r in rs)} |" for k, rs in one["runs"].items()],
        "",
    ]
    if result["ray_scaling"]:
        lines += ["| Ray workers | pairs/s | efficiency |", "|---|---|---|",
                  *[f"| {r['workers']} | {r['pairs_per_s']:.2f} | {r['efficiency']:.2f} |" for r in result["ray_scaling"]],
                  ""]
    lines.append("Time for 75K pairs: " + "; ".join(f"{k.replace('_', ' ')}: {v} h"
                                                   for k, v in result["hours_for_75k_pairs"].items()) + ".")
    (out / "build.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
