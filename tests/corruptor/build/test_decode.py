"""Decoding awkward source files: every bad one gets its reason, every odd one decodes right."""
import io

import numpy as np
import pytest
from PIL import Image

from corruptor.build.decode import REASONS, DecodeError, Decoded, decode_image
from tests.corruptor.build import badfiles


def _encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kwargs)
    return buf.getvalue()


def test_bad_corpus_reasons(tmp_path):
    expected = badfiles.make_bad_corpus(tmp_path)
    assert {r for r in expected.values() if r} <= set(REASONS)
    for name, reason in expected.items():
        data = (tmp_path / name).read_bytes()
        if reason is None:
            decoded = decode_image(data)
            assert decoded.image.dtype == np.uint8 and decoded.image.ndim == 3, name
            assert decoded.image.shape[2] == 3, name
        else:
            with pytest.raises(DecodeError) as err:
                decode_image(data)
            assert err.value.reason == reason, f"{name}: {err.value}"


def test_plain_rgb_roundtrip_has_no_notes():
    image = badfiles.photo()
    decoded = decode_image(_encode(Image.fromarray(image), "PNG"))
    assert decoded == Decoded(decoded.image, "PNG", ())
    np.testing.assert_array_equal(decoded.image, image)


def test_exif_orientation_applied():
    decoded = decode_image(badfiles.exif_rotated_jpeg(orientation=6))  # 90 degrees clockwise
    assert decoded.image.shape == (64, 48, 3)
    assert "exif_rotated" in decoded.notes
    # The red top-left block of the stored image ends up top-right after the rotation.
    top_right = decoded.image[:6, -6:].reshape(-1, 3).mean(axis=0)
    assert top_right[0] > 200 and top_right[1] < 60


def test_palette_transparency_composited_on_white():
    decoded = decode_image(badfiles.palette_alpha_png())
    assert {"palette", "alpha_composited"} <= set(decoded.notes)
    np.testing.assert_array_equal(decoded.image[:, :4], 255)          # transparent -> white
    np.testing.assert_array_equal(decoded.image[:, 4:], np.broadcast_to([0, 0, 255], (8, 4, 3)))


def test_rgba_alpha_over_white_and_opaque_alpha_dropped():
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = 0
    rgba[:, 2:, 3] = 255
    decoded = decode_image(_encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert "alpha_composited" in decoded.notes
    np.testing.assert_array_equal(decoded.image[:, :2], 255)
    np.testing.assert_array_equal(decoded.image[:, 2:], np.broadcast_to([200, 0, 0], (4, 2, 3)))
    rgba[..., 3] = 255
    assert decode_image(_encode(Image.fromarray(rgba, "RGBA"), "PNG")).notes == ()


def test_sixteen_bit_gray_png_scaled():
    decoded = decode_image(badfiles.gray16_png())
    assert "high_bit_depth" in decoded.notes and "grayscale" in decoded.notes
    np.testing.assert_array_equal(decoded.image[0, :, 0], [0, 128, 255])
    np.testing.assert_array_equal(decoded.image[..., 0], decoded.image[..., 2])


def test_sixteen_bit_rgb_tiff():
    import cv2

    rgb16 = np.zeros((6, 5, 3), np.uint16)
    rgb16[..., 0] = 65535  # red in RGB order
    ok, buf = cv2.imencode(".tiff", rgb16[..., ::-1])  # OpenCV writes BGR
    assert ok
    decoded = decode_image(buf.tobytes())
    np.testing.assert_array_equal(decoded.image, np.broadcast_to([255, 0, 0], (6, 5, 3)))


def test_cmyk_jpeg_to_rgb():
    decoded = decode_image(badfiles.cmyk_jpeg())
    assert decoded.notes == ("cmyk",)
    r, g, b = decoded.image.reshape(-1, 3).mean(axis=0)
    assert r < 40 and g > 215 and b > 215  # cyan


def test_grayscale_jpeg():
    gray = np.tile(np.arange(0, 256, 16, dtype=np.uint8), (8, 1))
    decoded = decode_image(_encode(Image.fromarray(gray, "L"), "JPEG", quality=100))
    assert decoded.notes == ("grayscale",)
    np.testing.assert_array_equal(decoded.image[..., 0], decoded.image[..., 1])


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_animation_keeps_first_frame(fmt):
    frames = [Image.new("RGB", (20, 16), c) for c in ((250, 0, 0), (0, 250, 0), (0, 0, 250))]
    data = _encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=50, loop=0,
                   **({"lossless": True} if fmt == "WEBP" else {}))
    decoded = decode_image(data)
    assert "animated_first_frame" in decoded.notes and decoded.format == fmt
    assert decoded.image.shape == (16, 20, 3)
    r, g, b = decoded.image.reshape(-1, 3).mean(axis=0)
    assert r > 200 and g < 30 and b < 30


def test_truncated_webp():
    data = _encode(Image.fromarray(badfiles.photo()), "WEBP", quality=80)
    with pytest.raises(DecodeError) as err:
        decode_image(data[: len(data) // 2])
    assert err.value.reason == "truncated"


def test_truncated_header_is_not_called_not_an_image():
    data = _encode(Image.fromarray(badfiles.photo()), "PNG")
    with pytest.raises(DecodeError) as err:
        decode_image(data[:20])
    assert err.value.reason == "truncated"


def test_eps_is_refused_without_running_ghostscript():
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n%%EOF\n"
    with pytest.raises(DecodeError) as err:
        decode_image(eps)
    assert err.value.reason == "not_an_image"


def test_limits_are_per_call_and_leave_pillow_global_alone():
    before = Image.MAX_IMAGE_PIXELS
    data = _encode(Image.fromarray(badfiles.photo(96, 128)), "JPEG", quality=90)
    with pytest.raises(DecodeError) as err:
        decode_image(data, max_pixels=96 * 128 - 1)
    assert err.value.reason == "too_large" and "max_pixels" in str(err.value)
    assert decode_image(data, max_pixels=96 * 128).image.shape == (96, 128, 3)
    assert Image.MAX_IMAGE_PIXELS == before


def test_min_side():
    data = _encode(Image.new("RGB", (40, 8)), "PNG")
    with pytest.raises(DecodeError) as err:
        decode_image(data, min_side=9)
    assert err.value.reason == "too_small"
    assert decode_image(data, min_side=8).image.shape == (8, 40, 3)


@pytest.mark.parametrize("kwargs", [{"max_pixels": 0}, {"max_pixels": 1.5}, {"min_side": 0}, {"min_side": True}])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        decode_image(b"x", **kwargs)


def test_error_carries_reason_and_detail():
    err = DecodeError("truncated", "cut at byte 10")
    assert err.reason == "truncated" and str(err) == "truncated: cut at byte 10"
    with pytest.raises(ValueError, match="allowed"):
        DecodeError("mystery")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP"])
def test_mutated_files_decode_or_give_a_reason(fmt):
    """Flipped and cut bytes never escape as anything but DecodeError."""
    source = Image.fromarray(badfiles.photo(24, 32))
    data = _encode(source.convert("P") if fmt == "GIF" else source, fmt)
    rng = np.random.default_rng(len(data))
    for _ in range(25):
        mutated = bytearray(data[: int(rng.integers(1, len(data) + 1))])
        for pos in rng.integers(0, len(mutated), int(rng.integers(1, 8))):
            mutated[pos] = int(rng.integers(0, 256))
        try:
            decoded = decode_image(bytes(mutated))
        except DecodeError as err:
            assert err.reason in REASONS
        else:
            assert decoded.image.dtype == np.uint8 and decoded.image.shape[2] == 3
