"""benchmarks/bench_robustness.py --smoke on tiny stand-ins: every stage runs through the product's
commands and the results have the tables' rows."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]


def _photo(rng: np.random.Generator, size: int = 64) -> Image.Image:
    y, x = np.mgrid[0:size, 0:size]
    base = np.stack([x * 3, y * 3, (x + y) * 2], axis=-1).astype(np.float32) + rng.normal(0, 20, (size, size, 3))
    base[rng.integers(0, 20):40, rng.integers(0, 20):44] = rng.integers(0, 255, 3)
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))


@pytest.fixture
def stand_ins(tmp_path):
    import torch
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    model = tmp_path / "model"
    Dinov2Model(Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                             patch_size=14, image_size=28)).save_pretrained(model)
    rng = np.random.default_rng(0)
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(12):
        _photo(rng).save(photos / f"p{i}.png")
    labelled = tmp_path / "labelled"
    for cls, tint in (("red", 0), ("blue", 2)):
        (labelled / cls).mkdir(parents=True)
        for i in range(6):
            img = np.asarray(_photo(rng)).copy()
            img[..., tint] = 255
            Image.fromarray(img).save(labelled / cls / f"{cls}{i}.png")
    return model, photos, labelled


def test_smoke_writes_the_tables(tmp_path, stand_ins):
    model, photos, labelled = stand_ins
    results = tmp_path / "results"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_robustness.py"), "--smoke", "--device", "cpu",
           "--no-docs", "--model", str(model), "--photo-dir", str(photos), "--labelled", str(labelled),
           "--work", str(tmp_path / "work"), "--results", str(results)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    payload = json.loads((results / "robustness_smoke.json").read_text())
    md = (results / "robustness_smoke.md").read_text()

    assert {r["stage"] for r in payload["stages"]} == {
        "build", "train-maa-seed0", "train-mse_only-seed0", "train-mlp_only-seed0", "probe-seed0", "mechanism-seed0"}
    for rec in payload["stages"]:
        assert rec["rc"] == 0 and rec["wall_s"] > 0 and rec["cpu_s"] >= 0 and rec["command"]
    assert payload["machine"]["cores"] >= 1 and payload["machine"]["cpu"]
    assert payload["settings"]["input_size"] == 28 and payload["settings"]["adapter_steps"] == 2
    probe = payload["per_seed"][0]["probe"]
    assert set(probe["rows"]) == {"base", "maa", "mse_only", "mlp_only"}
    for row in probe["rows"].values():
        assert set(row) == {"ref", "sev3", "sev5"} and all(0 <= v["mean"] <= 1 for v in row.values())
    assert set(probe["diff_vs_base"]) == {"maa", "mse_only", "mlp_only"}
    assert set(probe["diff_vs_mse_only"]) == {"maa", "mlp_only"}
    mech = payload["per_seed"][0]["mechanism"]["rows"]
    assert {"base (corrupted)", "maa", "mse_only", "mlp_only"} <= set(mech)
    assert payload["per_seed"][0]["train"]["maa"]["steps"] == 3   # 2 adapter steps after 1 warm-up step
    assert payload["per_seed"][0]["train"]["mse_only"]["steps"] == 2
    assert payload["paper"]["rows"]["maa"]["r_bench_dis"] == 59.39
    for text in ("| maa |", "| mse_only |", "| mlp_only |", "maa − mse_only", "R-Bench-Dis", "## Stages"):
        assert text in md

    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)  # resumable: all reused
    assert again.returncode == 0, again.stderr[-2000:]
    assert all(r["reused"] for r in json.loads((results / "robustness_smoke.json").read_text())["stages"])
