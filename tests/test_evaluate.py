"""`evaluate` a run on its val split and compare its TTA modes: the glue between the manifest,
prediction and the scores (the stages are stood in for, per their documented contracts)."""

import json

import numpy as np
import pandas as pd
import pytest

from fashionai.cli import main
from fashionai.data import manifest
from fashionai.pipeline import evaluate
from fashionai.scoring import tables


def fake_stage_modules(monkeypatch, prepared, calls):
    """Stand-ins for manifest.read_manifest and predict_run, per their contracts in docs."""
    frame = pd.DataFrame({
        "task": ["collar_design_labels"] * 5 + ["skirt_length_labels"],
        "split": ["val", "val", "train", "val", "val", "val"],
        "status": ["ok", "ok", "ok", "skipped", "ok", "ok"],
        "label": ["ynnnn", "nnynn", "ynnnn", "ynnnn", "nmnny", "ynnnnn"],
        "class_index": [0, 2, 0, 0, 4, 0],
        "prepared_path": ["c/val/0/a.jpg", "c/val/2/b.jpg", "c/train/0/c.jpg", "", "c/val/4/d.jpg", "s/val/0/e.jpg"],
    })
    probs = np.array([[0.8, 0.05, 0.05, 0.05, 0.05], [0.1, 0.1, 0.1, 0.6, 0.1], [0.1, 0.5, 0.1, 0.1, 0.2]])

    def read_manifest(root):
        assert root == prepared
        return frame

    def predict_run(run_dir, image_paths, *, tta, devices, batch_size, precision="fp32", engine="mxnet"):
        calls.append((list(image_paths), tta, devices, batch_size))
        return probs

    monkeypatch.setattr(manifest, "read_manifest", read_manifest)
    monkeypatch.setattr(evaluate, "predict_run", predict_run)


def fake_run(run, prepared):
    """A run folder with the config.json `fashionai train` writes (no weights: predict_run is faked)."""
    run.mkdir()
    config = {"prepared": str(prepared), "task": "collar_design_labels", "model": "mobilenet0.25", "data_shape": 32}
    (run / "config.json").write_text(json.dumps(config))


def test_evaluate_run_glue_and_cli(tmp_path, monkeypatch, capsys):
    prepared, run = tmp_path / "prepared", tmp_path / "run"
    fake_run(run, prepared)
    calls = []
    fake_stage_modules(monkeypatch, prepared, calls)

    report = evaluate.evaluate_run(run, tta="flip", devices="cpu", batch_size=8)
    assert calls[0] == ([prepared / "c/val/0/a.jpg", prepared / "c/val/2/b.jpg", prepared / "c/val/4/d.jpg"],
                        "flip", "cpu", 8)
    # p_max .8 y, .6 n, .5 m -> thresholds .8 -> 1, .6 -> 1/2, .5 -> 1/2
    assert report["official_ap"] == pytest.approx((1 + 1 / 2 + 1 / 2) / 3)
    assert report["task"] == "collar_design_labels" and report["tta"] == "flip"
    # the gallery's rows, worst first by the true class's probability: b (.1 to class 2), d (.2 to 4), a (.8)
    assert [(w["image"][-5:], w["true"], w["p_true"]) for w in report["worst"]] == [
        ("b.jpg", "Peter Pan", 0.1), ("d.jpg", "Rib Collar", 0.2), ("a.jpg", "Invisible", 0.8)]
    assert [w["predicted"] for w in report["worst"]] == ["Puritan Collar", "Shirt Collar", "Invisible"]

    assert main(["evaluate", "--run", str(run), "--tta", "none", "-b", "4", "--devices", "cpu"]) == 0
    assert "Shirt Collar" in capsys.readouterr().out
    assert (run / "eval_val.json").is_file() and (run / "eval_val_confusion.png").is_file()
    # the images are gone (faked): the gallery still shows each mistake's caption
    assert (run / "eval_val_mistakes.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["evaluate", "--run", str(tmp_path / "missing")]) == 2


def test_compare_tta_times_every_mode_and_saves_the_table(tmp_path, monkeypatch, capsys):
    prepared, run = tmp_path / "prepared", tmp_path / "run"
    fake_run(run, prepared)
    calls = []
    fake_stage_modules(monkeypatch, prepared, calls)

    rows = evaluate.compare_tta(run, devices="cpu", batch_size=8)
    assert [c[1] for c in calls] == ["none", "none", "flip", "five-crop", "ten-crop"]  # an unreported warm-up
    assert len(calls[0][0]) == 2 and len(calls[1][0]) == 3
    assert [(r["tta"], r["views"], r["images"]) for r in rows] == [
        ("none", 1, 3), ("flip", 2, 3), ("five-crop", 5, 3), ("ten-crop", 10, 3)]
    assert rows[0]["relative_cost"] == 1.0 and all(r["delta_map"] == 0 and r["ms_per_image"] > 0 for r in rows)

    paths = tables.save_table(rows, run, "tta_compare", precision="fp32")
    assert pd.read_csv(paths["csv"])["tta"].tolist() == ["none", "flip", "five-crop", "ten-crop"]
    assert json.loads(paths["json"].read_text())["precision"] == "fp32"
    text = tables.format_table([*rows, {"tta": "x", "val_map": float("nan")}], evaluate.TTA_COLUMNS)
    lines = text.splitlines()
    assert lines[0].split() == [name for name, _ in evaluate.TTA_COLUMNS] and lines[-1].split()[:3] == ["x", "-", "-"]

    assert main(["evaluate", "--run", str(run), "--compare-tta", "--devices", "cpu"]) == 0
    assert "ten-crop" in capsys.readouterr().out
    assert main(["evaluate", "--submission", "s.csv", "--answers", "a.csv", "--compare-tta"]) == 2
