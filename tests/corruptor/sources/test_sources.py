import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from corruptor.sources.sources import (
    SourceError, SourceSpec, parse_kind_arg, parse_source_arg, scan_source, scan_sources,
)

from tests.corruptor.build.build_fixtures import make_photos


def png_bytes(value: int, size=(8, 6)) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("text, path, weight, kind", [
    ("flickr=/data/flickr2k", "/data/flickr2k", 1.0, "photo"),
    ("flickr=/data/flickr2k:2.5", "/data/flickr2k", 2.5, "photo"),
    ("ocr=synthetic:ocr", "synthetic:ocr", 1.0, "ocr"),
    ("ocr=synthetic:ocr:100", "synthetic:ocr:100", 1.0, "ocr"),
    ("ocr=synthetic:ocr:100:0.5", "synthetic:ocr:100", 0.5, "ocr"),
    ("demo=embedded:photos", "embedded:photos", 1.0, "photo"),
    ("demo=embedded:photos:3", "embedded:photos", 3.0, "photo"),
])
def test_parse_source_arg(text, path, weight, kind):
    spec = parse_source_arg(text)
    assert (spec.path, spec.weight, spec.kind) == (path, weight, kind)


def test_source_kind_override_and_bad_values():
    assert parse_source_arg("cc=/x", dict([parse_kind_arg("cc=web")])).kind == "web"
    with pytest.raises(SourceError, match="NAME=KIND"):
        parse_kind_arg("cc=video")
    with pytest.raises(SourceError, match="NAME=PATH"):
        parse_source_arg("/just/a/path")
    with pytest.raises(SourceError, match="source name"):
        parse_source_arg("a.b=/x")
    with pytest.raises(SourceError, match="weight must be > 0"):
        parse_source_arg("a=/x:0")


def test_folder_is_recursive_sorted_and_filtered(tmp_path):
    make_photos(tmp_path / "f", 5)
    (tmp_path / "f" / "notes.txt").write_text("not an image")
    src = scan_source(SourceSpec("f", str(tmp_path / "f")))
    refs = [it.ref for it in src.items]
    assert refs == sorted(refs) and len(refs) == 5 and "sub/img002.png" in refs
    assert src.items[0].read() == (tmp_path / "f" / refs[0]).read_bytes()


def test_missing_and_empty_sources_fail_before_work(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        scan_source(SourceSpec("a", str(tmp_path / "nope")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no images found"):
        scan_source(SourceSpec("a", str(tmp_path / "empty")))
    with pytest.raises(SourceError, match="used twice"):
        scan_sources([SourceSpec("a", "x"), SourceSpec("a", "y")])


def test_list_files_txt_and_parquet(tmp_path):
    paths = make_photos(tmp_path / "imgs", 3, sub=False)
    (tmp_path / "list.txt").write_text("# comment\nimgs/img001.png\n\nimgs/img000.png\n")
    src = scan_source(SourceSpec("l", str(tmp_path / "list.txt")))
    assert [it.ref for it in src.items] == ["imgs/img000.png", "imgs/img001.png"]
    pq.write_table(pa.table({"path": [str(p) for p in paths]}), tmp_path / "list.parquet")
    assert len(scan_source(SourceSpec("p", str(tmp_path / "list.parquet"))).items) == 3
    (tmp_path / "bad.txt").write_text("imgs/missing.png\n")
    with pytest.raises(SourceError, match="not found"):
        scan_source(SourceSpec("b", str(tmp_path / "bad.txt")))
    pq.write_table(pa.table({"url": ["x"]}), tmp_path / "nocol.parquet")
    with pytest.raises(SourceError, match="no path column"):
        scan_source(SourceSpec("n", str(tmp_path / "nocol.parquet")))


def test_webdataset_shards_as_source(tmp_path):
    from webdataset import TarWriter

    for shard in range(2):
        with TarWriter(str(tmp_path / f"part-{shard}.tar"), encoder=False) as tw:
            for i in range(3):
                tw.write({"__key__": f"s{shard}{i}", "jpg": png_bytes(10 * i + shard), "json": b"{}", "txt": b"c"})
    src = scan_source(SourceSpec("wds", str(tmp_path / "part-*.tar")))
    assert src.source_type == "webdataset" and len(src.items) == 6
    assert src.items[0].ref == "part-0.tar/s00.jpg"
    assert src.items[4].read() == png_bytes(11)
    # An img2dataset output folder (shards only, no loose images) is the same source.
    folder = scan_source(SourceSpec("wds", str(tmp_path)))
    assert folder.source_type == "webdataset" and folder.items == src.items


def test_paired_layout(tmp_path):
    (tmp_path / "ref").mkdir()
    (tmp_path / "dis").mkdir()
    for stem in ("a", "b", "lonely"):
        (tmp_path / "ref" / f"{stem}.png").write_bytes(png_bytes(1))
    for name in ("a.png", "a_v2.png", "b_v3.jpg"):
        (tmp_path / "dis" / name).write_bytes(png_bytes(2))
    src = scan_source(SourceSpec("maa", str(tmp_path)))
    assert src.source_type == "paired" and src.notes == {"unpaired_refs": 1}
    got = [(it.ref, it.dis_ref, it.version) for it in src.items]
    assert got == [("ref/a.png", "dis/a.png", 1), ("ref/a.png", "dis/a_v2.png", 2), ("ref/b.png", "dis/b_v3.jpg", 3)]
    assert src.items[0].read_dis() == png_bytes(2)
    (tmp_path / "dis" / "orphan.png").write_bytes(png_bytes(3))
    with pytest.raises(SourceError, match="no reference"):
        scan_source(SourceSpec("maa", str(tmp_path)))


def test_embedded_and_synthetic_sources_are_deterministic():
    emb = scan_source(SourceSpec("e", "embedded:photos"))
    assert len(emb.items) >= 10 and emb.items[0].read() == emb.items[0].read()
    syn = scan_source(SourceSpec("o", "synthetic:ocr:3", kind="ocr"))
    assert [it.ref for it in syn.items] == [f"synthetic/ocr/{i:06d}" for i in range(3)]
    first = syn.items[0].read()
    assert first == syn.items[0].read() and first != syn.items[1].read()
    assert Image.open(io.BytesIO(first)).size == (512, 512)
    with pytest.raises(SourceError, match="allowed: ocr"):
        scan_source(SourceSpec("o", "synthetic:faces"))


def test_symlink_loops_and_repeated_links_list_each_image_once(tmp_path):
    root = tmp_path / "src"
    make_photos(root, 4)                                  # img002 sits in sub/
    (root / "sub" / "loop").symlink_to(root, target_is_directory=True)   # sub/loop -> src: a cycle
    (root / "again").symlink_to(root / "sub", target_is_directory=True)  # a second way into sub/
    refs = [it.ref for it in scan_source(SourceSpec("s", str(root))).items]
    assert sorted(refs) == refs and len(refs) == 4
    assert sum(r.endswith("img002.png") for r in refs) == 1


def test_source_paths_are_stored_absolute(tmp_path, monkeypatch):
    make_photos(tmp_path / "src", 2)
    monkeypatch.chdir(tmp_path)
    scanned = scan_source(SourceSpec("s", "src"))
    assert scanned.spec.path == str(tmp_path / "src")
    assert all(it.locator.args[0].startswith(str(tmp_path)) for it in scanned.items)
