"""Robust decoding of one source file into uint8 RGB, or a short machine-readable reason why not.

The dataset build decodes files it has never seen: empty, cut short, not images at all,
decompression bombs, huge scans, animations, CMYK, 16-bit, palette-with-alpha, EXIF-rotated.
Each gives either a ``Decoded`` image (with notes on what was done to it) or a
``DecodeError`` whose ``reason`` goes into the manifest's status row.

The pixel limit is checked per call from the header, before any pixel is decoded; Pillow's
process-wide ``Image.MAX_IMAGE_PIXELS`` is left alone (Pillow still refuses, on its own,
anything above twice that value, about 179 MP, whatever ``max_pixels`` says).
"""
from __future__ import annotations

import functools
import io
import re
import struct
import warnings
from dataclasses import dataclass

import numpy as np

from corruptor.build.image import to_rgb_uint8

# Short reasons, stable strings: they are written to manifests and counted by `stats`.
REASONS: tuple[str, ...] = (
    "empty",               # zero bytes
    "not_an_image",        # no accepted image format recognised
    "truncated",           # a recognised image whose data ends early
    "corrupt",             # a recognised image whose data cannot be decoded
    "decompression_bomb",  # declared size above the limit from a file far smaller than that
    "too_large",           # declared size above the limit
    "too_small",           # a side below min_side
    "unsupported_mode",    # a pixel format we do not convert (e.g. float TIFF)
)

# Notes a successful decode can record, in the order they can occur:
#   animated_first_frame  # animated GIF/WebP/PNG/TIFF: only frame 0 is kept
#   exif_rotated          # EXIF orientation applied
#   exif_unreadable       # EXIF present but malformed: orientation not applied
#   palette               # palette image expanded
#   cmyk                  # CMYK converted to RGB
#   high_bit_depth        # 16-bit (or 32-bit integer) samples scaled to 8 bits
#   grayscale             # single channel replicated to RGB
#   alpha_composited      # transparency composited over white
#   decoder_warning       # the decoder warned (e.g. corrupt metadata) but produced pixels

# Raster formats we accept. Others Pillow knows (EPS runs Ghostscript, PSD, FITS, ...) are refused.
ACCEPTED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "GIF", "TIFF", "BMP", "AVIF", "PPM", "JPEG2000")

# Above this many declared pixels per byte of file, an over-limit image is a bomb, not a big
# photo: JPEG photos carry a few pixels per byte, even flat PNG scans rarely exceed hundreds.
BOMB_PIXELS_PER_BYTE = 1000

_MAGIC: tuple[tuple[bytes, int], ...] = (
    (b"\xff\xd8\xff", 0), (b"\x89PNG\r\n\x1a\n", 0), (b"GIF87a", 0), (b"GIF89a", 0),
    (b"RIFF", 0), (b"II*\x00", 0), (b"MM\x00*", 0), (b"BM", 0), (b"ftypavif", 4),
    (b"\x00\x00\x00\x0cjP  ", 0), (b"\xff\x4f\xff\x51", 0),
)


class DecodeError(ValueError):
    """A file that cannot become an image; ``reason`` is one of ``REASONS``."""

    def __init__(self, reason: str, detail: str = "") -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown decode reason {reason!r}; allowed: {', '.join(REASONS)}")
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Decoded:
    image: np.ndarray          # uint8 RGB, H x W x 3
    format: str                # Pillow's format name, e.g. "JPEG"
    notes: tuple[str, ...] = ()


@functools.lru_cache(maxsize=1)
def _accepted_formats() -> tuple[str, ...]:
    """ACCEPTED_FORMATS this Pillow build can open (AVIF, JPEG 2000 depend on its libraries)."""
    from PIL import Image

    Image.init()
    return tuple(f for f in ACCEPTED_FORMATS if f in Image.OPEN)


def _looks_like_image(data: bytes) -> bool:
    return any(data[offset:offset + len(magic)] == magic for magic, offset in _MAGIC)


def _visibly_cut_short(data: bytes) -> bool:
    """Container-level evidence that the file ends before its data does."""
    if data.startswith(b"\x89PNG"):
        return b"IEND" not in data[-16:]
    if data.startswith(b"\xff\xd8"):
        return b"\xff\xd9" not in data[-64:]
    if data.startswith(b"RIFF") and len(data) >= 8:
        return struct.unpack("<I", data[4:8])[0] + 8 > len(data)
    if data.startswith((b"GIF87a", b"GIF89a")):
        return not data.rstrip(b"\x00").endswith(b";")
    return False


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def _failure(data: bytes, exc: BaseException) -> DecodeError:
    # Pillow names the stream it read ("<_io.BytesIO object at 0x7f...>"): an address would
    # make the manifests of two identical builds differ, so it is cut out.
    text = _ADDRESS.sub("", f"{type(exc).__name__}: {exc}")
    lowered = str(exc).lower()
    if "decompressed data too large" in lowered or "decompression bomb" in lowered:
        return DecodeError("decompression_bomb", text)
    if "truncat" in lowered or _visibly_cut_short(data):
        return DecodeError("truncated", text)
    return DecodeError("corrupt", text)


def _over_limit(pixels: int, data: bytes, max_pixels: int, size: str) -> DecodeError:
    detail = f"{size} = {pixels} pixels > max_pixels {max_pixels} ({len(data)} bytes)"
    if pixels > BOMB_PIXELS_PER_BYTE * len(data):
        return DecodeError("decompression_bomb", detail)
    return DecodeError("too_large", detail)


