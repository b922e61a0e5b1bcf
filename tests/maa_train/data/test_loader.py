import shutil

import numpy as np
import pytest
import torch

from maa_train.data.loader import (LoaderState, PairStream, SampleError, ValStream, make_loader, pair_batch_bytes,
                              steps_per_epoch)
from maa_train.data.preprocess import ProcessorSettings, normalise, normalise_pairs, pair_to_tensor
from maa_train.data.shards import resolve_shards, split_holdout
from tests.maa_train.data.shardkit import write_dataset, write_shard

SETTINGS = ProcessorSettings(size=16)


def _keys(shards, *, batch, steps, workers, start=0, rank=0, world=1, **kw):
    state = LoaderState(epoch=0, batch=start, seed=3, world=world, workers=max(1, workers))
    ds = PairStream([shards], None, SETTINGS, batch_size=batch, steps=steps, state=state, rank=rank,
                    shuffle_buffer=5, **kw)
    return [b["keys"] for b in make_loader(ds, workers, pin_memory=False)]


def test_resolve_counts_and_holdout(tmp_path):
    shards = resolve_shards(str(write_dataset(tmp_path, [5, 7, 3, 4])))
    assert [s.count for s in shards] == [5, 7, 3, 4]
    train, val = split_holdout(shards, 0.25)
    assert len(val) == 1 and len(train) == 3 and not {s.url for s in val} & {s.url for s in train}
    with pytest.raises(ValueError, match="cannot hold shards out"):
        split_holdout(shards[:1], 0.05)


def _run(shards, state, *, batch, steps, workers):
    """Iterate from ``state`` the way the trainer does: record each consumed batch."""
    ds = PairStream([shards], None, SETTINGS, batch_size=batch, steps=steps,
                    state=LoaderState(**state.to_dict()), shuffle_buffer=5)
    keys, snapshots = [], []
    for b in make_loader(ds, workers, pin_memory=False):
        keys.append(b["keys"])
        state.record(b)
        snapshots.append(LoaderState(**state.to_dict()))
    return keys, snapshots


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_mid_epoch_continues_exactly(tmp_path, workers):
    # Two corrupt samples: batches that skip one read more raw samples than batch_size.
    shards = resolve_shards(str(write_dataset(tmp_path, [6, 9, 4], corrupt={"s0-k001", "s1-k004"})))
    fresh = LoaderState(seed=3, world=1, workers=max(1, workers))
    full, snapshots = _run(shards, fresh, batch=3, steps=6, workers=workers)
    assert len(full) == 6 and all(len(k) == 3 for k in full)
    for start in (1, 3, 4):
        resumed, _ = _run(shards, snapshots[start - 1], batch=3, steps=6, workers=workers)
        assert resumed == full[start:]


def test_ranks_get_equal_batches_from_uneven_shards(tmp_path):
    shards = resolve_shards(str(write_dataset(tmp_path, [11, 2, 5])))
    steps = steps_per_epoch([shards], batch_size=4, world=2)
    per_rank = [_keys(shards, batch=4, steps=steps, workers=0, rank=r, world=2) for r in range(2)]
    assert [len(k) for k in per_rank] == [steps, steps]
    seen = [k for keys in per_rank for b in keys for k in b]
    assert len(seen) == steps * 2 * 4


def test_corrupt_sample_skipped_or_raised(tmp_path):
    write_shard(tmp_path / "a.tar", [f"k{i}" for i in range(6)], corrupt={"k2"})
    shards = resolve_shards(str(tmp_path / "a.tar"))
    keys = [k for b in _keys(shards, batch=5, steps=2, workers=0) for k in b]
    assert "k2" not in keys and len(keys) == 10
    with pytest.raises(SampleError, match="k2"):
        _keys(shards, batch=5, steps=2, workers=0, on_error="raise")


