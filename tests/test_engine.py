"""The OpenVINO engine: its nets against MXNet fp32 on a small run, the ONNX cache, the (engine,
precision) candidates and auto's record, and the one-line fallback to MXNet fp32 when OpenVINO is
missing or fails.

Tolerances (the `trained_run` fixture, cifar_resnet20_v1 at 32 px, saturated softmax): OpenVINO
fp32 is the same arithmetic in another order: max |dp| measured ~1e-6, allowed 1e-4. Its int8
(FakeQuantize min/max, u8 activations, per-channel weights) agreed on every argmax of the fixture's
images, mean |dp| ~1e-4; allowed the MXNet int8 bounds of tests/test_precision.py.
"""

import json
import logging
import shutil

import mxnet as mx
import numpy as np
import pytest

from fashionai.cli import main
from fashionai.inference import nets, openvino_net
from fashionai.inference.predict import predict_paths, predict_run
from fashionai.pipeline import auto_choice, payback
from fashionai.pipeline import precision as measure
from fashionai.pipeline.precision import Choice
from fashionai.pipeline.resolve import predict_resolved

pytest.importorskip("openvino")


@pytest.fixture(autouse=True)
def own_cost_record(monkeypatch, tmp_path):
    monkeypatch.setenv(payback.CACHE_VARIABLE, str(tmp_path / "cache"))
    monkeypatch.setattr(measure, "THROUGHPUT_SECONDS", 0.1)


@pytest.fixture(scope="module")
def images(run_images):
    return run_images[:24]


@pytest.fixture(scope="module")
def fp32(run_copy, images):
    return predict_run(run_copy, images, tta="none")


def test_openvino_fp32_and_int8_agree_with_mxnet_fp32(run_copy, images, fp32):
    ov32 = predict_run(run_copy, images, tta="none", precision="fp32", engine="openvino")
    assert np.abs(ov32 - fp32).max() < 1e-4
    export = run_copy / "openvino" / "export-best"
    stamp = (export / "skirt_length_labels.onnx").stat().st_mtime_ns
    int8 = predict_run(run_copy, images, tta="none", precision="int8", engine="openvino")
    assert (int8.argmax(1) == fp32.argmax(1)).mean() >= 0.8 and np.abs(int8 - fp32).mean() <= 0.05
    assert (export / "skirt_length_labels.onnx").stat().st_mtime_ns == stamp  # the export is reused
    meta = json.loads((run_copy / "openvino" / "int8-best.json").read_text())
    assert meta["convolutions"] > 0 and meta["source"]["file"] == "best.params"
    net, _ = nets.load_net(run_copy, "fp32", ctx=mx.cpu(), engine="openvino")
    assert nets.engine_of(net) == "openvino" and nets.precision_of(net) == "fp32"


def test_the_candidates_are_what_engine_and_precision_leave_open():
    assert [c.label for c in measure.candidates("auto", "auto")] == [
        "fp32", "fused", "bf16", "int8", "openvino-fp32", "openvino-bf16", "openvino-int8"]
    assert [c.label for c in measure.candidates("openvino", "auto")] == [
        "fp32", "openvino-fp32", "openvino-bf16", "openvino-int8"]
    assert [c.label for c in measure.candidates("auto", "fused")] == ["fp32", "fused"]  # OpenVINO has no fused
    assert measure.parse_label("openvino-int8") == Choice("openvino", "int8")
    assert measure.parse_label("fused") == Choice("mxnet", "fused")
    with pytest.raises(ValueError, match="unknown engine 'tvm'"):
        measure.candidates("tvm", "auto")


def _row(engine, precision, img_s, val_map=0.8, agreement=1.0):
    return {"engine": engine, "precision": precision, "candidate": Choice(engine, precision).label,
            "supported": True, "reason": "", "img_s": img_s, "val_map": val_map, "argmax_agreement": agreement,
            "mean_abs_dp": 0.0, "probe_images": 60}


