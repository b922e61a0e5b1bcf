"""End-to-end dataset builds on tiny generated images: both distributors, resume, faults."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import webdataset as wds

from corruptor.run import local as local_runner, progress as progress_mod, ray_runner

from corruptor.build import worker
from corruptor.build.builder import BuildConfig, BuildError, build, rebuild
from corruptor.run.registry import run_tasks
from corruptor.run.runner import RunnerSettings
from corruptor.sources.sources import Locator, SourceSpec
from corruptor.build.validate import validate
from corruptor.build.writer import PARTIAL_TAG

from .build_fixtures import GLOBAL_RECIPE, LOCAL_RECIPE, MASKS, OTHER_RECIPE, count_segmentations, dataset_bytes, make_photos

TARGET, SHARD = 20, 6


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    make_photos(root / "a", 7, seed=1)
    make_photos(root / "b", 4, seed=2)
    return root


def config(photos, out, **kw):
    args = dict(recipe=GLOBAL_RECIPE, sources=[SourceSpec("alpha", str(photos / "a")),
                                               SourceSpec("beta", str(photos / "b"), weight=0.5)],
                out=out, target=TARGET, shard_size=SHARD, seed=7)
    args.update(kw)
    return BuildConfig(**args)


@pytest.fixture(scope="module")
def reference(photos, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "ds"
    report = build(config(photos, out))
    return out, report


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_reference_build_layout_and_stock_readers(reference):
    out, report = reference
    assert (report.rows, report.ok, report.failed, report.shards) == (TARGET, TARGET, 0, 4)
    ds = json.loads((out / "dataset.json").read_text())
    assert ds["counts"]["pairs"] == TARGET and len(ds["shards"]) == 4
    assert ds["recipe"]["name"] == "test-global" and len(ds["recipe_hash"]) == 16
    assert ds["quotas"] == {"alpha": 13, "beta": 7}
    samples = list(wds.WebDataset(sorted(str(p) for p in (out / "shards").glob("*.tar")), shardshuffle=False)
                   .decode("rgb8"))
    assert len(samples) == TARGET and len({s["__key__"] for s in samples}) == TARGET
    assert validate(out).ok
    s = samples[0]
    assert s["clean.png"].shape == s["degraded.png"].shape == (24, 24, 3)
    assert not np.array_equal(s["clean.png"], s["degraded.png"])
    prov = s["json"]
    assert prov["key"] == s["__key__"] and prov["recipe_hash"] == ds["recipe_hash"] and prov["seed"] == 7
    assert len(prov["source_sha256"]) == 64 and prov["ops"][0]["op"] in ("gaussian_noise", "jpeg")
    assert "params" in prov["ops"][0]
    table = pq.read_table(out / "shards" / "000000.parquet")
    assert table.num_rows == SHARD and set(table.column("status").to_pylist()) == {"ok"}
    assert validate(out).ok


@pytest.fixture
def progress_log(monkeypatch):
    """Every (task, done) the driver's progress bar receives, partial reports included."""
    log = []

    class Recording(progress_mod.Progress):
        def update(self, index, done):
            log.append((index, done, self.sizes[index]))
            super().update(index, done)

    for runner_module in (local_runner, ray_runner):
        monkeypatch.setattr(runner_module, "Progress", Recording)
    return log


def test_progress_counts_each_item_once_across_retries():
    bar = progress_mod.Progress([3, 2], enabled=False)
    for index, done in ((0, 1), (0, 2), (1, 1), (0, 1), (0, 2), (0, 3)):  # task 0 retried after 2 items
        bar.update(index, done)
    assert bar.done == [3, 1]
    bar.finish(1, ok=False)
    assert bar.done == [3, 2] and bar.failed == 1


