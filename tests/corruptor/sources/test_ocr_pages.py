"""Synthetic OCR pages: deterministic per generator state, sized as asked, full of text."""
import numpy as np
import pytest

from corruptor.sources.ocr_pages import OCR_KINDS, available_fonts, render_page


def _page(seed, kind=None, size=(160, 192)):
    return render_page(np.random.default_rng(seed), size, kind)


@pytest.mark.parametrize("kind", OCR_KINDS)
def test_same_seed_same_pixels(kind):
    np.testing.assert_array_equal(_page(3, kind), _page(3, kind))


@pytest.mark.parametrize("kind", OCR_KINDS)
def test_different_seeds_differ(kind):
    assert not np.array_equal(_page(1, kind), _page(2, kind))


@pytest.mark.parametrize("kind", OCR_KINDS)
@pytest.mark.parametrize("size", [(16, 16), (37, 211), (200, 48), (160, 192)])
def test_size_is_width_height(kind, size):
    page = _page(0, kind, size)
    width, height = size
    assert page.shape == (height, width, 3) and page.dtype == np.uint8 and page.flags.c_contiguous


def _ink_fraction(page: np.ndarray) -> float:
    """Share of pixels far from their 7x7 neighbourhood median: strokes, not paper or gradients."""
    from scipy.ndimage import median_filter

    gray = page.astype(np.float32).mean(axis=2)
    return float(np.mean(np.abs(gray - median_filter(gray, size=7)) > 40))


@pytest.mark.parametrize("kind", OCR_KINDS)
def test_text_pixels_present(kind):
    fractions = [_ink_fraction(_page(seed, kind, (256, 256))) for seed in range(3)]
    assert min(fractions) > 0.005, fractions


def test_kinds_look_different():
    """Mean colour and ink statistics separate the kinds for a shared seed."""
    pages = {kind: _page(5, kind, (192, 192)) for kind in OCR_KINDS}
    for a in OCR_KINDS:
        for b in OCR_KINDS:
            if a < b:
                assert np.mean(np.abs(pages[a].astype(int) - pages[b].astype(int))) > 10, (a, b)


def test_kind_drawn_from_rng_covers_all_kinds():
    # Same rng state -> same kind; across seeds every kind shows up.
    np.testing.assert_array_equal(_page(9), _page(9))
    signatures = {tuple(_page(seed, size=(32, 32)).reshape(-1, 3).mean(axis=0).round(1)) for seed in range(12)}
    assert len(signatures) == 12


def test_uses_fonts_shipped_in_packages():
    faces = available_fonts()
    assert faces[0].path is None  # Pillow's built-in face is always there
    assert any(f.monospace for f in faces) and any(f.bold for f in faces)
    assert all(f.path is None or "site-packages" in f.path or "dist-packages" in f.path for f in faces)


@pytest.mark.parametrize("kwargs, match", [
    ({"kind": "poster"}, "kind must be one of document, table, receipt, sign"),
    ({"size": (64, 8)}, "size must be"),
    ({"size": (64,)}, "size must be"),
    ({"size": (64.0, 64)}, "size must be"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        render_page(np.random.default_rng(0), **kwargs)


def test_rng_must_be_a_generator():
    with pytest.raises(TypeError, match="Generator"):
        render_page(np.random.RandomState(0))
