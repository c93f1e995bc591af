"""OpenVINO as a runtime, below the layers that use it: one Core per process, FP32 / BF16 compiles
for the CPU, a compiled model called like a Gluon net, and any FP32 Gluon block (one input `data`)
exported to ONNX and compiled. Prediction's engine (fashionai.inference.openvino_net) and the
feature cache's backbone pass (fashionai.training.backbone_pass) both build on it.

Threads: `OMP_NUM_THREADS` as the runtime set it (the affinity mask and the cgroup quota), as
`INFERENCE_NUM_THREADS`, so both engines use the machine's share alike.
"""

from __future__ import annotations

import functools
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fashionai.core.cpu import usable_cores

if TYPE_CHECKING:
    import mxnet as mx
    import openvino as ov

OPENVINO_PIN = "openvino==2026.4.1"
INSTALL = f'pip install -c constraints.txt "{OPENVINO_PIN}" (scripts/bootstrap.sh installs it)'
HINTS = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}  # INFERENCE_PRECISION_HINT (int8: the unquantized rest)


class EngineError(ValueError):
    """OpenVINO could not prepare a net (not installed, export, read, calibration or compile failed):
    one line, so that the caller can say it and run MXNet instead."""


def one_line(err: BaseException) -> str:
    """The last line of an exception's message (OpenVINO's and the exporter's run to pages), or its type."""
    text = str(err).strip()
    return text.splitlines()[-1][:300] if text else type(err).__name__


@functools.lru_cache(maxsize=1)
def openvino_core() -> tuple[ov.Core | None, str]:
    """(OpenVINO's Core, "") or (None, why it cannot be had: not installed, or broken). One per
    process, as OpenVINO advises: the availability checks, each net and its compile share it."""
    try:
        import openvino as ov

        return ov.Core(), ""
    except ImportError:
        return None, f"OpenVINO is not installed: {INSTALL}"
    except Exception as err:  # noqa: BLE001 - a broken install says anything; one line is what is kept
        return None, f"OpenVINO does not start: {str(err).strip().splitlines()[-1][:200]}"


def off_cpu(ctx: Sequence) -> str:
    """Why OpenVINO, a CPU engine, cannot run on `ctx` ('' when every device is a CPU)."""
    gpus = [str(c) for c in ctx if getattr(c, "device_type", "cpu") != "cpu"]
    return f"the OpenVINO engine runs on the CPU, not on {', '.join(gpus)}" if gpus else ""


def engine_threads(env=None) -> int:
    """OpenVINO's thread count: OMP_NUM_THREADS as the runtime or the user set it, else the usable
    cores (affinity mask and cgroup quota), so both engines use the machine's share alike."""
    env = os.environ if env is None else env
    value = env.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else usable_cores()


class OpenVinoNet:
    """A compiled OpenVINO model called like a Gluon net: (N, 3, S, S) NDArray -> (N, K) NDArray
    (float32, on the CPU). One synchronous infer request, all of the engine's threads."""

    def __init__(self, compiled, precision: str):
        self.compiled, self.precision = compiled, precision
        self.request = compiled.create_infer_request()

    def __call__(self, x: mx.nd.NDArray) -> mx.nd.NDArray:
        import mxnet as mx

        data = x.asnumpy() if hasattr(x, "asnumpy") else np.asarray(x)
        out = self.request.infer({0: np.ascontiguousarray(data, dtype=np.float32)})
        return mx.nd.array(next(iter(out.values())), dtype="float32")


def compile_model(model: ov.Model, precision: str, threads: int | None = None, pinning: bool | None = None):
    """`model` compiled for the CPU at `precision`'s inference hint, one stream of `threads`;
    `pinning` sets ENABLE_CPU_PINNING (None: OpenVINO's default, on)."""
    core, why = openvino_core()
    if core is None:
        raise ValueError(why)
    config = {"INFERENCE_NUM_THREADS": threads or engine_threads(), "PERFORMANCE_HINT": "LATENCY",
              "NUM_STREAMS": 1, "INFERENCE_PRECISION_HINT": HINTS[precision]}
    if pinning is not None:
        config["ENABLE_CPU_PINNING"] = pinning
    return core.compile_model(model, "CPU", config)


def block_onnx(block: mx.gluon.HybridBlock, size: int, folder: Path) -> Path:
    """`block` (one input `data`, FP32, no AMP casts: MXNet 1.9.1's exporter has no amp_cast) as
    `<folder>/block.onnx` with a dynamic batch, traced at (1, 3, size, size). OpenVINO reads the
    exporter's graph as it is (its weights, listed among the inputs too, are taken as constants)."""
    import mxnet as mx

    block(mx.nd.zeros((1, 3, size, size))).wait_to_read()  # export needs the traced graph
    block.export(str(folder / "block"))
    path, root = folder / "block.onnx", logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.WARNING))  # the exporter logs each step at INFO on the root logger
    try:
        mx.onnx.export_model(str(folder / "block-symbol.json"), str(folder / "block-0000.params"),
                             in_shapes=[(1, 3, size, size)], in_types=np.float32, onnx_file_path=str(path),
                             dynamic=True, dynamic_input_shapes=[(None, 3, size, size)])
    finally:
        root.setLevel(level)
    return path


def openvino_block(block: mx.gluon.HybridBlock, size: int, precision: str = "fp32",
                   pinning: bool | None = None) -> OpenVinoNet:
    """A Gluon block (e.g. the backbone up to the head, fashionai.training.backbone_pass) on OpenVINO
    at `precision` (`pinning`: compile_model's): exported to ONNX in a temporary folder, read and
    compiled; any failure on the way is an EngineError of one line."""
    core, why = openvino_core()
    if core is None:
        raise EngineError(why)
    try:
        with tempfile.TemporaryDirectory(prefix="fashionai-ov-") as tmp:
            model = core.read_model(str(block_onnx(block, size, Path(tmp))))
            return OpenVinoNet(compile_model(model, precision, pinning=pinning), precision)
    # AttributeError: the exporter's word for an op it has no converter for
    except (RuntimeError, OSError, ImportError, ValueError, AttributeError) as err:
        raise EngineError(f"OpenVINO could not prepare {type(block).__name__} in {precision}: {one_line(err)}") \
            from None