def test_pool_workers_report_progress_per_sample(photos, reference, tmp_path, progress_log):
    out = tmp_path / "ds"
    assert build(config(photos, out, workers=2, progress=True)).ok == TARGET
    assert dataset_bytes(out) == dataset_bytes(reference[0])   # reporting changes no byte
    assert any(0 < done < size for _, done, size in progress_log), progress_log


def test_ray_gives_identical_bytes_and_ray_data_reads_it(photos, reference, tmp_path, ray_cluster, progress_log):
    out = tmp_path / "ds"
    report = build(config(photos, out, distributor="ray", workers=2, progress=True))
    assert report.ok == TARGET
    assert dataset_bytes(out) == dataset_bytes(reference[0])
    assert any(0 < done < size for _, done, size in progress_log), progress_log  # per sample, via the actor
    import ray.data

    rows = ray.data.read_webdataset(sorted(str(p) for p in (out / "shards").glob("*.tar"))).take_all()
    assert sorted(r["__key__"] for r in rows) == sorted(
        k for p in sorted((out / "shards").glob("*.parquet")) for k in pq.read_table(p).column("key").to_pylist())


def test_resume_after_lost_marker_and_partial_file(photos, reference, tmp_path):
    out = tmp_path / "ds"
    shutil.copytree(reference[0], out)
    (out / "shards" / "000002.stats.json").unlink()
    (out / "shards" / "000002.tar").write_bytes(b"half a tar")
    (out / "shards" / f".000002.tar{PARTIAL_TAG}99-deadbeef").write_bytes(b"temp")
    report = build(config(photos, out))
    assert (report.shards_run, report.shards_resumed, report.removed_partials) == (1, 3, 1)
    assert dataset_bytes(out) == dataset_bytes(reference[0])


