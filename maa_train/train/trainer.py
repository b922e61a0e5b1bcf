"""The MAA training loop: adapters (student) against a per-token discriminator.

    min_adapters  L_distill(student(degraded), teacher(clean)) + lambda * L_adv

The teacher is the same frozen encoder with adapters disabled (no second copy). One
process per GPU under `torchrun`; gradients of the trainable parts are averaged across
ranks (maa_train.train.distributed). Every random draw is explicit, so a run killed at any
step and resumed from its last checkpoint ends with the same weights as one that ran
through (on deterministic CPU settings).

This module only wires the parts and runs the loop. One micro-batch's forward and backward:
maa_train.train.micro_step; optimisers and schedules: optimizers; checkpoint contents and
resuming: checkpointing; validation: validation; held-out data: holdout; log-step
diagnostics: diagnostics; data faults, stop signals, throughput and the summary: faults,
stop_signal, clock, summary.
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from maa_train.data.loader import (LoaderState, PairStream, check_shared_memory, make_loader, pair_batch_bytes,
                                   steps_per_epoch)
from maa_train.data.preprocess import ImageSizeError, ProcessorSettings
from maa_train.encoders.load import load_vision_model
from maa_train.objectives.base import build_objectives
from maa_train.students.baselines import make_student
from maa_train.students.checkpoint import load_adapters, save_adapters
from maa_train.train import distributed, train_state
from maa_train.train.batch import apply_batch, resolve_batch
from maa_train.train.checkpointing import Found, check_loader, newest_resumable, warn_on_changes
from maa_train.train.clock import ThroughputClock
from maa_train.train.config import ConfigError, TrainConfig, student_kwargs
from maa_train.train.diagnostics import DiscriminatorMonitor, LogStepDiagnostics, gate_values
from maa_train.train.faults import DataFaults
from maa_train.train.holdout import training_data
from maa_train.train.metrics_log import MetricsLog
from maa_train.train.micro_step import StepParts, autocast_for, divergence_report, micro_step
from maa_train.train.optimizers import Optimizers
from maa_train.train.out_dir import check_out_dir
from maa_train.train.stop_signal import StopSignal
from maa_train.train.summary import TrainSummary, device_name, memory_fields, memory_record
from maa_train.train.validation import validation_l2

log = logging.getLogger(__name__)


class TrainingDiverged(RuntimeError):
    pass


class TrainingInterrupted(RuntimeError):
    """SIGINT/SIGTERM: the run stopped at a step boundary after writing a checkpoint."""


@dataclass
class _Loop:
    """One fit()'s running tallies."""
    progress: object
    t0: float
    images: int = 0
    micro: int = 0  # micro-batches of this epoch
    losses: dict = field(default_factory=dict)  # the last micro-batch's terms
    norms: dict = field(default_factory=dict)  # the last optimiser step's gradient norms
    last: dict = field(default_factory=dict)  # the last log step's values (the summary's final_losses)
    clock: ThroughputClock | None = None


