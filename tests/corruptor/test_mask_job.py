import json

import pytest
from PIL import Image

from corruptor.cli import main
from corruptor.mask_cache import MaskCache
from corruptor.mask_job import file_sha256, run_mask_job
from corruptor.mask_source import MaskSourceConfig


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


def test_masks_job_on_ray(image_folder, tmp_path):
    ray = pytest.importorskip("ray")
    cfg = MaskSourceConfig(kind="felzenszwalb", max_masks=3)
    out = tmp_path / "ds"
    try:
        report = run_mask_job({"photos": image_folder}, cfg, out, distributor="ray", progress=False,
                              ray_init={"num_cpus": 1, "include_dashboard": False})
    finally:
        ray.shutdown()
    assert report.statuses == {"ok": 2, "mask_too_small": 1, "unreadable": 1}
    cache = MaskCache(out / "masks", cfg)
    assert cache.get(file_sha256(image_folder / "a.png"), (48, 64)) is not None
