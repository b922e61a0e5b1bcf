"""maa_format.paths: names read from a dataset's files stay inside it; sharing never follows a link."""
import os

import pytest

from maa_format import paths
from maa_format.paths import UnsafePathError, confined, lexically_within, link_or_copy_regular


def test_confined_accepts_names_inside_and_links_that_stay_inside(tmp_path):
    (tmp_path / "shards").mkdir()
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "a.tar").write_bytes(b"x")
    os.symlink(tmp_path / "store" / "a.tar", tmp_path / "shards" / "a.tar")
    assert confined(tmp_path, "shards/a.tar") == tmp_path / "shards" / "a.tar"
    assert confined(tmp_path, "shards/not-yet.tar").name == "not-yet.tar"  # need not exist
    linked_root = tmp_path.parent / f"{tmp_path.name}-link"
    os.symlink(tmp_path, linked_root)  # a dataset kept elsewhere and linked in
    assert confined(linked_root, "shards/a.tar").read_bytes() == b"x"


@pytest.mark.parametrize("name, says", [
    ("/etc/passwd", "is absolute"),
    ("../x.tar", "contains '..'"),
    ("shards/../../x.tar", "contains '..'"),
    ("", "empty"),
    ("a\x00b", "NUL"),
    (7, "expected a relative path \\(a string\\), got int"),
])
def test_confined_refuses(tmp_path, name, says):
    with pytest.raises(UnsafePathError, match=f"dataset.json: shards\\[0\\].tar: .*{says}"):
        confined(tmp_path, name, "dataset.json: shards[0].tar")


def test_confined_refuses_links_that_lead_out(tmp_path):
    root, outside = tmp_path / "ds", tmp_path / "private"
    (root / "shards").mkdir(parents=True)
    outside.mkdir()
    (outside / "key").write_text("secret")
    os.symlink(outside / "key", root / "shards" / "000000.tar")
    os.symlink(outside, root / "linked")
    for name in ("shards/000000.tar", "linked/key", "linked/missing"):
        with pytest.raises(UnsafePathError, match="leads out of .* through a symbolic link"):
            confined(root, name)


def test_lexically_within_follows_components_only():
    assert lexically_within("photos/a/img.png", "photos/a")
    assert lexically_within("photos/a/sub/../img.png", "photos/a") is False
    assert lexically_within("../photos/img.png", "../photos")  # the base itself may climb
    assert not lexically_within("photos/a/../../secret.png", "photos/a")
    assert not lexically_within("/home/u/secret.png", "photos/a")
    assert not lexically_within("photos/ab/img.png", "photos/a")


def test_link_or_copy_regular_links_files_and_refuses_links_and_fifos(tmp_path, monkeypatch):
    src, private = tmp_path / "entry.parquet", tmp_path / "private"
    src.write_bytes(b"PAR1")
    private.write_text("secret")
    link_or_copy_regular(src, tmp_path / "linked")
    assert os.path.samefile(src, tmp_path / "linked")
    os.symlink(private, tmp_path / "evil")
    with pytest.raises(UnsafePathError, match="is a symbolic link"):
        link_or_copy_regular(tmp_path / "evil", tmp_path / "out1")
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(UnsafePathError, match="not a regular file"):
        link_or_copy_regular(tmp_path / "fifo", tmp_path / "out2")
    assert os.stat(private).st_nlink == 1 and not (tmp_path / "out1").exists() and not (tmp_path / "out2").exists()

    def no_links(*args, **kwargs):
        raise OSError("cross-device link")

    monkeypatch.setattr(paths.os, "link", no_links)  # another file system: copied instead
    link_or_copy_regular(src, tmp_path / "copied")
    assert (tmp_path / "copied").read_bytes() == b"PAR1" and not os.path.samefile(src, tmp_path / "copied")
    with pytest.raises(UnsafePathError, match="is a symbolic link"):
        link_or_copy_regular(tmp_path / "evil", tmp_path / "out3")
