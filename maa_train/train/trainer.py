"""The MAA training loop: adapters (student) against a per-token discriminator.

    min_adapters  L_distill(student(degraded), teacher(clean)) + lambda * L_adv

The teacher is the same frozen encoder with adapters disabled (no second copy). One
process per GPU under `torchrun`; gradients of the trainable parts are averaged across
ranks (maa_train.train.distributed). Every random draw is explicit, so a run killed at any
step and resumed from its last checkpoint ends with the same weights as one that ran
through (on deterministic CPU settings).
"""
from __future__ import annotations

import json
import logging
import math
import os
import signal
import threading
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch

from maa_train.train import distributed

from maa_train.train import train_state
from maa_train.students.baselines import make_student
from maa_train.students.checkpoint import CheckpointMismatchError, check_compatible, load_adapters, save_adapters
from maa_train.train.batch import apply_batch, resolve_batch
from maa_train.train.config import ConfigError, TrainConfig, student_kwargs
from maa_train.train.out_dir import check_out_dir
from maa_train.train.resume_check import ResumeMismatchError, check_resumable, load_newest_intact
from maa_train.encoders.load import load_vision_model
from maa_train.data.loader import (LoaderState, PairStream, ValStream, check_shared_memory, make_loader, pair_batch_bytes,
                              steps_per_epoch)
from maa_train.objectives.base import Step, build_objectives
from maa_train.train.metrics_log import MetricsLog
from maa_train.train.diagnostics import (DiscriminatorMonitor, RunningMeans, backward_by_term, clip_shares,
                                         gate_values, is_diagnostic)
from maa_train.data.preprocess import ImageSizeError, ProcessorSettings, normalise_pairs
from maa_train.data.shards import holdout_groups, resolve_shards, split_holdout, without_groups

log = logging.getLogger(__name__)


class TrainingDiverged(RuntimeError):
    pass


class TrainingInterrupted(RuntimeError):
    """SIGINT/SIGTERM: the run stopped at a step boundary after writing a checkpoint."""


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


def cosine_with_warmup(total: int, warmup_frac: float):
    warm = int(round(total * warmup_frac))

    def factor(step: int) -> float:
        if warm and step < warm:
            return (step + 1) / warm
        progress = (step - warm) / max(1, total - warm)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def _data(cfg: TrainConfig):
    """Training shards per dataset, held-out shards, and the held-out images' groups.

    Without data.val, whole shards of the first dataset are held out; variants of the same
    source image can sit in other shards, so those are skipped in training too.
    """
    datasets = [resolve_shards(spec) for spec in cfg.data.train]
    if cfg.data.val:
        val = [s for spec in cfg.data.val for s in resolve_shards(spec)]
    else:
        datasets[0], val = split_holdout(datasets[0], cfg.data.val_fraction)
    groups = holdout_groups(val)
    kept = [without_groups(d, groups) for d in datasets]
    _report_holdout(datasets, kept, val, groups)
    return kept, val, groups


def _report_holdout(before, after, val, groups) -> None:
    n_val = sum(s.count or 0 for s in val)
    total, left = (sum(s.count or 0 for d in ds for s in d) for ds in (before, after))
    log.info("validation: %d held-out shard(s), %d pairs of %d source images", len(val), n_val, len(groups))
    dropped = total - left
    if dropped:
        share = dropped / max(1, total)
        (log.warning if share > 0.2 else log.info)(
            "%d of %d training pairs (%.0f%%) are variants of held-out images and are skipped%s", dropped, total,
            100 * share, "; the dataset has many variants per source image: give data.val (pairs from other "
            "images) to keep them" if share > 0.2 else "")


