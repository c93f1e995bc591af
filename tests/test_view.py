"""The view a net expects (core.view.View): one value, validated once, never defaulted.

A function that defaulted its crop ratio once predicted new runs (trained at 1.0) on ImageNet's
0.875 view whenever a caller forgot the argument; the signature check keeps that from coming back.
"""

import ast
import dataclasses
import json
from pathlib import Path

import pytest

from fashionai.core.runinfo import RunInfo
from fashionai.core.view import IMAGENET_CROP_RATIO, MEAN, STD, View
from fashionai.training.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
VIEW_PARAMETERS = {"crop_ratio", "data_shape", "input_size", "view"}


def defaulted_view_parameters(source: str) -> list[tuple[int, str]]:
    """(line, name) of every parameter named in VIEW_PARAMETERS that has a default, in any function
    or lambda of `source`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        args = node.args
        positional = args.posonlyargs + args.args
        defaulted = positional[len(positional) - len(args.defaults):] if args.defaults else []
        defaulted += [a for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None]
        found += [(node.lineno, a.arg) for a in defaulted if a.arg in VIEW_PARAMETERS]
    return found


def test_no_function_defaults_the_view():
    files = sorted((ROOT / "fashionai").rglob("*.py")) + sorted((ROOT / "bench").glob("*.py"))
    offenders = [f"{path.relative_to(ROOT)}:{line}: {name}" for path in files
                 for line, name in defaulted_view_parameters(path.read_text())]
    assert not offenders, "the view is a required argument (pass run.view / config.view):\n" + "\n".join(offenders)


def test_the_signature_check_sees_every_kind_of_default():
    source = ("def a(x, crop_ratio=0.875): pass\n"
              "def b(*, data_shape=224, view): pass\n"
              "async def c(input_size=1, /): pass\n"
              "d = lambda view=None: view\n"
              "def e(view, data_shape, *, crop_ratio, other=1): pass\n")
    assert defaulted_view_parameters(source) == [(1, "crop_ratio"), (2, "data_shape"), (3, "input_size"), (4, "view")]


def test_the_resize_rule_on_hand_computed_values():
    """short = size / crop_ratio: ImageNet's 256 for 224 at 0.875, the whole short side at 1.0."""
    assert View(224, 0.875).short == 256
    assert View(224, 1.0).short == 224
    assert (View(64, 0.5).short, View(336, 0.875).short, View(32, 0.875).short) == (128, 384, 36)
    assert View(224, 1).crop_ratio == 1.0 and isinstance(View(224, 1).crop_ratio, float)


def test_the_normalisation_is_imagenets_unless_given():
    view = View(32, 1.0)
    assert (view.mean, view.std) == (MEAN, STD) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert View(32, 1.0, mean=(0.5, 0.5, 0.5), std=(1, 1, 1)).std == (1.0, 1.0, 1.0)


@pytest.mark.parametrize("changes, field", [
    ({"crop_ratio": 0}, "crop_ratio"), ({"crop_ratio": 1.5}, "crop_ratio"), ({"crop_ratio": "1"}, "crop_ratio"),
    ({"crop_ratio": True}, "crop_ratio"), ({"size": 7}, "input size"), ({"size": 224.0}, "input size"),
    ({"size": True}, "input size"), ({"size": "224"}, "input size"), ({"mean": (0.5, 0.5)}, "mean"),
    ({"std": (0.2, 0.0, 0.2)}, "std"), ({"std": ("a", 1, 1)}, "std"),
])
def test_a_view_that_cannot_be_right_is_refused_at_construction(changes, field):
    with pytest.raises(ValueError, match=field):
        View(**{"size": 224, "crop_ratio": 1.0, **changes})


def test_a_view_is_a_value():
    view = View(224, 0.875)
    assert view == View(224, 0.875) and hash(view) == hash(View(224, 0.875)) and view != View(224, 1.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        view.crop_ratio = 1.0


def _run(tmp_path: Path, **config) -> Path:
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    base = {"task": "collar_design_labels", "model": "mobilenet0.25", "data_shape": 64, "prepared": str(tmp_path)}
    (run / "config.json").write_text(json.dumps({**base, **config}))
    return run


def test_a_run_without_a_crop_ratio_is_read_at_imagenets(tmp_path):
    """The legacy rule: a config that predates the setting was trained at 0.875, whoever reads it."""
    run = _run(tmp_path)
    assert RunInfo.read(run).view == View(64, IMAGENET_CROP_RATIO) == View(64, 0.875)
    assert TrainConfig.of_run(run).view == View(64, 0.875)
    run = _run(tmp_path, crop_ratio=1.0)
    assert RunInfo.read(run).view == TrainConfig.of_run(run).view == View(64, 1.0)


def test_a_new_config_takes_todays_view():
    assert TrainConfig().view == View(224, 1.0)
    assert TrainConfig(data_shape=32, crop_ratio=0.875).view.short == 36
    with pytest.raises(ValueError, match="crop_ratio"):
        TrainConfig(crop_ratio=0).view
