"""Contact sheets and the `preview` / `list` commands."""
import json

import numpy as np
import pytest
from PIL import Image

from corruptor.cli.main import main
from corruptor.preview import HEADER_H, LABEL_W, PAD, op_sheet, recipe_sheet, sheet_size, thumbnail
from corruptor.recipe.recipe import load_recipe
from corruptor.ops.registry import IMAGENET_C, load_all



def _img(h=30, w=40, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_op_sheet_is_ops_by_clean_plus_five_levels():
    images = [_img(), _img(seed=1)]
    sheet = op_sheet(images, ["brightness", "contrast", "gaussian_noise"], cell=24)
    assert sheet.size == sheet_size(3, 6, 24)
    arr = np.asarray(sheet)

    def cell(row, col):
        top, left = HEADER_H + PAD + row * (24 + PAD), LABEL_W + PAD + col * (24 + PAD)
        return arr[top:top + 24, left:left + 24]

    np.testing.assert_array_equal(cell(2, 0), thumbnail(images[0], 24))  # rows cycle through images
    np.testing.assert_array_equal(cell(1, 0), thumbnail(images[1], 24))
    assert not np.array_equal(cell(0, 5), cell(0, 0))


def test_recipe_sheet_has_mask_column_for_local_recipes():
    recipe = load_recipe({"name": "l", "global": "contrast",
                          "local": {"ops": "brightness", "area": [0.0, 1.0], "feather": 2}})
    sheet = recipe_sheet([_img(48, 48)], recipe, samples=3, cell=32)
    assert sheet.size == sheet_size(3, 3, 32)
    plain = recipe_sheet([_img(48, 48)], load_recipe({"name": "g", "global": "contrast"}), samples=2, cell=32)
    assert plain.size == sheet_size(2, 2, 32)


def test_preview_cli_with_image_files(tmp_path, capsys):
    src = tmp_path / "in.png"
    Image.fromarray(_img(50, 60)).convert("L").save(src)  # grayscale input is converted
    out = tmp_path / "sub" / "sheet.png"
    assert main(["preview", str(src), "--ops", "brightness,contrast", "--cell", "32", "--work", "48", "--out", str(out)]) == 0
    assert Image.open(out).size == sheet_size(2, 6, 32)
    assert "wrote" in capsys.readouterr().out


def test_preview_cli_recipe_with_embedded_photos(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: r\nglobal: {one_of: [brightness, contrast]}\n")
    out = tmp_path / "sheet.png"
    assert main(["preview", "--recipe", str(recipe), "--samples", "2", "--cell", "24", "--work", "24", "--out", str(out)]) == 0
    assert Image.open(out).size == sheet_size(2, 2, 24)


def test_preview_cli_user_errors(tmp_path, capsys):
    out = str(tmp_path / "s.png")
    assert main(["preview", "--ops", "brightness,nope", "--out", out]) == 2
    assert "unknown op 'nope'; allowed:" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nglobal: {op: brightness, severity: 9}\n")
    assert main(["preview", "--recipe", str(bad), "--out", out]) == 2
    assert "recipe.global.severity" in capsys.readouterr().err
    assert main(["preview", str(tmp_path / "missing.png"), "--ops", "brightness", "--out", out]) == 2
    assert "cannot read image" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["preview", "--recipe", "r", "--ops", "brightness", "--out", out])


def test_list_json_covers_registry(capsys):
    assert main(["list", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == set(load_all())
    for name, row in rows.items():
        assert len(row["severities"]) == 5
        assert row["backends"] == (["native", "imagecorruptions"] if name in IMAGENET_C else ["native"])
        assert {"family", "suites", "override_keys"} <= set(row)


def test_list_table(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["op", "family", "suites", "backends", "params"]
    assert "brightness" in out


def test_ops_run_at_work_size_then_shrink():
    from corruptor.preview import _show

    image = _img(80, 90)
    arr = np.asarray(op_sheet([image], ["brightness"], cell=24, work=72))
    top, left = HEADER_H + PAD, LABEL_W + PAD
    np.testing.assert_array_equal(arr[top:top + 24, left:left + 24], _show(thumbnail(image, 72), 24))
