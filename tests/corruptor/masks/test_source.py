import json

import numpy as np
import pytest

from corruptor.masks import rle
from corruptor.masks.registry import MASK_SOURCES, load_all, make_mask_source
from corruptor.masks.source import (
    MASK_SOURCE_KINDS,
    MaskSource,
    MaskError,
    MaskMissing,
    MaskSet,
    MaskSourceConfig,
    MaskSourceError,
    MaskTooSmall,
    generate_one,
)


def _blocks(h=48, w=64):
    """Four flat colour quadrants: any edge-following segmenter must split them."""
    img = np.zeros((h, w, 3), np.uint8)
    img[: h // 2, : w // 2] = (230, 20, 20)
    img[: h // 2, w // 2:] = (20, 230, 20)
    img[h // 2:, : w // 2] = (20, 20, 230)
    img[h // 2:, w // 2:] = (240, 240, 240)
    return img


@pytest.mark.parametrize("kind", ["felzenszwalb", "slic"])
def test_skimage_sources_give_wellformed_masks(kind, rgb_image):
    cfg = MaskSourceConfig(kind=kind, max_masks=5, min_area=20)
    masks = generate_one(make_mask_source(cfg), rgb_image)
    assert isinstance(masks, MaskSet) and 1 <= len(masks) <= 5
    assert len(masks.scores) == len(masks)
    for m in masks:
        assert m.dtype == bool and m.shape == rgb_image.shape[:2]
        assert m.sum() >= 20


def test_felzenszwalb_follows_edges():
    img = _blocks()
    masks = generate_one(make_mask_source(MaskSourceConfig(kind="felzenszwalb", felzenszwalb={"min_size": 10, "sigma": 0})), img)
    quadrant = np.zeros(img.shape[:2], bool)
    quadrant[:24, :32] = True
    assert any(np.array_equal(m, quadrant) for m in masks)


def test_max_side_downscale_returns_full_size_masks():
    img = np.repeat(np.repeat(_blocks(), 4, 0), 4, 1)  # 192 x 256
    cfg = MaskSourceConfig(kind="slic", max_side=64)
    masks = generate_one(make_mask_source(cfg), img)
    assert masks and all(m.shape == (192, 256) for m in masks)


@pytest.mark.parametrize("kind", ["felzenszwalb", "slic"])
def test_too_small_image_is_a_per_image_outcome(kind, rgb_image):
    src = make_mask_source(MaskSourceConfig(kind=kind, min_side=16))
    out = src.generate([rgb_image, np.zeros((10, 40, 3), np.uint8)])
    assert isinstance(out[0], MaskSet)
    assert isinstance(out[1], MaskTooSmall) and out[1].status == "mask_too_small"
    assert "10x40" in str(out[1])
    with pytest.raises(MaskTooSmall):
        generate_one(src, np.zeros((10, 40, 3), np.uint8))


def test_settings_hash_is_stable_and_tracks_relevant_fields():
    a = MaskSourceConfig(kind="slic")
    assert a.settings_hash() == MaskSourceConfig(kind="slic").settings_hash()
    assert a.settings_hash() != MaskSourceConfig(kind="slic", slic={"n_segments": 10}).settings_hash()
    assert a.settings_hash() != MaskSourceConfig(kind="felzenszwalb").settings_hash()
    # Throughput knobs and unrelated sources' settings do not invalidate a cache.
    assert a.settings_hash() == MaskSourceConfig(kind="slic", felzenszwalb={"scale": 5}).settings_hash()
    s = MaskSourceConfig(kind="sam2", sam2={"allow_random_weights": True})
    assert s.settings_hash() == MaskSourceConfig(kind="sam2", sam2={"allow_random_weights": True, "points_per_batch": 7}).settings_hash()
    assert s.settings_hash() != MaskSourceConfig(kind="sam2", sam2={"allow_random_weights": True, "points_per_side": 8}).settings_hash()


def test_config_rejects_unknown_fields_and_bad_values():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="extra"):
        MaskSourceConfig(kind="slic", colour=1)
    with pytest.raises(ValidationError, match="kind"):
        MaskSourceConfig(kind="watershed")
    with pytest.raises(ValidationError, match="points_per_side"):
        MaskSourceConfig(kind="sam2", sam2={"points_per_side": 0})


def test_missing_checkpoint_names_path_and_fallbacks(tmp_path):
    path = tmp_path / "nope" / "sam2.1_hiera_tiny.pt"
    with pytest.raises(MaskSourceError) as err:
        make_mask_source(MaskSourceConfig(kind="sam2", sam2={"checkpoint": path}))
    assert str(path) in str(err.value) and "felzenszwalb" in str(err.value) and "slic" in str(err.value)


def test_no_checkpoint_without_random_weights_is_refused():
    with pytest.raises(MaskSourceError, match="felzenszwalb"):
        make_mask_source(MaskSourceConfig(kind="sam2"))


def test_unknown_sam2_config_names_it_and_fallbacks():
    with pytest.raises(MaskSourceError) as err:
        make_mask_source(MaskSourceConfig(kind="sam2", sam2={"config": "configs/sam9/huge.yaml", "allow_random_weights": True}))
    msg = str(err.value)
    assert "configs/sam9/huge.yaml" in msg and "sam2.1_hiera_t.yaml" in msg and "slic" in msg


def _write_precomputed(tmp_path, fmt, masks, sha):
    rles = [rle.encode(m) for m in masks]
    if fmt == "json":
        path = tmp_path / "m.json"
        path.write_text(json.dumps([{"sha256": sha, "segmentation": r, "score": 0.5 + i / 10} for i, r in enumerate(rles)]))
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = tmp_path / "m.parquet"
        pq.write_table(pa.table({"path": ["a/x.png"] * len(rles), "size": [r["size"] for r in rles],
                                 "counts": [r["counts"] for r in rles]}), path)
    return path


@pytest.mark.parametrize("fmt", ["json", "parquet"])
def test_precomputed_masks_round_trip(tmp_path, fmt):
    h, w = 20, 30
    m1 = np.zeros((h, w), bool)
    m1[2:9, 3:20] = True
    m2 = np.zeros((h, w), bool)
    m2[10:18, 5:25] = True
    path = _write_precomputed(tmp_path, fmt, [m1, m2], "ab" * 32)
    src = make_mask_source(MaskSourceConfig(kind="precomputed", precomputed_path=path, min_area=1))
    img = np.zeros((h, w, 3), np.uint8)
    names = ["ab" * 32, "a/x.png"]
    got = generate_one(src, img, names)
    assert {m.tobytes() for m in got} == {m1.tobytes(), m2.tobytes()}
    out = src.generate([img, img[:16]], [["cd" * 32], names])
    assert isinstance(out[0], MaskMissing)
    assert isinstance(out[1], MaskError) and "16x30" in str(out[1])


def test_precomputed_unreadable_file_is_a_source_error(tmp_path):
    bad = tmp_path / "m.json"
    bad.write_text("{not json")
    with pytest.raises(MaskSourceError, match="m.json"):
        make_mask_source(MaskSourceConfig(kind="precomputed", precomputed_path=bad))
    with pytest.raises(MaskSourceError, match="slic"):
        make_mask_source(MaskSourceConfig(kind="precomputed", precomputed_path=tmp_path / "none.parquet"))


def test_every_kind_is_registered_and_builds_or_explains():
    """Registry contract: every kind of the settings model has a source; each either builds
    from default settings or refuses with a MaskSourceError naming the fallbacks."""
    load_all()
    assert sorted(MASK_SOURCES) == sorted(MASK_SOURCE_KINDS)
    for kind in MASK_SOURCE_KINDS:
        cfg = MaskSourceConfig(kind=kind)
        try:
            source = make_mask_source(cfg)
        except MaskSourceError as exc:
            assert "felzenszwalb" in str(exc)
            continue
        assert isinstance(source, MaskSource) and source.config == cfg
