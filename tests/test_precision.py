"""Prediction precision: each one against FP32, int8's cache, bf16's refusal, auto's choice, the CLI tables.

Tolerances are about agreement with FP32 on the `trained_run` fixture (a 2-epoch from-scratch model
whose logits are huge, so its softmax is saturated and near-ties flip easily), measured on the
task's 66 prepared images (train + val), not about accuracy:
- fused: the same FP32 arithmetic with conv+BN+ReLU folded by oneDNN (other summation order):
  max |dp| measured 3e-6; allowed 1e-4.
- int8: naive-calibrated post-training quantization: argmax agreement measured 0.89, mean |dp|
  0.014 (max 0.41 on one saturated near-tie); allowed >= 0.8 and <= 0.05. On better demo models
  (mobilenet 64 px, 80-96 val images) agreement was 0.86-0.99 and val mAP moved by -0.008..+0.003,
  which is why auto checks the val mAP of the run itself rather than trusting int8.
- bf16: 8-bit mantissa: argmax agreement >= 0.9, mean |dp| <= 0.02 (not measurable on this AVX2
  machine; the test runs only where BF16 kernels exist).
"""

import json
import shutil

import mxnet as mx
import numpy as np
import pytest

from fashionai.cli import main
from fashionai.core import cpu, io
from fashionai.core.view import View
from fashionai.data import transforms
from fashionai.inference import nets, quantize
from fashionai.inference.predict import predict_paths, predict_run
from fashionai.pipeline import auto_choice, payback
from fashionai.pipeline import precision as choice

VIEW = View(32, 0.875)  # the crop ratio predict defaulted to when these tests were written
FUSED_MAX_DP = 1e-4
INT8_MIN_AGREEMENT = 0.8
INT8_MAX_MEAN_DP = 0.05
BF16_MIN_AGREEMENT = 0.9
BF16_MAX_MEAN_DP = 0.02