class Trainer:
    def __init__(self, cfg: TrainConfig):
        self.dist = distributed.init(cfg.train.device)
        self.batch = resolve_batch(cfg, self.dist.world)
        cfg = self.cfg = apply_batch(cfg, self.batch)
        if self.dist.main:
            log.info("batch: %s", self.batch.describe())
        self.out = Path(cfg.train.out_dir)
        if self.dist.main:
            check_out_dir(self.out, resume=cfg.train.resume, overwrite=cfg.train.overwrite)
        if self.dist.world > 1:
            torch.distributed.barrier()  # no rank writes into out_dir before it is checked
        if cfg.train.deterministic:
            torch.use_deterministic_algorithms(True)
        torch.manual_seed(cfg.train.seed)
        self.ckpt_dir = self.out / "checkpoints"
        # Data first: a wrong path should fail in seconds, not after minutes of model loading.
        self.datasets, self.val_shards, self.holdout_groups = _data(cfg)

        model, self.info = load_vision_model(cfg.model.path)
        self.student = make_student(
            cfg.train.student, model, cfg.adapter,
            feature_layer=cfg.model.feature_layer, use_projector=cfg.model.use_projector, info=self.info,
            **student_kwargs(cfg),
        ).to(self.dist.device)
        self.objectives = build_objectives(cfg, self.student).to(self.dist.device)
        self.aux_params = self.objectives.parameters_to_train()  # the discriminator's, when adversarial
        # No DDP wrapper (see maa_train.train.distributed), so make its start-up guarantee here:
        # every rank begins from rank 0's trainable weights.
        distributed.broadcast_parameters(self._trainable_and_disc(), self.dist.world)
        # Compiled: the encoder pass with its adapter hooks (teacher and student both run it:
        # two graphs, one with adapters off under no_grad). Validation stays eager, so eval
        # mode and other batch sizes never trigger recompiles.
        self.forward = torch.compile(self.student.features) if cfg.train.compile else self.student.features
        try:
            self.settings = ProcessorSettings.from_model_dir(cfg.model.path, cfg.data.image_size)
        except ImageSizeError as exc:
            raise ConfigError(f"data.image_size: {exc}") from None

        w = self.dist.world
        accum = cfg.optim.grad_accum
        per_epoch = cfg.data.steps_per_epoch or steps_per_epoch(self.datasets, cfg.data.batch_size, w)
        # Whole accumulation groups per epoch: no partial group's gradients leak into the next epoch.
        self.steps_per_epoch = max(accum, per_epoch - per_epoch % accum)
        self.total_steps = cfg.train.max_steps or max(1, int(cfg.train.epochs * self.steps_per_epoch) // accum)

        o = cfg.optim
        self.opt_g = torch.optim.AdamW(self.student.trainable_parameters(), lr=o.adapter_lr, weight_decay=o.weight_decay)
        factor = cosine_with_warmup(self.total_steps, o.warmup_frac)
        # During the discriminator warm-up the adapters neither move nor advance their schedule:
        # their warm-up and cosine run over the steps that train them.
        disc_warm = cfg.discriminator.warmup_steps if self.aux_params else 0
        if disc_warm >= self.total_steps:
            raise ValueError(f"discriminator.warmup_steps={disc_warm} leaves no adapter step of {self.total_steps}")
        self.sched_g = torch.optim.lr_scheduler.LambdaLR(self.opt_g, cosine_with_warmup(self.total_steps - disc_warm,
                                                                                        o.warmup_frac))
        if self.aux_params:
            self.opt_d = torch.optim.AdamW(self.aux_params, lr=o.disc_lr, weight_decay=o.weight_decay,
                                           betas=cfg.discriminator.betas)
            self.sched_d = torch.optim.lr_scheduler.LambdaLR(self.opt_d, factor)
        self.step = 0
        self.loader_state = LoaderState(seed=cfg.train.seed, world=w, workers=max(1, cfg.data.workers))
        self.best = (math.inf, None)
        # Data faults: counters of earlier epochs / runs plus each live stream's running count.
        self.skipped, self.broken = 0, set()
        self._stream_skips: dict[int, int] = {}
        self._stop_signal: int | None = None
        self._stop_time = 0.0
        self.metrics = MetricsLog(self.out, enabled=self.dist.main)
        d = cfg.discriminator
        self.monitor = DiscriminatorMonitor(d.warn_after_steps, d.chance_band, d.collapse_accuracy)
        self.diag_means = RunningMeans()

    def _trainable_and_disc(self) -> list[torch.nn.Parameter]:
        return list(self.student.trainable_parameters()) + self.aux_params

    # -- checkpoints ---------------------------------------------------------------
    def _state(self) -> dict:
        # RNG states of rank 0 only: every rank seeds alike and draws alike, so they are equal.
        state = {"step": self.step, "total_steps": self.total_steps, "loader": self.loader_state.to_dict(),
                 "rng": train_state.rng_states(self.dist.device),
                 "opt_g": self.opt_g.state_dict(), "sched_g": self.sched_g.state_dict(),
                 "best": list(self.best), "skipped": self._skipped(), "broken_shards": sorted(self.broken),
                 "model": self.student.config}
        if self.aux_params:
            state |= {"opt_d": self.opt_d.state_dict(), "sched_d": self.sched_d.state_dict()}
        return state

    def save_checkpoint(self) -> None:
        if self.dist.main:
            train_state.save(self.ckpt_dir, self.step, trainable=self.student.trainable_state_dict(),
                             disc=self.objectives.state() or None,
                             state=self._state(), config=self.cfg.model_dump(), keep_last=self.cfg.train.keep_last)
        if self.dist.world > 1:
            torch.distributed.barrier()

    def resume(self) -> bool:
        def read(path: Path):
            file = path / "config.json"  # the run's config as saved with the checkpoint
            return (*train_state.load(path), json.loads(file.read_text()) if file.exists() else {})

        found = load_newest_intact(train_state.complete(self.ckpt_dir), read)
        if found is None:
            return False
        path, (trainable, disc, state, saved_cfg) = found
        check_resumable(path, state["model"], self.student.config)
        try:
            check_compatible({}, {}, trainable, self.student.trainable_state_dict())
        except CheckpointMismatchError as exc:
            raise ResumeMismatchError(f"checkpoint {path}: {exc}") from None
        self._warn_on_data_change(path, saved_cfg.get("data", {}))
        self._warn_on_schedule_change(path, state, saved_cfg)
        self.student.load_trainable_state_dict(trainable)
        self.opt_g.load_state_dict(state["opt_g"])
        self.sched_g.load_state_dict(state["sched_g"])
        if self.aux_params:
            if disc is None:
                raise ValueError(f"checkpoint {path} has no discriminator but this run is adversarial")
            self.objectives.load_state(disc)
            self.opt_d.load_state_dict(state["opt_d"])
            self.sched_d.load_state_dict(state["sched_d"])
        ls = LoaderState(**state["loader"])
        if (ls.world, ls.workers) != (self.loader_state.world, self.loader_state.workers):
            # The loader state records each (rank, worker) stream's position: another split
            # would repeat or skip samples, so refuse rather than continue inexactly.
            raise ResumeMismatchError(
                f"checkpoint {path} was made with world size {ls.world} and data.workers={max(1, ls.workers)}; "
                f"this run has world size {self.loader_state.world} and data.workers="
                f"{self.loader_state.workers}: resume with the same (torchrun --nproc-per-node and data.workers)")
        self.loader_state = ls
        self.step, self.best, self.skipped = state["step"], tuple(state["best"]), state["skipped"]
        self.broken = set(state.get("broken_shards", []))
        train_state.restore_rng(state["rng"], self.dist.device)
        self.metrics.close()
        self.metrics = MetricsLog(self.out, enabled=self.dist.main, purge_after=self.step)
        log.info("resumed from %s at step %d", path, self.step)
        return True

    def _warn_on_data_change(self, path: Path, saved: dict) -> None:
        now = self.cfg.data.model_dump()
        changed = [k for k in ("train", "weights", "val", "val_fraction", "batch_size", "shuffle_buffer")
                   if k in saved and saved[k] != now[k]]
        if changed:
            log.warning("resuming %s with other data settings (%s): the run continues, but not as an exact "
                        "continuation of the checkpointed one", path, ", ".join(f"data.{k}" for k in changed))

    def _warn_on_schedule_change(self, path: Path, state: dict, saved_cfg: dict) -> None:
        """The schedule is rebuilt from this run's config (so a finished run can be extended, as
        torchtitan does with training.steps); a changed length moves the learning rate: say so."""
        old = state.get("total_steps") or saved_cfg.get("train", {}).get("max_steps")
        if old is None or old == self.total_steps:
            return
        now = self.cfg.model_dump()
        fields = [f"{sec}.{key} {saved_cfg[sec][key]} -> {now[sec][key]}"
                  for sec, key in (("train", "max_steps"), ("train", "epochs"), ("optim", "grad_accum"),
                                   ("optim", "warmup_frac"), ("data", "batch_size"), ("data", "steps_per_epoch"))
                  if key in saved_cfg.get(sec, {}) and saved_cfg[sec][key] != now[sec][key]]
        warm, step = self.cfg.optim.warmup_frac, state["step"]
        lr_old = self.cfg.optim.adapter_lr * cosine_with_warmup(old, warm)(step)
        lr_new = self.cfg.optim.adapter_lr * cosine_with_warmup(self.total_steps, warm)(step)
        log.warning("resuming %s with a schedule of %d steps instead of the checkpoint's %d (%s): the cosine "
                    "learning-rate schedule is rebuilt for %d steps, so at step %d the adapter learning rate is "
                    "%.3g instead of %.3g; to continue the checkpointed schedule set train.max_steps=%d",
                    path, self.total_steps, old, ", ".join(fields) or "train.max_steps", self.total_steps,
                    step, lr_new, lr_old, old)

    # -- data faults and stop signals ------------------------------------------------------
    def _skipped(self) -> int:
        return self.skipped + sum(self._stream_skips.values())

    def _count_faults(self, batch: dict) -> None:
        self._stream_skips[int(batch.get("stream", 0))] = int(batch["skipped"])
        self.broken.update(batch.get("broken_shards", ()))

    def _end_epoch_faults(self) -> None:
        self.skipped, self._stream_skips = self._skipped(), {}

    def _on_signal(self, signum, _frame) -> None:
        if self._stop_signal is not None:
            # Under torchrun a Ctrl-C arrives twice (from the terminal and forwarded by the
            # agent); only a later, deliberate second one aborts without a checkpoint.
            if time.monotonic() - self._stop_time > 2.0:
                raise KeyboardInterrupt
            return
        self._stop_signal, self._stop_time = signum, time.monotonic()
        log.warning("%s received: stopping after this step with a checkpoint (again to abort now)",
                    signal.Signals(signum).name)

    def _stop_handlers(self):
        if threading.current_thread() is not threading.main_thread():
            return nullcontext()
        return _signal_handlers((signal.SIGINT, signal.SIGTERM), self._on_signal)

    # -- one optimisation step -------------------------------------------------------
    def _autocast(self):
        if self.cfg.train.precision == "bf16":
            return torch.autocast(self.dist.device.type, dtype=torch.bfloat16)
        return nullcontext()

    def _is_log_step(self, step: int) -> bool:
        return step % self.cfg.train.log_every == 0 or step == self.total_steps

    def _micro_step(self, batch: dict, scale: float, measure: bool = False) -> dict[str, torch.Tensor]:
        """One micro-batch's forward and backward. ``measure``: also each loss term's gradient
        norm at the adapters (log steps only: one more backward pass)."""
        dev = self.dist.device
        clean, degraded = normalise_pairs(batch["pairs"].to(dev, non_blocking=True), self.settings)
        frozen = self.objectives.adapters_frozen(self.step)  # discriminator warm-up: no adapter graph
        keep = self.objectives.needs_prefix
        with self._autocast():
            with torch.no_grad(), self.student.adapters_disabled():
                teacher = self.forward(clean, prefix=True) if keep else self.forward(clean)
            with torch.no_grad() if frozen else nullcontext():
                student = self.forward(degraded, prefix=True) if keep else self.forward(degraded)
        p = self.student.grid.prefix if keep else 0
        step = Step(student[:, p:].float(), teacher[:, p:].float(), self.step, self._autocast,
                    student_prefix=student[:, :p].float() if keep else None,
                    teacher_prefix=teacher[:, :p].float() if keep else None)
        losses, parts, own = self.objectives.step_by_term(step)
        if frozen:
            pass  # the adapters' terms are logged but not backpropagated
        elif measure and self.cfg.loss.grad_norms and len(parts) > 0:
            norms = backward_by_term(parts, self.student.trainable_parameters(), scale)
            losses |= norms
        elif parts:
            (sum(parts.values()) * scale).backward()
        if own is not None:
            (own * scale).backward()
        # Checked after the backward passes are queued, so on a GPU the one host sync this costs
        # waits for work already running instead of leaving the GPU idle while backward launches;
        # still before any optimiser step, so non-finite gradients are never applied.
        if not distributed.all_finite(list(losses.values()), self.dist.world):
            self._diverged(batch, losses)
        return {k: v.detach() for k, v in losses.items()}

    def _diverged(self, batch: dict, losses: dict) -> None:
        info = {"step": self.step, "losses": {k: float(v.detach()) for k, v in losses.items()},
                "keys": list(batch.get("keys", [])), "lr": self.sched_g.get_last_lr(),
                "last_good_checkpoint": str(train_state.latest(self.ckpt_dir))}
        if self.dist.main:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "diverged.json").write_text(json.dumps(info, indent=2))
        raise TrainingDiverged(f"non-finite loss at step {self.step}: {info['losses']}; batch keys "
                               f"{info['keys'][:4]}...; last good checkpoint: {info['last_good_checkpoint']}")

    def _optimizer_step(self) -> dict[str, torch.Tensor]:
        """Gradient norms come back as tensors: reading them is a GPU sync, done at log steps only."""
        params = self.student.trainable_parameters()
        distributed.average_gradients(params, self.dist.world)
        norms = {}
        if self.objectives.adapters_frozen(self.step):
            self.opt_g.zero_grad(set_to_none=True)  # discriminator warm-up: adapters and their schedule wait
        else:
            if self.cfg.optim.grad_clip > 0:
                norms["grad_norm"] = torch.nn.utils.clip_grad_norm_(params, self.cfg.optim.grad_clip).detach()
            self.opt_g.step()
            self.sched_g.step()
            self.opt_g.zero_grad(set_to_none=True)
        if self.aux_params:
            dparams = self.aux_params
            distributed.average_gradients(dparams, self.dist.world)
            if self.cfg.optim.grad_clip > 0:
                norms["disc_grad_norm"] = torch.nn.utils.clip_grad_norm_(dparams, self.cfg.optim.grad_clip).detach()
            self.opt_d.step()
            self.sched_d.step()
            self.opt_d.zero_grad(set_to_none=True)
        return norms

    def _diagnose(self, last: dict[str, float]) -> dict[str, float]:
        """Log-step diagnostics from this step's values: clipping shares, the warning monitor,
        and the running means summary.json reports."""
        terms = {k: v for k, v in last.items() if k.startswith("grad_norm_")}
        extra = clip_shares(terms, last.get("grad_norm"), self.cfg.optim.grad_clip)
        if "disc_acc_real" in last:
            self.monitor.update(self.step, last["disc_acc_real"], last["disc_acc_fake"])
        self.diag_means.add({k: v for k, v in (last | extra).items() if is_diagnostic(k)})
        return extra

    # -- validation ---------------------------------------------------------------------
    @torch.no_grad()
    def validate(self) -> float:
        """Mean squared error of corrected vs clean-teacher features on held-out pairs."""
        self.student.eval()
        gone = [s.url for s in self.val_shards if "://" not in s.url and not Path(s.url).is_file()]
        if gone:  # a held-out shard deleted since the start counts like a broken training shard
            log.warning("%d held-out shard(s) are missing and skipped in validation: %s", len(gone), gone[:3])
            self.broken.update(gone)
        ds = ValStream(self.val_shards, self.settings, batch_size=self.cfg.data.batch_size,
                       rank=self.dist.rank, world=self.dist.world, max_samples=self.cfg.data.val_max_samples)
        total, count = 0.0, 0
        dev = self.dist.device
        for batch in make_loader(ds, min(self.cfg.data.workers, len(self.val_shards)), dev.type == "cuda"):
            self.broken.update(batch.get("broken_shards", ()))
            clean, degraded = normalise_pairs(batch["pairs"].to(dev, non_blocking=True), self.settings)
            with self._autocast():
                teacher = self.student.features(clean, adapters=False)
                student = self.student.features(degraded)
            err = (student.float() - teacher.float()).pow(2).mean(dim=(1, 2))
            total += float(err.sum())
            count += err.numel()
        self.student.train()
        total, count = distributed.reduce_sum([total, float(count)], self.dist.device, self.dist.world)
        if count == 0:
            raise ValueError("validation read no sample: the held-out shards are empty or unreadable")
        return total / count

    def _maybe_best(self, val_l2: float) -> None:
        if val_l2 < self.best[0]:
            self.best = (val_l2, self.step)
            if self.dist.main:
                save_adapters(self.out / "best", self.student,
                              extra={"step": self.step, "val_l2": val_l2, "image_size": self.settings.size})

    # -- the loop -------------------------------------------------------------------------
    def fit(self) -> TrainSummary:
        cfg = self.cfg
        if cfg.train.resume:
            train_state.clean_partial(self.ckpt_dir)
            self.resume()
            if self.step >= self.total_steps:
                return self._already_done()
        try:
            with self._stop_handlers():
                return self._fit()
        finally:
            self.metrics.close()  # also when training raises (divergence, data errors)

    def _already_done(self) -> TrainSummary:
        log.info("%s is already at step %d of %d: nothing to train", self.out, self.step, self.total_steps)
        self.metrics.close()
        saved = self.out / "summary.json"
        if saved.exists():
            data = json.loads(saved.read_text())
            return TrainSummary(**{k: v for k, v in data.items() if k in TrainSummary.__dataclass_fields__})
        return TrainSummary(steps=self.step, images=0, seconds=0.0, images_per_s=0.0, best_step=self.best[1],
                            best_val_l2=None if math.isinf(self.best[0]) else self.best[0],
                            skipped_samples=self.skipped, broken_shards=sorted(self.broken), out_dir=str(self.out))

    def _fit(self) -> TrainSummary:
        cfg = self.cfg
        dev, world = self.dist.device, self.dist.world
        self.student.train()
        accum = cfg.optim.grad_accum
        progress = _progress(self.total_steps, self.step, cfg.train.progress and self.dist.main)
        t0, images, last = time.perf_counter(), 0, {}
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        if cfg.train.val_at_start and self.step == 0:  # the baseline the adapters must beat
            val_l2 = self.validate()
            self.metrics.write(0, {"val_l2": val_l2})
            self._maybe_best(val_l2)
        clock = _Clock(dev)
        # Every process on this node holds its own workers' batches.
        shm = check_shared_memory(pair_batch_bytes(cfg.data.batch_size, self.settings.size), cfg.data.workers,
                                  int(os.environ.get("LOCAL_WORLD_SIZE", 1)))
        if shm and self.dist.local_rank == 0:
            log.warning(shm)
        while self.step < self.total_steps:
            ds = PairStream(self.datasets, cfg.data.weights, self.settings, batch_size=cfg.data.batch_size,
                            steps=self.steps_per_epoch, state=LoaderState(**self.loader_state.to_dict()),
                            rank=self.dist.rank, shuffle_buffer=cfg.data.shuffle_buffer, on_error=cfg.data.on_error,
                            exclude_groups=self.holdout_groups)
            loader = make_loader(ds, cfg.data.workers, pin_memory=dev.type == "cuda")
            micro = 0
            for batch in loader:
                # Per-term gradient norms on the last micro-batch of a step that is logged.
                measure = (micro + 1) % accum == 0 and self._is_log_step(self.step + 1)
                losses = self._micro_step(batch, 1.0 / accum, measure=measure)
                self._count_faults(batch)
                self.loader_state.record(batch)
                images += batch["pairs"].shape[0] * world
                micro += 1
                if micro % accum:
                    continue
                norms = self._optimizer_step()
                self.step += 1
                clock.first_step(images)
                progress.update(1)
                if self.step % cfg.train.log_every == 0 or self.step == self.total_steps:
                    last = {k: float(v) for k, v in (losses | norms).items()}
                    last |= self._diagnose(last)
                    rate = images / (time.perf_counter() - t0)
                    record = last | gate_values(getattr(self.student, "adapters", None)) | {"lr": self.sched_g.get_last_lr()[0], "images_per_s": rate,
                                     "skipped": self._skipped(), "epoch": self.loader_state.epoch, "world_size": world}
                    self.metrics.write(self.step, record | _memory_record(dev, world))
                    progress.set_postfix(img_s=f"{rate:.3g}", **{k: f"{v:.4g}" for k, v in last.items() if k in self.objectives.shown})
                if self.step % cfg.train.val_every == 0 or self.step == self.total_steps:
                    with clock.paused():
                        val_l2 = self.validate()
                        self.metrics.write(self.step, {"val_l2": val_l2})
                        self._maybe_best(val_l2)
                saved = self.step % cfg.train.ckpt_every == 0 or self.step == self.total_steps
                if saved:
                    with clock.paused():
                        self.save_checkpoint()
                if distributed.any_true(self._stop_signal is not None, dev, world):
                    if not saved:
                        self.save_checkpoint()
                    progress.close()
                    self.metrics.close()
                    raise TrainingInterrupted(f"stopped at step {self.step} of {self.total_steps}; checkpoint "
                                              f"{train_state.latest(self.ckpt_dir)}; continue with --resume")
                if self.step >= self.total_steps:
                    break
            if self.loader_state.batch >= self.steps_per_epoch:
                self.loader_state.next_epoch()
                self._end_epoch_faults()
        progress.close()
        steady, warmup = clock.rates(images)
        seconds = time.perf_counter() - t0
        skipped = int(distributed.reduce_sum([float(self._skipped())], dev, world)[0])
        broken = distributed.union(self.broken, world)
        memory = _memory_record(dev, world)
        if self.dist.main:
            save_adapters(self.out / "final", self.student, extra={"step": self.step, "image_size": self.settings.size})
        summary = TrainSummary(
            steps=self.step, images=images, seconds=seconds, images_per_s=images / max(seconds, 1e-9),
            final_losses=last, best_val_l2=None if math.isinf(self.best[0]) else self.best[0],
            best_step=self.best[1], skipped_samples=skipped, broken_shards=sorted(broken), out_dir=str(self.out),
            peak_memory_gb=(memory.get("mem_alloc_gb") or memory["rss_gb"])[0], world_size=world, device=_device_name(dev),
            train_images_per_s=steady, warmup_s=warmup,
            peak_memory_allocated_gb=memory.get("mem_alloc_gb"), peak_memory_reserved_gb=memory.get("mem_reserved_gb"),
            peak_rss_gb=memory.get("rss_gb"),
            diagnostics={"means": self.diag_means.means(), "gates": gate_values(getattr(self.student, "adapters", None)),
                         "warnings": list(self.monitor.warnings)})
        if self.dist.main:
            (self.out / "summary.json").write_text(json.dumps(summary.to_dict(), indent=2))
        self.metrics.close()
        return summary