def test_truncated_shard_is_survived(tmp_path, caplog):
    write_shard(tmp_path / "a.tar", [f"a{i}" for i in range(5)])
    write_shard(tmp_path / "b.tar", [f"b{i}" for i in range(5)])
    data = (tmp_path / "b.tar").read_bytes()
    (tmp_path / "b.tar").write_bytes(data[: len(data) // 2])
    shards = resolve_shards(str(tmp_path / "*.tar"))
    state = LoaderState(seed=3, world=1, workers=1)
    ds = PairStream([shards], None, SETTINGS, batch_size=4, steps=6, state=state, shuffle_buffer=5)
    with caplog.at_level("WARNING", logger="maa_train.data.loader"):
        batches = list(make_loader(ds, 0, pin_memory=False))
    keys = [k for b in batches for k in b["keys"]]
    assert len(keys) == 24 and any(k.startswith("a") for k in keys)
    assert batches[-1]["broken_shards"] == [str(tmp_path / "b.tar")]
    # The stream cycles over the broken tar several times; it is reported once, with what was read.
    warnings = [r.getMessage() for r in caplog.records if "b.tar" in r.getMessage()]
    assert len(warnings) == 1 and "after 2 samples" in warnings[0]


def test_pair_consistent_crop():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (30, 50, 3), dtype=np.uint8)
    out = pair_to_tensor(img, img.copy(), ProcessorSettings(size=16), np.random.default_rng(5))
    assert out.shape == (2, 3, 16, 16) and out.dtype == torch.uint8 and out.is_contiguous()
    assert torch.equal(out[0], out[1])
    # channels-first crop of the resized image: a 16 px tall crop of a 30 px image resized to 16 x 27
    assert out[0].permute(1, 2, 0).numpy().tobytes() in _all_crops(img, 16)


def _all_crops(img, s):
    from maa_train.data.preprocess import _resize

    big = _resize(img, s, round(img.shape[1] * s / img.shape[0]))
    return {np.ascontiguousarray(big[:, x:x + s]).tobytes() for x in range(big.shape[1] - s + 1)}


def test_normalise_is_the_processor_formula_in_fp32():
    settings = ProcessorSettings(size=4)
    px = torch.arange(256, dtype=torch.uint8).repeat(3 * 2).view(2, 3, 16, 16)
    mean, std = torch.tensor(settings.mean).view(3, 1, 1), torch.tensor(settings.std).view(3, 1, 1)
    out = normalise(px, settings)
    assert out.dtype == torch.float32 and out.shape == px.shape
    # bit-identical to the fp32 formula the float loader used, so runs before and after compare
    assert torch.equal(out, (px.float() - 255.0 * mean) * (1.0 / (255.0 * std)))
    # and the processors' (x / 255 - mean) / std, up to float rounding
    ref = (px.double() / 255 - mean.double()) / std.double()
    assert torch.allclose(out.double(), ref, rtol=0, atol=1e-5)
    with pytest.raises(TypeError, match="uint8"):
        normalise(px.float(), settings)
    with pytest.raises(ValueError, match=r"\[\.\.\., 3, H, W\]"):
        normalise(px[:, :2], settings)


def test_normalise_pairs_gives_contiguous_halves():
    settings = ProcessorSettings(size=8, mean=(0.5, 0.25, 0.0), std=(0.5, 0.5, 1.0))
    pairs = torch.randint(0, 256, (3, 2, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    clean, degraded = normalise_pairs(pairs, settings)
    assert clean.is_contiguous() and degraded.is_contiguous() and clean.shape == (3, 3, 8, 8)
    assert torch.equal(clean, normalise(pairs[:, 0], settings))
    assert torch.equal(degraded, normalise(pairs[:, 1], settings))
    with pytest.raises(ValueError, match=r"\[B, 2, 3, S, S\]"):
        normalise_pairs(pairs[:, 0], settings)


@pytest.mark.parametrize("workers", [0, 1])
def test_batches_carry_uint8_pairs_of_the_estimated_size(tmp_path, workers):
    shards = resolve_shards(str(write_dataset(tmp_path, [5, 4])))
    ds = PairStream([shards], None, SETTINGS, batch_size=3, steps=2, state=LoaderState(seed=1), shuffle_buffer=2)
    for stream in (ds, ValStream(shards, SETTINGS, batch_size=3)):
        batch = next(iter(make_loader(stream, workers, False)))
        pairs = batch["pairs"]
        assert pairs.dtype == torch.uint8 and pairs.shape == (3, 2, 3, 16, 16) and "clean" not in batch
        assert pairs.numel() * pairs.element_size() == pair_batch_bytes(3, 16)


def test_val_stream_reads_each_sample_once(tmp_path):
    shards = resolve_shards(str(write_dataset(tmp_path, [4, 3])))
    keys = [k for b in make_loader(ValStream(shards, SETTINGS, batch_size=3), 0, False) for k in b["keys"]]
    assert sorted(keys) == sorted({*keys}) and len(keys) == 7


def test_val_max_samples_is_exact_over_ranks(tmp_path):
    shards = resolve_shards(str(write_dataset(tmp_path, [6, 5])))
    for cap in (1, 4, 5):
        keys = [k for r in range(2) for b in make_loader(ValStream(shards, SETTINGS, batch_size=2, rank=r, world=2,
                                                                 max_samples=cap), 0, False) for k in b["keys"]]
        assert len(keys) == len(set(keys)) == cap


def test_held_out_images_are_not_trained_on(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from maa_train.data.shards import holdout_groups, image_group, without_groups

    layout = {"a": ["img1-v0-c0", "img2-v0-c0", "img4-v0-c0"], "b": ["img1-v1-c0", "img3-v0-c0", "img2-v1-c0"]}
    for name, keys in layout.items():
        write_shard(tmp_path / f"{name}.tar", keys)
        pq.write_table(pa.table({"key": keys, "status": ["ok"] * len(keys)}), tmp_path / f"{name}.parquet")
    val = resolve_shards(str(tmp_path / "a.tar"))
    groups = holdout_groups(val)
    assert groups == {"img1", "img2", "img4"} and image_group("x-1f2e-v3-c0") == "x-1f2e"
    train = without_groups(resolve_shards(str(tmp_path / "b.tar")), groups)
    assert train[0].count == 1
    state = LoaderState(seed=0, world=1, workers=1)
    ds = PairStream([train], None, SETTINGS, batch_size=2, steps=2, state=state, shuffle_buffer=1,
                    exclude_groups=groups)
    keys = {k for b in make_loader(ds, 0, False) for k in b["keys"]}
    assert keys == {"img3-v0-c0"}


def test_val_stream_splits_by_shard_over_ranks(tmp_path):
    shards = resolve_shards(str(write_dataset(tmp_path, [4, 3, 2])))
    per_rank = [[k for b in make_loader(ValStream(shards, SETTINGS, batch_size=2, rank=r, world=2), 0, False)
                 for k in b["keys"]] for r in range(2)]
    assert sorted(per_rank[0] + per_rank[1]) == sorted({*per_rank[0], *per_rank[1]}) and len(per_rank[0] + per_rank[1]) == 9
    # whole shards per rank: rank 0 has shards 0 and 2, rank 1 shard 1
    assert {k.split("-")[0] for k in per_rank[0]} == {"s0", "s2"} and {k.split("-")[0] for k in per_rank[1]} == {"s1"}


def test_shared_memory_warning_names_the_settings(tmp_path):
    from maa_train.data.loader import check_shared_memory

    free = shutil.disk_usage(tmp_path).free
    msg = check_shared_memory(free // 4, workers=2, processes=2, shm=str(tmp_path))  # 2 x 2 x prefetch 4 batches
    assert msg and "data.workers" in msg and "--shm-size" in msg
    assert check_shared_memory(1024, workers=2, shm=str(tmp_path)) is None
    assert check_shared_memory(free, workers=0, shm=str(tmp_path)) is None  # no workers: nothing is shared


@pytest.mark.gpu
def test_normalise_on_cuda_matches_cpu_bit_for_bit():
    settings = ProcessorSettings(size=8)
    pairs = torch.randint(0, 256, (4, 2, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    on_gpu = normalise_pairs(pairs.pin_memory().to("cuda", non_blocking=True), settings)
    for got, want in zip(on_gpu, normalise_pairs(pairs, settings)):
        assert got.is_cuda and torch.equal(got.cpu(), want)
