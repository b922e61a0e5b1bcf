"""Cost of MAA adapters in a CLIP vision encoder: forward FLOPs and latency, base vs adapted.

Variants, all on the same random-weight encoder in one run:
  base           the frozen encoder alone (bf16 weights)
  maa            + adapters as trained: fp32 parameters, bf16 autocast matrix work, fp32 residual sum
  maa-compiled   the same adapters, each compiled with torch.compile (--compile)
  maa-fp32       + adapters computed entirely in fp32 (the public release's compute)

FLOPs are counted with torch.utils.flop_counter (matmuls, convolutions, attention). The full
ViT-L/14-336 is also counted at batch 1 on the meta device (no memory, no compute), which
checks the adapter's share of the forward FLOPs on any machine.

GPU run (the figure that matters):
    python benchmarks/bench_overhead.py --device cuda --batch-sizes 1,64 --compile
CPU smoke run (tiny encoder):
    python benchmarks/bench_overhead.py --device cpu
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from maa_train.adapter import AdapterConfig  # noqa: E402
from maa_train.inject import AdaptedEncoder  # noqa: E402

VIT_L_336 = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                 image_size=336, patch_size=14, projection_dim=768, hidden_act="quick_gelu")
TINY = dict(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4, image_size=84,
            patch_size=14, hidden_act="quick_gelu")
TINY_ADAPTER = AdapterConfig(bottleneck=16, attn_dim=16, heads=4, window=7)
PAPER_GFLOPS = {"base": 381.9, "adapted": 416.6}


def build_encoder(vision: dict, device: str, dtype: torch.dtype):
    from transformers import CLIPVisionConfig, CLIPVisionModel

    config = CLIPVisionConfig(**vision)
    config._attn_implementation = "sdpa"
    with torch.device(device):
        model = CLIPVisionModel(config)
    return model.to(dtype=dtype).eval()


def count_flops(fn, device: str) -> int:
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    # The CPU fused SDPA kernel has no FLOP formula; its math backend is counted as matmuls.
    backends = ([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION, SDPBackend.MATH]
                if device.startswith("cuda") else [SDPBackend.MATH])
    with counter, sdpa_kernel(backends), torch.no_grad():
        fn()
    return counter.get_total_flops()


def padded_projection_flops(vision: dict, cfg: AdapterConfig) -> int:
    """FLOPs an implementation spends beyond ours if it projects the padded grid cells through
    qkv and proj (ours materialises their q/k/v as the qkv bias and crops before proj), less the
    CLS token's qkv projection, which ours computes to avoid copying the patch tokens."""
    side = vision["image_size"] // vision["patch_size"]
    padded = math.ceil(side / cfg.window) * cfg.window
    extra_cells = padded * padded - side * side
    d, a, prefix = vision["hidden_size"], cfg.attn_dim, 1
    return vision["num_hidden_layers"] * 2 * (extra_cells * (d * 3 * a + a * d) - prefix * d * 3 * a)


def meta_flops(vision: dict, cfg: AdapterConfig) -> dict:
    model = build_encoder(vision, "meta", torch.float32)
    x = torch.empty(1, 3, vision["image_size"], vision["image_size"], device="meta")
    base = count_flops(lambda: model(pixel_values=x), "meta")
    adapted = AdaptedEncoder(model, cfg)
    ours = count_flops(lambda: adapted.features(x), "meta")
    padded = ours + padded_projection_flops(vision, cfg)
    return {"base_gflops": base / 1e9, "adapted_gflops": ours / 1e9, "adapted_padded_projection_gflops": padded / 1e9,
            "overhead_pct": 100 * (ours / base - 1), "paper_gflops": PAPER_GFLOPS}