def test_auto_takes_the_fastest_pair_that_passes_and_keeps_it_in_the_runs_record(run_copy, tmp_path, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(run_copy, run)
    (run / "precision.json").unlink(missing_ok=True)
    measured = []

    def fake_compare(run_dir, *, choices, **kw):
        measured.append([c.label for c in choices])
        rows = [_row("mxnet", "fp32", 100), _row("mxnet", "fused", 120), _row("openvino", "fp32", 110),
                _row("openvino", "int8", 500, agreement=0.9), _row("openvino", "bf16", 300)]
        return [r for r in rows if r["candidate"] in measured[-1]]

    monkeypatch.setattr(measure, "compare_precisions", fake_compare)
    decision = auto_choice.choose_precision(run, engine="auto", precision="auto")
    assert decision.choice == Choice("openvino", "bf16") and "openvino-int8 (argmax agrees" in decision.reason
    saved = json.loads((run / "precision.json").read_text())
    assert (saved["engine"], saved["precision"]) == ("openvino", "bf16")
    assert saved["key"]["candidates"][0] == "fp32" and saved["key"]["openvino"]
    assert auto_choice.resolve_choice(run, "auto", engine="auto", views=1) == Choice("openvino", "bf16")  # reused
    assert len(measured) == 1
    # a choice among MXNet's precisions alone is another question: measured on its own
    assert auto_choice.resolve_choice(run, "auto", engine="mxnet") == Choice("mxnet", "fused")
    assert len(measured) == 2 and "openvino-fp32" not in measured[1]
    costs = json.loads(payback.costs_path().read_text())
    passed = next(iter(costs.values()))["passed"]  # both probes' candidates, each with its verdict
    assert passed == {"fp32": True, "fused": True, "openvino-fp32": True, "openvino-int8": False, "openvino-bf16": True}


def test_a_missing_openvino_is_said_in_one_line_and_mxnet_fp32_runs(run_copy, images, fp32, monkeypatch, caplog):
    monkeypatch.setattr(openvino_net, "openvino_core", lambda: (None, "OpenVINO is not installed: pip install ..."))
    ok, why = measure.available(Choice("openvino", "int8"), [mx.cpu()])
    assert not ok and why.startswith("OpenVINO is not installed")
    with caplog.at_level(logging.WARNING):
        probs = predict_resolved(run_copy, images, tta="none", precision="int8", engine="openvino", which="best")
    np.testing.assert_allclose(probs, fp32, atol=1e-6)
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("engine openvino (int8) cannot run here: OpenVINO is not installed" in m and "MXNet fp32" in m
               for m in warned)
    with pytest.raises(ValueError, match="not installed"):  # asked of the library directly: refused, not swapped
        nets.load_net(run_copy, "fp32", ctx=mx.cpu(), engine="openvino")


def test_a_failing_openvino_is_said_in_one_line_and_mxnet_fp32_runs(run_copy, images, fp32, monkeypatch, caplog,
                                                                     capsys):
    def broken(*args, **kwargs):
        raise RuntimeError("Exception from src/inference/src/core.cpp:99:\nCPU plugin: cannot compile")

    monkeypatch.setattr(openvino_net, "compile_model", broken)
    with caplog.at_level(logging.WARNING):
        probs = predict_resolved(run_copy, images[:4], tta="none", precision="fp32", engine="openvino", which="best")
    np.testing.assert_allclose(probs, fp32[:4], atol=1e-6)
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warned) == 1 and "CPU plugin: cannot compile; running MXNet fp32 instead" in warned[0]
    assert "\n" not in warned[0]
    assert main(["predict", "--run", str(run_copy), "--images", str(images[0]), "--engine", "openvino",
                 "--precision", "fp32", "--tta", "none"]) == 0
    assert "1 images" in capsys.readouterr().out


def test_openvino_threads_follow_the_runtimes_count():
    assert openvino_net.engine_threads({"OMP_NUM_THREADS": "3"}) == 3
    assert openvino_net.engine_threads({}) >= 1


def test_the_ov_net_is_called_like_a_gluon_net(run_copy, images, fp32):
    """predict_paths runs it unchanged: logits out (the export's softmax cut off), softmax applied once."""
    net, run = nets.load_net(run_copy, "fp32", ctx=mx.cpu(), engine="openvino")
    out = net(mx.nd.zeros((2, 3, run.view.size, run.view.size)))
    assert out.shape == (2, 6) and out.dtype == np.float32
    probs = predict_paths(net, images[:5], view=run.view, ctx=mx.cpu())
    assert np.abs(probs - fp32[:5]).max() < 1e-4
