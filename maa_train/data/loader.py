"""Streaming clean/degraded pairs from WebDataset shards, resumable mid-epoch.

Design
- A rank's batches are produced by W *virtual streams* (W = DataLoader workers): batch j
  comes from stream j % W. Stream (rank, v) reads its own slice of the shards, cycling
  through them (resampled) so every rank yields exactly ``steps`` batches per epoch:
  uneven shards never make one rank wait for another.
- Everything random (shard order, shuffle buffer, crops, dataset mixing) is drawn from
  generators keyed by (seed, epoch, rank, stream), so the batch sequence is a pure
  function of the state. Resuming at batch b replays each stream's raw sample order
  without decoding images, then continues: nothing is repeated or skipped.
- A corrupt sample or a truncated shard is skipped and counted (``on_error="skip"``) or
  raised (``"raise"``); the stream moves on, so no rank hangs.
"""
from __future__ import annotations

import io
import json
import logging
import os
import shutil
import signal
import tarfile
from dataclasses import asdict, dataclass, field
from typing import Iterator, Literal

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from maa_format.rng import rng_for
from maa_train.data.preprocess import ProcessorSettings, pair_to_tensor
from maa_format.keys import image_group
from maa_train.data.shards import ShardInfo

log = logging.getLogger(__name__)

IMAGE_EXTS = ("png", "jpg", "jpeg", "webp")


@dataclass
class LoaderState:
    """Where the training stream is; saved in checkpoints."""

    epoch: int = 0
    batch: int = 0  # batches consumed in this epoch
    seed: int = 0
    world: int = 1
    workers: int = 1
    # Raw samples each virtual stream has read this epoch, skipped bad ones included: a
    # batch that skipped a corrupt sample read more than batch_size of them.
    raw: list[int] = field(default_factory=list)

    def record(self, batch: dict) -> None:
        """Account for one consumed batch."""
        if len(self.raw) != self.workers:
            self.raw = [0] * self.workers
        self.raw[batch["stream"]] = int(batch["raw"])
        self.batch += 1

    def next_epoch(self) -> None:
        self.epoch += 1
        self.batch = 0
        self.raw = []

    def to_dict(self) -> dict:
        return asdict(self)


class SampleError(RuntimeError):
    pass


def _open(url: str):
    if "://" in url:
        import fsspec

        return fsspec.open(url, "rb").open()
    return open(url, "rb")