def test_killed_build_resumes_to_identical_bytes(photos, tmp_path):
    cmd = [sys.executable, "-m", "corruptor.cli", "build", "--recipe", str(tmp_path / "r.json"),
           "--source", f"alpha={photos / 'a'}", "--target", "24", "--shard-size", "1", "--seed", "3"]
    (tmp_path / "r.json").write_text(json.dumps(GLOBAL_RECIPE))
    # A recipe path with a .json suffix is YAML-loadable (JSON is YAML).
    # Two pool workers: the killed build also shows pool-written shards match in-process ones.
    proc = subprocess.Popen(cmd + ["--workers", "2", "--out", str(tmp_path / "killed")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 60
    shards = tmp_path / "killed" / "shards"
    while time.time() < deadline and proc.poll() is None:
        if shards.is_dir() and len(list(shards.glob("*.stats.json"))) >= 3:
            break
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole build: parent and pool workers
    proc.wait()
    done_before = len(list(shards.glob("*.stats.json")))
    assert 0 < done_before < 24, "the build should have been killed mid-run"
    assert not (tmp_path / "killed" / "dataset.json").exists()
    again = build(config(photos, tmp_path / "killed", recipe=tmp_path / "r.json", target=24, shard_size=1, seed=3,
                         sources=[SourceSpec("alpha", str(photos / "a"))]))
    assert again.shards_resumed >= done_before
    whole = build(config(photos, tmp_path / "whole", recipe=tmp_path / "r.json", target=24, shard_size=1, seed=3,
                         sources=[SourceSpec("alpha", str(photos / "a"))]))
    assert whole.shards_run == 24
    assert dataset_bytes(tmp_path / "killed") == dataset_bytes(tmp_path / "whole")
    assert not any(PARTIAL_TAG in p.name for p in shards.iterdir())


def test_bad_files_get_status_rows_and_the_run_goes_on(tmp_path):
    from .badfiles import make_bad_corpus

    expected = make_bad_corpus(tmp_path / "bad")
    expected["one_pixel.png"] = "too_small"  # decodes, but below the build's min_side (2 here)
    make_photos(tmp_path / "bad" / "good", 2, sub=False)
    n = len(expected) + 2
    report = build(BuildConfig(recipe=GLOBAL_RECIPE, sources=[SourceSpec("bad", str(tmp_path / "bad"))],
                               out=tmp_path / "ds", target=n, shard_size=4, min_side=2, max_failed=1.0))
    assert report.rows == n and not report.failed_shards
    rows = {r["ref"]: r for p in sorted((tmp_path / "ds" / "shards").glob("*.parquet"))
            for r in pq.read_table(p).to_pylist()}
    for name, reason in expected.items():
        r = rows[name]
        if reason is None:
            assert r["status"] == "ok", (name, r["error"])
        else:
            assert r["status"] == "failed" and r["error"].startswith(reason), (name, r["error"])
            assert r["error_kind"] == "permanent"
    assert report.ok == sum(1 for v in expected.values() if v is None) + 2
    assert validate(tmp_path / "ds").ok


def test_transient_failures_are_retried_on_request(photos, reference, tmp_path, monkeypatch):
    out = tmp_path / "ds"
    real_read = Locator.read

    def flaky(self):
        if self.args and str(self.args[0]).endswith("img003.png"):
            raise OSError(5, "Input/output error")
        return real_read(self)

    monkeypatch.setattr(Locator, "read", flaky)
    with pytest.raises(BuildError, match="more than --max-failed 0.05"):   # 4 of 20 failed: no dataset.json
        build(config(photos, out))
    assert not (out / "dataset.json").exists()
    first = build(config(photos, out, max_failed=0.5))                     # accepted on request, nothing rerun
    assert first.failed > 0 and first.shards_run == 0 and first.shortfall == first.failed
    assert json.loads((out / "dataset.json").read_text())["counts"]["shortfall"] == first.failed
    rows = [r for p in sorted((out / "shards").glob("*.parquet")) for r in pq.read_table(p).to_pylist()]
    assert {r["error_kind"] for r in rows if r["status"] == "failed"} == {"transient"}
    monkeypatch.setattr(Locator, "read", real_read)
    assert build(config(photos, out, max_failed=0.5)).shards_run == 0   # plain resume keeps done shards
    again = build(config(photos, out, retry_failed=True))
    assert again.failed == 0 and 0 < again.shards_run < again.shards
    assert dataset_bytes(out) == dataset_bytes(reference[0])


def test_rebuild_reuses_plan_and_masks_without_segmenting(photos, tmp_path, monkeypatch):
    calls = count_segmentations(monkeypatch)
    worker._mask_cache.cache_clear()
    old = tmp_path / "old"
    first = build(config(photos, old, recipe=LOCAL_RECIPE, mask_source=MASKS, target=12))
    assert sum(calls) == 11  # one segmentation per distinct source image, however many variants
    assert first.ok > 0
    regions = [r["n_regions"] for p in sorted((old / "shards").glob("*.parquet")) for r in pq.read_table(p).to_pylist()]
    assert max(regions) > 0
    calls.clear()
    worker._mask_cache.cache_clear()
    new = tmp_path / "new"
    in_flight = next((old / "masks").rglob("*.parquet")).with_name(".abcdef01.other-node-7.q1w2.tmp")
    in_flight.write_bytes(b"PAR1 half")  # a temp file is never a cache entry, so it is not carried over
    restated = [SourceSpec("alpha", str(photos / "a")), SourceSpec("beta", str(photos / "b"))]
    report = rebuild(old, OTHER_RECIPE, new, sources=restated)
    assert calls == [] and report.rows == 12
    assert in_flight.exists() and not [p for p in (new / "masks").rglob("*") if p.name.endswith(".tmp")]
    keys = lambda d: sorted(k for p in (d / "shards").glob("*.parquet") for k in pq.read_table(p).column("key").to_pylist())
    assert keys(old) == keys(new)
    ds = json.loads((new / "dataset.json").read_text())
    assert ds["recipe"]["name"] == "test-other" and ds["mask_source"]["felzenszwalb"]["scale"] == 20.0
    assert validate(new).ok
    with pytest.raises(BuildError, match="new --out"):
        rebuild(old, OTHER_RECIPE, old)
    with pytest.raises(BuildError, match="does not exist"):
        rebuild(tmp_path / "nope", OTHER_RECIPE, tmp_path / "other")


def test_bad_input_fails_before_any_work(photos, reference, tmp_path):
    out = tmp_path / "never"
    with pytest.raises(BuildError, match="does not exist"):
        build(config(photos, out, sources=[SourceSpec("x", str(tmp_path / "missing"))]))
    assert not out.exists()
    with pytest.raises(BuildError, match="output.crop"):
        build(config(photos, out, crops=2, recipe={**GLOBAL_RECIPE, "output": {"size": 24, "crop": "center"}}))
    with pytest.raises(BuildError, match="unknown op"):
        build(config(photos, out, recipe={"name": "x", "global": {"op": "no_such_op"}}))
    with pytest.raises(BuildError, match="distributor"):
        build(config(photos, out, distributor="spark"))
    assert not out.exists()
    copy = tmp_path / "copy"
    shutil.copytree(reference[0], copy)
    with pytest.raises(BuildError, match="different settings.*seed"):
        build(config(photos, copy, seed=8))
    assert build(config(photos, copy, seed=8, mode="overwrite")).shards_run == 4


def _flaky_worker(task):
    if task["fail"] > 0:
        task["fail"] -= 1  # in-process only: the task dict is shared between attempts
        raise RuntimeError("flaky")
    return task["value"] * 2


def test_distributor_retries_then_reports_failures():
    tasks = [{"fail": 1, "value": 1}, {"fail": 5, "value": 2}, {"fail": 0, "value": 3}]
    out = run_tasks(tasks, _flaky_worker, runner="local", settings=RunnerSettings(workers=1, retries=2))
    assert [o.result for o in out] == [2, None, 6]
    assert [o.attempts for o in out] == [2, 3, 1]
    assert "flaky" in out[1].error


def test_ctrl_c_stops_the_pool_instead_of_draining_the_queue(tmp_path):
    script = (
        "import signal, sys\n"
        "signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with SIGINT ignored\n"
        "from corruptor.run.registry import run_tasks\n"
        "from corruptor.run.runner import RunnerSettings\n"
        "from tests.corruptor.build.build_fixtures import slow_marker_task\n"
        "try:\n"
        f"    run_tasks([({str(tmp_path)!r}, i) for i in range(20)], slow_marker_task, settings=RunnerSettings(workers=2))\n"
        "except KeyboardInterrupt:\n"
        "    sys.exit(130)\n"
    )
    root = str(Path(__file__).resolve().parents[3])
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=root, start_new_session=True)
    deadline = time.time() + 60
    while time.time() < deadline and not list(tmp_path.glob("done-*")):
        time.sleep(0.02)
    time.sleep(0.2)   # mid-task: the workers are busy, as they are during a real shard
    before = len(list(tmp_path.glob("done-*")))
    os.killpg(proc.pid, signal.SIGINT)   # what Ctrl-C in a terminal does: the whole group
    assert proc.wait(timeout=60) == 130
    time.sleep(1.0)   # a worker left running would keep adding markers
    done = len(list(tmp_path.glob("done-*")))
    # At most the two in flight may have finished meanwhile; queued tasks must not start.
    assert done <= before + 2, f"{done} of 20 tasks ran ({before} at Ctrl-C): the queue was drained"


def test_paired_layout_is_ingested_as_given_pairs(tmp_path):
    from PIL import Image

    make_photos(tmp_path / "maa" / "ref", 2, sub=False)
    (tmp_path / "maa" / "dis").mkdir()
    for i, suffix in ((0, ""), (0, "_v2"), (1, "")):
        img = np.full((40 + 3 * i, 50, 3), 60 * i + (30 if suffix else 0), np.uint8)
        Image.fromarray(img).save(tmp_path / "maa" / "dis" / f"img{i:03d}{suffix}.png")
    report = build(BuildConfig(recipe=GLOBAL_RECIPE, sources=[SourceSpec("maa", str(tmp_path / "maa"))],
                               out=tmp_path / "ds", target=3, shard_size=3))
    assert report.ok == 3
    samples = list(wds.WebDataset(str(tmp_path / "ds" / "shards" / "000000.tar"), shardshuffle=False).decode("rgb8"))
    by_dis = {s["json"]["dis_path"]: s for s in samples}
    assert sorted(by_dis) == ["dis/img000.png", "dis/img000_v2.png", "dis/img001.png"]
    s = by_dis["dis/img000_v2.png"]
    assert s["json"]["paired"] is True and s["json"]["version"] == 2 and s["json"]["ops"] == []
    assert s["degraded.png"].shape == s["clean.png"].shape == (24, 24, 3)
    assert np.all(s["degraded.png"] == 30)   # the given degraded image, resized like the reference


def test_cli_reports_usage_errors(tmp_path, capsys):
    from corruptor.cli.main import main

    assert main(["build", "--out", str(tmp_path / "x"), "--recipe", "maa-global"]) == 2
    assert "--source" in capsys.readouterr().err
    assert main(["build", "--out", str(tmp_path / "x"), "--recipe", "maa-global", "--target", "3",
                 "--source", f"a={tmp_path / 'nope'}"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("flag, value, says", [
    ("--target", "0", "argument --target: must be >= 1, got 0"),
    ("--shard-size", "-3", "argument --shard-size: must be >= 1, got -3"),
    ("--workers", "two", "argument --workers: 'two' is not an integer"),
])
def test_cli_rejects_bad_numbers_naming_the_flag(photos, tmp_path, capsys, flag, value, says):
    from corruptor.cli.main import main

    args = ["build", "--out", str(tmp_path / "x"), "--recipe", "maa-global", "--target", "3",
            "--source", f"a={photos / 'a'}", flag, value]
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2 and says in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_out_below_a_file_is_a_usage_error(photos, tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(BuildError, match="afile is a file, not a folder"):
        build(config(photos, tmp_path / "afile" / "ds"))


def test_resumed_build_reports_speed_of_this_run_only(photos, reference, tmp_path):
    out = tmp_path / "ds"
    shutil.copytree(reference[0], out)
    (out / "shards" / "000001.stats.json").unlink()
    report = build(config(photos, out))
    assert (report.shards_run, report.ok, report.ok_run) == (1, TARGET, SHARD)
    assert report.pairs_per_s == pytest.approx(SHARD / report.seconds)


def test_png_encoding_is_lossless_and_deterministic():
    rng = np.random.default_rng(0)
    image = np.kron(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8), np.ones((6, 5, 1), np.uint8))
    image[::7] = rng.integers(0, 255, image[::7].shape, dtype=np.uint8)
    data = worker.encode(image, "png")
    import cv2

    back = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED), cv2.COLOR_BGR2RGB)
    assert np.array_equal(back, image) and worker.encode(image.copy(), "png") == data
    mask = (image[..., 0] > 128).astype(np.uint8) * 255
    assert np.array_equal(cv2.imdecode(np.frombuffer(worker.encode(mask, "png"), np.uint8), cv2.IMREAD_UNCHANGED), mask)


def test_cli_mask_settings_carry_the_working_size():
    from corruptor.cli.main import build_parser
    from corruptor.cli.build import mask_settings

    def settings(*extra):
        return mask_settings(build_parser().parse_args(["build", "--out", "x", *extra]))

    assert settings() is None
    assert settings("--mask-max-side", "512") == {"kind": "felzenszwalb", "max_side": 512}
    assert settings("--mask-source", "slic") == {"kind": "slic"}
    assert settings("--precomputed-masks", "m.json")["kind"] == "precomputed"
