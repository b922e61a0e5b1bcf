"""A corpus of awkward source files for decode and build tests.

``make_bad_corpus(dir)`` writes them and returns ``{filename: expected reason or None}``:
a reason from ``corruptor.build.decode.REASONS`` for files that must fail with default
``decode_image`` settings, ``None`` for files that must decode.
"""
from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def _encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kwargs)
    return buf.getvalue()


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_with_declared_size(width: int, height: int, payload_bytes: int) -> bytes:
    """An RGB PNG whose header declares width x height, followed by ``payload_bytes`` of IDAT.

    Decoders that trust the header would allocate width x height x 3 bytes.
    """
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    noise = np.random.default_rng(0).integers(0, 256, payload_bytes, dtype=np.uint8).tobytes()
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
            + _png_chunk(b"IDAT", zlib.compress(noise, 0)) + _png_chunk(b"IEND", b""))


def photo(height: int = 48, width: int = 64) -> np.ndarray:
    """A small RGB test picture with a distinct red top-left corner."""
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([x * 255 // max(1, width - 1), y * 255 // max(1, height - 1),
                      np.full_like(x, 128)], axis=-1).astype(np.uint8)
    image[: height // 4, : width // 4] = [255, 0, 0]
    return image


def exif_rotated_jpeg(orientation: int = 6) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _encode(Image.fromarray(photo()), "JPEG", quality=95, exif=exif.tobytes())


def animated_gif(colours=((255, 0, 0), (0, 255, 0), (0, 0, 255))) -> bytes:
    frames = [Image.new("RGB", (20, 16), c) for c in colours]
    return _encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)


def cmyk_jpeg() -> bytes:
    # Pure cyan: C=255, M=Y=K=0.
    cmyk = np.zeros((16, 24, 4), np.uint8)
    cmyk[..., 0] = 255
    return _encode(Image.fromarray(cmyk, "CMYK"), "JPEG", quality=95)


def gray16_png() -> bytes:
    ramp = np.array([[0, 32768, 65535]], dtype=np.uint16).repeat(4, axis=0)
    return _encode(Image.fromarray(ramp), "PNG")


def palette_alpha_png() -> bytes:
    """A 2-colour palette PNG whose index 0 is fully transparent, index 1 opaque blue."""
    indices = np.zeros((8, 8), np.uint8)
    indices[:, 4:] = 1
    image = Image.fromarray(indices, "P")
    image.putpalette([0, 0, 0, 0, 0, 255] + [0] * (256 - 2) * 3)
    return _encode(image, "PNG", transparency=0)


def make_bad_corpus(directory: str | Path) -> dict[str, str | None]:
    """Write the corpus into ``directory``; return filename -> expected reason (None = decodes)."""
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    good_jpeg = _encode(Image.fromarray(photo(96, 128)), "JPEG", quality=90)
    good_png = _encode(Image.fromarray(photo(96, 128)), "PNG")
    files: dict[str, tuple[bytes, str | None]] = {
        "zero_bytes.jpg": (b"", "empty"),
        "text.jpg": (b"this is a text file, not a picture\n" * 20, "not_an_image"),
        "truncated.jpg": (good_jpeg[: len(good_jpeg) // 2], "truncated"),
        "truncated.png": (good_png[: len(good_png) // 2], "truncated"),
        "bomb.png": (png_with_declared_size(100_000, 100_000, 64), "decompression_bomb"),
        # 56 MP declared from 60 kB: over the 50 MP default, but shaped like a big scan, not a bomb.
        "huge.png": (png_with_declared_size(8_000, 7_000, 60_000), "too_large"),
        "one_pixel.png": (_encode(Image.new("RGB", (1, 1), (10, 20, 30)), "PNG"), None),
        "animated.gif": (animated_gif(), None),
        "cmyk.jpg": (cmyk_jpeg(), None),
        "gray16.png": (gray16_png(), None),
        "palette_alpha.png": (palette_alpha_png(), None),
        "exif_rotated.jpg": (exif_rotated_jpeg(), None),
    }
    for name, (data, _) in files.items():
        (root / name).write_bytes(data)
    return {name: reason for name, (_, reason) in files.items()}
