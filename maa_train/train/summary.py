"""What a training run reports when it ends (summary.json), and the per-rank memory peaks
its log steps record."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from maa_train.train import distributed


@dataclass
class TrainSummary:
    steps: int
    images: int
    seconds: float
    images_per_s: float
    final_losses: dict = field(default_factory=dict)
    best_val_l2: float | None = None
    best_step: int | None = None
    skipped_samples: int = 0
    broken_shards: list[str] = field(default_factory=list)
    out_dir: str = ""
    peak_memory_gb: float | None = None  # rank 0: CUDA max_memory_allocated, or on CPU the peak RSS
    world_size: int = 1
    device: str = ""  # e.g. "cuda" with the card's name, or "cpu"
    # images/s from the end of the first step to the end, validation and checkpoint time
    # left out: the throughput figure (`images_per_s` is the whole run's wall-clock rate).
    train_images_per_s: float | None = None
    warmup_s: float | None = None  # start of training to the end of the first step (loader start, compile)
    peak_memory_allocated_gb: list[float] | None = None  # per rank, CUDA only
    peak_memory_reserved_gb: list[float] | None = None  # per rank, CUDA only
    peak_rss_gb: list[float] | None = None  # per rank, CPU runs only
    # Means over log steps of discriminator accuracy, lambda, per-term gradient norms and
    # shares; the last gate values per block; the discriminator warnings given.
    diagnostics: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def read(cls, path: Path) -> "TrainSummary":
        """A summary.json written earlier (keys this version does not know are dropped)."""
        data = json.loads(path.read_text())
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def memory_fields(memory: dict) -> dict:
    """The summary's memory fields from a ``memory_record``."""
    return {"peak_memory_gb": (memory.get("mem_alloc_gb") or memory["rss_gb"])[0],
            "peak_memory_allocated_gb": memory.get("mem_alloc_gb"),
            "peak_memory_reserved_gb": memory.get("mem_reserved_gb"), "peak_rss_gb": memory.get("rss_gb")}


def _peak_rss_gb() -> float:
    """This process's peak resident set."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def memory_record(device: torch.device, world: int) -> dict:
    """Per-rank memory peaks, indexed by rank: CUDA allocated and reserved since training
    started, or on CPU each process's peak resident set. A collective: every rank calls it."""
    if device.type != "cuda":
        return {"rss_gb": [r[0] for r in distributed.gather_floats([_peak_rss_gb()], device, world)]}
    mine = [torch.cuda.max_memory_allocated(device) / 2**30, torch.cuda.max_memory_reserved(device) / 2**30]
    ranks = distributed.gather_floats(mine, device, world)
    return {"mem_alloc_gb": [r[0] for r in ranks], "mem_reserved_gb": [r[1] for r in ranks],
            "max_mem_alloc_gb": max(r[0] for r in ranks)}


def device_name(device: torch.device) -> str:
    return f"cuda ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else device.type
