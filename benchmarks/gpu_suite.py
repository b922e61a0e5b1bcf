"""Every GPU figure of issues #3, #5, #6, #7 from one resumable command.

    python benchmarks/gpu_suite.py --work runs/gpu                      # all stages, in order
    python benchmarks/gpu_suite.py --work runs/gpu --stages train       # one stage per 10-minute window
    python benchmarks/gpu_suite.py --work runs/smoke --smoke            # the same stages on CPU, tiny
    python benchmarks/gpu_suite.py --work runs/gpu --source photos=/data/div2k   # your images for the dataset

Each stage runs the project's own commands (corruptor build, bench_*.py, torchrun maa-train) as
subprocesses with a time limit, tees their output to WORK/logs/STAGE.log and records the outcome in
WORK/suite.json. A re-run skips stages already ok with the same commands (--force runs them again).
WORK/STAGE is a stage's scratch folder, emptied before it runs; the dataset lives in WORK/data-PAIRS
and resumes instead. Figures go to benchmarks/results/; a --smoke run writes only under WORK/results/.

Device run (one GPU, 16 cores, torch + transformers only): the whole suite is one command with
a total --budget (default 510 s; stages get what is left, and results are written as each
stage finishes, so a cut-off run still leaves figures). Stages whose modules are missing are
skipped with the reason in suite.json (sam2 for masks; ray is never needed: the dataset stage
builds with local processes). Carry the small pure-Python/compiled wheels the other stages
need (pip download/wheel --no-deps into a folder, under 64 MiB; opencv-python-headless and
pyarrow are the big ones, so on a tight budget leave the dataset stage out and pass --stages
overhead,robustness):

    pip install --no-deps --no-index --find-links wheels/ pydantic pydantic-core pyyaml safetensors
    python benchmarks/gpu_suite.py --work runs/gpu --pairs 2000
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from maa_format.io import atomic_write

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


@dataclass(frozen=True)
class Settings:
    work: Path
    results: Path
    pairs: int
    smoke: bool
    timeout: float
    cpus: int
    gpus: int
    sources: tuple[str, ...] = ()  # corruptor build --source NAME=PATH; empty: embedded photos + OCR pages
    # Whole-suite wall budget in seconds (None: none): each stage gets at most what is left, so
    # one command fits a device window; a stage with no time left is recorded as skipped.
    budget: float | None = None

    @property
    def data(self) -> Path:  # named by size: another --pairs builds (and resumes) its own
        return self.work / f"data-{self.pairs}"

    @property
    def model(self) -> Path:  # one random-init encoder shared by the train and torchrun stages
        return self.work / "models" / self.arch

    @property
    def arch(self) -> str:
        return "tiny-clip" if self.smoke else "clip-vit-l-14-336"

    @property
    def device(self) -> str:
        return "cpu" if self.smoke else "cuda"


@dataclass(frozen=True)
class Stage:
    name: str
    commands: Callable[[Settings], list[list[str]]]
    needs_dataset: bool = False
    # In-process step after the commands succeed (summaries that no bench script writes).
    after: Callable[[Settings], None] | None = None
    # Modules the stage's commands import. A GPU machine may have only torch and
    # transformers: a stage whose modules are missing is skipped with the pip line to fix it,
    # and the other stages still run (sam2 and ray are never needed by the others).
    requires: tuple[str, ...] = ()


def dataset(s: Settings) -> list[list[str]]:
    # Sources that need no download; one OCR page per OCR pair, photos reused as variants and crops.
    shard = max(8, min(256, s.pairs // (4 * s.cpus)))
    sources = s.sources or ("photos=embedded:photos", f"ocr=synthetic:ocr:{max(8, s.pairs // 2)}")
    return [[PY, "-m", "corruptor", "build", "--recipe", "maa-paper",
             *[arg for src in sources for arg in ("--source", src)], "--target", str(s.pairs),
             "--shard-size", str(shard), "--mask-source", "felzenszwalb", "--distributor", "local",
             "--workers", str(s.cpus), "--no-progress", "--out", str(s.data)],
            [PY, "-m", "corruptor", "validate", str(s.data)]]


def overhead(s: Settings) -> list[list[str]]:
    # On a GPU every execution mode runs (eager, compiled, CUDA graphs); on CPU compiling only costs time.
    size = ["--batch-sizes", "1,2", "--iters", "2", "--warmup", "1", "--modes", "eager"] if s.smoke \
        else ["--batch-sizes", "1,64"]
    return [[PY, "benchmarks/bench_overhead.py", "--device", s.device, *size, "--out", str(s.results)]]


def masks(s: Settings) -> list[list[str]]:
    size = (["--images", "2", "--size", "128x96", "--points-per-side", "4", "--image-size", "256"] if s.smoke
            else ["--images", "32", "--size", "1024x768", "--points-per-side", "32"])
    return [[PY, "benchmarks/bench_masks.py", "--device", s.device, *size, "--out", str(s.results)]]


def random_model(s: Settings) -> list[str]:
    return [PY, "-m", "maa_train.random_models", "--arch", s.arch, "--out", str(s.model)]


def train(s: Settings) -> list[list[str]]:
    base = [PY, "benchmarks/bench_train.py", "--arch", s.arch, "--model", str(s.model), "--device", s.device,
            "--data", str(s.data)]
    if s.smoke:  # torch.compile on CPU costs minutes and measures nothing: eager only
        return [random_model(s), base + ["--batch", "4", "--repeats", "2", "--loader-workers", "1",
                                         "--loader-batches", "2", "--out", str(s.results)]]
    # The compiled run writes train_compiled.{md,json} beside the eager run's train.{md,json}.
    return [random_model(s), base + ["--batch", "32", "--out", str(s.results)],
            base + ["--batch", "32", "--compile", "--out", str(s.results)]]


def torchrun_plan(s: Settings) -> dict:
    return {"nproc": 2 if s.smoke else s.gpus, "batch": 2 if s.smoke else 32, "steps": 4 if s.smoke else 300,
            "workers": 0 if s.smoke else min(8, max(1, s.cpus // max(1, s.gpus) - 1)),
            "config": "pipelines/configs/" + ("tiny-cpu.yaml" if s.smoke else "maa-paper.yaml")}


def torchrun(s: Settings) -> list[list[str]]:
    t = torchrun_plan(s)
    sets = {"model.path": s.model, "model.use_projector": "false", "data.train": f"[{s.data}]",
            "data.batch_size": t["batch"], "data.workers": t["workers"], "train.device": s.device,
            "train.max_steps": t["steps"], "train.val_every": t["steps"], "train.ckpt_every": t["steps"],
            "train.log_every": 1 if s.smoke else 10, "train.progress": "false", "train.out_dir": s.work / "torchrun"}
    return [random_model(s), [PY, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(t["nproc"]),
                              "-m", "maa_train.train.cli", "--config", t["config"],
                              *(x for k, v in sets.items() for x in ("--set", f"{k}={v}"))]]


def torchrun_results(s: Settings) -> None:
    """images/s (whole run and steady), peak memory and MFU of the torchrun stage, as JSON and markdown."""
    import torch

    t, out = torchrun_plan(s), s.work / "torchrun"
    summary = json.loads((out / "summary.json").read_text())
    # Steady: the trainer's rate from the end of the first step, validation and checkpoints left out.
    steady = summary["train_images_per_s"]
    if steady is None:
        raise RuntimeError(f"{out / 'summary.json'}: no steady rate (the run ended after its first step)")
    memory = summary["peak_memory_allocated_gb"] or summary["peak_rss_gb"]  # per rank: CUDA, or CPU RSS
    card = f"CPU ({s.cpus} cores, gloo)" if s.smoke else torch.cuda.get_device_name(0)
    # FLOPs of the same trainer step at the same batch, counted by the train stage on this card.
    bench = json.loads((s.results / "train.json").read_text()) if (s.results / "train.json").exists() else {}
    same = bench.get("machine", {}).get("gpu") == card and bench.get("batch") == t["batch"] and bench.get("peak_flops")
    mfu = bench["flops_per_step"] / t["batch"] * steady / (bench["peak_flops"] * t["nproc"]) if same else None
    r = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "card": card,
         "command": shlex.join(torchrun(s)[-1]).replace(PY, "python"), "arch": f"{s.arch} (random init)",
         "data": str(s.data), **t, "steps_run": summary["steps"], "images_per_s": summary["images_per_s"],
         "steady_images_per_s": steady, "steady_images_per_s_per_process": steady / t["nproc"],
         "peak_memory_gib_per_rank": memory, "mfu": mfu, "final_losses": summary["final_losses"]}
    stem = "torchrun_cpu_smoke" if s.smoke else "torchrun_gpu"
    s.results.mkdir(parents=True, exist_ok=True)
    (s.results / f"{stem}.json").write_text(json.dumps(r, indent=2))
    cells = [r["images_per_s"], steady, steady / t["nproc"], max(memory), mfu]
    (s.results / f"{stem}.md").write_text(
        f"# maa-train under torchrun{' (CPU SMOKE RUN: checks the path, not a figure)' if s.smoke else ''}\n\n"
        f"- {card}, {t['nproc']} process(es), {r['date']}\n- command: `{r['command']}`\n- model {r['arch']}, data "
        f"`{s.data}`, batch {t['batch']} per process, {summary['steps']} steps; MFU from FLOPs in train.json\n\n"
        "| images/s (whole run) | images/s (steady) | per process | peak GiB (max over ranks) | MFU |\n"
        "|---|---|---|---|---|\n| " + " | ".join("n/a" if v is None else f"{v:.4g}" for v in cells) + " |\n")


def mechanism(s: Settings) -> list[list[str]]:
    tiny = ["--steps", "4", "--smoke"] if s.smoke else []
    return [[PY, "benchmarks/bench_mechanism.py", "--arch", s.arch, "--device", s.device, "--ablation", *tiny,
             "--data", str(s.data), "--work-dir", str(s.work / "mechanism"), "--out-dir", str(s.results)]]


def robustness(s: Settings) -> list[list[str]]:
    return [[PY, "benchmarks/bench_robustness.py", "--size", "224", "--device", s.device, "--results", str(s.results),
             "--work", str(s.work / "robustness"), *(["--smoke"] if s.smoke else [])]]


CORE = ("numpy", "pydantic", "yaml")
BUILD = (*CORE, "cv2", "PIL", "pyarrow", "skimage")
TRAIN = (*CORE, "torch", "transformers", "safetensors")
DATASET = Stage("dataset", dataset, requires=BUILD)
STAGES: tuple[Stage, ...] = (
    DATASET,
    Stage("overhead", overhead, requires=TRAIN),
    Stage("train", train, needs_dataset=True, requires=(*TRAIN, "pyarrow", "PIL")),
    Stage("robustness", robustness, requires=(*TRAIN, "PIL")),
    Stage("masks", masks, requires=("torch", "sam2", "hydra", "cv2")),
    Stage("torchrun", torchrun, needs_dataset=True, after=torchrun_results, requires=(*TRAIN, "pyarrow", "PIL")),
    Stage("mechanism", mechanism, needs_dataset=True, requires=(*TRAIN, "pyarrow", "PIL")),
)


def missing_modules(stage: Stage) -> list[str]:
    import importlib.util

    missing = []
    for name in stage.requires:
        try:
            if importlib.util.find_spec(name) is None:
                missing.append(name)
        except (ImportError, ValueError):
            missing.append(name)
    return missing


def unmet(stage: Stage, s: Settings) -> str | None:
    """Why a stage cannot run here (a missing module or script), or None."""
    missing = missing_modules(stage)
    if missing:
        return f"missing module(s) {', '.join(missing)}; see 'Device run' in benchmarks/gpu_suite.py"
    for cmd in stage.commands(s):
        script = next((c for c in cmd[1:2] if c.endswith(".py")), None)
        if script and not (ROOT / script).is_file():
            return f"{script} does not exist yet"
    return None


def run_command(cmd: list[str], log, deadline: float) -> int | None:
    """Runs one command, its output teed to ``log`` and stdout; None when it ran past ``deadline``."""
    log.write(f"$ {shlex.join(cmd)}\n")
    log.flush()
    # Its own process group, so a timeout ends every process it started (torchrun's workers too).
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(
                                [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])})

    def tee() -> None:
        for line in proc.stdout:
            log.write(line)
            sys.stdout.write(line)
        log.flush()

    reader = threading.Thread(target=tee, daemon=True)
    reader.start()
    try:
        return proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    except (subprocess.TimeoutExpired, KeyboardInterrupt) as exc:
        # SIGTERM first lets torchrun stop its workers (and the trainer checkpoint); SIGKILL ends the rest.
        for sig, grace in ((signal.SIGTERM, 15), (signal.SIGKILL, None)):
            with contextlib.suppress(ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(proc.pid, sig)
                proc.wait(timeout=grace)
        if isinstance(exc, KeyboardInterrupt):
            raise
        return None
    finally:
        reader.join(timeout=5)


def run_stage(stage: Stage, s: Settings) -> dict:
    cmds = stage.commands(s)
    if stage.name != "dataset":  # a stage's scratch folder starts empty; the build resumes instead
        shutil.rmtree(s.work / stage.name, ignore_errors=True)
    (s.work / "logs").mkdir(parents=True, exist_ok=True)
    start, t0 = time.time(), time.monotonic()
    rec = {"status": "ok", "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
           "commands": [shlex.join(c) for c in cmds], "returncode": 0, "log": str(s.work / "logs" / f"{stage.name}.log")}
    with open(rec["log"], "w") as log:
        for cmd in cmds:
            code = run_command(cmd, log, t0 + s.timeout)
            if code != 0:
                rec.update(status="timeout" if code is None else "failed", returncode=code,
                           reason=f"ran past {s.timeout:g} s" if code is None else f"exit {code}: {shlex.join(cmd)}")
                break
        if rec["status"] == "ok" and stage.after is not None:
            try:
                stage.after(s)
            except Exception as exc:  # recorded in suite.json and the log, and the stage counts as failed
                rec.update(status="failed", reason=f"{stage.after.__name__}: {type(exc).__name__}: {exc}")
                log.write(f"error: {rec['reason']}\n")
    rec["seconds"] = round(time.monotonic() - t0, 1)
    rec["results"] = sorted(str(p) for p in s.results.rglob("*") if p.is_file() and p.stat().st_mtime >= start)
    return rec


def run_suite(stages: tuple[Stage, ...], s: Settings, force: bool = False) -> dict[str, dict]:
    """Runs ``stages`` in order, resuming from WORK/suite.json; returns this invocation's records."""
    path = s.work / "suite.json"
    state = json.loads(path.read_text()) if path.exists() else {"stages": {}}

    def current(st: Stage) -> bool:  # ok, and with the commands these settings give
        rec = state["stages"].get(st.name, {})
        return rec.get("status") == "ok" and rec.get("commands") == [shlex.join(c) for c in st.commands(s)]

    done: dict[str, dict] = {}
    end = None if s.budget is None else time.monotonic() + s.budget
    for stage in stages:
        if current(stage) and not force:
            done[stage.name] = {**state["stages"][stage.name], "skipped_now": "already ok (--force runs it again)"}
            continue
        left = None if end is None else end - time.monotonic()
        why = unmet(stage, s)
        if why is not None:
            rec = {"status": "skipped", "reason": why}
        elif stage.needs_dataset and not current(DATASET):
            rec = {"status": "skipped", "reason": f"no dataset of {s.pairs} pairs ok; run --stages dataset first"}
        elif left is not None and left < 10:
            rec = {"status": "skipped", "reason": f"the suite's --budget of {s.budget:g} s is spent; run it again "
                                                  "(finished stages are kept) or with --stages"}
        else:
            print(f"== {stage.name}", flush=True)
            staged = s if left is None or left >= s.timeout else Settings(**{**s.__dict__, "timeout": left})
            rec = run_stage(stage, staged)
        state["stages"][stage.name] = done[stage.name] = rec
        atomic_write(path, json.dumps(state, indent=2))  # a killed suite leaves the previous suite.json
    return done


