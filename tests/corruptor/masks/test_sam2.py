"""SAM2 with random weights on CPU at tiny settings (model input 128 px, 4 x 4 points)."""
import numpy as np
import pytest
import torch

from corruptor.masks.registry import make_mask_source
from corruptor.masks.source import MaskSet, MaskSourceConfig, MaskSourceError, MaskTooSmall

TINY = {"allow_random_weights": True, "device": "cpu", "image_size": 128, "points_per_side": 4,
        "points_per_batch": 8, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}


@pytest.fixture(scope="module")
def sam2_source():
    torch.manual_seed(0)
    return make_mask_source(MaskSourceConfig(kind="sam2", min_area=4, max_masks=3, sam2=TINY))


def test_random_weight_sam2_returns_wellformed_masks(sam2_source, rgb_image):
    tall = np.ascontiguousarray(np.rot90(rgb_image))  # 64 x 48: masks follow each image's own size
    out = sam2_source.generate([rgb_image, np.zeros((6, 6, 3), np.uint8), tall])
    assert isinstance(out[1], MaskTooSmall)
    for image, masks in ((rgb_image, out[0]), (tall, out[2])):
        assert isinstance(masks, MaskSet) and 1 <= len(masks) <= 3
        assert masks.scores == sorted(masks.scores, reverse=True)
        for m in masks:
            assert m.dtype == bool and m.shape == image.shape[:2] and m.sum() >= 4


def test_mask_boxes_match_stock_helper():
    from sam2.utils.amg import batched_mask_to_box

    from corruptor.masks.sam2 import _mask_boxes

    g = torch.Generator().manual_seed(3)
    masks = torch.rand(6, 17, 23, generator=g) > 0.9
    masks[0] = False
    masks[0, 4, 7] = True
    keep = masks.flatten(1).any(1)
    assert torch.equal(_mask_boxes(masks[keep]), batched_mask_to_box(masks[keep]).float())


def test_point_grid_matches_stock_grid():
    from sam2.utils.amg import build_point_grid

    from corruptor.masks.sam2 import point_grid

    np.testing.assert_allclose(point_grid(5), build_point_grid(5), atol=1e-6)


def test_unloadable_checkpoint_names_path_and_fallbacks(tmp_path):
    ckpt = tmp_path / "broken.pt"
    ckpt.write_bytes(b"not a torch file")
    with pytest.raises(MaskSourceError) as err:
        make_mask_source(MaskSourceConfig(kind="sam2", sam2={**TINY, "checkpoint": ckpt, "allow_random_weights": False}))
    assert str(ckpt) in str(err.value) and "felzenszwalb" in str(err.value)


@pytest.mark.gpu
def test_sam2_on_cuda_batches_images(rgb_image):
    cfg = MaskSourceConfig(kind="sam2", min_area=4, max_masks=5,
                           sam2={**TINY, "device": "cuda", "image_size": None, "points_per_side": 8,
                                 "points_per_batch": 64, "images_per_batch": 3})
    src = make_mask_source(cfg)
    images = [rgb_image, np.ascontiguousarray(rgb_image[:, ::-1]), rgb_image[:40], rgb_image]
    out = src.generate(images)
    assert len(out) == 4
    for image, masks in zip(images, out):
        assert isinstance(masks, MaskSet) and len(masks) <= 5
        assert all(m.dtype == bool and m.shape == image.shape[:2] for m in masks)
    # Batch composition may change bf16 rounding, not the regions: slots 0 and 3 hold one image.
    assert len(out[0]) > 0 and len(out[3]) > 0
    a, b = out[0][0], out[3][0]
    assert (a & b).sum() / max(1, (a | b).sum()) > 0.9


def test_upsampling_in_chunks_keeps_the_same_masks(sam2_source, rgb_image, monkeypatch):
    from corruptor.masks import sam2 as mask_sam2

    whole = sam2_source.generate([rgb_image])[0]
    monkeypatch.setattr(mask_sam2, "_UPSAMPLE_CHUNK", 1)
    chunked = sam2_source.generate([rgb_image])[0]
    assert len(whole) == len(chunked) > 0 and chunked.scores == whole.scores
    assert all(np.array_equal(a, b) for a, b in zip(whole, chunked))


def test_out_of_memory_batch_is_retried_per_image(sam2_source, rgb_image, monkeypatch):
    from corruptor.masks.source import MaskError

    real = type(sam2_source)._generate_batch
    huge = np.ascontiguousarray(np.tile(rgb_image, (2, 1, 1)))

    def fits_one_small_image(self, images):
        if len(images) > 1 or images[0].shape[0] > rgb_image.shape[0]:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 9 GiB")
        return real(self, images)

    monkeypatch.setattr(type(sam2_source), "_generate_batch", fits_one_small_image)
    out = sam2_source.generate([rgb_image, huge, rgb_image])
    assert isinstance(out[0], MaskSet) and isinstance(out[2], MaskSet) and len(out[0]) > 0
    assert isinstance(out[1], MaskError) and "points_per_batch" in str(out[1]) and "9 GiB" in str(out[1])
