"""maa-eval probe: labelled folders and splits, the frozen classifiers, the whole command on
tiny models (with corruptor's recipes, through pipelines.probe), a corruption from elsewhere,
and bad input. Pinned severities: tests/pipelines/test_probe.py."""
import json
import shutil
from contextlib import nullcontext

import numpy as np
import pytest
import torch
from PIL import Image

from maa_train.students.adapter import AdapterConfig
from maa_train.students.checkpoint import save_adapters
from maa_train.eval.classifiers import KNNClassifier, LinearProbe, stratified_folds
from maa_train.eval.evaluate import AdapterSpec
from maa_train.students.inject import AdaptedEncoder
from maa_train.encoders.load import load_vision_model
from maa_train.eval.labelled import LabelledSetError, split
from tests.maa_train.eval.evalkit import save_fresh_and_moved
from maa_train.eval.probe import BASE, Corruption, ProbeError, ProbeOptions
from maa_train.eval.probe import run_probe as run_probe_with
from pipelines.probe import maa_eval as eval_main
from pipelines.probe import run_probe
from tests.maa_train.eval.evalkit import one_thread  # noqa: F401 (fixture)
from tests.maa_train.tiny_models import tiny_models  # noqa: F401 (fixture)

pytestmark = pytest.mark.usefixtures("one_thread")

ADAPTER = AdapterConfig(bottleneck=8, attn_dim=8, heads=2)
RECIPE = {"name": "probe-test", "output": {"size": 32, "crop": "center"},
          "global": {"p": 0.5, "one_of": [{"op": "gaussian_noise", "severity": [1, 2]},
                                          {"op": "jpeg", "severity": [1, 2]}]},
          "local": {"ops": {"op": "pixelate", "severity": 3}}}
COLOURS = {"blue": (40, 60, 200), "green": (40, 180, 60), "red": (200, 40, 40)}