@pytest.fixture(autouse=True)
def quick_timing(monkeypatch, tmp_path):
    """Throughput rounds short enough for tests: the figures only need to exist, not be precise;
    the probes' cost record goes to a folder of the test's own."""
    monkeypatch.setattr(choice, "THROUGHPUT_SECONDS", 0.1)
    monkeypatch.setenv(payback.CACHE_VARIABLE, str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def images(run_images):
    return run_images


@pytest.fixture(scope="module")
def views(images):
    """The evaluation view of every image, (66, 3, 32, 32): nets are compared on the same batch."""
    transform = transforms.eval_transform(VIEW)
    return mx.nd.stack(*[transform(mx.image.imread(str(p))) for p in images])


def _softmax(net, x):
    return mx.nd.softmax(net(x), axis=-1).asnumpy()


@pytest.fixture(scope="module")
def fp32_probs(run_copy, views):
    net, _ = nets.load_net(run_copy, "fp32", ctx=mx.cpu())
    return _softmax(net, views)


def _agreement(probs, ref):
    return (probs.argmax(1) == ref.argmax(1)).mean(), np.abs(probs - ref).mean(), np.abs(probs - ref).max()


# --- each precision against fp32 ------------------------------------------------------------------
def test_fp32_precision_is_the_plain_net(run_copy, images, fp32_probs):
    net, _ = nets.load_net(run_copy, "fp32", ctx=mx.cpu())
    probs = predict_paths(net, images, view=VIEW, ctx=mx.cpu(), batch_size=16)
    # other batch shapes: other kernels and summation order (measured up to 3.8e-6 with oneDNN's AMX
    # ISA, which also changes the FP32 kernels it picks; 1e-6 without)
    np.testing.assert_allclose(probs, fp32_probs, atol=1e-5)
    assert nets.precision_of(net) == "fp32" and nets.fused_ops(net, 32) == []
    assert len(images) == 66  # 60 train + 6 val: what the tolerances above were measured on


def test_fused_really_fuses_and_matches_fp32(run_copy, images, fp32_probs):
    net, _ = nets.load_net(run_copy, "fused", ctx=mx.cpu())
    probs = predict_paths(net, images, view=VIEW, ctx=mx.cpu(), batch_size=16)  # ragged last batch
    ops = nets.fused_ops(net, 32)  # after predict_paths: it kept the backend
    assert "_sg_mkldnn_conv" in ops and "_sg_mkldnn_fully_connected" in ops
    agree, _, max_dp = _agreement(probs, fp32_probs)
    assert agree == 1.0 and max_dp <= FUSED_MAX_DP


def test_int8_within_tolerance_of_fp32(run_copy, images, views, fp32_probs):
    net, _ = nets.load_net(run_copy, "int8", ctx=mx.cpu())
    probs = _softmax(net, views)
    agree, mean_dp, _ = _agreement(probs, fp32_probs)
    assert agree >= INT8_MIN_AGREEMENT and mean_dp <= INT8_MAX_MEAN_DP, (agree, mean_dp)
    graph = json.loads((run_copy / "quantized" / "int8-best-symbol.json").read_text())
    assert any(n["op"] == "_contrib_quantize_v2" for n in graph["nodes"])  # really int8, not fp32 again
    np.testing.assert_allclose(predict_paths(net, images[:5], view=VIEW, ctx=mx.cpu()), probs[:5], atol=1e-5)


def test_int8_cache_is_reused_and_rebuilt_when_params_change(run_copy, tmp_path, monkeypatch):
    calls = []
    real = quantize.calibrate_int8
    monkeypatch.setattr(quantize, "calibrate_int8", lambda *a, **k: calls.append(a) or real(*a, **k))
    quantize.quantized_net(run_copy, ctx=mx.cpu())  # built by now (here or by the test above)
    files = {p.name: p.stat().st_mtime_ns for p in (run_copy / "quantized").iterdir()}
    calls.clear()
    quantize.quantized_net(run_copy, ctx=mx.cpu())
    assert calls == [] and {p.name: p.stat().st_mtime_ns for p in (run_copy / "quantized").iterdir()} == files
    assert sorted(files) == ["int8-best-0000.params", "int8-best-symbol.json", "int8-best.json"]

    retrained = tmp_path / "run"
    shutil.copytree(run_copy, retrained)  # a copy keeps its cache (keyed by content, not mtime)...
    quantize.quantized_net(retrained, ctx=mx.cpu())
    assert calls == []
    params = mx.nd.load(str(retrained / "best.params"))  # ...until best.params changes
    first = sorted(params)[0]
    params[first] = params[first] * 1.01
    mx.nd.save(str(retrained / "best.params"), params)
    record = json.loads((retrained / "checkpoint.json").read_text())  # as training records new weights:
    record["sha1"][record["files"]["best"]] = io.sha1_of(retrained / "best.params")  # weights are checked on load
    (retrained / "checkpoint.json").write_text(json.dumps(record))
    quantize.quantized_net(retrained, ctx=mx.cpu())
    assert len(calls) == 1
    meta = json.loads((retrained / "quantized" / "int8-best.json").read_text())
    assert meta["source"]["sha1"] == io.params_fingerprint(retrained / "best.params")["sha1"]
    assert meta["settings"]["calib_mode"] == quantize.CALIB_MODE and meta["settings"]["seed"] == 0


# --- bf16 -----------------------------------------------------------------------------------------
def test_bf16_is_refused_naming_the_reason(run_copy, images, monkeypatch, capsys):
    monkeypatch.setattr(cpu, "bf16_supported", lambda: (False, "no avx512_bf16 on this CPU"))
    assert nets.availability("bf16", [mx.cpu()]) == (False, "no avx512_bf16 on this CPU")
    with pytest.raises(ValueError, match=r"bf16 is not supported on this machine: no avx512_bf16 on this CPU"):
        nets.load_net(run_copy, "bf16", ctx=mx.cpu())
    with pytest.raises(ValueError, match="no avx512_bf16"):
        predict_run(run_copy, images[:2], tta="none", precision="bf16")
    assert main(["predict", "--run", str(run_copy), "--images", str(images[0]), "--precision", "bf16"]) == 2


def test_bf16_within_tolerance_where_supported(run_copy, images, fp32_probs):
    ok, why = cpu.bf16_supported()
    if not ok:
        pytest.skip(f"this CPU cannot run BF16: {why}")
    net, _ = nets.load_net(run_copy, "bf16", ctx=mx.cpu())
    probs = predict_paths(net, images, view=VIEW, ctx=mx.cpu())
    agree, mean_dp, _ = _agreement(probs, fp32_probs)
    assert agree >= BF16_MIN_AGREEMENT and mean_dp <= BF16_MAX_MEAN_DP, (agree, mean_dp)


def test_cpu_precisions_are_refused_on_gpus():
    for name in ("fused", "bf16", "int8"):
        ok, why = nets.availability(name, [mx.gpu(0)])
        assert not ok and "gpu(0)" in why and "fp32" in why
    assert nets.availability("fp32", [mx.gpu(0)]) == (True, "")
    with pytest.raises(ValueError, match="unknown precision 'fp8'"):
        nets.check_precision("fp8")


# --- auto -----------------------------------------------------------------------------------------
def _row(name, img_s, val_map, supported=True, agreement=1.0, mean_dp=0.0):
    if not supported:
        return {"precision": name, "supported": False, "reason": "no kernels"}
    return {"precision": name, "supported": True, "reason": "", "img_s": img_s, "val_map": val_map,
            "argmax_agreement": agreement, "mean_abs_dp": mean_dp, "probe_images": 256}


def test_pick_precision_takes_the_fastest_within_tolerance():
    rows = [_row("fp32", 100, 0.800), _row("fused", 150, 0.800), _row("bf16", 0, 0, supported=False),
            _row("int8", 300, 0.790)]
    chosen, why = choice.pick_precision(rows, 0.005)
    assert chosen == "fused"
    assert "int8 (val mAP -0.0100 beyond +-0.005)" in why and "bf16 (not supported: no kernels)" in why
    assert [r["verdict"] for r in rows] == ["eligible, slower", "taken", "not supported: no kernels",
                                            "val mAP -0.0100 beyond +-0.005"]
    assert choice.pick_precision(rows, 0.02)[0] == "int8"
    rows[3]["val_map"] = 0.8049  # within, either way
    assert choice.pick_precision(rows, 0.005)[0] == "int8"
    rows[3]["val_map"] = 0.8100  # a change up is a change too
    assert choice.pick_precision(rows, 0.005)[0] == "fused"
    # a val split too small to tell (equal mAP) does not let through a precision that disagrees
    rows[3].update(val_map=0.8, argmax_agreement=0.97)
    chosen, why = choice.pick_precision(rows, 0.005)
    assert chosen == "fused" and "int8 (argmax agrees with fp32 on 97.0% of 256 images" in why
    rows[3].update(argmax_agreement=0.995, mean_abs_dp=0.02)
    assert choice.pick_precision(rows, 0.005)[0] == "fused"
    rows[3].update(mean_abs_dp=0.005)
    assert choice.pick_precision(rows, 0.005)[0] == "int8"
    slow = [_row("fp32", 100, 0.8), _row("fused", 90, 0.8), _row("int8", 80, 0.8)]
    assert choice.pick_precision(slow)[0] == "fp32"  # nothing faster: keep the reference
    undefined = [_row("fp32", 100, float("nan")), _row("int8", 300, float("nan"))]
    assert choice.pick_precision(undefined)[0] == "fp32"


def test_auto_is_decided_once_and_cached(run_copy, tmp_path, images, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(run_copy, run)
    measured = []

    def fake_compare(run_dir, **kw):
        measured.append(run_dir)
        return [_row("fp32", 100, 0.5), _row("fused", 150, 0.503), _row("bf16", 0, 0, supported=False),
                _row("int8", 400, 0.49)]

    monkeypatch.setattr(choice, "compare_precisions", fake_compare)
    decision = auto_choice.choose_precision(run)
    assert (decision.precision, decision.cached, len(measured)) == ("fused", False, 1)
    saved = json.loads((run / "precision.json").read_text())
    assert saved["precision"] == "fused" and [r["precision"] for r in saved["table"]] == list(nets.PRECISIONS)
    assert saved["key"]["params"]["file"] == "best.params" and saved["key"]["params"]["mtime_ns"] > 0
    assert "int8 (val mAP -0.0100 beyond +-0.005)" in saved["reason"]

    again = auto_choice.choose_precision(run)  # and predict's auto reuses it without measuring
    probs = predict_run(run, images[:3], tta="none", precision=auto_choice.resolve_precision(run, "auto"))
    assert again.cached and again.precision == "fused" and len(measured) == 1
    fused, info = nets.load_net(run, "fused", ctx=mx.cpu())
    np.testing.assert_allclose(probs, predict_paths(fused, images[:3], view=info.view, ctx=mx.cpu()),
                               atol=1e-6)

    params = mx.nd.load(str(run / "best.params"))
    mx.nd.save(str(run / "best.params"), {k: v * 1.0001 for k, v in params.items()})
    assert not auto_choice.choose_precision(run).cached and len(measured) == 2  # new weights: measured again


def test_auto_probes_only_where_the_measured_saving_pays_for_the_probe(run_copy, tmp_path, monkeypatch):
    """Without costs measured on this machine a probe runs only for a job at least its own size;
    after one, the recorded per-view costs decide (saving = views x (fp32 - best passing) against
    the probe's seconds); an earlier probe's choice (same weights) is always used."""
    run = tmp_path / "run"
    shutil.copytree(run_copy, run)
    (run / "precision.json").unlink(missing_ok=True)
    size = auto_choice.probe_views(run, 4)  # MXNet's 4 candidates on val + probe images
    monkeypatch.setattr(choice, "compare_precisions", lambda *a, **k: pytest.fail("must not measure"))
    assert auto_choice.resolve_precision(run, "auto", views=size - 1) == "fp32"
    assert not (run / "precision.json").exists()
    monkeypatch.setattr(choice, "compare_precisions",
                        lambda *a, **k: [_row("fp32", 100, 0.8), _row("int8", 400, 0.8)])
    assert auto_choice.resolve_precision(run, "auto", views=size) == "int8"  # big enough: probed
    monkeypatch.setattr(choice, "compare_precisions", lambda *a, **k: pytest.fail("must not measure"))
    assert auto_choice.resolve_precision(run, "auto", views=10) == "int8"  # cached choice reused
    # another run of the same net on this machine: the recorded costs say 7.5 ms saved per view
    (run / "precision.json").unlink()
    costs = json.loads(payback.costs_path().read_text())
    key = next(iter(costs))
    probe_s = costs[key]["probe_s_per_view"] * size
    small = int(probe_s / 0.0075 * 0.5)  # saves half the probe: not worth it
    assert payback.probe_pays(key, small, size, "fp32")[0] is False
    assert auto_choice.resolve_precision(run, "auto", views=small) == "fp32"
    pays, why = payback.probe_pays(key, int(probe_s / 0.0075 * 2) + 1, size, "fp32")
    assert pays and "10.0 -> 2.5 ms per view" in why


def test_auto_is_fp32_without_measuring_where_nothing_else_runs(run_copy, monkeypatch):
    monkeypatch.setattr(choice, "engine_availability",
                        lambda engine, name, ctx: (name == "fp32", "" if name == "fp32" else "GPU"))
    monkeypatch.setattr(choice, "compare_precisions", lambda *a, **k: pytest.fail("must not measure"))
    decision = auto_choice.choose_precision(run_copy)
    assert decision.precision == "fp32" and "only precision" in decision.reason and not decision.cached


def test_auto_without_val_split_runs_fp32_and_saves_nothing(run_copy, tmp_path, monkeypatch, caplog):
    run = tmp_path / "moved"
    shutil.copytree(run_copy, run)
    config = json.loads((run / "config.json").read_text())
    config["prepared"] = str(tmp_path / "elsewhere")
    (run / "config.json").write_text(json.dumps(config))
    (run / "precision.json").unlink(missing_ok=True)
    monkeypatch.setattr(choice, "compare_precisions", lambda *a, **k: pytest.fail("must not measure"))
    decision = auto_choice.choose_precision(run)
    assert decision.precision == "fp32" and "val split not available" in decision.reason
    assert "running fp32" in caplog.text and not (run / "precision.json").exists()


def test_compare_precision_cli_is_a_real_choose_precision(run_copy, capsys):
    assert main(["evaluate", "--run", str(run_copy), "--compare-precision"]) == 0
    out = capsys.readouterr().out
    assert "auto: " in out and "argmax_agreement" in out
    table = json.loads((run_copy / "precision_compare.json").read_text())
    rows = {r["candidate"]: r for r in table["rows"]}
    assert list(rows) == [*nets.PRECISIONS, "openvino-fp32", "openvino-bf16", "openvino-int8"]
    assert rows["fp32"]["speedup"] == 1.0 and rows["fp32"]["max_abs_dp"] == 0.0
    assert rows["fused"]["supported"] and rows["fused"]["max_abs_dp"] <= FUSED_MAX_DP
    assert rows["int8"]["supported"] and rows["int8"]["img_s"] > 0
    assert rows["bf16"]["supported"] == cpu.bf16_supported()[0]
    assert rows["openvino-fp32"]["supported"] and rows["openvino-fp32"]["max_abs_dp"] <= FUSED_MAX_DP
    assert rows["openvino-int8"]["supported"] and rows["openvino-int8"]["img_s"] > 0
    assert (run_copy / "precision_compare.csv").read_text().splitlines()[0].startswith("engine,precision,candidate")
    assert rows[table["chosen"]]["verdict"] == "taken"
    decision = auto_choice.choose_precision(run_copy, engine="auto")  # the CLI saved auto's choice: reused
    assert decision.cached and decision.choice.label == table["chosen"]
    assert decision.choice.label == choice.pick_precision(table["rows"])[0]


def test_compare_tta_cli_writes_the_table(run_copy, capsys):
    assert main(["evaluate", "--run", str(run_copy), "--compare-tta", "--precision", "fp32", "-b", "20"]) == 0
    out = capsys.readouterr().out
    assert "ten-crop" in out and "relative_cost" in out
    table = json.loads((run_copy / "tta_compare.json").read_text())
    rows = {r["tta"]: r for r in table["rows"]}
    assert list(rows) == ["none", "flip", "five-crop", "ten-crop"]
    assert rows["none"]["relative_cost"] == 1.0 and rows["ten-crop"]["views"] == 10
    assert all(r["images"] == 6 and r["ms_per_image"] > 0 for r in rows.values())
    assert (run_copy / "tta_compare.csv").read_text().count("\n") == 5