def main(argv: list[str] | None = None) -> int:
    names = [st.name for st in STAGES]
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", type=Path, required=True, help="working folder: data, logs, suite.json")
    p.add_argument("--pairs", type=int, default=None, help="dataset pairs (default 3000; 24 with --smoke)")
    p.add_argument("--stages", default=",".join(names), help=f"comma separated, from: {','.join(names)}")
    p.add_argument("--smoke", action="store_true", help="CPU check of every stage at tiny settings")
    p.add_argument("--timeout-per-stage", type=float, default=None, help="seconds (default 570; 240 with --smoke)")
    p.add_argument("--force", action="store_true", help="run stages again even when already ok")
    p.add_argument("--budget", type=float, default=None,
                   help="whole-suite seconds (default 510 on a GPU, so one command fits a 9-minute window; "
                        "none with --smoke); later stages get what is left")
    p.add_argument("--source", action="append", default=[], metavar="NAME=PATH",
                   help="build the dataset from these sources (corruptor build --source; repeatable) instead "
                        "of the embedded photos and synthetic OCR pages, e.g. photos=/data/div2k")
    a = p.parse_args(argv)
    wanted = [n.strip() for n in a.stages.split(",") if n.strip()]
    if not wanted or set(wanted) - set(names):
        p.error(f"--stages: unknown {sorted(set(wanted) - set(names)) or 'empty list'}; allowed: {', '.join(names)}")
    pairs = a.pairs if a.pairs is not None else (24 if a.smoke else 3000)
    if pairs < 1 or (not a.smoke and "mechanism" in wanted and pairs < 2000):
        p.error(f"--pairs {pairs}: needs >= 1, and >= 2000 for the mechanism stage (issue #6)")
    timeout = a.timeout_per_stage if a.timeout_per_stage is not None else (240.0 if a.smoke else 570.0)
    if timeout <= 0:
        p.error(f"--timeout-per-stage {timeout:g}: needs > 0 seconds")
    work = a.work.resolve()
    results = work / "results" if a.smoke else ROOT / "benchmarks" / "results"
    if a.smoke and results == ROOT / "benchmarks" / "results":
        p.error(f"--work {a.work}: a --smoke run writes WORK/results, which here is benchmarks/results; pick another")
    import torch

    if not a.smoke and not torch.cuda.is_available():
        print("gpu_suite: CUDA is not available here; these figures need a CUDA GPU. "
              "Pass --smoke for the CPU check of the same stages.", file=sys.stderr)
        return 2
    budget = a.budget if a.budget is not None else (None if a.smoke else 510.0)
    if budget is not None and budget <= 0:
        p.error(f"--budget {budget:g}: needs > 0 seconds")
    s = Settings(work=work, results=results, pairs=pairs, smoke=a.smoke, timeout=timeout,
                 cpus=2 if a.smoke else os.cpu_count() or 1, gpus=torch.cuda.device_count(), sources=tuple(a.source),
                 budget=budget)
    done = run_suite(tuple(st for st in STAGES if st.name in wanted), s, force=a.force)
    print(f"\n{'stage':<10} {'status':<8} {'seconds':>8}  results / reason")
    for name, r in done.items():
        note = r.get("skipped_now") or r.get("reason") or " ".join(os.path.relpath(f, s.results) for f in r["results"])
        print(f"{name:<10} {r['status']:<8} {r.get('seconds', 0):>8.1f}  {note}")
    print(f"(results in {s.results}; logs in {work / 'logs'}; record: {work / 'suite.json'})")
    return 0 if all(r["status"] == "ok" for r in done.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
