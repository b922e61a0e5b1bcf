"""Numbers in a recipe that would make every sample fail: refused at load, naming the field."""
import pytest
import yaml

from corruptor.recipe.recipe import RecipeError, load_recipe


@pytest.mark.parametrize("value, fragment", [
    (".inf", "finite number"), ("-.inf", "finite number"), (".nan", "finite number"),
    ("1e308", "less than or equal to 1000000"), ("0", "greater than 0"),
])
def test_one_of_weights_must_be_finite_and_bounded(value, fragment):
    text = f"name: x\nglobal:\n  one_of:\n    - {{op: gaussian_noise, weight: {value}}}\n    - {{op: jpeg}}\n"
    with pytest.raises(RecipeError) as info:
        load_recipe(yaml.safe_load(text))
    assert "recipe.global.one_of[0].weight" in str(info.value) and fragment in str(info.value)


def test_two_huge_weights_cannot_overflow_the_sum():
    # Each under the cap, their sum finite: the draw's probabilities stay numbers.
    recipe = load_recipe({"name": "x", "global": {"one_of": [{"op": "gaussian_noise", "weight": 1e6},
                                                             {"op": "jpeg", "weight": 1e6}]}})
    assert recipe.hash


@pytest.mark.parametrize("node, field", [
    ({"op": "gaussian_noise", "p": float("nan")}, "recipe.global.p"),
    ({"op": "gaussian_noise", "severity": {"weights": [1, 1, float("inf"), 1, 1]}}, "recipe.global.severity"),
    ({"op": "gaussian_noise", "severity": {"weights": [1, 1, float("nan"), 1, 1]}}, "recipe.global.severity"),
    ({"chain": [{"op": "jpeg"}], "weight": float("inf")}, "recipe.global.weight"),
])
def test_nan_and_inf_are_refused_everywhere(node, field):
    with pytest.raises(RecipeError, match=field.replace(".", r"\.")):
        load_recipe({"name": "x", "global": node})
