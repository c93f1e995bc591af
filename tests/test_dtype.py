"""Training precision: refused where the hardware cannot run it; BF16 trains where it can."""

import subprocess
import sys

import mxnet as mx
import numpy as np
import pandas as pd
import pytest

from fashionai import precision_probe
from fashionai.train import TrainConfig, check_dtype, fit


def test_float16_is_refused_on_cpu_and_bfloat16_on_gpu():
    check_dtype("float32", [mx.cpu()])
    with pytest.raises(ValueError, match="float16 needs GPUs"):
        check_dtype("float16", [mx.cpu()])
    with pytest.raises(ValueError, match="bfloat16 is for CPUs"):
        check_dtype("bfloat16", [mx.gpu(0)])


def test_bfloat16_refusal_names_the_reason_and_writes_no_run(monkeypatch, prepared_data, tmp_path):
    monkeypatch.setattr(precision_probe, "bf16_supported", lambda: (False, "no avx512f"))
    config = TrainConfig.demo("skirt_length_labels", prepared_data, tmp_path, dtype="bfloat16", epochs=1)
    with pytest.raises(ValueError, match=r"not supported on this CPU \(no avx512f\)"):
        fit(config)
    assert not any(tmp_path.iterdir())


def test_the_probe_agrees_with_running_bf16():
    ok, why = precision_probe.bf16_supported()
    assert ok or "BF16" in why  # a refusal always says why


@pytest.mark.slow
def test_bfloat16_training_runs_and_saves_float32_weights(prepared_data, tmp_path):
    ok, why = precision_probe.bf16_supported()
    if not ok:
        pytest.skip(f"this CPU cannot run BF16: {why}")
    # amp.init rewrites MXNet process-wide: train in a child process
    code = subprocess.run(
        [sys.executable, "-m", "fashionai", "train", "--preset", "demo", "--task", "skirt_length_labels",
         "--prepared", str(prepared_data), "--out", str(tmp_path), "--name", "bf16", "--dtype", "bfloat16",
         "--epochs", "2", "--data-shape", "32", "--batch-size", "8"], capture_output=True, text=True)
    assert code.returncode == 0, code.stderr[-2000:]
    run = tmp_path / "skirt_length_labels" / "bf16"
    params = mx.nd.load(str(run / "best.params"))
    assert {np.dtype(v.dtype) for v in params.values()} == {np.dtype("float32")}
    assert all(np.isfinite(v.asnumpy()).all() for v in params.values())
    losses = pd.read_csv(run / "metrics.csv")["train_loss"]
    assert np.isfinite(losses).all() and len(losses) == 2