def write_labelled(root, per_class=10, size=(36, 32), seed=0):
    """Classes told apart by colour, with noise so that they are not trivially identical."""
    rng = np.random.default_rng(seed)
    for cls, colour in COLOURS.items():
        (root / cls / "sub").mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = np.clip(np.array(colour) + rng.normal(0, 40, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
            where = root / cls / ("sub" if i % 4 == 3 else "")
            Image.fromarray(img).save(where / f"{cls}{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_models):  # noqa: F811
    root = tmp_path_factory.mktemp("probe")
    data = write_labelled(root / "flowers")
    model = tiny_models["clip"]
    save_fresh_and_moved(model, root, ADAPTER)
    recipe = root / "recipe.yaml"
    recipe.write_text(json.dumps(RECIPE))  # JSON is YAML
    return {"root": root, "data": data, "model": model, "fresh": root / "fresh", "moved": root / "moved",
            "recipe": recipe, "models": tiny_models}


def probe_args(setup, out, *extra):
    return ["probe", "--model", str(setup["model"]), "--train", str(setup["data"]), "--recipe", str(setup["recipe"]),
            "--train-per-class", "6", "--severities", "2,5", "--bootstrap", "200", "--device", "cpu",
            "--batch-size", "7", "--out", str(out), *extra]


@pytest.fixture(scope="module")
def cli_result(setup):
    out = setup["root"] / "out"
    rc = eval_main(probe_args(setup, out, "--adapters", f"fresh={setup['fresh']}", "--adapters",
                              f"moved={setup['moved']}"))
    assert rc == 0
    return json.loads((out / "probe.json").read_text()), (out / "probe.md").read_text()


# -- labelled folders ---------------------------------------------------------------------------
def test_one_folder_split_is_sorted_first_n(setup):
    s = split(setup["data"], None, train_per_class=6, test_per_class=3)
    assert s.classes == ["blue", "green", "red"]
    assert s.counts("train") == {"blue": 6, "green": 6, "red": 6} and s.counts("test") == {c: 3 for c in COLOURS}
    blue = [it.ref for it in s.train if it.label == 0]
    # sorted relative paths: the sub-folder's files come after the top-level ones
    assert blue == [f"blue/blue{i:03d}.png" for i in (0, 1, 2, 4, 5, 6)]
    assert not {it.ref for it in s.train} & {it.ref for it in s.test}
    assert split(setup["data"], setup["data"], 6).counts("test") == {c: 4 for c in COLOURS}


def test_two_folders_and_their_checks(setup, tmp_path):
    test_root = write_labelled(tmp_path / "test", per_class=2, seed=1)
    shutil.rmtree(test_root / "green")
    s = split(setup["data"], test_root, train_per_class=4)
    assert s.counts("train") == {c: 4 for c in COLOURS} and s.counts("test") == {"blue": 2, "green": 0, "red": 2}
    (test_root / "violet").mkdir()
    Image.new("RGB", (8, 8)).save(test_root / "violet" / "v.png")
    with pytest.raises(LabelledSetError, match="test classes not among the training classes.*violet"):
        split(setup["data"], test_root)


def test_bad_folders_are_clear_errors(setup, tmp_path):
    with pytest.raises(LabelledSetError, match="does not exist"):
        split(tmp_path / "nope", None, 2)
    (tmp_path / "flat").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "flat" / "a.png")
    with pytest.raises(LabelledSetError, match="no images in class sub-folders.*1 image\\(s\\) lie directly in ROOT"):
        split(tmp_path / "flat", None, 2)
    one = tmp_path / "one"
    shutil.copytree(setup["data"] / "red", one / "red")
    (one / "empty").mkdir()
    with pytest.raises(LabelledSetError, match="1 class with images \\(red\\); a classifier needs at least 2"):
        split(one, None, 2)
    with pytest.raises(LabelledSetError, match="same folder: give --train-per-class"):
        split(setup["data"])
    with pytest.raises(LabelledSetError, match="no test images"):
        split(setup["data"], None, 10)
    two = tmp_path / "two"
    shutil.copytree(setup["data"], two)
    (two / "empty").mkdir()
    s = split(two, None, 5)
    assert s.classes == ["blue", "green", "red"] and s.notes["train"]["empty_classes"] == ["empty"]


# -- classifiers ----------------------------------------------------------------------------------
def blobs(n_per_class=30, d=8, classes=3, spread=0.6, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, d, generator=g, dtype=torch.float64) * 3
    y = torch.arange(classes).repeat_interleave(n_per_class)
    return centres[y] + spread * torch.randn(len(y), d, generator=g, dtype=torch.float64), y


def test_linear_probe_fits_matches_sklearn_and_is_deterministic():
    x, y = blobs()
    probe = LinearProbe(3).fit(x, y)
    assert probe.cv["folds"] == 5 and probe.l2 in (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
    assert (probe.predict(x) == y).all()
    again = LinearProbe(3).fit(x, y)
    assert torch.equal(again.weights, probe.weights)
    sklearn = pytest.importorskip("sklearn.linear_model")
    z = ((x - probe.mean) / probe.std).numpy()
    # sklearn minimises C * sum CE + |W|^2 / 2; ours mean CE + l2 |W|^2 / 2: the same at C = 1 / (n l2)
    ref = sklearn.LogisticRegression(C=1 / (len(y) * probe.l2), tol=1e-10, max_iter=10_000).fit(z, y.numpy())
    ours = torch.softmax(torch.from_numpy(z) @ probe.weights[:-1] + probe.weights[-1], 1).numpy()
    assert np.abs(ref.predict_proba(z) - ours).max() < 1e-4


def test_folds_are_stratified_and_tiny_classes_skip_cross_validation():
    y = torch.tensor([0, 0, 0, 1, 1, 1, 0, 1])
    assert stratified_folds(y, 2).tolist() == [0, 1, 0, 0, 1, 0, 1, 1]
    x, y = blobs(n_per_class=1)
    probe = LinearProbe(3).fit(x, y)
    assert probe.cv["folds"] == 0 and probe.l2 == 1e-2


def test_knn_votes_then_similarity_then_lower_class():
    train = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]], dtype=torch.float64)
    knn = KNNClassifier(2, k=3).fit(train, torch.tensor([0, 0, 1, 1]))
    assert knn.predict(torch.tensor([[1.0, 0.05], [0.05, 1.0]])).tolist() == [0, 1]
    tie = KNNClassifier(2, k=2).fit(train[[0, 2]], torch.tensor([0, 1]))
    assert tie.predict(torch.tensor([[0.2, 1.0], [1.0, 1.0]])).tolist() == [1, 0]  # similarity, then lower class
    assert KNNClassifier(2, k=10).fit(train, torch.tensor([0, 0, 1, 1])).effective_k == 4


