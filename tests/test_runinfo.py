"""A run's config.json as inference reads it: validated before any value is used."""

import json

import pytest

from fashionai.core.runinfo import RunInfo

GOOD = {"task": "collar_design_labels", "model": "mobilenet0.25", "data_shape": 64, "num_classes": 5,
        "prepared": "data/prepared", "name": "demo", "tasks": ""}


def _run(tmp_path, **changes):
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    (run / "config.json").write_text(json.dumps({**GOOD, **changes}))
    return run


def test_a_valid_config_reads_as_typed_fields(tmp_path):
    info = RunInfo.read(_run(tmp_path))
    assert (info.task, info.model, info.data_shape, info.num_classes, info.name) == (
        "collar_design_labels", "mobilenet0.25", 64, 5, "demo")
    assert info.prepared.as_posix() == "data/prepared" and info.run_dir == tmp_path / "run"
    assert RunInfo.read(_run(tmp_path, num_classes=0)).num_classes == 5  # derived when absent


@pytest.mark.parametrize("changes, field", [
    ({"task": "../../../tmp/evil"}, "task"), ({"task": "skirt_length_labels/../x"}, "task"), ({"task": 3}, "task"),
    ({"model": "../x"}, "model"), ({"model": ""}, "model"), ({"data_shape": "224"}, "data_shape"),
    ({"data_shape": 0}, "data_shape"), ({"data_shape": 100000}, "data_shape"), ({"data_shape": True}, "data_shape"),
    ({"num_classes": 6}, "num_classes"), ({"prepared": None}, "prepared"), ({"crop_ratio": 0}, "crop_ratio"),
    ({"crop_ratio": 1.5}, "crop_ratio"), ({"crop_ratio": "1"}, "crop_ratio"), ({"crop_ratio": True}, "crop_ratio"),
])
def test_values_that_cannot_be_right_are_refused_naming_file_and_field(tmp_path, changes, field):
    with pytest.raises(ValueError, match=rf"config\.json: {field} "):
        RunInfo.read(_run(tmp_path, **changes))


def test_a_run_made_before_crop_ratio_existed_keeps_the_imagenet_view(tmp_path):
    """Every run before the setting was trained on 0.875 views: its predictions must be made on them."""
    assert RunInfo.read(_run(tmp_path)).crop_ratio == 0.875
    assert RunInfo.read(_run(tmp_path, crop_ratio=1)).crop_ratio == 1.0


def test_not_a_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="is .* a run directory"):
        RunInfo.read(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        RunInfo.read(tmp_path)
    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="JSON object"):
        RunInfo.read(tmp_path)


def test_a_multitask_run_points_to_its_per_task_runs(tmp_path):
    with pytest.raises(ValueError, match="multi-task run .* per-task runs"):
        RunInfo.read(_run(tmp_path, task="", tasks="skirt_length_labels,collar_design_labels", num_classes=11))


def test_weights_of_a_run(tmp_path):
    run = _run(tmp_path)
    with pytest.raises(FileNotFoundError, match="no best checkpoint yet"):
        RunInfo.read(run).weights("best")
    (run / "best.params").write_bytes(b"x")
    assert RunInfo.read(run).weights() == run / "best.params"
    with pytest.raises(ValueError, match="'best' or 'last'"):
        RunInfo.read(run).weights("other")
