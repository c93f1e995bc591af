"""The score bench's statistics (bench/bench_score.py) on hand-computed values."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.fixture(scope="module")
def bench_score():
    spec = importlib.util.spec_from_file_location("bench_score", BENCH / "bench_score.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _seed(tutorial: tuple[float, float], defaults: tuple[float, float], seconds: tuple[float, float]) -> dict:
    return {"tutorial": {"ap": dict(zip("ab", tutorial)), "train_s": seconds[0], "predict_s": 1.0},
            "defaults": {"ap": dict(zip("ab", defaults)), "train_s": seconds[1], "predict_s": 1.0}}


def test_paired_stats_are_the_mean_and_its_standard_error(bench_score):
    # 0.2, 0.1, 0.1, 0.1: mean 0.125; deviations 0.075, -0.025 x 3: variance 0.0075 / 3 = 0.0025, sd 0.05
    mean, error = bench_score.paired_stats([0.2, 0.1, 0.1, 0.1])
    assert mean == pytest.approx(0.125) and error == pytest.approx(0.05 / 2)
    assert math.isnan(bench_score.paired_stats([0.3])[1])


def test_paired_rows_per_task_and_overall_by_seed(bench_score):
    results = [_seed((0.5, 0.6), (0.7, 0.6), (10, 12)), _seed((0.6, 0.7), (0.7, 0.8), (10, 14)),
               _seed((0.4, 0.9), (0.6, 0.8), (10, 10))]
    rows = bench_score.paired_rows("shop", ["a", "b"], results, "defaults", "tutorial")
    assert [r["task"] for r in rows] == ["a", "b", "overall"]
    # a: 0.2, 0.1, 0.2 -> mean 0.1667, sd sqrt((0.0033^2*2 + 0.0667^2) / 2) = 0.0577, error 0.0333
    assert rows[0]["difference"] == "+0.167 +- 0.033" and rows[0]["wins"] == "3/3" and rows[0]["in errors"] == "+5.0"
    # b: 0.0, 0.1, -0.1 -> mean 0, sd 0.1, error 0.0577
    assert rows[1]["difference"] == "+0.000 +- 0.058" and rows[1]["wins"] == "1/3"
    # overall, per seed the mean over tasks: 0.1, 0.1, 0.05 -> mean 0.0833, sd 0.0289, error 0.0167
    assert rows[2]["difference"] == "+0.083 +- 0.017" and rows[2]["in errors"] == "+5.0"
    # wall time: (13 + 15 + 11) / 3 = 13 against (11 + 11 + 11) / 3 = 11
    assert rows[2]["time ratio"] == "1.18"
    assert not bench_score.target_met(rows[2])  # +0.083 is under +0.10
    assert bench_score.target_met({**rows[2], "difference": "+0.120 +- 0.050"})
    assert not bench_score.target_met({**rows[2], "difference": "+0.120 +- 0.070"})  # within 2 errors
    assert not bench_score.target_met({**rows[2], "difference": "+0.120 +- 0.010", "time ratio": "1.60"})


def test_recipes_epochs_are_multiples_of_the_tutorials(bench_score):
    """The tutorial keeps its 25 epochs whatever the demo preset trains; a scaled recipe is that
    multiple (of --epochs in a smoke run), the others take the preset's own."""
    recipes = bench_score.RECIPES
    assert bench_score.recipe_changes(recipes["tutorial"], {})["epochs"] == 25
    assert bench_score.recipe_changes(recipes["defaults-x2"], {})["epochs"] == 50
    assert bench_score.recipe_changes(recipes["demo-ensemble-x0.68"], {})["epochs"] == 17
    assert "epochs" not in bench_score.recipe_changes(recipes["demo"], {})
    assert bench_score.recipe_changes(recipes["demo-x1.2"], {"epochs": 5})["epochs"] == 6
    assert bench_score.recipe_changes(recipes["demo"], {"epochs": 5})["epochs"] == 5
    assert bench_score.recipe_changes(recipes["tutorial"], {})["crop_ratio"] == 0.875
    assert bench_score.recipe_changes(recipes["demo+moving-crop-x1.12"], {})["augment"] == "imagenet"
    assert bench_score.recipe_changes(recipes["demo+moving-crop-x1.12"], {})["epochs"] == 28


def test_layouts_split_the_tasks_as_the_demo_does(bench_score):
    """`groups` is `fashionai demo`'s split (a net per task group of two or more tasks), `task` a
    net each, `all` one net; every recipe names only known layouts."""
    tasks = ["collar_design_labels", "skirt_length_labels", "neckline_design_labels", "coat_length_labels"]
    assert bench_score.layout_groups("groups", tasks) == [["skirt_length_labels", "coat_length_labels"],
                                                          ["collar_design_labels", "neckline_design_labels"]]
    assert bench_score.layout_groups("groups", tasks[:2]) == [["skirt_length_labels"], ["collar_design_labels"]]
    assert bench_score.layout_groups("task", tasks[:2]) == [["skirt_length_labels"], ["collar_design_labels"]]
    assert bench_score.layout_groups("all", tasks[:2]) == [tasks[:2]]
    assert all(layout in bench_score.LAYOUTS for recipe in bench_score.RECIPES.values() for layout in recipe.nets)
    with pytest.raises(ValueError, match="unknown layout"):
        bench_score.layout_groups("pairs", tasks)
