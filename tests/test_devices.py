"""Device specs -> MXNet contexts, with the fallback to the CPU where no GPU is usable."""

import logging

import mxnet as mx
import pytest

from fashionai.core import devices


@pytest.fixture
def no_gpu(monkeypatch):
    """A machine where MXNet sees no GPU (this CPU wheel already does; made explicit here)."""
    monkeypatch.setattr(devices, "visible_gpus", lambda: 0)


@pytest.fixture
def two_gpus(monkeypatch):
    """MXNet sees 2 GPUs: contexts are only built, never used, so no GPU is needed."""
    monkeypatch.setattr(devices, "visible_gpus", lambda: 2)


def test_cpu_specs(no_gpu):
    assert devices.resolve_devices("cpu") == [mx.cpu(0)]
    assert devices.resolve_devices("cpu:3") == [mx.cpu(0), mx.cpu(1), mx.cpu(2)]
    assert devices.resolve_devices(" CPU ") == [mx.cpu(0)]


def test_auto_and_gpu_requests_fall_back_to_the_cpu_with_one_warning(no_gpu, caplog):
    assert devices.resolve_devices("auto") == [mx.cpu(0)]
    with caplog.at_level(logging.WARNING, logger="fashionai.core.devices"):
        assert devices.resolve_devices("gpu:0,1") == [mx.cpu(0)]
        assert devices.resolve_devices("auto", num_gpus=2) == [mx.cpu(0)]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and all("falls back to the CPU" in r.getMessage() for r in warnings)


def test_gpus_where_they_exist(two_gpus):
    assert devices.resolve_devices("auto") == [mx.gpu(0), mx.gpu(1)]
    assert devices.resolve_devices("gpu") == [mx.gpu(0), mx.gpu(1)]
    assert devices.resolve_devices("gpu:1") == [mx.gpu(1)]
    assert devices.resolve_devices("cpu", num_gpus=1) == [mx.gpu(0)]  # the tutorial flag wins
    assert devices.resolve_devices("gpu", num_gpus=0) == [mx.cpu(0)]
    with pytest.raises(ValueError, match=r"GPU\(s\) \[2\] do not exist; 2 visible"):
        devices.resolve_devices("gpu:0,2")


@pytest.mark.parametrize("spec, message", [
    ("tpu", "unknown device spec"), ("cpu:0", "positive count"), ("cpu:x", "positive count"),
    ("gpu:0,0", "distinct GPU indices"), ("gpu:a", "distinct GPU indices"),
])
def test_malformed_specs_are_refused_with_an_example(no_gpu, spec, message):
    with pytest.raises(ValueError, match=message):
        devices.resolve_devices(spec)
    with pytest.raises(ValueError, match="must be >= 0"):
        devices.resolve_devices("auto", num_gpus=-1)


def test_the_cpu_wheel_reports_no_gpu():
    """This project's wheel is MXNet's CPU build: resolution must not need a GPU driver."""
    assert devices.visible_gpus() == 0
    assert devices.context_list(None) == [mx.cpu()] and devices.context_list(mx.cpu(1)) == [mx.cpu(1)]


@pytest.mark.parametrize("rank, count, visible, expected", [
    ("0", "2", 4, [0, 1]), ("1", "2", 4, [2, 3]), ("2", "3", 2, [0]), ("1", "1", 2, [0, 1]), ("", "", 2, [0, 1])])
def test_local_workers_of_a_job_take_their_own_gpus(monkeypatch, rank, count, visible, expected):
    """`fashionai launch` tells each worker its rank among the workers on its host: `auto` and `gpu`
    take that worker's slice, an explicit list stays as given."""
    monkeypatch.setattr(devices, "visible_gpus", lambda: visible)
    monkeypatch.setenv("FASHIONAI_LOCAL_RANK", rank)
    monkeypatch.setenv("FASHIONAI_PROCESSES_PER_HOST", count)
    assert devices.resolve_devices("auto") == devices.resolve_devices("gpu") == [mx.gpu(i) for i in expected]
    assert devices.resolve_devices("gpu:1") == [mx.gpu(1)]


def test_first_is_one_device_whatever_the_host_has(monkeypatch):
    """The demo preset's devices: one GPU (this worker's first) or the CPU; a 5-class demo task on 8
    GPUs would otherwise get one step an epoch."""
    monkeypatch.setattr(devices, "visible_gpus", lambda: 8)
    monkeypatch.delenv("FASHIONAI_LOCAL_RANK", raising=False)
    assert devices.resolve_devices("first") == [mx.gpu(0)]
    monkeypatch.setattr(devices, "visible_gpus", lambda: 0)
    assert devices.resolve_devices("first") == [mx.cpu(0)]
