import io
import json
import subprocess
import sys
import tarfile

import pyarrow.parquet as pq
import pytest
import webdataset as wds

from corruptor.build import writer as writer_mod
from corruptor.build.writer import SampleTar, ShardPaths, ShardWriter, read_stats, remove_partials


def row(key, status="ok", **kw):
    return {"key": key, "source": "s", "ref": f"{key}.png", "status": status, "variant": 0, "crop": 0, **kw}


def write_shard(d, index=3):
    w = ShardWriter(d, index)
    w.add(row("s-aa-v0-c0", width=2, height=2), {"clean.png": b"C1", "degraded.png": b"D1", "json": b"{}"})
    w.add(row("s-bb-v0-c0", status="failed", error="truncated: cut", error_kind="permanent"))
    w.add(row("s-cc-v0-c0"), {"clean.png": b"C2", "degraded.png": b"D2", "mask.png": b"M", "json": b"{}"})
    return w.close({"seconds": 0.5})


def test_shard_files_and_readers(tmp_path):
    stats = write_shard(tmp_path)
    paths = ShardPaths.of(tmp_path, 3)
    assert paths.tar.name == "000003.tar"
    assert stats["rows"] == 3 and stats["ok"] == 2 and stats["failed"] == 1
    assert read_stats(paths.stats)["tar_sha256"] == stats["tar_sha256"]
    samples = list(wds.WebDataset(str(paths.tar), shardshuffle=False))
    assert [s["__key__"] for s in samples] == ["s-aa-v0-c0", "s-cc-v0-c0"]
    assert samples[1]["mask.png"] == b"M" and samples[0]["degraded.png"] == b"D1"
    table = pq.read_table(paths.manifest)
    assert table.column("status").to_pylist() == ["ok", "failed", "ok"]
    assert table.column("error").to_pylist()[1] == "truncated: cut"
    assert table.schema == writer_mod.MANIFEST_SCHEMA
    with tarfile.open(paths.tar) as tf:
        members = tf.getmembers()
    assert {(m.mtime, m.mode, m.uname, m.uid) for m in members} == {(0, 0o444, "maa", 0)}
    # members of one sample are adjacent, in sorted order
    assert [m.name for m in members[:3]] == ["s-aa-v0-c0.clean.png", "s-aa-v0-c0.degraded.png", "s-aa-v0-c0.json"]


def test_identical_inputs_give_identical_bytes(tmp_path):
    write_shard(tmp_path / "a")
    write_shard(tmp_path / "b")
    for suffix in (".tar", ".parquet"):
        assert (tmp_path / "a" / f"000003{suffix}").read_bytes() == (tmp_path / "b" / f"000003{suffix}").read_bytes()


def test_tar_bytes_match_webdataset_tarwriter():
    # Datasets written before the writer stopped importing webdataset must stay reproducible.
    samples = [("k-00-v0-c0", {"json": b"{}", "clean.png": b"C" * 700, "degraded.png": b"", "mask.png": b"M"}),
               ("k-\u00e9t\u00e9-v1-c0", {"json": "{\"a\": 1}".encode(), "clean.webp": bytes(range(256)) * 9}),
               ("k-" + "x" * 120, {"degraded.jpg": b"D" * 513, "clean.jpg": b"c"})]  # long name: PAX header
    ours, theirs = io.BytesIO(), io.BytesIO()
    tar = SampleTar(ours)
    stock = wds.TarWriter(theirs, user=writer_mod.TAR_OWNER, group=writer_mod.TAR_OWNER,
                          mode=writer_mod.TAR_MODE, mtime=writer_mod.TAR_MTIME, encoder=False)
    for key, files in samples:
        tar.write(key, files)
        stock.write({"__key__": key, **files})
    tar.close()
    stock.close()
    assert ours.getvalue() == theirs.getvalue()


def test_non_bytes_member_is_refused(tmp_path):
    tar = SampleTar(io.BytesIO())
    with pytest.raises(ValueError, match="'json' of sample 'k' must be bytes"):
        tar.write("k", {"json": {"a": 1}})


def test_writing_a_shard_does_not_import_torch(tmp_path):
    # Every build worker writes shards; torch would cost each one ~0.5 GB and over a second.
    code = ("import sys; from corruptor.build.writer import ShardWriter\n"
            f"w = ShardWriter({str(tmp_path)!r}, 0)\n"
            "w.add({'key': 'a', 'status': 'ok'}, {'clean.png': b'x'}); w.close({})\n"
            "print(sorted(m for m in ('torch', 'webdataset') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_failure_before_the_marker_leaves_the_shard_not_done(tmp_path, monkeypatch):
    def broken(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(writer_mod.pq, "write_table", broken)
    w = ShardWriter(tmp_path, 0)
    w.add(row("k-0"), {"clean.png": b"x", "degraded.png": b"y", "json": b"{}"})
    with pytest.raises(OSError):
        w.close({})
    assert read_stats(ShardPaths.of(tmp_path, 0).stats) is None
    assert not ShardPaths.of(tmp_path, 0).stats.exists()


def test_abort_and_partials_are_removed(tmp_path):
    w = ShardWriter(tmp_path, 1)
    w.add(row("k-0"), {"clean.png": b"x", "degraded.png": b"y", "json": b"{}"})
    leftovers = [p for p in tmp_path.iterdir() if writer_mod.PARTIAL_TAG in p.name]
    assert len(leftovers) == 1
    w.abort()
    assert not any(tmp_path.iterdir())
    (tmp_path / ".000002.tar.partial-1-abc").write_bytes(b"half")
    (tmp_path / "000001.tar").write_bytes(b"keep")
    assert [p.name for p in remove_partials(tmp_path)] == [".000002.tar.partial-1-abc"]
    assert (tmp_path / "000001.tar").exists()


def test_bad_rows_are_refused(tmp_path):
    w = ShardWriter(tmp_path, 0)
    w.add(row("k-0"), {"json": b"{}"})
    with pytest.raises(ValueError, match="duplicate"):
        w.add(row("k-0"))
    with pytest.raises(ValueError, match="must not contain"):
        w.add(row("k.1"))
    with pytest.raises(ValueError, match="status"):
        w.add(row("k-2", status="weird"))
    w.abort()


def test_stats_marker_is_valid_json_even_when_unfinished(tmp_path):
    p = tmp_path / "x.stats.json"
    p.write_text('{"rows": ')
    assert read_stats(p) is None
    p.write_text(json.dumps({"rows": 1}))
    assert read_stats(p) == {"rows": 1}