def time_ms(fn, device: str, iters: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        if device.startswith("cuda"):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append(1000 * (time.perf_counter() - t0))
    return statistics.median(times)


def run(args) -> dict:
    device = args.device
    tiny = args.tiny if args.tiny is not None else device == "cpu"
    vision = TINY if tiny else VIT_L_336
    cfg = TINY_ADAPTER if tiny else AdapterConfig()
    dtype = torch.bfloat16
    torch.manual_seed(0)
    model = build_encoder(vision, device, dtype)
    variants = {"maa": AdapterConfig(**{**cfg.to_dict()})}
    if args.compile:
        variants["maa-compiled"] = cfg
    variants["maa-fp32"] = AdapterConfig(**{**cfg.to_dict(), "full_fp32": True})

    students = {}
    for name, vcfg in variants.items():
        student = AdaptedEncoder(model, vcfg)
        student.remove_hooks()  # attached one at a time below
        with torch.no_grad():  # open gates so no path can be skipped
            for adapter in student.adapters:
                adapter.alpha_mlp.fill_(0.1)
                adapter.alpha_pool.fill_(0.1)
        if name == "maa-compiled":
            # 24 instances of one module class: allow one graph each if dynamo specialises on them.
            torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
            for adapter in student.adapters:
                adapter.compile(dynamic=False)
        students[name] = student

    rows = []
    for batch in args.batch_sizes:
        x = torch.randn(batch, 3, vision["image_size"], vision["image_size"], device=device, dtype=dtype)

        def forward_base():
            with torch.inference_mode(), torch.autocast(device.split(":")[0], dtype=dtype):
                return model(pixel_values=x).last_hidden_state

        base_flops = count_flops(forward_base, device)
        base_ms = time_ms(forward_base, device, args.iters, args.warmup)
        rows.append({"batch": batch, "variant": "base", "gflops": base_flops / 1e9, "ms": base_ms,
                     "flops_ratio": 1.0, "latency_ratio": 1.0})
        for name, student in students.items():
            student.install_hooks()
            try:
                def forward_adapted():
                    with torch.inference_mode(), torch.autocast(device.split(":")[0], dtype=dtype):
                        return model(pixel_values=x).last_hidden_state

                flops = count_flops(forward_adapted, device) if name != "maa-compiled" else None
                ms = time_ms(forward_adapted, device, args.iters, args.warmup)
            finally:
                student.remove_hooks()
            rows.append({"batch": batch, "variant": name, "gflops": None if flops is None else flops / 1e9, "ms": ms,
                         "flops_ratio": None if flops is None else flops / base_flops, "latency_ratio": ms / base_ms})
    return {"vision": vision, "adapter": cfg.to_dict(), "rows": rows}


def machine(device: str) -> dict:
    import transformers

    info = {"platform": platform.platform(), "machine": platform.machine(), "cpus": __import__("os").cpu_count(),
            "torch": torch.__version__, "transformers": transformers.__version__, "device": device}
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def to_markdown(record: dict) -> str:
    m = record["machine"]
    lines = [f"# Adapter overhead ({record['date']})", "",
             f"Machine: {m['machine']}, {m['cpus']} CPUs, torch {m['torch']}, transformers {m['transformers']}, "
             f"device `{m['device']}`{', ' + m['gpu'] if 'gpu' in m else ''}.",
             f"Command: `{record['command']}`", ""]
    if "full_flops" in record:
        f = record["full_flops"]
        lines += ["## CLIP ViT-L/14-336, batch 1, counted on the meta device", "",
                  "| | GFLOPs | paper |", "|---|---|---|",
                  f"| base encoder | {f['base_gflops']:.1f} | {f['paper_gflops']['base']} |",
                  f"| adapted (ours: padded cells not projected) | {f['adapted_gflops']:.1f} | |",
                  f"| adapted, padded cells projected (release shape) | {f['adapted_padded_projection_gflops']:.1f} | "
                  f"{f['paper_gflops']['adapted']} |",
                  f"| overhead (ours) | {f['overhead_pct']:.1f}% | {100 * (416.6 / 381.9 - 1):.1f}% |", ""]
    if "latency" in record:
        lat = record["latency"]
        v = lat["vision"]
        lines += [f"## Latency: CLIP {v['num_hidden_layers']} blocks, width {v['hidden_size']}, "
                  f"{v['image_size']} px, bf16 weights, random init", "",
                  "| batch | variant | GFLOPs | FLOPs ratio | ms (median) | latency ratio |", "|---|---|---|---|---|---|"]
        for r in lat["rows"]:
            gf = "" if r["gflops"] is None else f"{r['gflops']:.4g}"
            fr = "" if r["flops_ratio"] is None else f"{r['flops_ratio']:.3f}"
            lines.append(f"| {r['batch']} | {r['variant']} | {gf} | {fr} | {r['ms']:.2f} | {r['latency_ratio']:.2f}x |")
        lines += ["", "Targets: latency ratio <= 1.25x at batch 1 and <= 1.15x at batch 64 (GPU)."]
        if not m["device"].startswith("cuda"):
            lines += ["", "This is a CPU smoke run of a tiny encoder: its latencies are per-op overhead and say "
                          "nothing about the GPU targets."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-sizes", default=None, help="comma separated; default 1,64 on GPU, 1,4 on CPU")
    parser.add_argument("--iters", type=int, default=None)
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--tiny", action=argparse.BooleanOptionalAction, default=None,
                        help="tiny encoder (default on CPU) instead of ViT-L/14-336")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile'd adapters")
    parser.add_argument("--skip-full-flops", action="store_true", help="skip the ViT-L/14-336 meta-device count")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args(argv)
    gpu = args.device.startswith("cuda")
    args.batch_sizes = [int(b) for b in (args.batch_sizes or ("1,64" if gpu else "1,4")).split(",")]
    args.iters = args.iters or (50 if gpu else 5)
    args.warmup = args.warmup or (10 if gpu else 2)

    record = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "command": "python benchmarks/bench_overhead.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "machine": machine(args.device)}
    if not args.skip_full_flops:
        record["full_flops"] = meta_flops(VIT_L_336, AdapterConfig())
    record["latency"] = run(args)
    md = to_markdown(record)
    print(md)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "overhead_" + ("gpu" if gpu else "cpu")
    (out / f"{stem}.json").write_text(json.dumps(record, indent=2))
    (out / f"{stem}.md").write_text(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
