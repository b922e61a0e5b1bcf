"""pipelines.probe: the probe's corruption from corruptor's recipes (pinned severities), the
extensions both halves read, and the ablation's `probe` evaluator on the real probe."""
import numpy as np
import pytest

from corruptor.recipe.recipe import load_recipe
from corruptor.sources.sources import IMAGE_EXTENSIONS
from maa_train.eval.labelled import IMAGE_EXTENSIONS as LABELLED_EXTENSIONS
from maa_train.eval.probe import ProbeError, ProbeOptions
from pipelines.probe import pinned_recipe, recipe_corruption
from tests.maa_train.eval.evalkit import one_thread  # noqa: F401 (fixture)
from tests.maa_train.eval.test_probe import RECIPE, write_labelled
from tests.maa_train.tiny_models import tiny_models  # noqa: F401 (fixture)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_pinned_recipe_sets_every_op_and_probability_and_drops_the_local_stage():
    pinned = pinned_recipe(load_recipe(RECIPE), 4)
    d = pinned.to_dict()
    assert d["local"] is None and d["global"]["p"] == 1.0
    assert [(c["op"], c["severity"], c["p"]) for c in d["global"]["one_of"]] == [("gaussian_noise", 4, 1.0),
                                                                                ("jpeg", 4, 1.0)]
    image = np.full((16, 16, 3), 128, np.uint8)
    ops = [[op["op"] for op in pinned_recipe(load_recipe(RECIPE), s).apply(image, seed=0, key=f"k{i}").ops]
           for s in (1, 5) for i in range(8)]
    assert ops[:8] == ops[8:] and all(len(o) == 1 for o in ops)  # same op per image at every severity
    with pytest.raises(ProbeError, match="no global stage"):
        pinned_recipe(load_recipe({"name": "l", "local": {"ops": {"op": "pixelate"}}}), 3)


def test_recipe_corruption_gives_families_geometry_and_refuses_bad_recipes():
    c = recipe_corruption(RECIPE, ProbeOptions(severities=(2,)))
    image = np.full((40, 48, 3), 100, np.uint8)
    prepared = c.prepare(image)
    assert prepared.shape == (32, 32, 3)
    out, families = c.corrupt(prepared, 2, "k0")
    assert out.shape == prepared.shape and families in (["noise"], ["compression"])
    assert c.meta["recipe"]["name"] == "probe-test" and "short side 32, center crop" in c.meta["corruption"]["rule"]
    with pytest.raises(ProbeError, match="unknown built-in recipe"):
        recipe_corruption("no-such-recipe")


def test_labelled_folders_read_the_image_files_sources_read():
    assert LABELLED_EXTENSIONS == IMAGE_EXTENSIONS


def test_probe_evaluator_runs_the_real_probe(tmp_path, tiny_models):  # noqa: F811
    from maa_train.encoders.load import load_vision_model
    from maa_train.eval.evaluate import BASE_ROW, EvalOptions
    from maa_train.students.adapter import AdapterConfig
    from maa_train.students.checkpoint import save_adapters
    from maa_train.students.inject import AdaptedEncoder
    from pipelines.evaluators import EvalContext, get_evaluators

    data = write_labelled(tmp_path / "flowers", per_class=6)
    model = tiny_models["clip"]
    enc, _ = load_vision_model(model)
    save_adapters(tmp_path / "full", AdaptedEncoder(enc, AdapterConfig(bottleneck=8, attn_dim=8, heads=2)))
    ctx = EvalContext(model_path=str(model), adapters={"full": tmp_path / "full"}, heldout=[],
                      opts=EvalOptions(device="cpu", batch_size=8), out=tmp_path / "seed-0",
                      options={"probe_train": str(data), "probe_test": None, "probe_recipe": RECIPE,
                               "probe_train_per_class": 4, "probe_severities": (3,), "probe_bootstrap": 0})
    result = get_evaluators(["probe"])["probe"](ctx)
    assert set(result.rows) == {BASE_ROW, "full"}
    assert set(result.rows["full"]) == {"linear_ref", "linear_sev3", "knn_ref", "knn_sev3"}
    assert result.rows["full"] == result.rows[BASE_ROW]  # identity adapters at init
    # the accuracy per test image behind each mean, for intervals over seeds and images
    assert len(result.per_image["images"]) == len(set(result.per_image["images"])) > 0
    for name, row in result.rows.items():
        for metric, value in row.items():
            correct = [c for c in result.per_image["rows"][name][metric] if c is not None]
            assert set(correct) <= {0.0, 100.0} and sum(correct) / len(correct) == pytest.approx(value)
    assert (tmp_path / "seed-0" / "probe.json").exists()
