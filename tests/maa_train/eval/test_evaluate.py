"""maa-eval: mechanism rows against metrics computed by hand, families, outputs, bad input."""
import json

import pytest
import torch

from maa_train.eval import metrics
from maa_train.students.adapter import AdapterConfig
from maa_train.students.checkpoint import CheckpointMismatchError, save_adapters
from maa_train.eval.cli import main as eval_main
from maa_train.eval.evaluate import (ALL, BASE_ROW, CLEAN_ROW, AdapterSpec, EvalOptions, EvaluationError, evaluate,
                                families_of, heldout_shards)
from maa_train.students.inject import AdaptedEncoder
from maa_train.encoders.load import load_vision_model
from maa_train.data.loader import ValStream
from maa_train.data.preprocess import ProcessorSettings, normalise_pairs
from maa_train.eval.split_metrics import SplitSettings, group_rows
from tests.maa_train.eval.evalkit import one_thread, save_fresh_and_moved, tiny_clip, write_labelled_dataset  # noqa: F401 (fixture)

pytestmark = pytest.mark.usefixtures("one_thread")

ADAPTER = AdapterConfig(bottleneck=8, attn_dim=8, heads=2)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    model = tiny_clip(root / "model")
    data = write_labelled_dataset(root / "data", [12, 12, 12], no_json={"s0-k005", "s1-k005", "s2-k005"})
    save_fresh_and_moved(model, root, ADAPTER)
    return {"model": model, "data": data, "fresh": root / "fresh", "moved": root / "moved", "root": root}


@pytest.fixture(scope="module")
def result(setup):
    shards = heldout_shards(setup["data"], 0.34)
    specs = [AdapterSpec("fresh", setup["fresh"]), AdapterSpec("moved", setup["moved"])]
    return evaluate(setup["model"], shards, specs, EvalOptions(batch_size=5, device="cpu"), data=str(setup["data"]))


def test_rows_match_metrics_on_features_extracted_by_hand(setup, result):
    enc, _ = load_vision_model(setup["model"])
    base = AdaptedEncoder(enc, ADAPTER)
    settings = ProcessorSettings.from_model_dir(setup["model"])
    batch = next(iter(ValStream(heldout_shards(setup["data"], 0.34), settings, batch_size=12)))
    clean_px, degraded_px = normalise_pairs(batch["pairs"], settings)
    with torch.no_grad():
        clean = base.features(clean_px, adapters=False)
        degraded = base.features(degraded_px, adapters=False)
    pooled_c, pooled_d = clean.mean(1, keepdim=True), degraded.mean(1, keepdim=True)
    sq_err = (degraded.double() - clean.double()).pow(2).mean(dim=(1, 2))
    expected = group_rows(pooled_c, {"base": pooled_d}, {"base": sq_err}, batch["keys"], CLEAN_ROW,
                          SplitSettings(seed=0, reps=0))
    got = result.groups[ALL]["rows"][BASE_ROW]
    for key in ("mmd2", "kid", "energy"):  # one half's degraded features vs the other half's clean ones
        assert got[key] == pytest.approx(expected["base"][key], rel=1e-5, abs=1e-9), key
        assert got[f"{key}_ci"][0] <= got[key] <= got[f"{key}_ci"][1]
    assert got["paired_mse"] == pytest.approx(metrics.paired_mse(degraded.flatten(0, 1), clean.flatten(0, 1)), rel=1e-5)
    assert got["cka"] == pytest.approx(metrics.linear_cka(pooled_d[:, 0], pooled_c[:, 0]), rel=1e-5)
    ref = result.groups[ALL]["rows"][CLEAN_ROW]
    assert ref["mmd2"] == pytest.approx(expected[CLEAN_ROW]["mmd2"], rel=1e-5, abs=1e-9)
    # zero-gated adapters are the identity: their row is the base row
    fresh = result.groups[ALL]["rows"]["fresh"]
    for key in ("paired_mse", "mmd2", "kid", "energy", "cka"):
        assert fresh[key] == pytest.approx(got[key], rel=1e-6, abs=1e-12)
        assert fresh[f"{key}_ci"] == pytest.approx(got[f"{key}_ci"], rel=1e-6, abs=1e-12)
    assert result.groups[ALL]["rows"]["moved"]["paired_mse"] != pytest.approx(got["paired_mse"], rel=1e-3)


def test_rows_groups_and_clean_reference(result):
    assert list(result.groups[ALL]["rows"]) == [BASE_ROW, "fresh", "moved", CLEAN_ROW]
    assert result.meta["samples"] == 12 and result.meta["samples_without_ops"] == 1
    # samples cycle noise / blur / noise + jpeg-in-a-region; sample 5 (noise+jpeg) has no json
    assert {k: g["samples"] for k, g in result.groups.items()} == {ALL: 12, "blur": 4, "compression": 3, "noise": 7}
    assert result.groups["compression"]["rows"] is None and "fewer than 4" in result.groups["compression"]["skipped"]
    ref = result.groups[ALL]["rows"][CLEAN_ROW]
    assert ref["paired_mse"] is None and ref["cka"] is None and ref["rows"] == 6
    assert result.groups[ALL]["rows"][BASE_ROW]["paired_mse"] > 0