class Trainer:
    def __init__(self, cfg: TrainConfig):
        self.dist = distributed.init(cfg.train.device)
        self.cfg = cfg = self._prepare_run(cfg)
        # Data first: a wrong path should fail in seconds, not after minutes of model loading.
        self.datasets, self.val_shards, self.holdout_groups = training_data(cfg)
        self._build_model()
        self._plan_steps()
        self.optim = Optimizers(cfg, self.student.trainable_parameters(), self.aux_params, self.total_steps)
        self.step = 0
        self.loader_state = LoaderState(seed=cfg.train.seed, world=self.dist.world, workers=max(1, cfg.data.workers))
        self.best = (math.inf, None)
        self.faults = DataFaults()  # earlier epochs / runs plus each live stream's running count
        self.stop = StopSignal()
        self.metrics = MetricsLog(self.out, enabled=self.dist.main)
        d = cfg.discriminator
        self.diagnostics = LogStepDiagnostics(cfg.optim.grad_clip, DiscriminatorMonitor(
            d.warn_after_steps, d.chance_band, d.collapse_accuracy))
        self.parts = StepParts(self.student, self.objectives, self.settings, self.dist.device, self.dist.world,
                               self._autocast, cfg.loss.grad_norms)

    def _prepare_run(self, cfg: TrainConfig) -> TrainConfig:
        """The batch plan, the output folder's check, determinism and the seed."""
        self.batch = resolve_batch(cfg, self.dist.world)
        cfg = apply_batch(cfg, self.batch)
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
        return cfg

    def _build_model(self) -> None:
        """The student (encoder plus adapters), the objectives and the encoder's input settings."""
        cfg = self.cfg
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
        distributed.broadcast_parameters(list(self.student.trainable_parameters()) + self.aux_params,
                                         self.dist.world)
        # Compiled: the encoder pass with its adapter hooks (teacher and student both run it:
        # two graphs, one with adapters off under no_grad). Validation stays eager, so eval
        # mode and other batch sizes never trigger recompiles.
        self.forward = torch.compile(self.student.features) if cfg.train.compile else self.student.features
        try:
            self.settings = ProcessorSettings.from_model_dir(cfg.model.path, cfg.data.image_size)
        except ImageSizeError as exc:
            raise ConfigError(f"data.image_size: {exc}") from None

    def _plan_steps(self) -> None:
        cfg, accum = self.cfg, self.cfg.optim.grad_accum
        per_epoch = cfg.data.steps_per_epoch or steps_per_epoch(self.datasets, cfg.data.batch_size, self.dist.world)
        # Whole accumulation groups per epoch: no partial group's gradients leak into the next epoch.
        self.steps_per_epoch = max(accum, per_epoch - per_epoch % accum)
        self.total_steps = cfg.train.max_steps or max(1, int(cfg.train.epochs * self.steps_per_epoch) // accum)

    # -- checkpoints ---------------------------------------------------------------
    def _state(self) -> dict:
        # RNG states of rank 0 only: every rank seeds alike and draws alike, so they are equal.
        opt = self.optim.state()
        state = {"step": self.step, "total_steps": self.total_steps, "loader": self.loader_state.to_dict(),
                 "rng": train_state.rng_states(self.dist.device), "opt_g": opt.pop("opt_g"),
                 "sched_g": opt.pop("sched_g"), "best": list(self.best), "skipped": self.faults.total(),
                 "broken_shards": sorted(self.faults.broken), "model": self.student.config}
        return state | opt  # opt_d and sched_d when adversarial

    def save_checkpoint(self) -> None:
        if self.dist.main:
            train_state.save(self.ckpt_dir, self.step, trainable=self.student.trainable_state_dict(),
                             disc=self.objectives.state() or None,
                             state=self._state(), config=self.cfg.model_dump(), keep_last=self.cfg.train.keep_last)
        if self.dist.world > 1:
            torch.distributed.barrier()

    def resume(self) -> bool:
        found = newest_resumable(self.ckpt_dir, self.student)
        if found is None:
            return False
        warn_on_changes(found, self.cfg, self.total_steps)
        self._restore(found)
        log.info("resumed from %s at step %d", found.path, self.step)
        return True

    def _restore(self, found: Found) -> None:
        state = found.state
        self.student.load_trainable_state_dict(found.trainable)
        if self.aux_params:
            if found.disc is None:
                raise ValueError(f"checkpoint {found.path} has no discriminator but this run is adversarial")
            self.objectives.load_state(found.disc)
        self.optim.load(state)
        loader = LoaderState(**state["loader"])
        check_loader(found.path, loader, self.loader_state)
        self.loader_state = loader
        self.step, self.best = state["step"], tuple(state["best"])
        self.faults = DataFaults(state["skipped"], set(state.get("broken_shards", [])))
        train_state.restore_rng(state["rng"], self.dist.device)
        self.metrics.close()
        self.metrics = MetricsLog(self.out, enabled=self.dist.main, purge_after=self.step)

    # -- one optimisation step (the benchmarks and tests call these) ------------------
    def _autocast(self):
        return autocast_for(self.cfg.train.precision, self.dist.device)

    def _is_log_step(self, step: int) -> bool:
        return step % self.cfg.train.log_every == 0 or step == self.total_steps

    def _micro_step(self, batch: dict, scale: float, measure: bool = False) -> dict[str, torch.Tensor]:
        losses, finite = micro_step(self.parts, self.forward, batch, scale, self.step, measure)
        if not finite:
            raise TrainingDiverged(divergence_report(self.out, self.dist.main, self.step, batch, losses,
                                                     self.optim.lr(), train_state.latest(self.ckpt_dir)))
        return {k: v.detach() for k, v in losses.items()}

    def _optimizer_step(self) -> dict[str, torch.Tensor]:
        return self.optim.step(self.student.trainable_parameters(), self.objectives.adapters_frozen(self.step),
                               self.dist.world)

    # -- validation ---------------------------------------------------------------------
    def validate(self) -> float:
        """Mean squared error of corrected vs clean-teacher features on held-out pairs."""
        return validation_l2(self.student, self.val_shards, self.settings, self.cfg.data, self.dist,
                             self._autocast, self.faults.broken)

    def _validate_and_keep_best(self) -> None:
        val_l2 = self.validate()
        self.metrics.write(self.step, {"val_l2": val_l2})
        if val_l2 < self.best[0]:
            self.best = (val_l2, self.step)
            if self.dist.main:
                save_adapters(self.out / "best", self.student,
                              extra={"step": self.step, "val_l2": val_l2, "image_size": self.settings.size})

    # -- the loop -------------------------------------------------------------------------
    def fit(self) -> TrainSummary:
        if self.cfg.train.resume:
            train_state.clean_partial(self.ckpt_dir)
            self.resume()
            if self.step >= self.total_steps:
                return self._already_done()
        try:
            with self.stop.handlers():
                return self._fit()
        finally:
            self.metrics.close()  # also when training raises (divergence, data errors)

    def _already_done(self) -> TrainSummary:
        log.info("%s is already at step %d of %d: nothing to train", self.out, self.step, self.total_steps)
        self.metrics.close()
        saved = self.out / "summary.json"
        if saved.exists():
            return TrainSummary.read(saved)
        return TrainSummary(steps=self.step, images=0, seconds=0.0, images_per_s=0.0, best_step=self.best[1],
                            best_val_l2=None if math.isinf(self.best[0]) else self.best[0],
                            skipped_samples=self.faults.skipped, broken_shards=sorted(self.faults.broken),
                            out_dir=str(self.out))

    def _fit(self) -> TrainSummary:
        loop = self._start()
        while self.step < self.total_steps:
            loop.micro = 0
            for batch in self._epoch_batches():
                if not self._micro_batch(batch, loop):
                    continue  # within an accumulation group
                self._after_step(loop)
                if self.step >= self.total_steps:
                    break
            if self.loader_state.batch >= self.steps_per_epoch:
                self.loader_state.next_epoch()
                self.faults.end_epoch()
        return self._finish(loop)

    def _start(self) -> _Loop:
        dev = self.dist.device
        self.student.train()
        loop = _Loop(_progress(self.total_steps, self.step, self.cfg.train.progress and self.dist.main),
                     t0=time.perf_counter())
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        if self.cfg.train.val_at_start and self.step == 0:  # the baseline the adapters must beat
            self._validate_and_keep_best()
        loop.clock = ThroughputClock(dev)
        # Every process on this node holds its own workers' batches.
        data = self.cfg.data
        shm = check_shared_memory(pair_batch_bytes(data.batch_size, self.settings.size), data.workers,
                                  int(os.environ.get("LOCAL_WORLD_SIZE", 1)))
        if shm and self.dist.local_rank == 0:
            log.warning(shm)
        return loop

    def _epoch_batches(self):
        data, dev = self.cfg.data, self.dist.device
        ds = PairStream(self.datasets, data.weights, self.settings, batch_size=data.batch_size,
                        steps=self.steps_per_epoch, state=LoaderState(**self.loader_state.to_dict()),
                        rank=self.dist.rank, shuffle_buffer=data.shuffle_buffer, on_error=data.on_error,
                        exclude_groups=self.holdout_groups)
        return make_loader(ds, data.workers, pin_memory=dev.type == "cuda")

    def _micro_batch(self, batch: dict, loop: _Loop) -> bool:
        """One micro-batch; True when it completed an optimisation step."""
        accum = self.cfg.optim.grad_accum
        # Per-term gradient norms on the last micro-batch of a step that is logged.
        measure = (loop.micro + 1) % accum == 0 and self._is_log_step(self.step + 1)
        loop.losses = self._micro_step(batch, 1.0 / accum, measure=measure)
        self.faults.count(batch)
        self.loader_state.record(batch)
        loop.images += batch["pairs"].shape[0] * self.dist.world
        loop.micro += 1
        if loop.micro % accum:
            return False
        loop.norms = self._optimizer_step()
        self.step += 1
        loop.clock.first_step(loop.images)
        loop.progress.update(1)
        return True

    def _after_step(self, loop: _Loop) -> None:
        """Log, validate, checkpoint as scheduled; stop with a checkpoint on a signal."""
        train = self.cfg.train
        if self._is_log_step(self.step):
            self._log_step(loop)
        if self.step % train.val_every == 0 or self.step == self.total_steps:
            with loop.clock.paused():
                self._validate_and_keep_best()
        saved = self.step % train.ckpt_every == 0 or self.step == self.total_steps
        if saved:
            with loop.clock.paused():
                self.save_checkpoint()
        if distributed.any_true(self.stop.received is not None, self.dist.device, self.dist.world):
            if not saved:
                self.save_checkpoint()
            loop.progress.close()
            self.metrics.close()
            raise TrainingInterrupted(f"stopped at step {self.step} of {self.total_steps}; checkpoint "
                                      f"{train_state.latest(self.ckpt_dir)}; continue with --resume")

    def _log_step(self, loop: _Loop) -> None:
        dev, world = self.dist.device, self.dist.world
        last = {k: float(v) for k, v in (loop.losses | loop.norms).items()}
        last |= self.diagnostics.update(self.step, last)
        rate = loop.images / (time.perf_counter() - loop.t0)
        record = last | gate_values(getattr(self.student, "adapters", None)) | {
            "lr": self.optim.lr()[0], "images_per_s": rate, "skipped": self.faults.total(),
            "epoch": self.loader_state.epoch, "world_size": world}
        self.metrics.write(self.step, record | memory_record(dev, world))
        loop.progress.set_postfix(img_s=f"{rate:.3g}",
                                  **{k: f"{v:.4g}" for k, v in last.items() if k in self.objectives.shown})
        loop.last = last

    def _finish(self, loop: _Loop) -> TrainSummary:
        dev, world = self.dist.device, self.dist.world
        loop.progress.close()
        steady, warmup = loop.clock.rates(loop.images)
        seconds = time.perf_counter() - loop.t0
        skipped = int(distributed.reduce_sum([float(self.faults.total())], dev, world)[0])
        broken = distributed.union(self.faults.broken, world)
        memory = memory_record(dev, world)
        if self.dist.main:
            save_adapters(self.out / "final", self.student, extra={"step": self.step, "image_size": self.settings.size})
        summary = TrainSummary(
            steps=self.step, images=loop.images, seconds=seconds, images_per_s=loop.images / max(seconds, 1e-9),
            final_losses=loop.last, best_val_l2=None if math.isinf(self.best[0]) else self.best[0],
            best_step=self.best[1], skipped_samples=skipped, broken_shards=sorted(broken), out_dir=str(self.out),
            world_size=world, device=device_name(dev), train_images_per_s=steady, warmup_s=warmup,
            diagnostics=self.diagnostics.summary(getattr(self.student, "adapters", None)), **memory_fields(memory))
        if self.dist.main:
            (self.out / "summary.json").write_text(json.dumps(summary.to_dict(), indent=2))
        self.metrics.close()
        return summary


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
