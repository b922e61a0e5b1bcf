"""benchmarks/gpu_suite.py: the runner's records, resume and refusal, and a real CPU smoke of some stages."""
from __future__ import annotations

import importlib.util
import json
import os
import re
import runpy
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from benchmarks import gpu_suite
from benchmarks.gpu_suite import DATASET, PY, ROOT, STAGES, Settings, Stage

SUITE = [PY, str(ROOT / "benchmarks" / "gpu_suite.py")]


def _settings(tmp_path: Path, smoke: bool = True, timeout: float = 60.0) -> Settings:
    return Settings(work=tmp_path, results=tmp_path / "results", pairs=24, smoke=smoke, timeout=timeout,
                    cpus=16, gpus=2)


def _py(code: str):
    return lambda s: [[PY, "-c", code]]


def _suite(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "suite.json").read_text())["stages"]


def test_failed_stage_is_recorded_and_later_stages_still_run(tmp_path):
    stages = (Stage("dataset", _py("print('building'); raise SystemExit(3)")),
              Stage("overhead", _py(f"import pathlib; p = pathlib.Path({str(tmp_path / 'results')!r}); "
                                    "p.mkdir(); (p / 'x.json').write_text('1')")),
              Stage("train", _py("print('never')"), needs_dataset=True))
    done = gpu_suite.run_suite(stages, _settings(tmp_path))
    assert [done[n]["status"] for n in ("dataset", "overhead", "train")] == ["failed", "ok", "skipped"]
    assert done["dataset"]["returncode"] == 3 and "exit 3" in done["dataset"]["reason"]
    assert "dataset" in done["train"]["reason"]
    assert done["overhead"]["results"] == [str(tmp_path / "results" / "x.json")]
    assert _suite(tmp_path) == done
    assert "building" in (tmp_path / "logs" / "dataset.log").read_text()
    assert not (tmp_path / "logs" / "train.log").exists()


def test_dependent_stages_need_an_ok_dataset_of_the_same_settings(tmp_path):
    built = _settings(tmp_path)  # pretend an earlier run built the 24-pair dataset
    (tmp_path / "suite.json").write_text(json.dumps({"stages": {"dataset": {
        "status": "ok", "commands": [shlex.join(c) for c in gpu_suite.DATASET.commands(built)]}}}))
    train = (Stage("train", _py("print('training')"), needs_dataset=True),)
    assert gpu_suite.run_suite(train, built)["train"]["status"] == "ok"
    other = Settings(**{**built.__dict__, "pairs": 48})  # its dataset was never built
    done = gpu_suite.run_suite(train, other, force=True)
    assert done["train"]["status"] == "skipped" and "48 pairs" in done["train"]["reason"]


def test_timeout_ends_the_whole_process_group(tmp_path):
    # The stage's child starts a grandchild and both sleep: a timeout must end both.
    pidfile = tmp_path / "grandchild.pid"
    code = ("import subprocess, sys, time; "
            "g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); "
            f"open({str(pidfile)!r}, 'w').write(str(g.pid)); time.sleep(120)")
    t0 = time.monotonic()
    done = gpu_suite.run_suite((Stage("overhead", _py(code)),), _settings(tmp_path, timeout=3))
    assert done["overhead"]["status"] == "timeout" and done["overhead"]["returncode"] is None
    assert time.monotonic() - t0 < 30
    pid = int(pidfile.read_text())
    for _ in range(50):  # reaped by init shortly after the kill
        status = Path(f"/proc/{pid}/status")
        if not status.exists() or "State:\tZ" in status.read_text():
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"grandchild {pid} survived the stage timeout")


