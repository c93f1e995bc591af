"""A measured choice cached in the run folder (pipeline.measured), as tta.json and precision.json use it."""

import json

from fashionai.pipeline.measured import read_choice, same_key, save_choice

KEY = {"params": {"file": "best.params", "sha1": "ab12", "mtime_ns": 1}, "devices": ["cpu(0)"], "mxnet": "1.9.1"}


def test_a_saved_choice_is_read_back_under_its_key(tmp_path):
    path = tmp_path / "choice.json"
    save_choice(path, {"mode": "flip", "reason": "best val AP"}, KEY)
    assert json.loads(path.read_text()) == {"mode": "flip", "reason": "best val AP", "key": KEY}
    assert read_choice(path, KEY)["mode"] == "flip"


def test_the_weights_file_is_compared_by_name_and_content_not_mtime(tmp_path):
    copied = {**KEY, "params": {**KEY["params"], "mtime_ns": 2}}
    assert same_key(KEY, copied)
    assert not same_key(KEY, {**KEY, "params": {**KEY["params"], "sha1": "cd34"}})
    assert not same_key(KEY, {**KEY, "devices": ["cpu(0)", "cpu(1)"]})
    assert not same_key({}, KEY)


def test_no_choice_when_absent_damaged_or_measured_under_another_key(tmp_path):
    path = tmp_path / "choice.json"
    assert read_choice(path, KEY) is None
    path.write_text("{not json")
    assert read_choice(path, KEY) is None
    path.write_text(json.dumps({"mode": "flip"}))  # no key
    assert read_choice(path, KEY) is None
    save_choice(path, {"mode": "flip"}, KEY)
    assert read_choice(path, {**KEY, "mxnet": "2.0"}) is None


def test_a_tta_json_written_before_the_helper_is_still_read(tmp_path):
    """tta.json's record as choose_tta wrote it (key: the weights' name and SHA-1, the view)."""
    key = {"params": {"file": "best.params", "sha1": "ab12"}, "data_shape": 32, "crop_ratio": 0.875}
    path = tmp_path / "tta.json"
    path.write_text(json.dumps({"mode": "none", "reason": "r", "scores": {"none": 1.0}, "key": key}))
    assert read_choice(path, key)["scores"] == {"none": 1.0}
    assert read_choice(path, {**key, "crop_ratio": 1.0}) is None
