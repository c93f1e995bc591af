"""OpenVINO as a prediction engine: the run's ONNX export, read and compiled by OpenVINO's CPU
plugin, called like a Gluon net (NDArray in, logits NDArray out) so that prediction, the precision
guard and the benchmarks run it unchanged.

Why: MXNet 1.9.1 bundles oneDNN 2.4.4, which leaves most of a recent Xeon unused (BF16 on AMX,
INT8 on VNNI / AMX); OpenVINO's CPU plugin runs the same graph with current kernels. Training stays
MXNet; the forward pass of prediction moves (and, with `train --feature-engine`, the feature
cache's backbone pass: fashionai.training.backbone_pass).

| precision | what OpenVINO runs                                                  | where                  |
|-----------|---------------------------------------------------------------------|------------------------|
| `fp32`    | the ONNX graph, `INFERENCE_PRECISION_HINT` f32                      | any x86 CPU            |
| `bf16`    | the same graph, hint bf16 (OpenVINO's own default where it has BF16)| CPUs it reports BF16 on|
| `int8`    | the graph with FakeQuantize nodes calibrated on the run's train     | CPUs it reports INT8 on|
|           | images (fashionai.inference.ov_int8), cached in `<run>/openvino/`   |                        |

The ONNX export (`export.export_run`, weights as initializers, dynamic batch) is cached per
weights file in `<run>/openvino/export-<which>/` and made again when the params' SHA-1 changes.
The graph's final softmax is cut off, so the net returns logits like the Gluon net does and
prediction's own softmax gives the same probabilities. The runtime underneath (the Core, the
compile, the net wrapper, the thread count) is fashionai.core.ov_runtime's, shared with the feature
cache's backbone pass.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from fashionai.core.io import params_fingerprint, write_json
from fashionai.core.ov_runtime import (EngineError, OpenVinoNet, compile_model, engine_threads, off_cpu, one_line,
                                       openvino_core)
from fashionai.core.runinfo import RunInfo
from fashionai.inference.export import export_run
from fashionai.inference.ov_int8 import OPENVINO_DIR, quantized_model

if TYPE_CHECKING:
    import openvino as ov

log = logging.getLogger(__name__)

ENGINES: tuple[str, ...] = ("mxnet", "openvino")  # the reference first
OV_PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "int8")
CAPABILITY = {"fp32": "FP32", "bf16": "BF16", "int8": "INT8"}  # OPTIMIZATION_CAPABILITIES of the CPU plugin


def check_engine(name: str) -> str:
    """Return `name` if it is an engine, else a ValueError listing the valid ones."""
    if name not in ENGINES:
        raise ValueError(f"unknown engine {name!r}; valid: {', '.join(ENGINES)}")
    return name


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
    if off_cpu(ctx):
        return False, off_cpu(ctx)
    core, why = openvino_core()
    if core is None:
        return False, why
    capabilities = core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    if CAPABILITY[precision] not in capabilities:
        return False, f"OpenVINO's CPU plugin has no {CAPABILITY[precision]} kernels on this CPU " \
                      f"(it reports {', '.join(capabilities)})"
    return True, ""


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
        raise EngineError(f"OpenVINO could not prepare {run.run_dir} ({which}) in {precision}: {one_line(err)}") \
            from None
    log.info("%s (%s) runs on OpenVINO in %s, %d threads", run.run_dir, which, precision, engine_threads())
    return net

