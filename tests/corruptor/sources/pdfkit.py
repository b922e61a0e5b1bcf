"""PDFs the tests write themselves: pages with text (Pillow), a zero-page document, an
encrypted one (standard security handler, 40-bit RC4, user password set) and broken ones."""
from __future__ import annotations

import hashlib
import io
from pathlib import Path

from PIL import Image, ImageDraw


def pages_pdf(n: int, size: tuple[int, int] = (200, 150), seed: int = 0) -> bytes:
    """``n`` pages of ``size`` points (Pillow writes one image per page at 72 dpi)."""
    pages = []
    for i in range(n):
        im = Image.new("RGB", size, "white")
        draw = ImageDraw.Draw(im)
        draw.text((10, 10 + 10 * i), f"page {i + 1} of doc {seed}", fill="black")
        draw.rectangle((20, 60, 40 + 30 * i, 90), fill=(200, 30 * seed % 255, 0))
        pages.append(im)
    buf = io.BytesIO()
    pages[0].save(buf, format="PDF", save_all=True, append_images=pages[1:], resolution=72.0)
    return buf.getvalue()


def pdf_from_objects(objects: list[bytes], trailer_extra: bytes = b"") -> bytes:
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    out += b"trailer\n<< /Size %d /Root 1 0 R %s>>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, trailer_extra, xref)
    return bytes(out)


def zero_page_pdf() -> bytes:
    return pdf_from_objects([b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [] /Count 0 >>"])


_PAD = bytes.fromhex("28BF4E5E4E758A4164004E56FFFA01082E2E00B6D0683E802F0CA9FE6453697A")


def _rc4(key: bytes, data: bytes) -> bytes:
    s = list(range(256))
    j = 0
    for i in range(256):
        j = (j + s[i] + key[i % len(key)]) % 256
        s[i], s[j] = s[j], s[i]
    i = j = 0
    out = bytearray()
    for c in data:
        i = (i + 1) % 256
        j = (j + s[i]) % 256
        s[i], s[j] = s[j], s[i]
        out.append(c ^ s[(s[i] + s[j]) % 256])
    return bytes(out)


def encrypted_pdf(user: bytes = b"secret", owner: bytes = b"owner") -> bytes:
    """One page, encrypted (PDF 1.4 standard security handler, revision 2): a reader must
    know the user password to open it (pdfium tries the empty one and fails)."""
    file_id = hashlib.md5(b"maa-test").digest()
    perms = -4
    o_value = _rc4(hashlib.md5((owner + _PAD)[:32]).digest()[:5], (user + _PAD)[:32])
    key = hashlib.md5((user + _PAD)[:32] + o_value + perms.to_bytes(4, "little", signed=True) + file_id).digest()[:5]
    u_value = _rc4(key, _PAD)
    encrypt = b"<< /Filter /Standard /V 1 /R 2 /O <%s> /U <%s> /P %d >>" % (
        o_value.hex().encode(), u_value.hex().encode(), perms)
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 150] >>", encrypt]
    ident = file_id.hex().encode()
    return pdf_from_objects(objects, b"/Encrypt 4 0 R /ID [<%s> <%s>] " % (ident, ident))


# file name -> expected reason of its failed row (None: every page renders)
BAD_PDFS = {"empty_tree.pdf": "pdf_no_pages", "locked.pdf": "pdf_encrypted", "garbage.pdf": "pdf_broken",
            "cut.pdf": "pdf_broken"}


def make_pdf_folder(root: Path) -> Path:
    """a.pdf (3 pages), sub/b.pdf (2 pages, larger), a photo (ignored) and the bad files."""
    (root / "sub").mkdir(parents=True, exist_ok=True)
    (root / "a.pdf").write_bytes(pages_pdf(3, seed=1))
    (root / "sub" / "b.pdf").write_bytes(pages_pdf(2, size=(300, 400), seed=2))
    Image.new("RGB", (20, 20), "red").save(root / "photo.png")
    (root / "empty_tree.pdf").write_bytes(zero_page_pdf())
    (root / "locked.pdf").write_bytes(encrypted_pdf())
    (root / "garbage.pdf").write_bytes(b"%PDF-1.4 this is not a document")
    whole = pages_pdf(3, seed=3)
    (root / "cut.pdf").write_bytes(whole[: len(whole) // 3])
    return root