def test_families_from_ops_and_regions():
    meta = {"ops": [{"op": "gaussian_noise"}, {"op": "shot_noise"}],
            "regions": [{"ops": [{"op": "jpeg"}, {"op": "not_an_op"}]}]}
    table = {"gaussian_noise": "noise", "shot_noise": "noise", "jpeg": "compression"}
    assert families_of(meta, table) == ["noise", "compression", "unknown op"]
    assert families_of(None, table) == [] and families_of({"ops": []}, table) == []


def test_cli_writes_outputs_with_sampled_tokens(setup, tmp_path, capsys):
    out = tmp_path / "out"
    rc = eval_main(["--model", str(setup["model"]), "--data", str(setup["data"]), "--val-fraction", "0.34",
                    "--adapters", f"moved={setup['moved']}", "--tokens", "sampled", "--per-image", "3",
                    "--device", "cpu", "--out", str(out)])
    assert rc == 0
    saved = json.loads((out / "mechanism.json").read_text())
    assert saved["meta"]["tokens"] == "sampled" and saved["meta"]["rows_per_image"] == 3
    assert saved["groups"][ALL]["rows"]["moved"]["rows"] == 6 * 3  # token rows of one half (6 of 12 images)
    md = (out / "mechanism.md").read_text()
    assert "tokens: **sampled**" in md and "| moved |" in md and "maa-eval --model" in md
    assert (out / "mechanism.png").read_bytes()[:4] == b"\x89PNG"
    assert "| base (corrupted) |" in capsys.readouterr().out


def test_no_heldout_shards_is_a_clear_error(setup, tmp_path, capsys):
    one = write_labelled_dataset(tmp_path / "one", [6])
    with pytest.raises(EvaluationError, match="no held-out shards.*--all-shards"):
        heldout_shards(one, 0.05)
    assert len(heldout_shards(one, all_shards=True)) == 1
    rc = eval_main(["--model", str(setup["model"]), "--data", str(one), "--out", str(tmp_path / "o")])
    assert rc == 2 and "no held-out shards" in capsys.readouterr().err


def test_too_few_samples_names_metric_and_minimum(setup):
    shards = heldout_shards(setup["data"], 0.34)
    with pytest.raises(EvaluationError, match=r"3 image\(s\), fewer than 4: MMD\^2, KID and energy distance compare one "
                                              r"half of the images with the other, and each half needs at least 2"):
        evaluate(setup["model"], shards, [], EvalOptions(max_samples=3, device="cpu"))
    with pytest.raises(EvaluationError, match=r"tokens=all gives \d+ rows per feature set .*above max_rows=100"):
        evaluate(setup["model"], shards, [], EvalOptions(tokens="all", max_rows=100, device="cpu"))


def test_adapters_for_another_encoder_are_refused(setup, tmp_path):
    other = tiny_clip(tmp_path / "deeper", layers=3)
    enc, _ = load_vision_model(other)
    save_adapters(tmp_path / "deep_adapters", AdaptedEncoder(enc, ADAPTER))
    shards = heldout_shards(setup["data"], 0.34)
    with pytest.raises(CheckpointMismatchError, match="width 32 with 3 blocks.*width 32 with 2 blocks"):
        evaluate(setup["model"], shards, [AdapterSpec("deep", tmp_path / "deep_adapters")], EvalOptions(device="cpu"))
    with pytest.raises(EvaluationError, match="not an adapter checkpoint"):
        evaluate(setup["model"], shards, [AdapterSpec.parse(f"x={tmp_path}")], EvalOptions(device="cpu"))


def test_valstream_meta_is_aligned_with_keys(setup):
    stream = ValStream(heldout_shards(setup["data"], 0.34), ProcessorSettings(28), batch_size=5, with_meta=True)
    for batch in stream:
        assert len(batch["meta"]) == len(batch["keys"])
        for key, meta in zip(batch["keys"], batch["meta"]):
            assert meta is None if key.endswith("k005") else meta["key"] == key
    assert "meta" not in next(iter(ValStream(stream.shards, ProcessorSettings(28), batch_size=5)))


def test_result_does_not_depend_on_read_order(setup):
    shards = heldout_shards(setup["data"], all_shards=True)
    opts = EvalOptions(tokens="sampled", per_image=3, device="cpu")
    forward = evaluate(setup["model"], shards, [], opts).groups[ALL]["rows"]
    backward = evaluate(setup["model"], shards[::-1], [], opts).groups[ALL]["rows"]
    for row in (BASE_ROW, CLEAN_ROW):
        for key in ("mmd2", "kid", "energy"):
            assert backward[row][key] == pytest.approx(forward[row][key], rel=1e-9, abs=1e-12), (row, key)


@pytest.mark.gpu
def test_cuda_rows_match_cpu(setup, result):
    shards = heldout_shards(setup["data"], 0.34)
    specs = [AdapterSpec("fresh", setup["fresh"]), AdapterSpec("moved", setup["moved"])]
    cuda = evaluate(setup["model"], shards, specs, EvalOptions(batch_size=5, device="cuda", precision="fp32"))
    assert cuda.meta["device"].startswith("cuda")
    for row in (BASE_ROW, "moved"):
        for key in ("paired_mse", "energy", "cka"):
            assert cuda.groups[ALL]["rows"][row][key] == pytest.approx(result.groups[ALL]["rows"][row][key], rel=1e-3)
    bf16 = evaluate(setup["model"], shards, specs, EvalOptions(batch_size=5, device="cuda"))
    assert bf16.meta["precision"] == "bf16"