# -- the command ----------------------------------------------------------------------------------
def test_cli_outputs_rows_conditions_and_paired_differences(cli_result):
    result, md = cli_result
    meta = result["meta"]
    assert meta["conditions"] == ["ref", "sev2", "sev5"] and meta["classes"] == ["blue", "green", "red"]
    assert meta["train_per_class"] == {c: 6 for c in COLOURS} and meta["test_per_class"] == {c: 4 for c in COLOURS}
    assert meta["features"]["pool"] == "cls" and "CLS token of hidden state -1" in meta["features"]["text"]
    lin = result["results"]["linear"]["all"]
    assert lin["images"] == 12 and list(lin["rows"]) == [BASE, "fresh", "moved"]
    for cond in meta["conditions"]:
        iv = lin["rows"][BASE][cond]
        assert iv["n"] == 12 and iv["lo"] <= iv["value"] <= iv["hi"]
        # identity adapters: the same predictions as the base, a paired difference of exactly 0
        assert lin["rows"]["fresh"][cond]["value"] == iv["value"]
        zero = result["paired"]["linear"]["all"]["fresh"][cond]
        assert (zero["value"], zero["lo"], zero["hi"]) == (0.0, 0.0, 0.0)
    assert lin["rows"][BASE]["ref"]["value"] >= 0.9  # colours are easy, even for a random encoder
    fams = set(result["results"]["knn"]) - {"all"}
    assert fams == {"noise", "compression"}
    assert sum(result["results"]["linear"][f]["images"] for f in fams) == 12  # one op per image
    for text in ("# Downstream probe", "| base |", "| fresh |", "Dis s5", "paired difference to `base`",
                 "maa-eval probe --model", "one folder: the first 6 images per class", "+0.0 [+0.0, +0.0]",
                 "every op of the recipe's global stage at exactly severity S", "## Per corruption family"):
        assert text in md, text


def test_same_inputs_give_the_same_numbers(setup, cli_result, tmp_path):
    assert eval_main(probe_args(setup, tmp_path / "again", "--adapters", f"fresh={setup['fresh']}", "--adapters",
                                f"moved={setup['moved']}")) == 0
    again = json.loads((tmp_path / "again" / "probe.json").read_text())
    assert again["results"] == cli_result[0]["results"] and again["paired"] == cli_result[0]["paired"]