class _Clock:
    """Training throughput without what is not training (validation, checkpoints), timed from
    the end of the first step: loader start-up and compilation are warm-up, reported apart."""

    def __init__(self, device: torch.device):
        # Host clocks run ahead of queued GPU work: read them only after a sync.
        self._sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        self._start = time.perf_counter()
        self._first: tuple[float, int] | None = None  # (time, images) at the end of the first step
        self._paused = 0.0

    def first_step(self, images: int) -> None:
        if self._first is None:
            self._sync()
            self._first = (time.perf_counter(), images)

    @contextmanager
    def paused(self):
        self._sync()
        t = time.perf_counter()
        try:
            yield
        finally:
            if self._first is not None:
                self._sync()
                self._paused += time.perf_counter() - t

    def rates(self, images: int) -> tuple[float | None, float | None]:
        """(images/s after the first step, seconds to the end of the first step)."""
        self._sync()
        if self._first is None:
            return None, None
        t1, done = self._first
        steady = (images - done) / max(time.perf_counter() - t1 - self._paused, 1e-9) if images > done else None
        return steady, t1 - self._start


@contextmanager
def _signal_handlers(signums, handler):
    previous = {s: signal.signal(s, handler) for s in signums}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _peak_rss_gb() -> float:
    """This process's peak resident set."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def _memory_record(device: torch.device, world: int) -> dict:
    """Per-rank memory peaks, indexed by rank: CUDA allocated and reserved since training
    started, or on CPU each process's peak resident set. A collective: every rank calls it."""
    if device.type != "cuda":
        return {"rss_gb": [r[0] for r in distributed.gather_floats([_peak_rss_gb()], device, world)]}
    mine = [torch.cuda.max_memory_allocated(device) / 2**30, torch.cuda.max_memory_reserved(device) / 2**30]
    ranks = distributed.gather_floats(mine, device, world)
    return {"mem_alloc_gb": [r[0] for r in ranks], "mem_reserved_gb": [r[1] for r in ranks],
            "max_mem_alloc_gb": max(r[0] for r in ranks)}


def _device_name(device: torch.device) -> str:
    return f"cuda ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else device.type


def _progress(total: int, initial: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, desc="train", unit="step", dynamic_ncols=True)


def train(cfg: TrainConfig) -> TrainSummary:
    trainer = Trainer(cfg)
    together = False  # every rank ended the run (errors raised on all ranks, e.g. divergence, count too)
    try:
        summary = trainer.fit()
        together = True
        return summary
    except (TrainingDiverged, TrainingInterrupted):
        together = True
        raise
    finally:
        distributed.shutdown(barrier=together)


__all__ = ["Trainer", "TrainSummary", "TrainingDiverged", "TrainingInterrupted", "train", "load_adapters"]
