"""OpenVINO as a prediction engine: the run's ONNX export, read and compiled by OpenVINO's CPU
plugin, called like a Gluon net (NDArray in, logits NDArray out) so that prediction, the precision
guard and the benchmarks run it unchanged.

Why: MXNet 1.9.1 bundles oneDNN 2.4.4, which leaves most of a recent Xeon unused (BF16 on AMX,
INT8 on VNNI / AMX); OpenVINO's CPU plugin runs the same graph with current kernels. Training stays
MXNet; only the forward pass of prediction moves.

| precision | what OpenVINO runs                                                  | where                  |
|-----------|---------------------------------------------------------------------|------------------------|
| `fp32`    | the ONNX graph, `INFERENCE_PRECISION_HINT` f32                      | any x86 CPU            |
| `bf16`    | the same graph, hint bf16 (OpenVINO's own default where it has BF16)| CPUs it reports BF16 on|
| `int8`    | the graph with FakeQuantize nodes calibrated on the run's train     | CPUs it reports INT8 on|
|           | images (fashionai.inference.ov_int8), cached in `<run>/openvino/`   |                        |

The ONNX export (`export.export_run`, weights as initializers, dynamic batch) is cached per
weights file in `<run>/openvino/export-<which>/` and made again when the params' SHA-1 changes.
The graph's final softmax is cut off, so the net returns logits like the Gluon net does and
prediction's own softmax gives the same probabilities. Threads: `OMP_NUM_THREADS` as the runtime
set it (the affinity mask and the cgroup quota), as `INFERENCE_NUM_THREADS`.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fashionai.core.cpu import usable_cores
from fashionai.core.io import params_fingerprint, write_json
from fashionai.core.runinfo import RunInfo
from fashionai.inference.export import export_run
from fashionai.inference.ov_int8 import OPENVINO_DIR, quantized_model

if TYPE_CHECKING:
    import mxnet as mx
    import openvino as ov

log = logging.getLogger(__name__)

ENGINES: tuple[str, ...] = ("mxnet", "openvino")  # the reference first
OV_PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "int8")
OPENVINO_PIN = "openvino==2026.4.1"
INSTALL = f'pip install -c constraints.txt "{OPENVINO_PIN}" (scripts/bootstrap.sh installs it)'
HINTS = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}  # INFERENCE_PRECISION_HINT (int8: the unquantized rest)
CAPABILITY = {"fp32": "FP32", "bf16": "BF16", "int8": "INT8"}  # OPTIMIZATION_CAPABILITIES of the CPU plugin


def check_engine(name: str) -> str:
    """Return `name` if it is an engine, else a ValueError listing the valid ones."""
    if name not in ENGINES:
        raise ValueError(f"unknown engine {name!r}; valid: {', '.join(ENGINES)}")
    return name


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


def openvino_version() -> str | None:
    """The installed OpenVINO's version (a choice measured with one is measured again with another)."""
    try:
        import openvino as ov
    except ImportError:
        return None
    return ov.__version__


def ov_availability(precision: str, ctx: Sequence) -> tuple[bool, str]:
    """(True, "") when OpenVINO can run `precision` on `ctx` here, else (False, the reason)."""
    if precision not in OV_PRECISIONS:
        return False, f"OpenVINO runs {', '.join(OV_PRECISIONS)}, not {precision}"
    gpus = [str(c) for c in ctx if getattr(c, "device_type", "cpu") != "cpu"]
    if gpus:
        return False, f"the OpenVINO engine runs on the CPU, not on {', '.join(gpus)}"
    core, why = openvino_core()
    if core is None:
        return False, why
    capabilities = core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    if CAPABILITY[precision] not in capabilities:
        return False, f"OpenVINO's CPU plugin has no {CAPABILITY[precision]} kernels on this CPU " \
                      f"(it reports {', '.join(capabilities)})"
    return True, ""


def engine_threads(env=None) -> int:
    """OpenVINO's thread count: OMP_NUM_THREADS as the runtime or the user set it, else the usable
    cores (affinity mask and cgroup quota), so both engines use the machine's share alike."""
    env = os.environ if env is None else env
    value = env.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else usable_cores()


def onnx_export(run: RunInfo, which: str) -> Path:
    """The run's `<which>.params` as ONNX (softmax included, dynamic batch), exported once per
    params content into `<run>/openvino/export-<which>/` and reused while the SHA-1 matches."""
    folder = run.run_dir / OPENVINO_DIR
    out, meta = folder / f"export-{which}", folder / f"export-{which}.json"
    source = params_fingerprint(run.weights(which))
    try:
        saved = json.loads(meta.read_text()).get("source", {})
    except (OSError, ValueError):
        saved = {}
    onnx_file = out / f"{run.task}.onnx"
    if saved.get("sha1") == source["sha1"] and onnx_file.is_file():
        return onnx_file
    folder.mkdir(exist_ok=True)
    meta.unlink(missing_ok=True)
    written = export_run(run.run_dir, out, which=which, onnx=True, batch_size=None, overwrite=True)
    write_json(meta, {"source": source})
    return written["onnx"]


def logits_model(model: ov.Model) -> ov.Model:
    """`model` with its final Softmax cut off (its input becomes the output): logits, as the Gluon
    net gives, so prediction's softmax is applied once."""
    import openvino as ov

    last = model.outputs[0].get_node().input_value(0).get_node()
    if last.get_type_name() != "Softmax":
        return model
    return ov.Model([last.input_value(0)], model.get_parameters(), "logits")


class OpenVinoNet:
    """A compiled OpenVINO model called like a Gluon net: (N, 3, S, S) NDArray -> (N, K) logits
    NDArray (float32, on the CPU). One synchronous infer request, all of the engine's threads."""

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


class EngineError(ValueError):
    """OpenVINO could not prepare a run's net (not installed, export, read, calibration or compile
    failed): one line, so that the caller can say it and run MXNet fp32 instead."""


def openvino_net(run: RunInfo, precision: str, which: str) -> OpenVinoNet:
    """The run's net on OpenVINO at `precision` (int8 from its calibrated cache, built on first use);
    any failure on the way is an EngineError of one line."""
    core, why = openvino_core()
    if core is None:
        raise EngineError(why)
    try:
        model = core.read_model(str(onnx_export(run, which)))
        if precision == "int8":
            model = quantized_model(run, which, model, core, engine_threads())
        net = OpenVinoNet(compile_model(logits_model(model), precision), precision)
    except (RuntimeError, OSError, ImportError, ValueError) as err:
        reason = str(err).strip().splitlines()[-1][:300] if str(err).strip() else type(err).__name__
        raise EngineError(f"OpenVINO could not prepare {run.run_dir} ({which}) in {precision}: {reason}") from None
    log.info("%s (%s) runs on OpenVINO in %s, %d threads", run.run_dir, which, precision, engine_threads())
    return net
