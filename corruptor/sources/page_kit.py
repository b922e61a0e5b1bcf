"""The drawing kit of the synthetic pages: fonts, colours, paper and text layout.

Fonts come only from files inside installed packages (matplotlib's DejaVu and STIX faces,
Pillow's built-in face), so the same environment draws the same pixels on any machine.
Every random choice is drawn from the generator the caller passes.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# Faces used from matplotlib's data folder, when present. Display/symbol faces lack letters.
_PACKAGE_FACES: tuple[str, ...] = (
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSansMono.ttf",
    "DejaVuSansMono-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf",
    "STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf",
)
_SYSTEM_FONT_DIRS: tuple[str, ...] = ("/usr/share/fonts", "/usr/local/share/fonts", "/Library/Fonts",
                                      "C:/Windows/Fonts")

WORDS = (
    "account annual area balance board budget building center change city clear company "
    "control cost country customer data day delivery design detail district east energy "
    "equipment estimate event field figure final floor form fund general group growth health "
    "history hotel house index item level line local main market meeting member method model "
    "month national network north notice number office order page paper part payment period "
    "place plan point policy price program project public quality quarter rate record region "
    "report request result review river road room route sales school section service share "
    "south space staff station street study summary supply system table team term total "
    "transport unit update value volume water week west window work year zone"
).split()


@dataclass(frozen=True)
class FontFace:
    name: str
    path: str | None  # None: Pillow's built-in face
    monospace: bool = False
    bold: bool = False


def package_font_dir() -> Path | None:
    try:
        import matplotlib
    except ImportError:
        return None
    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    return folder if folder.is_dir() else None


@functools.lru_cache(maxsize=2)
def available_fonts(include_system: bool = False) -> tuple[FontFace, ...]:
    """Fonts the generator can use, in a fixed order; Pillow's built-in face always first."""
    faces = [FontFace("pillow-default", None)]
    folder = package_font_dir()
    if folder is not None:
        for file in _PACKAGE_FACES:
            if (folder / file).is_file():
                faces.append(FontFace(file.rsplit(".", 1)[0], str(folder / file),
                                      monospace="Mono" in file, bold="Bol" in file))
    if include_system:
        known = {f.name for f in faces}
        for root in _SYSTEM_FONT_DIRS:
            for path in sorted(Path(root).rglob("*")) if os.path.isdir(root) else ():
                if path.suffix.lower() in (".ttf", ".otf") and path.stem not in known:
                    known.add(path.stem)
                    faces.append(FontFace(path.stem, str(path), monospace="mono" in path.stem.lower(),
                                          bold="bold" in path.stem.lower()))
    return tuple(faces)


@functools.lru_cache(maxsize=256)
def load_font(path: str | None, size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    if path is None:
        return ImageFont.load_default(size=size)
    return ImageFont.truetype(path, size=size)


def pick_face(rng: np.random.Generator, *, monospace: bool | None = None,
               bold: bool | None = None) -> FontFace:
    faces = [f for f in available_fonts()
             if (monospace is None or f.monospace == monospace) and (bold is None or f.bold == bold)]
    faces = faces or list(available_fonts())
    return faces[int(rng.integers(len(faces)))]


def random_font(rng: np.random.Generator, size: float,
          **style: bool | None) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    face = pick_face(rng, **style)
    return load_font(face.path, max(6, int(round(size))))


# ---------------------------------------------------------------------------- colours, paper

def luma(rgb: tuple[int, int, int]) -> float:
    return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]


def light_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    base = rng.integers(215, 256)
    tint = rng.integers(-18, 8, 3)
    return tuple(int(v) for v in np.clip(base + tint, 190, 255))


def dark_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    if rng.random() < 0.6:  # near-black ink
        v = int(rng.integers(0, 50))
        return (v, v, v + int(rng.integers(0, 30)))
    hue = rng.integers(0, 3)
    colour = rng.integers(0, 70, 3)
    colour[hue] = rng.integers(90, 160)
    return tuple(int(v) for v in colour)


def saturated_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    colour = rng.integers(0, 90, 3)
    colour[rng.integers(0, 3)] = rng.integers(150, 256)
    if rng.random() < 0.4:
        colour[rng.integers(0, 3)] = rng.integers(120, 256)
    return tuple(int(v) for v in colour)


def contrasting(rng: np.random.Generator, background: tuple[int, int, int]) -> tuple[int, int, int]:
    if luma(background) > 128:
        return dark_colour(rng)
    v = int(rng.integers(225, 256))
    return (v, v, int(rng.integers(200, 256)))


def paper_texture(rng: np.random.Generator, height: int, width: int, colour: tuple[int, int, int]) -> Image.Image:
    """Flat colour with a gentle lighting gradient and fine grain."""
    y = np.linspace(-1.0, 1.0, height, dtype=np.float32)[:, None]
    x = np.linspace(-1.0, 1.0, width, dtype=np.float32)[None, :]
    gx, gy = rng.uniform(-10, 10, 2)
    shade = gx * x + gy * y
    grain = rng.normal(0.0, rng.uniform(0.5, 4.0), (height, width)).astype(np.float32)
    page = np.asarray(colour, np.float32)[None, None, :] + (shade + grain)[..., None]
    return Image.fromarray(np.clip(np.rint(page), 0, 255).astype(np.uint8), "RGB")


# ---------------------------------------------------------------------------- text helpers

def random_words(rng: np.random.Generator, count: int) -> list[str]:
    return [WORDS[i] for i in rng.integers(0, len(WORDS), count)]


def random_sentence(rng: np.random.Generator, low: int = 5, high: int = 14) -> str:
    words = random_words(rng, int(rng.integers(low, high)))
    if rng.random() < 0.3:
        words.insert(int(rng.integers(len(words))), str(int(rng.integers(1, 2000))))
    text = " ".join(words)
    return text[0].upper() + text[1:] + "."


def text_width(draw: ImageDraw.ImageDraw, text: str, font) -> float:
    return draw.textlength(text, font=font)


def line_height(font) -> int:
    left, top, right, bottom = font.getbbox("Ag")
    return max(1, bottom - top)


def fit_text(draw: ImageDraw.ImageDraw, text: str, font, width: float) -> str:
    """``text`` cut (from the end) to fit ``width``; may come back empty."""
    while text and text_width(draw, text, font) > width:
        text = text[:-1]
    return text.rstrip()


def wrap_text(draw: ImageDraw.ImageDraw, text: str, font, width: float) -> list[str]:
    lines, current = [], ""
    for word in text.split():
        candidate = f"{current} {word}".strip()
        if current and text_width(draw, candidate, font) > width:
            lines.append(current)
            current = word
        else:
            current = candidate
    if current:
        lines.append(current)
    return lines
