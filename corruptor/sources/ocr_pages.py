"""Synthetic OCR-heavy pages rendered with Pillow: documents, tables, receipts and signs.

A stand-in for text-rich sources (TextVQA-like images) in the demo and tests. A page is a
pure function of the generator's state: fonts come only from files inside installed
packages (matplotlib's DejaVu and STIX faces, Pillow's built-in face), so the same
environment draws the same pixels on any machine. System fonts can be listed with
``available_fonts(include_system=True)`` but are not used by default, since they differ
between machines and would break byte-identical builds.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from PIL import Image, ImageDraw

from corruptor.sources import page_kit as kit
from corruptor.sources.page_kit import available_fonts

__all__ = ["OCR_KINDS", "available_fonts", "render_page"]

OCR_KINDS: tuple[str, ...] = ("document", "table", "receipt", "sign")

_PRODUCTS = (
    "milk bread coffee apples rice pasta butter cheese eggs tea juice yogurt soap towels "
    "tomatoes onions chicken salmon cereal cookies water beans lettuce oranges"
).split()
_SIGN_TEXT = (
    "EXIT", "OPEN", "CLOSED", "SALE", "NO PARKING", "STOP", "PHARMACY", "CAFE", "PLATFORM 3",
    "MAIN ST", "KEEP LEFT", "BUS STOP", "HOTEL", "WAY OUT", "ENTRANCE", "OPEN 24 HOURS",
    "FRESH BREAD", "PRIVATE", "LOADING ZONE", "GATE B12",
)


# ---------------------------------------------------------------------------- page kinds

def _document(rng: np.random.Generator, height: int, width: int) -> Image.Image:
    paper = kit.light_colour(rng)
    page = kit.paper_texture(rng, height, width, paper)
    draw = ImageDraw.Draw(page)
    unit = min(height, width) / 512
    ink = kit.dark_colour(rng)
    margin = int(width * rng.uniform(0.05, 0.1))
    y = int(height * rng.uniform(0.04, 0.08))
    title_font = kit.random_font(rng, rng.uniform(22, 36) * unit, bold=True)
    title = " ".join(kit.random_words(rng, int(rng.integers(2, 6)))).title()
    for line in kit.wrap_text(draw, title, title_font, width - 2 * margin):
        draw.text((margin, y), line, font=title_font, fill=ink)
        y += int(kit.line_height(title_font) * 1.4)
    y += int(6 * unit)
    columns = 2 if width >= 300 and rng.random() < 0.35 else 1
    gutter = int(16 * unit)
    col_width = (width - 2 * margin - gutter * (columns - 1)) / columns
    body_font = kit.random_font(rng, rng.uniform(10, 17) * unit, bold=False)
    body_ink = ink if rng.random() < 0.7 else kit.dark_colour(rng)
    leading = kit.line_height(body_font) * rng.uniform(1.25, 1.7)
    top = y
    for column in range(columns):
        x0, y = margin + column * (col_width + gutter), top
        while y < height - margin:
            bullet = rng.random() < 0.2
            text = kit.random_sentence(rng, 12, 40) if not bullet else kit.random_sentence(rng, 3, 9)
            indent = int(14 * unit) if bullet else 0
            for line in kit.wrap_text(draw, text, body_font, col_width - indent):
                if y + leading > height - margin:
                    break
                if bullet and indent:
                    r = max(1, int(2 * unit))
                    cy = int(y + kit.line_height(body_font) / 2)
                    draw.ellipse((x0 + 2, cy - r, x0 + 2 + 2 * r, cy + r), fill=body_ink)
                draw.text((x0 + indent, y), line, font=body_font, fill=body_ink)
                y += leading
            y += leading * rng.uniform(0.3, 1.0)
    footer_font = kit.random_font(rng, 9 * unit)
    draw.text((width // 2, height - margin // 2), str(int(rng.integers(1, 300))), font=footer_font,
              fill=body_ink, anchor="mm")
    return page


def _table(rng: np.random.Generator, height: int, width: int) -> Image.Image:
    paper = kit.light_colour(rng)
    page = kit.paper_texture(rng, height, width, paper)
    draw = ImageDraw.Draw(page)
    unit = min(height, width) / 512
    ink = kit.dark_colour(rng)
    stripe = tuple(max(0, v - 18) for v in paper)
    rule = tuple(int(v) for v in np.clip(np.asarray(ink) + rng.integers(0, 90), 0, 255))
    accent = kit.saturated_colour(rng)
    header_fill = tuple(int(v) for v in (0.35 * np.asarray(accent) + 0.65 * 255))
    margin = int(min(height, width) * rng.uniform(0.04, 0.09))
    rows, cols = int(rng.integers(5, 16)), int(rng.integers(2, 6))
    font = kit.random_font(rng, rng.uniform(10, 16) * unit)
    bold = kit.random_font(rng, rng.uniform(10, 16) * unit, bold=True)
    caption_font = kit.random_font(rng, rng.uniform(14, 22) * unit, bold=True)
    caption = f"Table {int(rng.integers(1, 20))}. {kit.random_sentence(rng, 3, 7)}"
    draw.text((margin, margin), caption, font=caption_font, fill=ink)
    top = margin + int(kit.line_height(caption_font) * 1.8)
    row_h = max(4.0, (height - top - margin) / rows)
    widths = rng.uniform(0.6, 1.4, cols)
    edges = margin + np.concatenate([[0], np.cumsum(widths / widths.sum())]) * (width - 2 * margin)
    striped = rng.random() < 0.5
    for r in range(rows):
        y0, y1 = top + r * row_h, top + (r + 1) * row_h
        if r == 0:
            draw.rectangle((edges[0], y0, edges[-1], y1), fill=header_fill)
        elif striped and r % 2 == 0:
            draw.rectangle((edges[0], y0, edges[-1], y1), fill=stripe)
        for c in range(cols):
            if r == 0:
                text, cell_font = kit.random_words(rng, 1)[0].title(), bold
            elif c == 0:
                text, cell_font = " ".join(kit.random_words(rng, int(rng.integers(1, 3)))), font
            else:
                value = rng.uniform(0, 10 ** rng.integers(1, 6))
                if rng.random() < 0.8:
                    text = f"{value:,.{int(rng.integers(0, 3))}f}"
                else:
                    text = f"{rng.uniform(0, 100):.1f}%"
                cell_font = font
            pad = 4 * unit
            text = kit.fit_text(draw, text, cell_font, edges[c + 1] - edges[c] - 2 * pad)
            right = c > 0 and r > 0
            x = edges[c + 1] - pad if right else edges[c] + pad
            draw.text((x, (y0 + y1) / 2), text, font=cell_font, fill=ink, anchor="rm" if right else "lm")
    line_w = max(1, int(round(unit * rng.uniform(0.8, 1.8))))
    full_grid = rng.random() < 0.6
    for r in range(rows + 1):
        if full_grid or r in (0, 1, rows):
            y = top + r * row_h
            draw.line((edges[0], y, edges[-1], y), fill=rule, width=line_w)
    if full_grid:
        for x in edges:
            draw.line((x, top, x, top + rows * row_h), fill=rule, width=line_w)
    return page


def _receipt(rng: np.random.Generator, height: int, width: int) -> Image.Image:
    backdrop = tuple(int(v) for v in rng.integers(30, 140, 3))
    page = kit.paper_texture(rng, height, width, backdrop)
    unit = min(height, width) / 512
    strip_w = int(width * rng.uniform(0.5, 0.8))
    x0 = int(rng.integers(0, width - strip_w + 1))
    y_top = int(rng.integers(0, max(1, height // 12)))
    strip = kit.paper_texture(rng, height - y_top, strip_w, kit.light_colour(rng))
    page.paste(strip, (x0, y_top))
    draw = ImageDraw.Draw(page)
    ink = tuple(int(v) for v in rng.integers(20, 90, 3)) if rng.random() < 0.5 else kit.dark_colour(rng)
    font = kit.random_font(rng, rng.uniform(10, 15) * unit, monospace=True)
    big = kit.random_font(rng, rng.uniform(16, 24) * unit, bold=True)
    pad = max(2, int(strip_w * 0.06))
    left, right = x0 + pad, x0 + strip_w - pad
    centre = x0 + strip_w / 2
    y = y_top + pad
    leading = kit.line_height(font) * 1.45
    draw.text((centre, y), " ".join(kit.random_words(rng, 2)).upper(), font=big, fill=ink, anchor="mt")
    y += kit.line_height(big) * 1.6
    day, month, year = int(rng.integers(1, 29)), int(rng.integers(1, 13)), int(rng.integers(2010, 2030))
    hour, minute = int(rng.integers(0, 24)), int(rng.integers(0, 60))
    for line in (f"{int(rng.integers(1, 999))} {kit.random_words(rng, 1)[0].title()} St",
                 f"{day:02d}/{month:02d}/{year}  {hour:02d}:{minute:02d}"):
        draw.text((centre, y), line, font=font, fill=ink, anchor="mt")
        y += leading
    y += leading * 0.5
    total = 0.0
    while y < height - 6 * leading:
        qty, price = int(rng.integers(1, 4)), float(rng.uniform(0.5, 30))
        total += qty * price
        name = _PRODUCTS[int(rng.integers(len(_PRODUCTS)))].upper()
        draw.text((left, y), f"{qty} x {name}", font=font, fill=ink, anchor="lt")
        draw.text((right, y), f"{qty * price:.2f}", font=font, fill=ink, anchor="rt")
        y += leading
    draw.line((left, y, right, y), fill=ink, width=max(1, int(unit)))
    y += leading * 0.4
    for label, value in (("SUBTOTAL", total), ("TAX", total * 0.08), ("TOTAL", total * 1.08)):
        draw.text((left, y), label, font=font if label != "TOTAL" else big, fill=ink, anchor="lt")
        draw.text((right, y), f"{value:.2f}", font=font if label != "TOTAL" else big, fill=ink, anchor="rt")
        y += leading * (1.6 if label == "TOTAL" else 1.0)
    bar_h = int(leading * 2)
    x = left
    while x < right - 4 and y + bar_h < height:
        bar = int(rng.integers(1, 4)) * max(1, int(unit))
        if rng.random() < 0.6:
            draw.rectangle((x, y, x + bar - 1, y + bar_h), fill=ink)
        x += bar
    return page


def _sign(rng: np.random.Generator, height: int, width: int) -> Image.Image:
    # A wall or sky: two-tone vertical gradient.
    top_c, bottom_c = (np.asarray(rng.integers(40, 230, 3), np.float32) for _ in range(2))
    t = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    wall = top_c * (1 - t) + bottom_c * t + rng.normal(0, 3, (height, width, 1)).astype(np.float32)
    wall = np.broadcast_to(wall, (height, width, 3))
    page = Image.fromarray(np.clip(np.rint(wall), 0, 255).astype(np.uint8))
    board_colour = kit.saturated_colour(rng) if rng.random() < 0.7 else kit.light_colour(rng)
    text_colour = kit.contrasting(rng, board_colour)
    unit = min(height, width) / 512
    lines = [_SIGN_TEXT[int(i)] for i in rng.choice(len(_SIGN_TEXT), int(rng.integers(1, 3)), replace=False)]
    if rng.random() < 0.4:
        lines.append(" ".join(kit.random_words(rng, int(rng.integers(1, 3)))).title())
    board_w = int(width * rng.uniform(0.6, 0.92))
    font_size = rng.uniform(36, 90) * unit
    face = kit.pick_face(rng, bold=True if rng.random() < 0.8 else None)
    font = kit.load_font(face.path, max(6, int(round(font_size))))
    scratch = ImageDraw.Draw(page)
    widest = max(kit.text_width(scratch, line, font) for line in lines)
    if widest > board_w * 0.88:  # shrink to fit the board
        font = kit.load_font(face.path, max(6, int(font_size * board_w * 0.88 / widest)))
    line_h = kit.line_height(font) * 1.35
    board_h = int(min(height * 0.9, line_h * len(lines) + 2 * line_h * 0.5))
    layer = Image.new("RGBA", (board_w, board_h), board_colour + (255,))
    draw = ImageDraw.Draw(layer)
    border = max(1, int(board_h * rng.uniform(0.02, 0.06)))
    draw.rounded_rectangle((border, border, board_w - 1 - border, board_h - 1 - border),
                           radius=int(board_h * 0.1), outline=text_colour, width=border)
    y = (board_h - line_h * len(lines)) / 2 + line_h / 2
    for line in lines:
        draw.text((board_w / 2, y), line, font=font, fill=text_colour, anchor="mm")
        y += line_h
    angle = float(rng.uniform(-8, 8))
    layer = layer.rotate(angle, resample=Image.BICUBIC, expand=True)
    # Anywhere on the page when it fits, centred (and cropped by the page edge) when not.
    px = int(rng.integers(0, width - layer.width + 1)) if layer.width < width else (width - layer.width) // 2
    py = int(rng.integers(0, height - layer.height + 1)) if layer.height < height else (height - layer.height) // 2
    page.paste(layer, (px, py), layer)
    return page


_RENDERERS: dict[str, Callable[[np.random.Generator, int, int], Image.Image]] = {
    "document": _document, "table": _table, "receipt": _receipt, "sign": _sign,
}


def render_page(rng: np.random.Generator, size: tuple[int, int] = (512, 512),
                kind: str | None = None) -> np.ndarray:
    """One synthetic text-heavy page as uint8 RGB; ``size`` is (width, height) as in Pillow,
    so the array's shape is (height, width, 3).

    ``kind`` is one of ``OCR_KINDS``, or None to draw it from ``rng``. The page depends only
    on the generator's state, the size and the kind.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    if (not isinstance(size, (tuple, list)) or len(size) != 2
            or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in size)
            or min(size) < 16):
        raise ValueError(f"size must be (width, height) integers >= 16, got {size!r}")
    if kind is None:
        kind = OCR_KINDS[int(rng.integers(len(OCR_KINDS)))]
    if kind not in _RENDERERS:
        raise ValueError(f"kind must be one of {', '.join(OCR_KINDS)} or None, got {kind!r}")
    width, height = int(size[0]), int(size[1])
    page = _RENDERERS[kind](rng, height, width)
    return np.ascontiguousarray(np.asarray(page.convert("RGB"), dtype=np.uint8))
