"""`--tta auto`: every mode's val AP from one ten-crop pass, the pick (ties to fewer views, never
worse than `none` on val), and the cache keyed by the weights' content."""

import json
import math

import numpy as np
import pytest

from fashionai.core.metrics import official_ap
from fashionai.pipeline import tta_choice

LABELS = ["ynn", "nyn", "nny", "ynn"]


def _view_probs() -> np.ndarray:
    """(4 images, 10 views, 3 classes): views 0 and 5 (centre, mirrored centre) rank every image's
    true class first; the corner views (1-4, 6-9) rank a wrong class first."""
    probs = np.full((4, 10, 3), 0.1)
    for i, label in enumerate(LABELS):
        true = label.index("y")
        probs[i, [0, 5], true] = 0.8
        probs[i, [1, 2, 3, 4, 6, 7, 8, 9], (true + 1) % 3] = 0.8
    return probs / probs.sum(axis=2, keepdims=True)


def test_mode_scores_average_the_documented_view_subsets():
    probs = _view_probs()
    scores = tta_choice.mode_scores(probs, LABELS)
    assert scores["none"] == scores["flip"] == pytest.approx(1.0)
    # five-crop: 1 right view of 5 -> the wrong class gets (4 * 0.8 + 0.1) / 5, the true one (0.8 + 4 * 0.1) / 5
    assert scores["five-crop"] == pytest.approx(official_ap(probs[:, :5].mean(axis=1), LABELS))
    assert scores["five-crop"] < 0.5 and scores["ten-crop"] < 0.5


def test_pick_prefers_the_best_val_ap_then_fewer_views():
    assert tta_choice.pick_tta({"none": 0.9, "flip": 0.9, "five-crop": 0.8, "ten-crop": 0.9})[0] == "none"
    assert tta_choice.pick_tta({"none": 0.8, "flip": 0.85, "five-crop": 0.9, "ten-crop": 0.9})[0] == "five-crop"
    mode, why = tta_choice.pick_tta({m: math.nan for m in tta_choice.SUBSETS})
    assert mode == "none" and "undefined" in why


def _fake_run(tmp_path, weights: bytes = b"weights v1"):
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    (run / "config.json").write_text(json.dumps({"prepared": str(tmp_path / "prepared"), "task": "skirt_length_labels",
                                                 "model": "mobilenet0.25", "data_shape": 32}))
    (run / "best.params").write_bytes(weights)
    return run


def test_auto_measures_once_caches_in_the_run_and_remeasures_new_weights(tmp_path, monkeypatch):
    runs = []
    monkeypatch.setattr(tta_choice, "split_images", lambda prepared, task, split: (["a.jpg"] * 4, LABELS))
    monkeypatch.setattr(tta_choice, "load_net", lambda run_dir, precision, ctx, which: (None, None))

    def predict_views(net, images, *, view, ctx, tta, batch_size):
        runs.append((tta, view.size, view.crop_ratio))
        return _view_probs()

    monkeypatch.setattr(tta_choice, "predict_views", predict_views)
    run = _fake_run(tmp_path)
    assert tta_choice.resolve_tta(run, "auto", devices="cpu") == "none"  # flip ties none: fewer views
    assert runs == [("ten-crop", 32, 0.875)]  # the fake run's config predates crop_ratio: its views stay 0.875
    saved = json.loads((run / tta_choice.DECISION_FILE).read_text())
    assert saved["mode"] == "none" and saved["scores"]["ten-crop"] < 0.5
    decision = tta_choice.choose_tta(run, devices="cpu")
    assert decision.cached and decision.mode == "none" and len(runs) == 1  # from tta.json, no prediction
    _fake_run(tmp_path, b"weights v2")  # retrained in place: the cache no longer applies
    assert not tta_choice.choose_tta(run, devices="cpu").cached and len(runs) == 2
    assert tta_choice.resolve_tta(run, "ten-crop") == "ten-crop" and len(runs) == 2  # a given mode is used as is
    with pytest.raises(ValueError, match="valid modes"):
        tta_choice.resolve_tta(run, "eleven-crop")


def test_auto_without_a_val_split_uses_the_single_view_and_says_why(tmp_path, monkeypatch):
    def missing(prepared, task, split):
        raise FileNotFoundError(f"{prepared}/manifest.csv")

    monkeypatch.setattr(tta_choice, "split_images", missing)
    decision = tta_choice.choose_tta(_fake_run(tmp_path), devices="cpu")
    assert decision.mode == "none" and "manifest.csv" in decision.reason
    assert not (tmp_path / "run" / tta_choice.DECISION_FILE).exists()
