"""Training throughput: our trainer step vs a reference step, MFU, and the loader's rate.

The reference step follows the public release's semantics: a second deep-copied teacher
encoder, eager mode, fp32 adapters under bf16 autocast, BCE discriminator. Ours: one
frozen encoder shared by teacher and student (adapters switched off for the teacher),
bf16 adapter matrix work with an fp32 residual sum, optional torch.compile.

Both steps run on the same device, batch and random-weight encoder in one process.
MFU = FLOPs of one training step (torch.utils.flop_counter) / step time / peak bf16
dense FLOP/s of the card. The loader figure is pairs/s of PairStream with N workers on a
built dataset, against the trainer's images/s.

    python benchmarks/bench_train.py --arch clip-vit-l-14-336 --batch 32 --data DATASET_DIR
    python benchmarks/bench_train.py --arch tiny-clip --device cpu --batch 4 --data DIR   # smoke run
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import md_table, median, timed, write_results  # noqa: E402

# Peak dense (no sparsity) bf16 tensor FLOP/s by a fragment of the card's name, from the
# vendor datasheets; first match wins, so the H100 variants come before plain "H100" (the SXM
# card, which reports itself as e.g. "NVIDIA H100 80GB HBM3").
PEAK_BF16: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756e12), ("H100 NVL", 835e12), ("GH200", 989e12), ("H200", 989e12), ("H100", 989e12),
    ("A100", 312e12), ("L40S", 362e12), ("A10G", 70e12),
)


def peak_flops_for(name: str) -> float | None:
    low = name.lower()
    return next((v for k, v in PEAK_BF16 if k.lower() in low), None)


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    return peak_flops_for(torch.cuda.get_device_name(device))


def make_trainer(model_dir: Path, data: str, out: Path, batch: int, device: str, compile_: bool, workers: int):
    from maa_train.train.config import load_config
    from maa_train.train.trainer import Trainer

    cfg = load_config(base={
        "model": {"path": str(model_dir)},
        "data": {"train": [data], "batch_size": batch, "workers": workers},
        "train": {"device": device, "precision": "bf16", "compile": compile_, "out_dir": str(out),
                  "max_steps": 1000, "progress": False},
    })
    return Trainer(cfg)


class ReferenceStep:
    """The release's step: a second teacher encoder, eager, fp32 adapters, BCE discriminator."""

    def __init__(self, trainer):
        from maa_train.students.adapter import AdapterConfig
        from maa_train.objectives.discriminator import TokenDiscriminator
        from maa_train.students.inject import AdaptedEncoder
        from maa_train.encoders.load import load_vision_model

        dev = trainer.dist.device
        # Both encoders loaded afresh: a deep copy of the trainer's backbone would carry its
        # adapter hooks along and run extra adapters in the reference step.
        self.teacher = load_vision_model(trainer.cfg.model.path)[0].to(dev).eval().requires_grad_(False)
        student_model = load_vision_model(trainer.cfg.model.path)[0]
        cfg = AdapterConfig(**{**trainer.student.adapter_cfg.to_dict(), "full_fp32": True})
        self.student = AdaptedEncoder(student_model, cfg, feature_layer=trainer.student.feature_layer).to(dev)
        self.disc = TokenDiscriminator(self.student.feature_dim).to(dev)
        self.opt_g = torch.optim.AdamW(self.student.trainable_parameters(), lr=5e-5, weight_decay=0)
        self.opt_d = torch.optim.AdamW(self.disc.parameters(), lr=1e-6, weight_decay=0)
        self.teacher_wrapped = AdaptedEncoder(self.teacher, cfg, feature_layer=trainer.student.feature_layer).to(dev)
        self.dev = dev

    def __call__(self, clean: torch.Tensor, degraded: torch.Tensor) -> None:
        bce = torch.nn.functional.binary_cross_entropy_with_logits
        with torch.autocast(self.dev.type, dtype=torch.bfloat16):
            with torch.no_grad(), self.teacher_wrapped.adapters_disabled():
                t = self.teacher_wrapped.features(clean)
            s = self.student.features(degraded)
            fake = self.disc(s)
            loss_g = torch.nn.functional.mse_loss(s.float(), t.float()) + 0.1 * bce(fake.float(), torch.ones_like(fake.float()))
        self.opt_g.zero_grad(set_to_none=True)
        self.opt_d.zero_grad(set_to_none=True)
        loss_g.backward()
        torch.nn.utils.clip_grad_norm_(self.student.trainable_parameters(), 1.0)
        self.opt_g.step()
        with torch.autocast(self.dev.type, dtype=torch.bfloat16):
            real, fake = self.disc(t.detach()).float(), self.disc(s.detach()).float()
            loss_d = 0.5 * (bce(real, torch.ones_like(real)) + bce(fake, torch.zeros_like(fake)))
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_d.step()


def our_step(trainer, pairs: torch.Tensor) -> None:
    """One training step from a loader batch's uint8 pairs, normalisation on the device included."""
    trainer._micro_step({"pairs": pairs, "keys": []}, 1.0)
    trainer._optimizer_step()


def count_flops(fn) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def count_step_flops(trainer, pairs: torch.Tensor) -> int:
    """FLOPs of our step, counted on the eager encoder pass: the mathematics is the same when
    compiled, and the counter sees the operators only when they run one by one."""
    compiled, trainer.forward = trainer.forward, trainer.student.features
    try:
        return count_flops(lambda: our_step(trainer, pairs))
    finally:
        trainer.forward = compiled


