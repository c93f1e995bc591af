"""Inference precision: which numeric form of a trained net predict runs, and how `auto` picks one.

| precision | what runs                                                             | where                  |
|-----------|-----------------------------------------------------------------------|------------------------|
| `fp32`    | the Gluon net as trained, hybridized (static_alloc, static_shape)     | any device             |
| `fused`   | the same FP32 weights, graph partitioned by MXNet's oneDNN subgraph   | CPU, MKLDNN build      |
|           | backend (`MKLDNN` in 1.9.1): conv+BN+ReLU(+add) -> `_sg_mkldnn_conv`, |                        |
|           | dense -> `_sg_mkldnn_fully_connected`                                 |                        |
| `bf16`    | `amp.convert_hybrid_block(target_dtype="bfloat16")`                   | CPUs whose oneDNN has  |
|           |                                                                       | BF16 kernels (AVX-512) |
| `int8`    | post-training quantization (`quantize_net_v2`), calibrated on the     | CPU, MKLDNN build      |
|           | run's train images; cached in `<run>/quantized/`                      |                        |
| `auto`    | the fastest of those whose val mAP is within `MAP_TOLERANCE` of fp32, | measured once per      |
|           | decided by `choose_precision` and cached in `<run>/precision.json`    | params file + machine  |

Library functions default to `fp32` (exact, reproducible); the command line defaults to `auto`,
which fashionai.pipeline.precision resolves to one of the others before a net is loaded here.
A precision the machine cannot run is refused with a ValueError saying why, never replaced silently.
Nets returned by `load_net` carry their precision (`precision_of`), so `predict.predict_paths`
does not re-hybridize them (a plain re-hybridize would drop the fused backend).
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from fashionai.core import cpu
from fashionai.core.devices import context_list
from fashionai.core.runinfo import RunInfo
from fashionai.inference.openvino_net import check_engine, openvino_net, ov_availability
from fashionai.inference.quantize import quantized_net
from fashionai.model import load_run

if TYPE_CHECKING:
    import mxnet as mx

log = logging.getLogger(__name__)

PRECISIONS: tuple[str, ...] = ("fp32", "fused", "bf16", "int8")  # candidates, reference first
FUSED_BACKEND = "MKLDNN"  # MXNet 1.9.1's name for its oneDNN subgraph backend (2.x calls it ONEDNN)
PRECISION_TAG = "fashionai_precision"  # attribute load_net sets on the nets it returns
ENGINE_TAG = "fashionai_engine"

# --- what can run here ---------------------------------------------------------------------------


def check_precision(name: str, choices: Sequence[str] = PRECISIONS) -> str:
    """Return `name` if it is a precision, else a ValueError listing the valid ones."""
    if name not in choices:
        raise ValueError(f"unknown precision {name!r}; valid: {', '.join(choices)}")
    return name


def availability(precision: str, ctx: Sequence[mx.Context]) -> tuple[bool, str]:
    """(True, "") when `precision` can run on `ctx`, else (False, the reason).

    fused / bf16 / int8 are oneDNN (MKLDNN) CPU paths; BF16 is asked of the probe, which runs a
    tiny BF16 net, because CPU flags alone do not say which kernels oneDNN has.
    """
    import mxnet as mx

    check_precision(precision, PRECISIONS)
    if precision == "fp32":
        return True, ""
    gpus = [str(c) for c in ctx if c.device_type != "cpu"]
    if gpus:
        return False, f"{precision} is a oneDNN CPU path, not for {', '.join(gpus)}; use fp32 on GPUs"
    if not mx.runtime.Features().is_enabled("MKLDNN"):
        return False, "this MXNet build has no oneDNN (runtime feature MKLDNN is off)"
    if precision == "bf16":
        return cpu.bf16_supported()
    return True, ""


def engine_availability(engine: str, precision: str, ctx: Sequence[mx.Context]) -> tuple[bool, str]:
    """(True, "") when `engine` can run `precision` on `ctx`, else (False, the reason)."""
    if check_engine(engine) == "openvino":
        return ov_availability(precision, ctx)
    return availability(precision, ctx)


def require(precision: str, ctx: Sequence[mx.Context], engine: str = "mxnet") -> None:
    """ValueError naming the reason when `engine` cannot run `precision` on `ctx`."""
    ok, why = engine_availability(engine, precision, ctx)
    if not ok:
        where = "" if engine == "mxnet" else f" on {engine}"
        raise ValueError(f"precision {precision}{where} is not supported on this machine: {why}")


def precision_of(net) -> str | None:
    """The precision `load_net` prepared `net` in; None for a net that did not come from it."""
    return getattr(net, PRECISION_TAG, None)


def engine_of(net) -> str:
    """The engine `load_net` prepared `net` for (mxnet for any other net)."""
    return getattr(net, ENGINE_TAG, "mxnet")


def load_net(
    run_dir: str | Path, precision: str, *, ctx=None, which: str = "best", engine: str = "mxnet",
) -> tuple[mx.gluon.HybridBlock, RunInfo]:
    """(net, run): the run's `<which>.params` in `precision` on `engine`, ready to run on `ctx`.

    int8 comes from the run's quantization cache (built on first use, see `quantized_net`); the
    OpenVINO engine's net (fashionai.inference.openvino_net) is called like a Gluon net.
    """
    ctx = context_list(ctx)
    require(precision, ctx, engine)
    if engine == "openvino":
        run = RunInfo.read(run_dir)
        net = openvino_net(run, precision, which)
    elif precision == "int8":
        run = RunInfo.read(run_dir)
        net = quantized_net(run, ctx=ctx, which=which)
    else:
        net, run = load_run(run_dir, ctx=ctx, which=which)
        net = convert(net, precision, ctx=ctx, data_shape=run.data_shape)
    setattr(net, PRECISION_TAG, precision)
    setattr(net, ENGINE_TAG, engine)
    log.info("%s (%s) runs in %s on %s", run_dir, which, precision, engine)
    return net, run


def convert(net: mx.gluon.HybridBlock, precision: str, *, ctx, data_shape: int) -> mx.gluon.HybridBlock:
    """The FP32 `net` as fp32, fused or bf16, hybridized with static_alloc / static_shape."""
    import mxnet as mx

    if precision == "fp32":
        net.hybridize(static_alloc=True, static_shape=True)
    elif precision == "fused":
        # the partition happens at the first forward; the backend is kept by later calls
        net.hybridize(backend=FUSED_BACKEND, static_alloc=True, static_shape=True)
    elif precision == "bf16":
        from mxnet.contrib import amp

        net.hybridize(static_alloc=True, static_shape=True)
        net(mx.nd.zeros((1, 3, data_shape, data_shape), ctx=ctx[0])).wait_to_read()  # the graph to convert
        # ctx matters: its default is gpu(0). No amp.init(): that would patch MXNet process-wide.
        net = amp.convert_hybrid_block(net, target_dtype="bfloat16", cast_optional_params=True, ctx=ctx)
        net.hybridize(static_alloc=True, static_shape=True)
    else:
        raise ValueError(f"convert: {precision} is not an FP32 conversion (int8 goes through quantized_net)")
    return net


def fused_ops(net: mx.gluon.HybridBlock, data_shape: int) -> list[str]:
    """Names of the oneDNN-fused operators (`_sg_mkldnn_*`) in `net`'s graph, read from its export:
    proof that a precision really runs fused kernels (empty for a plain graph)."""
    import mxnet as mx

    ctx = next(iter(net.collect_params().values())).list_ctx()[0]
    net(mx.nd.zeros((1, 3, data_shape, data_shape), ctx=ctx)).wait_to_read()
    with tempfile.TemporaryDirectory() as tmp:
        net.export(str(Path(tmp) / "net"))
        nodes = json.loads((Path(tmp) / "net-symbol.json").read_text())["nodes"]
    return [n["op"] for n in nodes if n["op"].startswith("_sg_mkldnn")]