def test_error_in_after_step_fails_the_stage_with_its_reason(tmp_path):
    def after(s):
        raise RuntimeError("no summary.json")

    done = gpu_suite.run_suite((Stage("torchrun", _py("pass"), after=after),), _settings(tmp_path))
    assert done["torchrun"]["status"] == "failed"
    assert "no summary.json" in done["torchrun"]["reason"]
    assert "no summary.json" in (tmp_path / "logs" / "torchrun.log").read_text()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_refuses_without_cuda_unless_smoke(tmp_path, capsys):
    assert gpu_suite.main(["--work", str(tmp_path / "w")]) == 2
    assert "--smoke" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("argv, message", [
    (["--stages", "dataset,bogus"], "allowed: dataset,"),
    (["--pairs", "0", "--smoke"], "--pairs 0"),
    (["--pairs", "500", "--stages", "mechanism"], ">= 2000"),
    (["--timeout-per-stage", "0", "--smoke"], "--timeout-per-stage"),
])
def test_bad_arguments_name_the_flag(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        gpu_suite.main(["--work", str(tmp_path), *argv])
    assert exc.value.code == 2 and message in capsys.readouterr().err


def _help(cmd: list[str], monkeypatch, capsys) -> str:
    """--help of the script or module a planned command runs, in this process."""
    i = cmd.index("-m") + 1 if "-m" in cmd else 1
    target, rest = cmd[i], cmd[i + 1:]
    positional = []
    for tok in rest:
        if tok.startswith("--"):
            break
        positional.append(tok)
    monkeypatch.setattr(sys, "argv", [target, *positional, "--help"])
    with pytest.raises(SystemExit):
        if target.endswith(".py"):
            runpy.run_path(str(ROOT / target), run_name="__main__")
        else:  # by path: run_module warns about modules the package already imported
            spec = importlib.util.find_spec(target)
            main = Path(spec.origin).with_name("__main__.py") if spec.submodule_search_locations else spec.origin
            runpy.run_path(str(main), run_name="__main__")
    return capsys.readouterr().out


# ids avoid "gpu": conftest skips tests with that keyword on machines without CUDA
@pytest.mark.parametrize("smoke", [False, True], ids=["cuda-plan", "smoke-plan"])
def test_every_planned_flag_exists(tmp_path, monkeypatch, capsys, smoke):
    """The GPU commands are not run here, so check each flag against the script's own --help."""
    s = _settings(tmp_path, smoke=smoke)
    for stage in STAGES:
        for cmd in stage.commands(s):
            if cmd[1].endswith(".py") and not (ROOT / cmd[1]).is_file():
                continue  # a slot for a script still being written (its stage records "does not exist yet")
            if "torch.distributed.run" in cmd:  # torchrun's own flags run in the smoke test
                cmd = [PY, *cmd[cmd.index("-m", cmd.index("torch.distributed.run")):]]
            text = _help(cmd, monkeypatch, capsys)
            flags = [t.split("=")[0] for t in cmd if t.startswith("--")]
            missing = [f for f in flags if not re.search(re.escape(f) + r"(?![\w-])", text)]
            assert not missing, f"{stage.name}: {missing} not in the --help of {cmd[:4]}"


def _snapshot(folder: Path) -> dict:
    return {p.name: (p.stat().st_mtime_ns, p.stat().st_size) for p in folder.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_smoke_run_records_resumes_and_never_touches_committed_results(tmp_path):
    committed = _snapshot(ROOT / "benchmarks" / "results")
    work = tmp_path / "w"
    argv = [*SUITE, "--work", str(work), "--smoke", "--stages", "dataset,torchrun"]
    first = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert first.returncode == 0, first.stdout[-3000:]
    records = _suite(work)
    assert {n: r["status"] for n, r in records.items()} == {"dataset": "ok", "torchrun": "ok"}
    names = {Path(f).name for r in records.values() for f in r["results"]}
    assert names == {"torchrun_cpu_smoke.json", "torchrun_cpu_smoke.md"}
    assert all(f.startswith(str(work / "results")) for r in records.values() for f in r["results"])
    result = json.loads((work / "results" / "torchrun_cpu_smoke.json").read_text())
    assert result["nproc"] == 2 and result["steps_run"] == 4 and result["steady_images_per_s"] > 0
    assert (work / "data-24" / "dataset.json").exists()
    assert _snapshot(ROOT / "benchmarks" / "results") == committed

    logs = {n: os.stat(work / "logs" / f"{n}.log").st_mtime_ns for n in records}
    second = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0 and second.stdout.count("already ok") == 2
    assert "== dataset" not in second.stdout
    assert _suite(work) == records
    assert logs == {n: os.stat(work / "logs" / f"{n}.log").st_mtime_ns for n in records}

    # A forced stage that runs out of time is recorded, keeps the others' records and fails the command.
    third = subprocess.run([*argv[:-1], "torchrun", "--force", "--timeout-per-stage", "1"], cwd=ROOT,
                           capture_output=True, text=True, timeout=120)
    assert third.returncode == 1
    after = _suite(work)
    assert after["torchrun"]["status"] == "timeout"
    assert after["dataset"] == records["dataset"]


def test_user_sources_replace_the_embedded_ones(tmp_path):
    s = Settings(**{**_settings(tmp_path).__dict__, "sources": ("photos=/data/div2k", "web=/data/cc.txt")})
    build = next(c for c in DATASET.commands(s) if "build" in c)
    given = [build[i + 1] for i, t in enumerate(build) if t == "--source"]
    assert given == ["photos=/data/div2k", "web=/data/cc.txt"]
    default = next(c for c in DATASET.commands(_settings(tmp_path)) if "build" in c)
    assert "photos=embedded:photos" in default


def test_missing_modules_or_scripts_skip_with_the_reason_and_others_run(tmp_path):
    stages = (Stage("masks", _py("print('never')"), requires=("no_such_module_xyz",)),
              Stage("robustness", lambda s: [[PY, "benchmarks/no_such_bench.py"]]),
              Stage("overhead", _py("print('ran')")))
    done = gpu_suite.run_suite(stages, _settings(tmp_path))
    assert done["masks"]["status"] == "skipped" and "no_such_module_xyz" in done["masks"]["reason"]
    assert done["robustness"]["status"] == "skipped" and "does not exist yet" in done["robustness"]["reason"]
    assert done["overhead"]["status"] == "ok"


def test_budget_caps_each_stage_and_skips_when_spent(tmp_path):
    s = Settings(**{**_settings(tmp_path, timeout=60.0).__dict__, "budget": 12.0})
    stages = (Stage("dataset", _py("import time; time.sleep(30)")),  # cut at the budget, not at 60 s
              Stage("overhead", _py("print('never')")))
    t0 = time.monotonic()
    done = gpu_suite.run_suite(stages, s)
    assert time.monotonic() - t0 < 40
    assert done["dataset"]["status"] == "timeout"
    assert done["overhead"]["status"] == "skipped" and "--budget" in done["overhead"]["reason"]


def test_no_stage_outside_masks_needs_sam2_or_ray():
    for stage in STAGES:
        if stage.name != "masks":
            assert not {"sam2", "ray"} & set(stage.requires), stage.name