def loader_rate(trainer, workers: int, batches: int) -> float:
    """Pairs/s the loader delivers to the trainer's process (pinned, as the trainer asks, on CUDA)."""
    import time

    from maa_train.data.loader import LoaderState, PairStream, make_loader

    state = LoaderState(seed=0, world=1, workers=max(1, workers))
    ds = PairStream(trainer.datasets, None, trainer.settings, batch_size=trainer.cfg.data.batch_size,
                    steps=batches + 2, state=state, shuffle_buffer=64)
    it = iter(make_loader(ds, workers, pin_memory=trainer.dist.device.type == "cuda"))
    next(it)  # worker start-up is not throughput
    t = time.perf_counter()
    n = 0
    for _ in range(batches):
        n += next(it)["pairs"].shape[0]
    return n / (time.perf_counter() - t)


def random_pairs(batch: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """A loader-shaped batch: uint8 [B, 2, 3, S, S], the degraded half a noisy copy of the clean one."""
    clean = torch.randint(0, 256, (batch, 3, size, size), generator=generator, dtype=torch.uint8)
    noise = torch.randint(-12, 13, clean.shape, generator=generator, dtype=torch.int16)
    degraded = (clean.to(torch.int16) + noise).clamp_(0, 255).to(torch.uint8)
    return torch.stack([clean, degraded], dim=1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="clip-vit-l-14-336")
    p.add_argument("--model", help="an existing model folder instead of a random --arch")
    p.add_argument("--data", required=True, help="a built dataset (corruptor build)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--device", default="cuda")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--compile", action="store_true")
    p.add_argument("--loader-workers", type=int, default=8)
    p.add_argument("--loader-batches", type=int, default=20)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="the card's peak dense bf16 TFLOP/s, for a card the table does not know")
    a = p.parse_args()

    from maa_train.data.loader import pair_batch_bytes
    from maa_train.data.preprocess import normalise_pairs
    from maa_train.random_models import save_random_model

    scratch = tempfile.TemporaryDirectory(prefix="bench_train_")  # removed at exit
    tmp = Path(scratch.name)
    model_dir = Path(a.model) if a.model else save_random_model(a.arch, tmp / a.arch)
    trainer = make_trainer(model_dir, a.data, tmp / "run", a.batch, a.device, a.compile, a.loader_workers)
    dev = trainer.dist.device
    s = trainer.settings.size
    g = torch.Generator().manual_seed(0)
    pairs = random_pairs(a.batch, s, g).to(dev)  # what the loader hands over: uint8, normalised on the device
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    cuda = dev.type == "cuda"

    ours = timed(lambda: our_step(trainer, pairs), a.repeats, warmup=3, sync=sync)
    mem_ours = torch.cuda.max_memory_allocated(dev) / 2**30 if cuda else None  # everything ours holds
    flops = count_step_flops(trainer, pairs)
    # The release's loader hands over normalised float images: the reference step gets them ready.
    clean, degraded = normalise_pairs(pairs, trainer.settings)
    inputs_bytes = 2 * clean.numel() * clean.element_size()
    # The reference's peak is counted above what our trainer still holds (plus the shared inputs).
    held = torch.cuda.memory_allocated(dev) if cuda else 0
    ref = ReferenceStep(trainer)
    if cuda:
        torch.cuda.reset_peak_memory_stats(dev)
    theirs = timed(lambda: ref(clean, degraded), a.repeats, warmup=3, sync=sync)
    mem_ref = (torch.cuda.max_memory_allocated(dev) - held + inputs_bytes) / 2**30 if cuda else None

    t_ours, t_ref = median(ours), median(theirs)
    ips_ours, ips_ref = a.batch / t_ours, a.batch / t_ref
    peak = a.peak_tflops * 1e12 if a.peak_tflops else peak_flops(dev)
    mfu = flops / t_ours / peak if peak else None
    pairs_s = loader_rate(trainer, a.loader_workers, a.loader_batches)
    rows = [["ours", t_ours * 1e3, ips_ours, mem_ours, flops / 1e12, mfu],
            ["reference", t_ref * 1e3, ips_ref, mem_ref, None, None]]
    table = md_table(["step", "median ms", "images/s", "peak GiB", "TFLOP/step", "MFU"], rows)
    table += (f"\n\nspeed-up ours/reference: **{ips_ours / ips_ref:.2f}x** (target >= 2x)"
              f"\nMFU: {('%.1f%%' % (100 * mfu)) if mfu else 'n/a (no known peak for this device)'} (target >= 45%)"
              f"\nloader: {pairs_s:.1f} pairs/s with {a.loader_workers} workers = "
              f"{pairs_s / ips_ours:.2f}x the trainer's {ips_ours:.1f} images/s (target >= 2x); "
              f"{pair_batch_bytes(a.batch, s) / 2**20:.1f} MiB of uint8 pairs per batch\n"
              f"\nmodel: {a.model or a.arch + ' (random weights)'}; batch {a.batch}; device {dev}"
              f"{' (' + torch.cuda.get_device_name(dev) + ')' if cuda else ''}; compile={a.compile}\n")
    print(table)
    name = ("train" if cuda else "train_cpu_smoke") + ("_compiled" if a.compile else "")
    write_results(name, {
        "arch": a.arch, "batch": a.batch, "device": str(dev), "ours_s": ours, "reference_s": theirs,
        "speedup": ips_ours / ips_ref, "flops_per_step": flops, "mfu": mfu, "peak_flops": peak,
        "loader_pairs_per_s": pairs_s, "loader_workers": a.loader_workers,
        "loader_batch_bytes": pair_batch_bytes(a.batch, s), "mem_gib": [mem_ours, mem_ref],
        "device_name": torch.cuda.get_device_name(dev) if cuda else "cpu", "compile": a.compile},
        table, a.out or Path(__file__).resolve().parent / "results")


if __name__ == "__main__":
    main()
