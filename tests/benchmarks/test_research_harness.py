"""benchmarks/research: the ported research harness end to end on a tiny random Dinov2Model.

prep (a few synthetic photos) -> run.py base (teacher cache, probes, full-forward eval) ->
run2.py MSE-only and MAA arms in prefix mode for 2 steps -> summarize.py --json. One child
process runs every script (runpy), so the interpreter and torch load once."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
HARNESS = ROOT / "benchmarks" / "research"

DRIVER = r"""
import runpy, sys
harness, work = sys.argv[1], sys.argv[2]
sys.path.insert(0, harness)
def script(name, *args):
    sys.argv = [name] + list(args)
    runpy.run_path(f"{harness}/{name}", run_name="__main__")
script("prep.py", "--work", work, "112", "4", "--ntr", "8", "--probe-train", "2", "--val", "2")
script("run.py", "--work", work, "kind=tiny", "name=base", "lam=-1")
small = ["kind=tiny", "first=1", "steps=2", "batch=4", "variants=4", "photos=8", "log_every=1"]
script("run2.py", "--work", work, *small, "name=mse", "lam=0")
script("run2.py", "--work", work, *small, "name=maa", "lam=0.1", "lam_ramp=1", "disc_warmup=2",
       "disc_lr=5e-4", "disc_width=32", "disc_blocks=1")
script("summarize.py", "--work", work, "--json", f"{work}/val.json", "val", "base=base", "mse=mse", "maa=maa")
"""


def _photos(folder: Path, n: int, rng, size=(130, 118)):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(folder / f"im{i:03d}.JPEG")


def test_research_harness_end_to_end(tmp_path):
    rng = np.random.default_rng(0)
    data = tmp_path / "shared"
    _photos(data / "imagenet-samples", 12, rng)
    for c in range(5):
        _photos(data / "flowers5" / f"class{c}", 6, rng)
    work = tmp_path / "work"
    env = dict(os.environ, MAA_SHARED_DATA=str(data), NT="1", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", DRIVER, str(HARNESS), str(work)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    # no pickle: caches and adapters are safetensors, probes npz
    assert (work / "cache_tiny_112.safetensors").exists() and (work / "probes_tiny_112.npz").exists()
    assert (work / "adapters" / "maa.safetensors").exists()
    assert not list(work.rglob("*.pt")) and not list(work.rglob("*.pkl"))

    maa = json.loads((work / "results" / "maa.json").read_text())
    assert [h["step"] for h in maa["hist"] if h.get("phase") != "warmup"] == [0, 1]
    assert "d_loss" in maa["hist"][-1] and "gnorm_adv" in maa["hist"][-1]
    ev = maa["eval_val"]
    assert ev["n"] == 10 and len(ev["correct_cls_sev5"]) == 10
    for key in ("acc_cls_clean", "acc_cls_sev3", "acc_cls_sev5", "held_mse", "mmd_cls_sev5", "clean_consistency"):
        assert np.isfinite(ev[key]), key

    table = json.loads((work / "val.json").read_text())
    rows = {(r["probe"], r["row"], r["cond"]) for r in table["rows"]}
    for probe in ("cls", "cls+mp"):
        for row in ("base", "mse", "maa", "maa - base", "mse - base", "maa - mse", "base - mse"):
            for cond in ("clean", "sev3", "sev5"):
                assert (probe, row, cond) in rows, (probe, row, cond)
    for r in table["rows"]:
        assert r["lo"] <= r["mean"] <= r["hi"] and r["n"] == 10
    assert "| maa - base |" in proc.stdout
