"""Training precision: refused where the hardware cannot run it; BF16 trains where it can."""

import subprocess
import sys

import mxnet as mx
import numpy as np
import pandas as pd
import pytest
from mxnet.contrib.amp.amp import bfloat16  # numpy's stand-in for MXNet's bfloat16

from fashionai.core import cpu
from fashionai.training.config import TrainConfig
from fashionai.training.fit import check_dtype, fit


def test_float16_is_refused_on_cpu_and_bfloat16_on_gpu():
    check_dtype("float32", [mx.cpu()])
    with pytest.raises(ValueError, match="float16 needs GPUs"):
        check_dtype("float16", [mx.cpu()])
    with pytest.raises(ValueError, match="bfloat16 is for CPUs"):
        check_dtype("bfloat16", [mx.gpu(0)])


def test_bfloat16_refusal_names_the_reason_and_writes_no_run(monkeypatch, prepared_data, tmp_path):
    monkeypatch.setattr(cpu, "bf16_supported", lambda: (False, "no avx512f"))
    config = TrainConfig.demo("skirt_length_labels", prepared_data, tmp_path, dtype="bfloat16", epochs=1)
    with pytest.raises(ValueError, match=r"not supported on this CPU \(no avx512f\)"):
        fit(config)
    assert not any(tmp_path.iterdir())


def test_the_probe_agrees_with_running_bf16():
    """The probe answers what running BF16 gives, checked here by another path (plain NDArray ops):
    where it says yes, a BF16 convolution runs and differs from FP32 by BF16 rounding only (so it
    really ran in BF16); where it says no, that convolution fails, and the reason names the flags."""
    ok, why = cpu.bf16_supported()
    x = mx.nd.random.uniform(-1, 1, shape=(2, 8, 12, 12))
    w = mx.nd.random.uniform(-1, 1, shape=(4, 8, 3, 3))

    def conv(a, b):
        return mx.nd.Convolution(a, b, kernel=(3, 3), num_filter=4, no_bias=True)

    ref = conv(x, w).asnumpy()
    try:
        out = conv(mx.nd.amp_cast(x, dtype=bfloat16), mx.nd.amp_cast(w, dtype=bfloat16))
        out = mx.nd.amp_cast(out, dtype="float32").asnumpy()
    except mx.base.MXNetError:
        out = None
    assert ok == (out is not None), why
    if ok:
        error = np.abs(out - ref).max() / np.abs(ref).max()
        assert 1e-5 < error < 0.02  # BF16 keeps 8 bits of mantissa: not exact, not far
    else:
        assert "CPU flags" in why


@pytest.mark.slow
@pytest.mark.parametrize("tasks", [["--task", "skirt_length_labels"],
                                   ["--tasks", "skirt_length_labels,collar_design_labels"]], ids=["task", "multitask"])
def test_bfloat16_training_runs_and_saves_float32_weights(prepared_data, tmp_path, tasks):
    """Single- and multi-task (whose validation reads the raw outputs, not their softmax)."""
    ok, why = cpu.bf16_supported()
    if not ok:
        pytest.skip(f"this CPU cannot run BF16: {why}")
    # amp.init rewrites MXNet process-wide: train in a child process
    code = subprocess.run(
        [sys.executable, "-m", "fashionai", "train", "--preset", "demo", *tasks,
         "--prepared", str(prepared_data), "--out", str(tmp_path), "--name", "bf16", "--dtype", "bfloat16",
         "--epochs", "2", "--data-shape", "32", "--batch-size", "8"], capture_output=True, text=True)
    assert code.returncode == 0, code.stderr[-2000:]
    run = tmp_path / "skirt_length_labels" / "bf16"  # a multi-task run is also split into single-task runs
    params = mx.nd.load(str(run / "best.params"))
    assert {np.dtype(v.dtype) for v in params.values()} == {np.dtype("float32")}
    assert all(np.isfinite(v.asnumpy()).all() for v in params.values())
    losses = pd.read_csv(run / "metrics.csv")["train_loss"]
    assert np.isfinite(losses).all() and len(losses) == 2


def test_only_float16_training_scales_the_loss():
    """bfloat16 has float32's exponent range: no loss scaling, and none of its per-step finite checks."""
    from fashionai.training.loop import loss_scaling

    assert loss_scaling("float16") and not loss_scaling("bfloat16") and not loss_scaling("float32")


def test_auto_takes_bfloat16_only_where_it_trains_faster(monkeypatch):
    """AMX, 128 px or more, no grouped convolutions: bfloat16; otherwise float32, each with its reason."""
    from fashionai.training import fit as fitting

    monkeypatch.setattr(cpu, "bf16_supported", lambda: (True, ""))
    monkeypatch.setattr(fitting, "amx_on", lambda: True)
    assert TrainConfig().dtype == "auto"
    assert fitting.resolve_dtype("auto", "ResNet50_v2", 224, [mx.cpu()])[0] == "bfloat16"
    dtype, why = fitting.resolve_dtype("auto", "ResNet50_v2", 64, [mx.cpu()])
    assert dtype == "float32" and "64 px" in why  # 0.98x FP32 there
    dtype, why = fitting.resolve_dtype("auto", "mobilenet0.25", 224, [mx.cpu()])
    assert dtype == "float32" and "grouped convolutions" in why  # depthwise: 10x slower in BF16 here
    assert fitting.resolve_dtype("auto", "ResNet50_v2", 224, [mx.gpu(0)])[0] == "float32"
    assert fitting.resolve_dtype("bfloat16", "mobilenet0.25", 64, [mx.cpu()]) == ("bfloat16", "as given")
    monkeypatch.setattr(fitting, "amx_on", lambda: False)
    dtype, why = fitting.resolve_dtype("auto", "ResNet50_v2", 224, [mx.cpu()])
    assert dtype == "float32" and "AMX" in why


def test_auto_is_recorded_as_the_precision_it_chose(monkeypatch, prepared_data, tmp_path):
    """The run's config says what it trained in, so a resume or a reader never re-decides."""
    import json

    from fashionai.training import fit as fitting

    monkeypatch.setattr(fitting, "amx_on", lambda: False)
    run = fit(TrainConfig.demo("skirt_length_labels", prepared_data, tmp_path, dtype="auto", epochs=1,
                               data_shape=32, batch_size=8))
    assert json.loads((run / "config.json").read_text())["dtype"] == "float32"