def test_unreadable_images_are_counted_and_empty_classes_dropped(setup, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(setup["data"], data)
    (data / "blue" / "blue000.png").write_bytes(b"not a png")        # a training image
    (data / "red" / "sub" / "red007.png").write_bytes(b"\x89PNG\r\n")  # a test image
    (data / "yellow").mkdir()
    result = run_probe(setup["model"], data, None, RECIPE, [],
                       ProbeOptions(train_per_class=6, severities=(3,), bootstrap=50, device="cpu"))
    skipped = result.meta["skipped"]
    assert [s["ref"] for s in skipped["train"]] == ["blue/blue000.png"]
    assert [s["ref"] for s in skipped["test"]] == ["red/sub/red007.png"]
    assert result.meta["train_per_class"]["blue"] == 5 and result.meta["n_test"] == 11
    assert result.meta["split_notes"]["train"]["empty_classes"] == ["yellow"]
    assert result.meta["classes"] == ["blue", "green", "red"]


def test_any_corruption_will_do_maa_train_needs_no_corruptor(setup):
    def read(path):
        return np.asarray(Image.open(path).convert("RGB"))

    def corrupt(image, severity, key):
        return (255 - image if severity == 5 else image), ["inverted" if severity == 5 else "none"]

    corruption = Corruption(read=read, prepare=lambda im: im[:32, :32], corrupt=corrupt,
                            meta={"recipe": {"name": "invert", "hash": "-"}, "severity_rule": "inverted at 5"})
    result = run_probe_with(setup["model"], setup["data"], None, corruption, [],
                            ProbeOptions(train_per_class=6, severities=(1, 5), bootstrap=0, device="cpu"))
    rows = result.results["linear"]["all"]["rows"][BASE]
    assert rows["ref"]["value"] == rows["sev1"]["value"]  # severity 1 is the identity here
    assert set(result.results["linear"]) == {"all", "inverted", "none"}
    assert result.meta["recipe"] == {"name": "invert", "hash": "-"} and result.meta["severity_rule"] == "inverted at 5"


def test_encoder_without_cls_uses_mean_patch_tokens(setup, tmp_path):
    siglip = setup["models"]["siglip"]
    result = run_probe(siglip, setup["data"], None, RECIPE, [],
                       ProbeOptions(train_per_class=6, severities=(3,), bootstrap=0, device="cpu"))
    assert result.meta["features"]["pool"] == "mean" and "mean of the patch tokens" in result.meta["features"]["text"]
    assert result.results["linear"]["all"]["rows"][BASE]["ref"]["lo"] is None  # no bootstrap asked
    with pytest.raises(ProbeError, match="has no CLS token"):
        run_probe(siglip, setup["data"], None, RECIPE, [], ProbeOptions(train_per_class=6, features="cls",
                                                                          device="cpu"))


@pytest.mark.parametrize("case, says", [
    ("one_class", "1 class with images (red); a classifier needs at least 2 classes"),
    ("no_images", "has no images in class sub-folders"),
    ("missing", "does not exist"),
    ("other_encoder", "width 32 with 3 blocks"),
    ("bad_recipe", "unknown built-in recipe"),
    ("bad_severity", "expected distinct levels 1..5"),
    ("base_name", "reserved"),
])
def test_bad_input_is_one_line_and_exit_2(setup, tmp_path, capsys, case, says):
    args = probe_args(setup, tmp_path / "out")
    if case == "one_class":
        shutil.copytree(setup["data"] / "red", tmp_path / "one" / "red")
        args[args.index("--train") + 1] = str(tmp_path / "one")
    elif case == "no_images":
        (tmp_path / "none" / "a").mkdir(parents=True)
        args[args.index("--train") + 1] = str(tmp_path / "none")
    elif case == "missing":
        args[args.index("--train") + 1] = str(tmp_path / "nope")
    elif case == "other_encoder":
        from tests.maa_train.eval.evalkit import tiny_clip

        enc, _ = load_vision_model(tiny_clip(tmp_path / "deeper", layers=3))
        save_adapters(tmp_path / "deep", AdaptedEncoder(enc, ADAPTER))
        args += ["--adapters", f"deep={tmp_path / 'deep'}"]
    elif case == "bad_recipe":
        args[args.index("--recipe") + 1] = "no-such-recipe"
    elif case == "bad_severity":
        args[args.index("--severities") + 1] = "0,9"
    elif case == "base_name":
        args += ["--adapters", f"base={setup['fresh']}"]
    with pytest.raises(SystemExit) if case == "bad_severity" else nullcontext():
        rc = eval_main(args)
        assert rc == 2
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err
    if case != "bad_severity":
        # one line (transformers may print its own loading progress before it)
        mine = [line for line in err.splitlines() if "maa-eval" in line]
        assert len(mine) == 1 and mine[0].startswith("maa-eval probe: error: ") and says in mine[0]
    assert not (tmp_path / "out").exists()


def test_mechanism_command_is_unchanged(setup, capsys):
    with pytest.raises(SystemExit):
        eval_main(["--help"])
    out = capsys.readouterr().out
    assert "--data" in out and "maa-eval probe --help" in out


def test_maa_train_entry_point_alone_says_where_the_probe_runs(setup, tmp_path, capsys):
    from maa_train.eval.cli import main as maa_train_eval_main

    assert maa_train_eval_main(probe_args(setup, tmp_path / "out")) == 2
    err = capsys.readouterr().err
    assert "python -m pipelines.probe" in err and not (tmp_path / "out").exists()


@pytest.mark.gpu
def test_cuda_gives_the_cpu_numbers(setup, cli_result):
    specs = [AdapterSpec("fresh", setup["fresh"]), AdapterSpec("moved", setup["moved"])]
    opts = ProbeOptions(train_per_class=6, severities=(2, 5), bootstrap=200, batch_size=7, device="cuda",
                        precision="fp32")
    cuda = run_probe(setup["model"], setup["data"], None, setup["recipe"], specs, opts)
    assert cuda.meta["device"].startswith("cuda")
    cpu = cli_result[0]["results"]["linear"]["all"]["rows"]
    for row, by_cond in cuda.results["linear"]["all"]["rows"].items():
        for cond, iv in by_cond.items():
            assert abs(iv["value"] - cpu[row][cond]["value"]) <= 1 / 12 + 1e-9, (row, cond)  # one image at most


def test_versus_gives_paired_differences_against_an_adapter_row(setup, cli_result, tmp_path):
    out = tmp_path / "versus"
    assert eval_main(probe_args(setup, out, "--adapters", f"fresh={setup['fresh']}", "--adapters",
                                f"moved={setup['moved']}", "--versus", "fresh")) == 0
    result = json.loads((out / "probe.json").read_text())
    vs = result["paired_vs"]["fresh"]["linear"]["all"]
    assert list(vs) == ["moved"]  # neither the reference itself nor the base
    for cond, iv in vs["moved"].items():
        # fresh adapters are the identity: moved - fresh is moved - base
        assert iv == result["paired"]["linear"]["all"]["moved"][cond]
    assert "paired difference to `fresh`" in (out / "probe.md").read_text()
    assert eval_main(probe_args(setup, tmp_path / "bad", "--adapters", f"fresh={setup['fresh']}",
                                "--versus", "nope")) == 2
