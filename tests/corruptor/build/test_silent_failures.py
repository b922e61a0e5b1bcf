"""Builds that used to end quietly wrong: no pairs, too many failures, damaged shards,
relative paths, undeterministic error texts, names that are not UTF-8, FIFOs."""
import json
import os
import tarfile

import pyarrow.parquet as pq
import pytest

from corruptor.build import builder
from corruptor.build.builder import BuildConfig, BuildError, build, rebuild
from corruptor.build.validate import validate
from corruptor.cli.main import main
from corruptor.sources.sources import Locator, SourceSpec

from .build_fixtures import GLOBAL_RECIPE, OTHER_RECIPE, dataset_bytes, make_photos


def rows_of(out):
    return [r for p in sorted((out / "shards").glob("*.parquet")) for r in pq.read_table(p).to_pylist()]


def cfg(src, out, **kw):
    args = dict(recipe=GLOBAL_RECIPE, sources=[SourceSpec("s", str(src))], out=out, target=8, shard_size=3)
    args.update(kw)
    return BuildConfig(**args)


@pytest.fixture
def junk(tmp_path):
    src = tmp_path / "junk"
    src.mkdir()
    for i in range(4):
        (src / f"j{i}.jpg").write_bytes(b"not a picture at all " * (i + 1))
    return src