def iter_raw_samples(url: str, counters: dict) -> Iterator[dict]:
    """(key, {ext: bytes}) groups of one tar, in file order; stops cleanly on a broken tar.

    A broken tar is recorded in ``counters["warned_shards"]`` and logged once per reader
    (streams cycle over their shards, so the same damage is met again every pass)."""
    current: dict | None = None
    read = 0
    try:
        with _open(url) as fh, tarfile.open(fileobj=fh, mode="r|*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                name = member.name.rsplit("/", 1)[-1]
                key, _, ext = name.partition(".")
                data = tar.extractfile(member).read()
                if len(data) != member.size:  # a tar cut inside a member reads short, without an error
                    raise tarfile.ReadError(f"{member.name}: {len(data)} of {member.size} bytes")
                if current is None or current["__key__"] != key:
                    if current is not None:
                        read += 1
                        yield current
                    current = {"__key__": key, "__url__": url}
                current[ext] = data
            # A tar cut at a member boundary simply ends; only its missing end-of-archive
            # blocks (two zero blocks) tell (checked where the size is cheap to know).
            if "://" not in url and tar.offset + 2 * tarfile.BLOCKSIZE > os.path.getsize(url):
                raise tarfile.ReadError("no end-of-archive marker: the file is truncated")
    except (tarfile.TarError, OSError, EOFError) as exc:
        warned = counters.setdefault("warned_shards", set())
        if url not in warned:
            warned.add(url)
            log.warning("shard %s is unreadable after %d samples (the rest is skipped): %s", url, read, exc)
        current = None  # the last group may be cut short: drop it
    if current is not None:
        yield current


def _pick(sample: dict, stem: str) -> bytes:
    for ext in IMAGE_EXTS:
        if f"{stem}.{ext}" in sample:
            return sample[f"{stem}.{ext}"]
    raise SampleError(f"sample {sample.get('__key__')} has no {stem}.<{'|'.join(IMAGE_EXTS)}> member")


def _decode(data: bytes) -> np.ndarray:
    # PIL, not OpenCV: OpenCV's thread pool can deadlock in DataLoader workers forked from a
    # parent that used it (seen here), for a gain of ~1.1x on PNG decoding.
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def decode_pair(sample: dict) -> tuple[np.ndarray, np.ndarray]:
    images = []
    for stem in ("clean", "degraded"):
        data = _pick(sample, stem)
        try:
            images.append(_decode(data))
        except Exception as exc:  # PIL raises many types for bad bytes
            raise SampleError(f"sample {sample['__key__']}: cannot decode {stem}: {exc}") from exc
    if images[0].shape != images[1].shape:
        raise SampleError(f"sample {sample['__key__']}: clean {images[0].shape} != degraded {images[1].shape}")
    return images[0], images[1]


class PairStream(IterableDataset):
    """Batches of preprocessed pairs for one rank; see the module docstring.

    A batch is a dict: "pairs" uint8 [B, 2, 3, S, S] (clean, degraded; normalised on the
    device by `preprocess.normalise_pairs`), "keys", and the stream's accounting ("stream",
    "raw", "skipped", "broken_shards")."""

    def __init__(self, datasets: list[list[ShardInfo]], weights: list[float] | None,
                 settings: ProcessorSettings, *, batch_size: int, steps: int, state: LoaderState,
                 rank: int = 0, shuffle_buffer: int = 256,
                 on_error: Literal["skip", "raise"] = "skip", random_crop: bool = True,
                 exclude_groups: frozenset[str] = frozenset()):
        if not datasets or any(not d for d in datasets):
            raise ValueError("every training dataset needs at least one shard")
        self.datasets = datasets
        w = np.asarray(weights if weights is not None else [1.0] * len(datasets), dtype=np.float64)
        if w.shape != (len(datasets),) or (w < 0).any() or w.sum() <= 0:
            raise ValueError(f"data weights must be {len(datasets)} non-negative numbers, got {weights}")
        self.weights = w / w.sum()
        self.settings, self.batch_size, self.steps = settings, batch_size, steps
        self.state, self.rank = state, rank
        self.shuffle_buffer, self.on_error, self.random_crop = shuffle_buffer, on_error, random_crop
        self.exclude_groups = exclude_groups  # images held out for validation: never trained on

    # -- the raw sample order of one virtual stream (no decoding) -----------------
    def _shards_for(self, shards: list[ShardInfo], stream: int, cycle: int) -> list[ShardInfo]:
        st = self.state
        order = rng_for(st.seed, "shards", str(st.epoch), str(cycle)).permutation(len(shards))
        slots = st.world * st.workers
        mine = [shards[i] for i in order[self.rank * st.workers + stream::slots]]
        if not mine:  # fewer shards than slots: this stream reads all of them, in its own order
            own = rng_for(st.seed, "shards", str(st.epoch), str(cycle), str(self.rank), str(stream))
            mine = [shards[i] for i in own.permutation(len(shards))]
        return mine

    def _dataset_stream(self, d: int, stream: int, counters: dict) -> Iterator[dict]:
        cycle = 0
        while True:
            got = 0
            for shard in self._shards_for(self.datasets[d], stream, cycle):
                for sample in iter_raw_samples(shard.url, counters):
                    if self.exclude_groups and image_group(sample["__key__"]) in self.exclude_groups:
                        continue
                    got += 1
                    yield sample
            if got == 0:
                raise SampleError(f"no readable sample in dataset {d}'s shards for stream {stream}")
            cycle += 1

    def _raw_stream(self, stream: int, counters: dict) -> Iterator[dict]:
        st = self.state
        tag = (str(st.epoch), str(self.rank), str(stream))
        sources = [self._dataset_stream(d, stream, counters) for d in range(len(self.datasets))]
        mix = rng_for(st.seed, "mix", *tag)
        shuffle = rng_for(st.seed, "shuffle", *tag)
        buffer: list[dict] = []
        while True:
            d = int(mix.choice(len(sources), p=self.weights)) if len(sources) > 1 else 0
            buffer.append(next(sources[d]))
            if len(buffer) < self.shuffle_buffer:
                continue
            i = int(shuffle.integers(len(buffer)))
            buffer[i], buffer[-1] = buffer[-1], buffer[i]
            yield buffer.pop()

    # -- batches -----------------------------------------------------------------
    def _tensor(self, sample: dict) -> torch.Tensor:
        clean, degraded = decode_pair(sample)
        st = self.state
        crop = rng_for(st.seed, "crop", str(st.epoch), sample["__key__"]) if self.random_crop else None
        return pair_to_tensor(clean, degraded, self.settings, crop)

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        worker, n_workers = (info.id, info.num_workers) if info else (0, 1)
        st = self.state
        if n_workers != st.workers:
            raise ValueError(f"loader state was made for {st.workers} workers, DataLoader has {n_workers}")
        start = st.batch
        # Physical worker w serves batches start+w, start+w+W, ...: those of virtual stream v.
        stream = (start + worker) % n_workers
        if st.raw:
            consumed = st.raw[stream]
        else:  # no per-stream record (start of an epoch, or an old checkpoint)
            consumed = len(range(stream, start, n_workers)) * self.batch_size
        mine = len(range(start + worker, self.steps, n_workers))
        counters: dict = {"skipped": 0}
        raw = self._raw_stream(stream, counters)
        for _ in range(consumed):
            next(raw)  # replay: the order is fixed, so skipping raw samples is exact
        for _ in range(mine):
            pairs, keys = [], []
            while len(pairs) < self.batch_size:
                sample = next(raw)
                consumed += 1
                try:
                    pairs.append(self._tensor(sample))
                    keys.append(sample["__key__"])
                except SampleError as exc:
                    if self.on_error == "raise":
                        raise
                    counters["skipped"] += 1
                    if counters["skipped"] <= 10:  # a stream meets a bad sample again every pass
                        log.warning("skipping a sample: %s%s", exc,
                                    " (further skips in this stream are only counted)" if counters["skipped"] == 10 else "")
            yield {"pairs": torch.stack(pairs), "keys": keys, "stream": stream, "raw": consumed,
                   "skipped": counters["skipped"], "broken_shards": sorted(counters.get("warned_shards", ()))}


class ValStream(IterableDataset):
    """Held-out pairs, each read once, centre-cropped; split over ranks and workers.

    Batches hold "pairs" uint8 [B, 2, 3, S, S] and "keys" (and "meta" with ``with_meta``)."""

    def __init__(self, shards: list[ShardInfo], settings: ProcessorSettings, *, batch_size: int,
                 rank: int = 0, world: int = 1, max_samples: int | None = None, with_meta: bool = False):
        self.shards, self.settings, self.batch_size = shards, settings, batch_size
        self.rank, self.world, self.max_samples = rank, world, max_samples
        self.with_meta = with_meta  # also yield each sample's parsed `json` provenance ("meta")

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        worker, n_workers = (info.id, info.num_workers) if info else (0, 1)
        slot, slots = self.rank * n_workers + worker, self.world * n_workers
        counters: dict = {}
        pairs, keys, metas, seen = [], [], [], 0
        if self.max_samples is not None:  # the slots' quotas add up to max_samples exactly
            quota = self.max_samples // slots + (slot < self.max_samples % slots)

        def batch_of() -> dict:
            # Unreadable or deleted held-out shards travel with the batches, as in training.
            out = {"pairs": torch.stack(pairs), "keys": keys,
                   "broken_shards": sorted(counters.get("warned_shards", ()))}
            if self.with_meta:
                out["meta"] = metas
            return out

        # Enough shards: each slot reads only its own shards. Otherwise (or with a sample
        # cap, whose quotas need one global order) every slot reads all and keeps its share.
        by_shard = self.max_samples is None and len(self.shards) >= slots
        shards = self.shards[slot::slots] if by_shard else self.shards
        for i, sample in enumerate(s for shard in shards for s in iter_raw_samples(shard.url, counters)):
            if not by_shard and i % slots != slot:
                continue
            if self.max_samples is not None and seen >= quota:
                break
            try:
                clean, degraded = decode_pair(sample)
            except SampleError as exc:
                log.warning("skipping a validation sample: %s", exc)
                continue
            pairs.append(pair_to_tensor(clean, degraded, self.settings, None))
            keys.append(sample["__key__"])
            if self.with_meta:
                metas.append(parse_meta(sample))
            seen += 1
            if len(pairs) == self.batch_size:
                yield batch_of()
                pairs, keys, metas = [], [], []
        if pairs:
            yield batch_of()


def parse_meta(sample: dict) -> dict | None:
    """A sample's `json` provenance, or None when it has none or it is not a JSON object."""
    raw = sample.get("json")
    if raw is None:
        return None
    try:
        meta = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        log.warning("sample %s: unreadable json member: %s", sample.get("__key__"), exc)
        return None
    return meta if isinstance(meta, dict) else None


def steps_per_epoch(datasets: list[list[ShardInfo]], batch_size: int, world: int) -> int:
    counts = [s.count for shards in datasets for s in shards]
    if any(c is None for c in counts):
        raise ValueError("shard sample counts are unknown (no .stats.json/.parquet beside them): "
                         "set train.steps_per_epoch")
    return max(1, sum(counts) // (batch_size * world))


def _init_worker(_worker: int) -> None:
    # Ctrl-C reaches the whole process group; the trainer stops at a step boundary and
    # shuts its workers down itself, so a worker dying first would only turn that into
    # a "worker exited unexpectedly" error.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


PREFETCH = 4  # batches each worker keeps ready


def make_loader(dataset: IterableDataset, workers: int, pin_memory: bool) -> DataLoader:
    return DataLoader(dataset, batch_size=None, num_workers=workers, pin_memory=pin_memory,
                      persistent_workers=False, prefetch_factor=PREFETCH if workers > 0 else None,
                      in_order=True, worker_init_fn=_init_worker if workers > 0 else None)


def pair_batch_bytes(batch_size: int, size: int) -> int:
    """Bytes of one batch's pixels as workers hand it over: uint8 [B, 2, 3, S, S]."""
    return batch_size * 2 * 3 * size * size


def check_shared_memory(batch_bytes: int, workers: int, processes: int = 1, shm: str = "/dev/shm") -> str | None:
    """A warning when the batches in flight may not fit in shared memory, else None.

    Workers hand batches over through shared memory; when it runs out a worker dies of a bus
    error, far from the cause (containers often get only 64 MB unless started with --shm-size)."""
    if workers == 0 or not os.path.isdir(shm):
        return None
    need = batch_bytes * workers * PREFETCH * processes
    free = shutil.disk_usage(shm).free
    if need <= free:
        return None
    return (f"data loader workers may hold up to {need / 2**30:.1f} GiB of batches in {shm} ({processes} process(es) x "
            f"{workers} workers x {PREFETCH} batches of {batch_bytes / 2**20:.0f} MiB) but only {free / 2**30:.1f} GiB "
            f"is free: a worker would die with a bus error; give the container more shared memory (--shm-size) or "
            f"lower data.workers / data.batch_size")
