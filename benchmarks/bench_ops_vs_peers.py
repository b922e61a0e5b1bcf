"""Our ops against every same-kind peer (imagecorruptions, albumentations, kornia), one run.

One thread per library (OpenCV, torch, BLAS), 512 px, severity 3 (--level). Every
backend runs once per round, in a rotating order, so all of them see the same machine
load; per backend we keep the CPU time (process_time) and wall time of each call. The
ratio of an op to a peer is peer / ours per round (>1: ours is faster), reported as the
median with the min-max over rounds, on CPU time (wall beside it). Writes
ops_vs_peers.json and ops_vs_peers.md to --out with machine, date, load and command.

    nice -n 10 .venv/bin/python benchmarks/bench_ops_vs_peers.py --rounds 5
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

# One thread per library, set before numpy/torch/cv2 start their pools.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.bench_corruptions import bench_images, machine  # noqa: E402
from benchmarks.peers import load_peers  # noqa: E402
from corruptor.ops.imagecorruptions_compat import apply_imagecorruptions  # noqa: E402
from corruptor.ops.registry import IMAGENET_C, LEVELS, get_op, load_all  # noqa: E402
from maa_format.rng import rng_for  # noqa: E402

SLOW_REFERENCE = ("glass_blur",)  # the reference's per-pixel Python loop: seconds per call


def backends(name: str, level: int, peers: dict) -> dict:
    op = get_op(name)

    def ours(image):
        return op.fn(image, op.params(rng_for(0, "bench", name), level, image.shape[:2]))

    out = {"ours": ours}
    if name in IMAGENET_C and name not in SLOW_REFERENCE:
        out["imagecorruptions"] = lambda image: apply_imagecorruptions(image, name, level, seed=0)
    out.update(peers.get(name, {}) if level == 3 else {})
    return out


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 100.0 if mse == 0 else round(10 * np.log10(255.0 ** 2 / mse), 2)


def time_op(fns: dict, images: list[np.ndarray], rounds: int) -> dict:
    cpu = {k: [] for k in fns}
    wall = {k: [] for k in fns}
    labels = list(fns)
    for warm in labels:  # imports, pools, first allocations
        fns[warm](images[0][:64, :64].copy())
    for r in range(rounds):
        order = labels[r % len(labels):] + labels[:r % len(labels)]
        for label in order:
            c0, w0 = time.process_time(), time.perf_counter()
            for image in images:
                fns[label](image)
            cpu[label].append((time.process_time() - c0) * 1000 / len(images))
            wall[label].append((time.perf_counter() - w0) * 1000 / len(images))
    # Is the peer even doing the same thing? PSNR of its output against ours on the first
    # image (seeded ops differ in their noise draw; then compare to the clean PSNRs instead).
    first = images[0]
    ours_out = fns["ours"](first.copy())
    result = {}
    for label in labels:
        entry = {"cpu_ms": statistics.median(cpu[label]), "cpu_ms_range": [min(cpu[label]), max(cpu[label])],
                 "wall_ms": statistics.median(wall[label]), "wall_ms_range": [min(wall[label]), max(wall[label])]}
        if label != "ours":
            ratios = [p / o for p, o in zip(cpu[label], cpu["ours"]) if o > 0]
            wratios = [p / o for p, o in zip(wall[label], wall["ours"]) if o > 0]
            peer_out = np.asarray(fns[label](first.copy()))
            entry.update(ratio_cpu=statistics.median(ratios), ratio_cpu_range=[min(ratios), max(ratios)],
                         ratio_wall=statistics.median(wratios),
                         psnr_vs_ours=_psnr(peer_out, ours_out) if peer_out.shape == ours_out.shape else None,
                         psnr_vs_clean=_psnr(peer_out, first) if peer_out.shape == first.shape else None)
        result[label] = entry
    result["ours"]["psnr_vs_clean"] = _psnr(ours_out, first)
    return result


def markdown(report: dict) -> str:
    lines = ["# Ops vs same-kind peers (CPU time, one thread)", "",
             f"- date: {report['date']}", f"- machine: {report['machine']['platform']}, "
             f"{report['machine']['cpu_count']} CPUs; load average at start {report['load_start']}, "
             f"at end {report['load_end']}", f"- command: `{report['command']}`",
             f"- {report['settings']['images']} images at 512 px, severity {report['settings']['level']}, "
             f"{report['settings']['rounds']} interleaved rounds; ratio = peer CPU ms / ours per round "
             "(>1: ours faster), median [min-max]", ""]
    if report["missing_peers"]:
        lines += [f"- missing: {k}: {v}" for k, v in report["missing_peers"].items()] + [""]
    lines += ["PSNR columns: a peer's output against ours and against the clean image (ours: "
              "`ours vs clean`); a peer far from ours is not doing the same operation, so its speed "
              "is no target.", "",
              "| op | ours CPU ms [min-max] | ours wall ms | ours vs clean dB | peer: ratio CPU [min-max] (wall); "
              "PSNR vs ours / vs clean | fastest peer ratio |",
              "|---|---:|---:|---:|---|---:|"]
    for name, res in report["ops"].items():
        ours = res["ours"]
        cells, best = [], None
        for label, e in res.items():
            if label == "ours":
                continue
            cells.append(f"{label}: {e['ratio_cpu']:.2f}x [{e['ratio_cpu_range'][0]:.2f}-"
                         f"{e['ratio_cpu_range'][1]:.2f}] ({e['ratio_wall']:.2f}x); "
                         f"{e['psnr_vs_ours']} / {e['psnr_vs_clean']} dB")
            best = e["ratio_cpu"] if best is None else min(best, e["ratio_cpu"])
        lines.append(f"| {name} | {ours['cpu_ms']:.2f} [{ours['cpu_ms_range'][0]:.2f}-{ours['cpu_ms_range'][1]:.2f}]"
                     f" | {ours['wall_ms']:.2f} | {ours['psnr_vs_clean']} | {'; '.join(cells) or '—'} | "
                     f"{'—' if best is None else f'{best:.2f}x'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ops", default=",".join(IMAGENET_C))
    parser.add_argument("--images", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--level", type=int, default=3, choices=LEVELS)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    ops = load_all()
    names = [o.strip() for o in args.ops.split(",") if o.strip()]
    unknown = [o for o in names if o not in ops]
    if unknown:
        parser.error(f"--ops: unknown {unknown}")
    if args.images < 1 or args.rounds < 1:
        parser.error("--images and --rounds must be >= 1")
    cv2.setNumThreads(1)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    peers, missing = load_peers()
    images = bench_images(args.images)
    load_start = os.getloadavg()
    report = {"benchmark": "ops_vs_peers", "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "command": shlex.join([sys.executable, *sys.argv]), "machine": machine(),
              "settings": {"images": args.images, "rounds": args.rounds, "level": args.level, "threads": 1},
              "missing_peers": missing, "load_start": [round(x, 2) for x in load_start], "ops": {}}
    for name in names:
        res = time_op(backends(name, args.level, peers), images, args.rounds)
        report["ops"][name] = res
        peers_txt = " ".join(f"{k}={v['ratio_cpu']:.2f}x" for k, v in res.items() if k != "ours")
        print(f"{name:18s} ours {res['ours']['cpu_ms']:7.2f} ms cpu  {peers_txt}", flush=True)
    report["load_end"] = [round(x, 2) for x in os.getloadavg()]
    suffix = "" if args.level == 3 else f"_s{args.level}"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"ops_vs_peers{suffix}.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / f"ops_vs_peers{suffix}.md").write_text(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
