"""Process-group set-up for `torchrun` (NCCL on GPUs, gloo on CPU) and gradient averaging.

The student's backbone is frozen and shared by the teacher pass, and the discriminator is
called twice per step (generator and discriminator losses); instead of two DDP wrappers
with their re-entrancy rules we average the trainable gradients ourselves, in one
flattened all-reduce per parameter group and step (the same communication DDP does,
without the overlap, which matters little for ~30M adapter parameters).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


class DeviceError(ValueError):
    """The requested device is not there (a configuration error, reported without a traceback)."""


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0


def pick_device(choice: str) -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        raise DeviceError("train.device=cuda but CUDA is not available; use train.device=cpu or auto")
    if choice == "cpu" or (choice == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    local = int(os.environ.get("LOCAL_RANK", 0))
    if local >= torch.cuda.device_count():
        raise DeviceError(f"LOCAL_RANK={local} but this node has {torch.cuda.device_count()} visible GPU(s): "
                           "start at most that many processes per node (torchrun --nproc-per-node)")
    return torch.device("cuda", local)


def init(device_choice: str) -> Dist:
    device = pick_device(device_choice)
    if device.type == "cuda":
        # Before any CUDA work and before NCCL: otherwise every rank opens a context on GPU 0.
        torch.cuda.set_device(device)
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world == 1:
        return Dist(device=device)
    if not dist.is_initialized():
        if device.type == "cuda":
            # device_id binds the communicator to this rank's GPU (barriers and object
            # collectives need not guess it) and creates it now, not at the first collective.
            dist.init_process_group("nccl", device_id=device)
        else:
            dist.init_process_group("gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)), device)


def shutdown(barrier: bool = True) -> None:
    """Leave the process group. `barrier`: wait for every rank first (a gloo rank that destroys
    its group while a peer is still finishing can abort at exit). Only after a run that ended
    on every rank: a rank that failed alone must leave at once, so that torchrun ends the job,
    instead of waiting in a barrier while its peers wait in the next all-reduce."""
    if dist.is_initialized():
        if barrier:
            dist.barrier()
        dist.destroy_process_group()


def average_gradients(params: list[torch.nn.Parameter], world: int) -> None:
    if world == 1:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset:offset + n].view_as(g))
        offset += n


def broadcast_parameters(params: list[torch.Tensor], world: int) -> None:
    """Copy rank 0's values to every rank (what DDP does at wrapping): the ranks then start
    from the same trainable weights even if something in their construction was random."""
    if world == 1 or not params:
        return
    flat = torch.cat([p.detach().reshape(-1).float() for p in params])
    dist.broadcast(flat, src=0)
    offset = 0
    with torch.no_grad():
        for p in params:
            n = p.numel()
            p.copy_(flat[offset:offset + n].view_as(p))
            offset += n


def all_finite(values: list[torch.Tensor], world: int) -> bool:
    """True on every rank iff every rank's values are finite (so all ranks stop together).

    One device-side reduction and one host read (a GPU sync) per call, however many losses."""
    if not values:
        return True
    ok = torch.stack([torch.isfinite(v.detach()).all() for v in values]).all().float().reshape(1)
    if world > 1:
        dist.all_reduce(ok, op=dist.ReduceOp.MIN)
    return bool(ok.item() == 1.0)


def reduce_sum(values: list[float], device: torch.device, world: int) -> list[float]:
    if world == 1:
        return values
    t = torch.tensor(values, device=device, dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()


def any_true(flag: bool, device: torch.device, world: int) -> bool:
    """True on every rank iff it is True on some rank (so all ranks take the same branch)."""
    if world == 1:
        return flag
    t = torch.tensor([float(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def union(items: set, world: int) -> set:
    if world == 1:
        return set(items)
    gathered: list = [None] * world
    dist.all_gather_object(gathered, sorted(items))
    return {x for part in gathered for x in part}


def gather_floats(values: list[float], device: torch.device, world: int) -> list[list[float]]:
    """Every rank's ``values``, indexed by rank (the same list on every rank)."""
    if world == 1:
        return [list(values)]
    t = torch.tensor(values, device=device, dtype=torch.float64)
    out = [torch.empty_like(t) for _ in range(world)]
    dist.all_gather(out, t)
    return [x.tolist() for x in out]