def _to_array(im, notes: list[str]) -> np.ndarray:
    """Pillow image (one frame, any supported mode) to uint8 RGB."""
    mode = im.mode
    if mode == "P" or mode == "PA":
        notes.append("palette")
        has_alpha = mode == "PA" or "transparency" in im.info
        im = im.convert("RGBA" if has_alpha else "RGB")
        mode = im.mode
    if mode == "CMYK":
        notes.append("cmyk")
        im = im.convert("RGB")
    elif mode in ("YCbCr", "LAB", "HSV"):
        im = im.convert("RGB")
    elif mode in ("RGBa", "La"):  # premultiplied alpha: let Pillow un-premultiply
        im = im.convert("RGBA")
    elif mode == "1":
        im = im.convert("L")
    mode = im.mode
    if mode.startswith("I"):  # I;16, I;16B, I;16L, I (32-bit): integer greyscale
        arr = np.asarray(im)
        notes.append("high_bit_depth")
        if arr.dtype != np.uint16:
            if arr.min() < 0 or arr.max() > 65535:
                raise DecodeError("unsupported_mode", f"integer samples outside 0..65535 in mode {mode}")
            arr = arr.astype(np.uint16)
        notes.append("grayscale")
        return to_rgb_uint8(arr)
    if mode not in ("L", "LA", "RGB", "RGBA"):
        raise DecodeError("unsupported_mode", f"mode {mode}")
    arr = np.asarray(im)
    if mode in ("L", "LA"):
        notes.append("grayscale")
    if mode in ("LA", "RGBA"):
        if arr[..., -1].min() < 255:
            notes.append("alpha_composited")
        else:
            arr = arr[..., :-1]
    return to_rgb_uint8(arr)


def decode_image(data: bytes, *, max_pixels: int = 50_000_000, min_side: int = 1) -> Decoded:
    """Decode one file's bytes to uint8 RGB, or raise ``DecodeError`` with a short reason.

    ``max_pixels`` bounds the declared width x height (checked from the header, before
    decoding); ``min_side`` is the smallest accepted side.
    """
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, (int, np.integer)) or max_pixels < 1:
        raise ValueError(f"max_pixels must be a positive integer, got {max_pixels!r}")
    if isinstance(min_side, bool) or not isinstance(min_side, (int, np.integer)) or min_side < 1:
        raise ValueError(f"min_side must be an integer >= 1, got {min_side!r}")
    data = bytes(data)
    if not data:
        raise DecodeError("empty", "0 bytes")

    from PIL import Image

    notes: list[str] = []
    # Scoped so Pillow's warnings (bomb size, corrupt EXIF) become notes or reasons, not noise.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with _open(data, max_pixels) as im:
            _check_size(im.size, data, max_pixels, min_side)
            image = _first_frame(im, data, notes)
            fmt = im.format or "unknown"
        if any(not issubclass(w.category, Image.DecompressionBombWarning) for w in caught):
            notes.append("decoder_warning")
    return Decoded(image=image, format=fmt, notes=tuple(notes))


def _open(data: bytes, max_pixels: int):
    """The Pillow image of ``data`` (header read only), or the `DecodeError` that says why not."""
    from PIL import Image, UnidentifiedImageError

    try:
        return Image.open(io.BytesIO(data), formats=_accepted_formats())
    except Image.DecompressionBombError as exc:
        match = re.search(r"\((\d+) pixels\)", str(exc))
        pixels = int(match.group(1)) if match else max_pixels + 1
        raise _over_limit(pixels, data, max_pixels, "declared size") from exc
    except UnidentifiedImageError as exc:
        if _looks_like_image(data):
            raise _failure(data, exc) from exc
        raise DecodeError("not_an_image", f"{len(data)} bytes, no accepted format "
                          f"({', '.join(ACCEPTED_FORMATS)}) recognised") from exc
    except Exception as exc:  # any plugin error on hostile bytes is a bad file, not a crash
        raise _failure(data, exc) from exc


def _check_size(size: tuple[int, int], data: bytes, max_pixels: int, min_side: int) -> None:
    width, height = size
    if width * height > max_pixels:
        raise _over_limit(width * height, data, max_pixels, f"{width}x{height}")
    if min(width, height) < min_side:
        raise DecodeError("too_small", f"{width}x{height} < min_side {min_side}")


def _first_frame(im, data: bytes, notes: list[str]) -> np.ndarray:
    """The first frame, EXIF orientation applied, as uint8 RGB; what happened goes to ``notes``."""
    from PIL import ImageOps

    try:
        if getattr(im, "is_animated", False):  # may read ahead to find a second frame
            notes.append("animated_first_frame")
        im.seek(0)
        im.load()
    except Exception as exc:
        raise _failure(data, exc) from exc
    frame = im
    try:
        orientation = im.getexif().get(0x0112)
        if orientation not in (None, 1):
            frame = ImageOps.exif_transpose(im)
            notes.append("exif_rotated")
    except Exception:  # recorded as a note: the pixels are still good
        notes.append("exif_unreadable")
    try:
        return _to_array(frame, notes)
    except DecodeError:
        raise
    except Exception as exc:
        raise _failure(data, exc) from exc
