"""Every registered source scheme meets the scheme interface, on a small example of its form:
it claims its example and no other scheme's, stores a normalized path that it still claims,
and scans to sorted items whose locators read image bytes; scanning twice gives the same list.
A new scheme fails here until it has an example below."""
from __future__ import annotations

import io
import os
import tarfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from corruptor.sources.locator import NotRegularFile, reader_types
from corruptor.sources.scheme import SCHEMES, load_schemes, register_scheme, scheme_for
from corruptor.sources.sources import SourceError, SourceSpec, scan_source

from tests.corruptor.sources.pdfkit import make_pdf_folder


def _png(value: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((6, 8, 3), value, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _folder(tmp_path):
    (tmp_path / "imgs" / "sub").mkdir(parents=True)
    (tmp_path / "imgs" / "b.png").write_bytes(_png(10))
    (tmp_path / "imgs" / "sub" / "a.png").write_bytes(_png(20))
    return str(tmp_path / "imgs")


def _tar(tmp_path):
    path = tmp_path / "part.tar"
    with tarfile.open(path, "w") as tf:
        for i in range(2):
            data = _png(30 + i)
            info = tarfile.TarInfo(f"s{i}.jpg")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return str(path)


def _paired(tmp_path):
    for sub, value in (("ref", 40), ("dis", 50)):
        (tmp_path / "pairs" / sub).mkdir(parents=True)
        (tmp_path / "pairs" / sub / "x.png").write_bytes(_png(value))
    (tmp_path / "pairs" / "dis" / "x_v2.png").write_bytes(_png(60))
    return str(tmp_path / "pairs")


def _list(tmp_path):
    folder = _folder(tmp_path)
    pq.write_table(pa.table({"path": [f"{folder}/b.png", f"{folder}/sub/a.png"]}), tmp_path / "files.parquet")
    return str(tmp_path / "files.parquet")


EXAMPLES = {
    "folder": _folder,
    "webdataset": _tar,
    "paired": _paired,
    "list": _list,
    "synthetic": lambda tmp_path: "synthetic:ocr:2",
    "embedded": lambda tmp_path: "embedded:photos",
    "pdf": lambda tmp_path: f"pdf:{make_pdf_folder(tmp_path / 'docs')}?dpi=20&max_pages=1",
}


def test_every_scheme_has_an_example():
    assert sorted(s.name for s in load_schemes()) == sorted(EXAMPLES)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_scheme_contract(name, tmp_path):
    scheme = SCHEMES[name] if name in SCHEMES else {s.name: s for s in load_schemes()}[name]
    path = EXAMPLES[name](tmp_path)
    spec = SourceSpec("src", path)
    assert scheme_for(spec) is scheme, f"{name} does not claim its example {path}"
    assert scheme.claims(scheme.normalize(path)) and scheme.normalize(scheme.normalize(path)) == scheme.normalize(path)
    scanned = scan_source(spec)
    assert scanned.source_type in EXAMPLES and scanned.spec.path == scheme.normalize(path)
    refs = [it.ref for it in scanned.items]
    assert refs and refs == sorted(refs) and all(it.source == "src" for it in scanned.items)
    assert all(it.locator.type in reader_types() for it in scanned.items)
    first = scanned.items[0]
    data = first.read()
    assert Image.open(io.BytesIO(data)).size[0] > 0
    assert [it.to_dict() for it in scan_source(spec).items] == [it.to_dict() for it in scanned.items]


def test_a_path_no_scheme_claims_is_one_line_naming_the_forms(tmp_path):
    (tmp_path / "notes.md").write_text("x")
    with pytest.raises(SourceError, match="is not a folder, a .txt/.parquet list, a .tar shard"):
        scan_source(SourceSpec("s", str(tmp_path / "notes.md")))
    with pytest.raises(SourceError, match="does not exist"):
        scan_source(SourceSpec("s", str(tmp_path / "missing")))


def test_a_new_scheme_is_one_registration(monkeypatch, tmp_path):
    from corruptor.sources import scheme as scheme_mod
    from corruptor.sources.item import ScannedSource, SourceItem
    from corruptor.sources.locator import Locator

    monkeypatch.setattr(scheme_mod, "SCHEMES", dict(SCHEMES))

    @register_scheme("solid")
    class Solid:
        def claims(self, path):
            return path.startswith("solid:")

        def normalize(self, path):
            return path

        def scan(self, spec):
            return ScannedSource(spec, [SourceItem(spec.name, "solid/0", Locator("embedded", ("astronaut",)))],
                                 self.name)

    scanned = scan_source(SourceSpec("s", "solid:grey"))
    assert scanned.source_type == "solid" and len(scanned.items) == 1


def test_a_dangling_link_in_a_folder_is_a_permanent_not_regular_file(tmp_path):
    folder = _folder(tmp_path)
    os.symlink(tmp_path / "gone.png", os.path.join(folder, "c.png"))
    item = next(it for it in scan_source(SourceSpec("s", folder)).items if it.ref == "c.png")
    with pytest.raises(NotRegularFile, match="symbolic link to nothing"):
        item.read()
