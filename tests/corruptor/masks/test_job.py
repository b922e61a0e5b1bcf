import json

import pytest
from PIL import Image

from corruptor.cli.main import main
from corruptor.masks import cache as mask_cache
from corruptor.masks.cache import MaskCache
from corruptor.masks.job import run_mask_job
from corruptor.masks.source import MaskSourceConfig
from corruptor.run.runner import RunnerSettings
from corruptor.build.writer import file_sha256

from tests.corruptor.build.build_fixtures import count_segmentations, LOCAL_RECIPE, MASKS, make_photos


@pytest.fixture
def image_folder(tmp_path, rgb_image):
    src = tmp_path / "src"
    (src / "nested").mkdir(parents=True)
    Image.fromarray(rgb_image).save(src / "a.png")
    Image.fromarray(rgb_image[::-1].copy()).save(src / "nested" / "b.png")
    Image.fromarray(rgb_image[:8, :8].copy()).save(src / "tiny.png")
    (src / "broken.jpg").write_bytes(b"not an image")
    (src / "notes.txt").write_text("ignored")
    return src


def _dead_writer_temp(folder):
    """What a mask writer killed mid-write on this machine leaves (pid 99999999 cannot run)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f".abcdef01.{mask_cache._host()}-99999999.x1y2.tmp"
    path.write_bytes(b"PAR1 half a file")
    return path


def _statuses(out, cfg):
    return json.loads((MaskCache(out / "masks", cfg).dir / "job.json").read_text())["statuses"]


def test_masks_command_local_end_to_end_and_resume(image_folder, tmp_path, capsys):
    out = tmp_path / "ds"
    argv = ["masks", "--source", f"photos={image_folder}", "--out", str(out), "--distributor", "local",
            "--mask-source", "slic", "--max-masks", "4", "--no-progress"]
    assert main(argv) == 0
    cfg = MaskSourceConfig(kind="slic", max_masks=4)
    assert _statuses(out, cfg) == {"ok": 2, "mask_too_small": 1, "unreadable": 1}
    cache = MaskCache(out / "masks", cfg)
    for name in ("a.png", "nested/b.png"):
        masks = cache.get(file_sha256(image_folder / name), (48, 64))
        assert masks is not None and 1 <= len(masks) <= 4
    printed = capsys.readouterr().out
    assert "mask_too_small" in printed and "tiny.png" in printed and "broken.jpg" in printed
    # Second run: cached images are skipped before scheduling; only the failures are retried.
    report = run_mask_job({"photos": image_folder}, cfg, out, distributor="local", progress=False)
    assert report.skipped_cached == 2 and report.statuses == {"mask_too_small": 1, "unreadable": 1}


def test_masks_command_refuses_bad_checkpoint_before_work(image_folder, tmp_path, capsys):
    out = tmp_path / "ds"
    code = main(["masks", "--source", f"p={image_folder}", "--out", str(out), "--mask-source", "sam2",
                 "--sam2-checkpoint", str(tmp_path / "missing.pt"), "--distributor", "local"])
    err = capsys.readouterr().err
    assert code == 2 and "missing.pt" in err and "felzenszwalb" in err and "slic" in err
    assert not out.exists()


def test_masks_command_bad_source_spec(tmp_path, capsys):
    assert main(["masks", "--source", "nofolder", "--out", str(tmp_path)]) == 2
    assert "NAME=PATH" in capsys.readouterr().err
    assert main(["masks", "--source", f"gone={tmp_path / 'missing'}", "--out", str(tmp_path / "ds"),
                 "--distributor", "local"]) == 2
    assert "missing" in capsys.readouterr().err


def test_masks_job_fills_the_cache_a_build_of_the_same_sources_reads(tmp_path, monkeypatch):
    """Tar shards and synthetic pages: every image the build masks is found in the cache."""
    import pyarrow.parquet as pq
    from webdataset import TarWriter

    from corruptor.build import worker
    from corruptor.build.builder import BuildConfig, build
    from corruptor.sources.sources import parse_source_arg

    photos = make_photos(tmp_path / "photos", 4, seed=3, sub=False)
    with TarWriter(str(tmp_path / "part-0.tar"), encoder=False) as tw:
        for i, p in enumerate(photos):
            tw.write({"__key__": f"s{i}", "png": p.read_bytes(), "json": b"{}"})
        tw.write({"__key__": "dup", "png": photos[0].read_bytes()})  # same content: segmented once
    specs = [parse_source_arg(f"web={tmp_path / 'part-*.tar'}:2"), parse_source_arg("ocr=synthetic:ocr:2")]
    cfg = MaskSourceConfig.model_validate(MASKS)
    out = tmp_path / "ds"
    calls = count_segmentations(monkeypatch)
    left_by_killed_job = _dead_writer_temp(out / "masks" / "0123456789abcdef" / "ab")
    report = run_mask_job(specs, cfg, out, distributor="local", progress=False)
    assert report.total == 6 and report.statuses == {"ok": 6} and sum(calls) == 6
    assert not left_by_killed_job.exists()  # the job's driver cleaned it before its workers started

    calls.clear()
    worker._mask_cache.cache_clear()
    left_by_killed_build = _dead_writer_temp(MaskCache(out / "masks", cfg).dir / "cd")
    built = build(BuildConfig(recipe=LOCAL_RECIPE, sources=specs, out=out, target=8, shard_size=8, seed=1,
                              mask_source=MASKS))
    assert calls == [] and built.ok == 8 and not left_by_killed_build.exists()
    assert not [p for p in (out / "masks").rglob("*") if p.name.endswith(".tmp")]
    rows = [r for m in sorted((out / "shards").glob("*.parquet")) for r in pq.read_table(m).to_pylist()]
    cache = MaskCache(out / "masks", cfg)
    assert {r["source"] for r in rows} == {"web", "ocr"} and max(r["n_regions"] for r in rows) > 0
    assert all(cache.has(r["sha256"]) for r in rows)
    assert run_mask_job(specs, cfg, out, distributor="local", progress=False).skipped_cached == 6


def test_masks_job_on_ray(image_folder, tmp_path):
    ray = pytest.importorskip("ray")
    cfg = MaskSourceConfig(kind="felzenszwalb", max_masks=3)
    out = tmp_path / "ds"
    try:
        report = run_mask_job({"photos": image_folder}, cfg, out, distributor="ray", progress=False,
                              settings=RunnerSettings(workers=1))
    finally:
        ray.shutdown()
    assert report.statuses == {"ok": 2, "mask_too_small": 1, "unreadable": 1}
    cache = MaskCache(out / "masks", cfg)
    assert cache.get(file_sha256(image_folder / "a.png"), (48, 64)) is not None


def test_paired_sources_mask_the_reference_and_changed_files_are_not_cached(tmp_path, rgb_image):
    from corruptor.masks.job import MaskWorker, collect

    make_photos(tmp_path / "pairs" / "ref", 2, seed=4, sub=False)
    make_photos(tmp_path / "pairs" / "dis", 2, seed=5, sub=False)
    cfg = MaskSourceConfig.model_validate(MASKS)
    out = tmp_path / "ds"
    report = run_mask_job({"pairs": tmp_path / "pairs"}, cfg, out, distributor="local", progress=False)
    assert report.statuses == {"ok": 2}
    cache = MaskCache(out / "masks", cfg)
    for name in ("img000.png", "img001.png"):
        assert cache.has(file_sha256(tmp_path / "pairs" / "ref" / name))
        assert not cache.has(file_sha256(tmp_path / "pairs" / "dis" / name))
    # A file rewritten between hashing and segmenting is that image's status, never a
    # cache entry under the old content's key.
    folder = tmp_path / "folder"
    folder.mkdir()
    Image.fromarray(rgb_image).save(folder / "a.png")
    items, unreadable = collect({"f": folder})
    assert unreadable == [] and len(items) == 1
    Image.fromarray(rgb_image[::-1].copy()).save(folder / "a.png")
    [row] = MaskWorker(cfg.model_dump_json(), str(out / "masks")).process([vars(items[0])])
    assert row["status"] == "unreadable" and "changed" in row["error"]
    assert not cache.has(items[0].sha256)
