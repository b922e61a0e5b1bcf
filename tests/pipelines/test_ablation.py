"""The ablation pipeline end to end on CPU: every variant trains on the same budget, with the
adapter parts its name says, and lands in one table with the base and the clean reference."""
import json

import pytest
from safetensors.torch import load_file

from maa_train.train.config import ConfigError
from maa_train.eval.evaluate import BASE_ROW, CLEAN_ROW
from pipelines.ablation import main, parse_variants
from tests.maa_train.eval.evalkit import one_thread, tiny_clip, train_config, write_labelled_dataset  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_thread")


def test_variants_train_and_land_in_one_table(tmp_path, capsys):
    model = tiny_clip(tmp_path / "model")
    data = write_labelled_dataset(tmp_path / "data", [8, 8, 8])
    config = tmp_path / "tiny.json"  # JSON is YAML
    config.write_text(json.dumps(train_config(model, data, tmp_path / "unused")))
    out = tmp_path / "ablation"
    rc = main(["--config", str(config), "--out", str(out), "--variants", "full,mlp_only,no_adv,no_pool",
               "--set", "train.max_steps=2"])
    assert rc == 0
    report = json.loads((out / "ablation.json").read_text())
    names = [row["variant"] for row in report["table"]]
    assert names == ["base (no adapters)", "full", "mlp_only", "mse_only", "no_pool", CLEAN_ROW]
    rows = {row["variant"]: row for row in report["table"]}
    assert all(rows[v]["steps"] == 2 for v in ("full", "mlp_only", "mse_only", "no_pool"))
    assert all(isinstance(rows[v]["val_l2"], float) for v in ("full", "mlp_only", "mse_only", "no_pool"))
    assert rows[CLEAN_ROW]["paired_mse"] is None and rows["full"]["mmd2"] is not None

    # each variant's checkpoint holds exactly the parts its name says; only adversarial runs have a discriminator
    def params(variant):
        return {k.split(".", 2)[2] for k in load_file(str(out / variant / "best" / "adapters.safetensors"))}
    assert any(k.startswith("window_attn") for k in params("full")) and "alpha_pool" in params("full")
    assert not any(k.startswith("window_attn") for k in params("mlp_only")) and "alpha_pool" not in params("mlp_only")
    assert "alpha_pool" not in params("no_pool") and any(k.startswith("window_attn") for k in params("no_pool"))
    assert "adv" in (out / "full" / "metrics.jsonl").read_text()
    assert "adv" not in (out / "mse_only" / "metrics.jsonl").read_text()

    mechanism = json.loads((out / "mechanism.json").read_text())
    assert list(mechanism["groups"]["all"]["rows"]) == [BASE_ROW, "full", "mlp_only", "mse_only", "no_pool", CLEAN_ROW]
    printed = capsys.readouterr().out
    assert "| full |" in printed and "# Ablation" in (out / "ablation.md").read_text()


def test_unknown_variant_names_the_allowed_ones():
    with pytest.raises(ConfigError, match="unknown variant 'no_mlp'.*mlp_only"):
        parse_variants("full,no_mlp")
    assert [v.name for v in parse_variants("no_adv,mse_only")] == ["mse_only"]


def test_seeds_give_intervals_and_paired_differences(tmp_path, capsys):
    model = tiny_clip(tmp_path / "model")
    data = write_labelled_dataset(tmp_path / "data", [8, 8, 8])
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(train_config(model, data, tmp_path / "unused")))
    out = tmp_path / "ablation"
    rc = main(["--config", str(config), "--out", str(out), "--variants", "mlp_only,mse_mlp_only,mse_only",
               "--seeds", "2", "--set", "train.max_steps=2", "--set", "discriminator.r1_weight=1"])
    assert rc == 0  # r1_weight is dropped for the MSE-only variants, which have no discriminator
    summary = json.loads((out / "ablation-seeds.json").read_text())
    assert summary["seeds"] == [0, 1] and summary["n_seeds"] == 2
    assert (out / "seed-1" / "mse_mlp_only" / "summary.json").exists()
    per_seed = [s["mlp_only"]["val_l2"] for s in summary["per_seed"]]
    assert per_seed[0] != per_seed[1]  # the seeds really differ
    cell = summary["table"]["mlp_only"]["val_l2"]
    assert cell["n"] == 2 and cell["low"] < cell["mean"] < cell["high"]
    assert set(summary["table"]) == {"base", "mlp_only", "mse_mlp_only", "mse_only"}
    refs = summary["paired"]["mlp_only"]
    assert {k: v["reference"] for k, v in refs.items()} == {"mse_only": "mse_only", "base": "base",
                                                            "twin": "mse_mlp_only"}
    diff = refs["twin"]["paired_mse"]
    expect = [a["mlp_only"]["paired_mse"] - a["mse_mlp_only"]["paired_mse"] for a in summary["per_seed"]]
    assert diff["mean"] == pytest.approx(sum(expect) / 2) and diff["n"] == 2
    # paired MSE per held-out pair, MMD^2 from each run's replicates: over seeds and images; val L2, CKA: seeds
    assert diff["images"] == summary["table"]["base"]["paired_mse"]["images"] > 0
    kinds = summary["intervals"]
    assert (kinds["paired_mse"], kinds["mmd2"], kinds["val_l2"], kinds["cka"]) == (
        "seeds and test images", "seeds, images resampled in each run", "seeds (t)", "seeds (t)")
    record = json.loads((out / "seed-1" / "per-image.json").read_text())
    rows = {r["variant"]: r for r in json.loads((out / "seed-1" / "ablation.json").read_text())["table"]}
    per_pair = record["per_image"]["paired_mse"]["rows"]
    assert set(per_pair) == {"base (no adapters)", "mlp_only", "mse_mlp_only", "mse_only"}  # no clean reference
    assert sum(per_pair["mlp_only"]) / len(per_pair["mlp_only"]) == pytest.approx(rows["mlp_only"]["paired_mse"])
    assert len(record["replicates"]["mmd2"]["mlp_only"]) == 200  # the mechanism table's bootstrap replicates
    assert "t-interval" in (out / "ablation-seeds.md").read_text() and "| mlp_only | mse_mlp_only (twin)" in capsys.readouterr().out


def test_probe_slot_fails_before_training_with_a_clear_message(tmp_path, capsys):
    model = tiny_clip(tmp_path / "model")
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(train_config(model, tmp_path / "nodata", tmp_path / "unused")))
    rc = main(["--config", str(config), "--out", str(tmp_path / "o"), "--evaluators", "mechanism,nope"])
    assert rc == 2 and "unknown nope; allowed: mechanism, probe" in capsys.readouterr().err
    rc = main(["--config", str(config), "--out", str(tmp_path / "o"), "--evaluators", "probe"])
    assert rc == 2 and "probe" in capsys.readouterr().err and not (tmp_path / "o" / "full").exists()


def test_evaluator_registry_runs_a_plugged_in_evaluator(monkeypatch):
    from pipelines import evaluators

    monkeypatch.setitem(evaluators.EVALUATORS, "const", lambda ctx: evaluators.EvaluatorResult(
        rows={name: {"acc": 0.5} for name in ctx.adapters}))
    from pipelines.ablation import _merge_rows
    report = {"table": [{"variant": "full"}, {"variant": "base (no adapters)"}]}
    ctx = evaluators.EvalContext("m", {"full": None}, [], None, None)
    _merge_rows(report, {"const": evaluators.get_evaluators(["const"])["const"](ctx)})
    assert report["table"][0]["const.acc"] == 0.5 and "const.acc" not in report["table"][1]