def test_a_build_where_every_sample_fails_is_an_error_not_an_empty_dataset(junk, tmp_path, capsys):
    with pytest.raises(BuildError, match="no pairs were made"):
        build(cfg(junk, tmp_path / "ds", max_failed=1.0))
    assert not (tmp_path / "ds" / "dataset.json").exists()
    code = main(["build", "--recipe", "maa-global", "--source", f"s={junk}", "--target", "8",
                 "--out", str(tmp_path / "cli"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_validate_fails_a_dataset_without_pairs(junk, tmp_path, monkeypatch):
    monkeypatch.setattr(builder, "check_failures", lambda *a: None)   # as builds before the check wrote them
    build(cfg(junk, tmp_path / "ds"))
    report = validate(tmp_path / "ds")
    assert not report.ok and any("no pairs" in e for e in report.errors)


def test_failed_fraction_over_max_failed_fails_and_a_higher_limit_accepts(tmp_path, capsys):
    src = tmp_path / "src"
    make_photos(src, 6, sub=False)
    (src / "zz_broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(BuildError, match=r"failed \(\d+\.\d%\), more than --max-failed 0.1"):
        build(cfg(src, tmp_path / "ds", target=14, max_failed=0.1))
    report = build(cfg(src, tmp_path / "ds", target=14, max_failed=0.5))
    assert report.shards_run == 0 and report.failed == 2 and report.shortfall == 2
    doc = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    assert doc["max_failed"] == 0.5 and doc["counts"]["shortfall"] == 2
    assert validate(tmp_path / "ds").ok
    code = main(["build", "--recipe", "maa-global", "--source", f"s={src}", "--target", "14", "--out",
                 str(tmp_path / "cli"), "--no-progress", "--max-failed", "0.5"])
    assert code == 0 and "target 14 not reached: 2 pair(s) short" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:   # argparse: one usage line, exit 2
        main(["build", "--recipe", "maa-global", "--source", f"s={src}", "--target", "1", "--out",
              str(tmp_path / "cli2"), "--max-failed", "nan"])
    assert info.value.code == 2 and "--max-failed: must be a fraction in [0, 1]" in capsys.readouterr().err


def test_two_builds_with_an_undecodable_file_have_identical_manifests(tmp_path):
    src = tmp_path / "src"
    make_photos(src, 3, sub=False)
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")       # Pillow's error names a memory address
    (src / "bad.webp").write_bytes(b"RIFF\0\0\0\0WEBPxxxx")
    a = build(cfg(src, tmp_path / "a", max_failed=1.0))
    b = build(cfg(src, tmp_path / "b", max_failed=1.0))
    assert a.failed == b.failed > 0
    assert all(" at 0x" not in (r["error"] or "") for r in rows_of(tmp_path / "a"))
    assert dataset_bytes(tmp_path / "a") == dataset_bytes(tmp_path / "b")


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_a_damaged_finished_shard_is_noticed_and_redone(tmp_path, damage):
    src = tmp_path / "src"
    make_photos(src, 5)
    ref = build(cfg(src, tmp_path / "ref"))
    out = tmp_path / "ds"
    build(cfg(src, out))
    tar = out / "shards" / "000001.tar"
    data = bytearray(tar.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data[len(data) // 2] ^= 0xFF                                # same size: only the checksum sees it
    tar.write_bytes(bytes(data))
    again = build(cfg(src, out))
    assert again.damaged_shards == ["000001"] and again.shards_run == 1
    assert dataset_bytes(out) == dataset_bytes(tmp_path / "ref") and ref.ok == again.ok
    assert validate(out).ok


def test_relative_sources_are_stored_resolved_and_rebuild_from_elsewhere_works(tmp_path, monkeypatch):
    make_photos(tmp_path / "work" / "src", 4)
    monkeypatch.chdir(tmp_path / "work")
    build(cfg("src", tmp_path / "old"))
    plan = json.loads((tmp_path / "old" / "plan.json").read_text())["plan"]
    assert plan["sources"][0]["path"] == str(tmp_path / "work" / "src")
    assert all(os.path.isabs(it["locator"][1]) for it in plan["items"])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    report = rebuild(tmp_path / "old", OTHER_RECIPE, tmp_path / "new", trust_plan_paths=True)
    assert report.ok == 8 and report.failed == 0


def test_an_old_plan_with_relative_paths_is_read_from_the_dataset_folder(tmp_path, monkeypatch):
    old = tmp_path / "old"
    make_photos(old / "src", 4)      # a dataset that carries its sources, built before paths were resolved
    monkeypatch.chdir(old)
    build(cfg("src", old / "ds0"))
    # Rewrite the plan as old code wrote it: paths as typed.
    for name in ("plan.json",):
        p = old / "ds0" / name
        text = p.read_text().replace(str(old / "src"), "../src")
        p.write_text(text)
    monkeypatch.chdir(tmp_path)
    report = rebuild(old / "ds0", OTHER_RECIPE, tmp_path / "new", trust_plan_paths=True)
    assert report.ok == 8


def test_non_utf8_file_names_build_with_valid_keys(tmp_path):
    src = tmp_path / "src"
    make_photos(src, 3, sub=False)
    raw = os.path.join(os.fsencode(src), b"caf\xe9-\xff.png")     # Latin-1 bytes: not UTF-8
    with open(raw, "wb") as fh:
        fh.write((src / "img000.png").read_bytes())
    report = build(cfg(src, tmp_path / "ds", target=4, shard_size=4))
    assert report.ok == 4 and report.failed == 0
    rows = rows_of(tmp_path / "ds")
    odd = [r for r in rows if r["ref"].startswith("caf")]
    assert odd and odd[0]["ref"] == "caf\\xe9-\\xff.png"
    assert all("." not in r["key"] and "/" not in r["key"] for r in rows)
    again = build(cfg(src, tmp_path / "ds2", target=4, shard_size=4))
    assert [r["key"] for r in rows_of(tmp_path / "ds2")] == [r["key"] for r in rows]
    assert validate(tmp_path / "ds").ok and again.ok == 4


@pytest.mark.timeout(60)
def test_fifo_and_device_named_like_images_get_rows_and_are_never_opened(tmp_path):
    src = tmp_path / "src"
    make_photos(src, 4, sub=False)
    os.mkfifo(src / "pipe.jpg")                                    # opening it would block forever
    report = build(cfg(src, tmp_path / "ds", target=5, shard_size=5, max_failed=1.0))
    row = next(r for r in rows_of(tmp_path / "ds") if r["ref"] == "pipe.jpg")
    assert row["status"] == "failed" and row["error_kind"] == "permanent"
    assert row["error"] == "not_regular_file: a FIFO, not read"
    assert report.ok == 4


def test_permission_errors_are_permanent_other_io_errors_transient(tmp_path, monkeypatch):
    src = tmp_path / "src"
    make_photos(src, 4, sub=False)
    real = Locator.read

    def read(self):
        name = str(self.args[0])
        if name.endswith("img000.png"):
            raise PermissionError(13, "Permission denied", name)
        if name.endswith("img001.png"):
            raise OSError(5, "Input/output error", name)
        return real(self)

    monkeypatch.setattr(Locator, "read", read)
    build(cfg(src, tmp_path / "ds", target=4, shard_size=4, max_failed=1.0))
    rows = {r["ref"]: r for r in rows_of(tmp_path / "ds")}
    assert (rows["img000.png"]["error_kind"], rows["img000.png"]["error"]) == (
        "permanent", "io: PermissionError: Permission denied")           # no path: rows are machine-independent
    assert rows["img001.png"]["error_kind"] == "transient"


def test_link_device_and_fifo_members_of_a_source_tar_get_rows(tmp_path):
    import io

    src = tmp_path / "src"
    make_photos(src, 2, sub=False)
    tar_path = tmp_path / "web.tar"
    with tarfile.open(tar_path, "w") as tf:
        for p in sorted(src.glob("*.png")):
            tf.add(p, arcname=f"{p.stem}.png")
        for name, kind in (("link.png", tarfile.SYMTYPE), ("hard.png", tarfile.LNKTYPE),
                           ("dev.png", tarfile.CHRTYPE), ("fifo.png", tarfile.FIFOTYPE)):
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = "img000.png" if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE) else ""
            tf.addfile(info, io.BytesIO(b""))
    report = build(BuildConfig(recipe=GLOBAL_RECIPE, sources=[SourceSpec("w", str(tar_path))], out=tmp_path / "ds",
                               target=6, shard_size=6, max_failed=1.0))
    rows = {r["ref"]: r for r in rows_of(tmp_path / "ds")}
    expected = {"web.tar/link.png": "a symbolic link", "web.tar/hard.png": "a hard link",
                "web.tar/dev.png": "a device", "web.tar/fifo.png": "a FIFO"}
    for ref, what in expected.items():
        assert rows[ref]["status"] == "failed" and rows[ref]["error_kind"] == "permanent"
        assert rows[ref]["error"] == f"not_regular_file: tar member is {what}, not read"
    assert report.ok == 2
    # plan.json's "refused" locators pass the schema and confinement checks of rebuild
    again = rebuild(tmp_path / "ds", OTHER_RECIPE, tmp_path / "new", max_failed=1.0, trust_plan_paths=True)
    assert (again.ok, again.failed) == (2, 4)


def test_a_build_started_with_relative_paths_by_older_code_resumes(tmp_path, monkeypatch):
    make_photos(tmp_path / "src", 4)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "ds"
    build(cfg("src", out))
    plan = out / "plan.json"
    plan.write_text(plan.read_text().replace(str(tmp_path / "src"), "src"))   # as older code wrote it
    (out / "shards" / "000001.stats.json").unlink()                          # one shard left to do
    report = build(cfg("src", out))
    assert report.shards_run == 1 and report.ok == 8
