"""The frozen backbone's forward pass that fills the feature cache (fashionai.training.features):
the net up to its head's input as an MXNet graph (`feature_block`), and the engine that runs it
(`BackbonePass`, `fashionai train --feature-engine`).

| engine     | what computes the features                                                          |
|------------|-------------------------------------------------------------------------------------|
| `mxnet`    | the graph on MXNet (the reference, and the default)                                 |
| `openvino` | its ONNX export compiled by OpenVINO's CPU plugin in FP32                           |
|            | (fashionai.core.ov_runtime.openvino_block)                                          |
| `auto`     | OpenVINO where it runs, agrees and ran the first batch faster, else MXNet           |

OpenVINO's features are held to MXNet's on the first batch there is to compute (`FEATURE_TOLERANCE`);
where they differ, MXNet computes them, said in a warning. OpenVINO that cannot run here (not
installed, GPU devices, a BF16 or FP16 run, a failed export or compile) is one error line with
`openvino`, one warning line and MXNet with `auto`. The engine is part of the cache file's name.

Measured on this project's 2-core CPU (Xeon, AVX-512 + VNNI, no AMX; OpenVINO 2026.4.1, MXNet
1.9.1, OMP_NUM_THREADS=2), resnet50_v2 at 224 px with random weights, batches of 32, medians of
interleaved rounds, OpenVINO FP32 over MXNet FP32:

| case                                                     | MXNet img/s | pinned (OV default) | unpinned |
|----------------------------------------------------------|-------------|---------------------|----------|
| idle, 128 random inputs, 6 pairs                         | 21-26       | 1.23x               |          |
| idle, 96 random inputs, 4 rounds                         | 26.0        | 1.19x               | 1.21x    |
| idle, 96 JPEGs through `_extract` (decoding too), 3 + 4  | 23.5, 21.6  | 1.13x, 1.25x        | 1.19x, 1.22x |
| beside another job using ~1 core, 96 inputs, 4-6 rounds  | 11-14       | 0.96x, 1.00x        | 1.13x, 1.18x |
| the same, both engines on 1 thread, 64 inputs, 4 rounds  | 12.8        | 1.21x               | 1.21x    |

Exporting and compiling the graph takes 10-15 s, MXNet's pass over 250-350 images on an idle
machine: at 1.2x, `openvino` pays back from about 2,000 inputs (images x cached views; a full
FashionAI task's train split has thousands of images), and on a busy machine not at all. Hence the
default `mxnet` (also the reference, and what runs made before the choice used: no RUN_LEGACY
entry), unpinned OpenVINO threads (`PINNING`), and an `auto` that decides by measuring, not by a
rule: it runs the agreement check (each engine's first pass of the batch, their warm-up), times
one more pass of that batch on each, and keeps OpenVINO only when it is `SPEED_MARGIN` times faster
(idle here: yes; beside another job: no). That costs the export and three batch passes, paid only
where there is something to compute: where MXNet's cache file already holds every image, auto
reads it without exporting (fashionai.training.features).
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from fashionai.core.ov_runtime import EngineError, engine_threads, off_cpu, openvino_block, openvino_core
from fashionai.model import head_attr
from fashionai.training.config import CHOICES

if TYPE_CHECKING:
    import mxnet as mx

log = logging.getLogger(__name__)

FEATURE_ENGINES: tuple[str, ...] = CHOICES["feature_engine"]
# max |OpenVINO - MXNet| / max |MXNet| over the first batch's features (`feature_error`). Measured,
# OpenVINO FP32 against MXNet FP32, random weights, 16 images: mobilenet0.25 5.8e-7, resnet18_v1b
# 8.4e-7, resnet50_v2 1.3e-6 (96 px) and 5.2e-7 (224 px), mobilenetv2_1.0 6.6e-6; MXNet's own BF16
# graph against its FP32 one (resnet50_v2, 96 px) 1.0e-2, and a wrong graph is off by O(1). 1e-3 is
# 150x the largest FP32 difference and 10x below a BF16 path.
FEATURE_TOLERANCE = 1e-3
SPEED_MARGIN = 1.1  # auto keeps OpenVINO only at this speed-up over MXNet on the first batch (timing noise)
# OpenVINO's threads unpinned: as fast on an idle machine (1.21x vs 1.19x and 1.22x vs 1.25x MXNet),
# faster beside another job (1.13x and 1.18x vs 1.00x and 0.96x): figures in the module's docstring
PINNING = False


def feature_block(net: mx.gluon.HybridBlock, cast: bool = True) -> mx.gluon.SymbolBlock:
    """The net up to its head's input, as a graph sharing the net's parameters: (B, 3, S, S) -> (B, C)
    float32.

    Found in the graph rather than by model-specific attributes: the head's FullyConnected node is
    the one fed the head's weight, and its data input is the pooled feature map in every zoo net.
    Under BF16 AMP (`--dtype bfloat16`, process-wide) both arrive through AMP's cast nodes, which
    are looked through (taken at face value, the node "fed the weight" was the weight's own cast).
    `cast=False` leaves out the final cast to float32: a no-op without AMP, and an op MXNet's ONNX
    exporter lacks (the OpenVINO feature pass exports that graph).
    """
    import mxnet as mx

    head = getattr(net, head_attr(net))
    dense = head if isinstance(head, mx.gluon.nn.Dense) else list(head._children.values())[-1]
    data = mx.sym.var("data")
    features = mx.sym.flatten(_classifier_input(net(data), dense.weight.name))
    features = mx.sym.amp_cast(features, dtype="float32") if cast else features
    with warnings.catch_warnings():  # "cannot decide type for data": it is given at the first call
        warnings.simplefilter("ignore")
        block = mx.gluon.SymbolBlock(features, data, params=net.collect_params())
    block.hybridize(static_alloc=True, static_shape=True)
    return block


AMP_CASTS = ("amp_cast", "amp_multicast")  # output k of amp_multicast is its input k, cast


def _classifier_input(graph: mx.sym.Symbol, weight: str) -> mx.sym.Symbol:
    """The symbol the FullyConnected node that uses `weight` classifies, AMP casts looked through."""
    nodes = json.loads(graph.tojson())["nodes"]

    def source(entry: list[int]) -> tuple[int, int]:
        node, index = entry[0], entry[1]
        while nodes[node]["op"] in AMP_CASTS:
            node, index = nodes[node]["inputs"][index if nodes[node]["op"] == "amp_multicast" else 0][:2]
        return node, index

    dense = [n for n in nodes if n["op"] == "FullyConnected" and nodes[source(n["inputs"][1])[0]]["name"] == weight]
    if len(dense) != 1:
        raise ValueError(f"cannot find the classifier input of the graph (FullyConnected nodes using {weight}: "
                         f"{len(dense)})")
    node, index = source(dense[0]["inputs"][0])
    internals, name = graph.get_internals(), nodes[node]["name"]
    outputs = [o for o in internals.list_outputs() if o in (f"{name}_output", f"{name}_output{index}")]
    if not outputs:
        raise ValueError(f"cannot find output {index} of {name}, the classifier's input, in the graph")
    return internals[outputs[0]]


def feature_error(reference: np.ndarray, other: np.ndarray) -> float:
    """max |other - reference| relative to the reference's scale (its max |value|): (B, C) arrays."""
    return float(np.abs(other - reference).max() / max(float(np.abs(reference).max()), 1e-12))


def openvino_unavailable(dtype: str, ctx: Sequence) -> str:
    """Why OpenVINO cannot compute this run's features here ('' when it can)."""
    if dtype != "float32":
        return f"OpenVINO computes FP32 features and this run trains in {dtype} (its features come from its " \
               f"{dtype} graph): use --feature-engine mxnet or --dtype float32"
    return off_cpu(ctx) or openvino_core()[1]


def _seconds(net, x: mx.nd.NDArray) -> float:
    """Seconds `net` takes for `x`, to the numbers on the host."""
    start = time.perf_counter()
    net(x).asnumpy()
    return time.perf_counter() - start


class BackbonePass:
    """The backbone pass of `--cache-features` on `engine` (TrainConfig.feature_engine): (B, 3, S, S)
    NDArray -> (B, C) float32 numpy. `engine` is where the features come from: 'openvino' from the
    start where it is wanted and can run (`pending` until `check` holds it to MXNet), 'mxnet' else."""

    def __init__(self, net: mx.gluon.HybridBlock, engine: str, dtype: str, ctx: Sequence, size: int):
        if engine not in FEATURE_ENGINES:
            raise ValueError(f"unknown feature engine {engine!r}; valid: {', '.join(FEATURE_ENGINES)}")
        self.net, self.wanted, self.ctx, self.size = net, engine, ctx[0], size
        self.block = feature_block(net)
        self.ov = None
        self.engine, self.pending = "mxnet", False
        if engine != "mxnet":
            why = openvino_unavailable(dtype, ctx)
            if why:
                self._refuse(why)
            else:
                self.engine, self.pending = "openvino", True

    def _refuse(self, why: str) -> None:
        """OpenVINO cannot run: an EngineError when it was asked for by name, else MXNet, said once."""
        if self.wanted == "openvino":
            raise EngineError(f"--feature-engine openvino: {why}")
        log.warning("--feature-engine auto: %s; the features are computed with MXNet", why)
        self.engine = "mxnet"

    def keep_mxnet(self, why: str) -> None:
        """auto: MXNet without the check (e.g. its features are all cached already), said once."""
        log.info("--feature-engine auto: MXNet (%s)", why)
        self.engine, self.pending = "mxnet", False

    def __call__(self, x: mx.nd.NDArray) -> np.ndarray:
        assert not self.pending, "check() the OpenVINO pass before it computes features"
        if self.ov is not None:
            return self.ov(x).asnumpy()
        return self.block(x.as_in_context(self.ctx)).asnumpy()

    def check(self, x: mx.nd.NDArray) -> None:
        """Compile OpenVINO's pass and hold its features to MXNet's on `x`, the first batch to
        compute: OpenVINO from here on if they agree (and, for auto, it is faster), else MXNet."""
        self.pending = False
        try:
            ov = openvino_block(feature_block(self.net, cast=False), self.size, pinning=PINNING)
        except EngineError as err:
            self._refuse(str(err))
            return
        error = feature_error(self.block(x.as_in_context(self.ctx)).asnumpy(), ov(x).asnumpy())
        if error > FEATURE_TOLERANCE:
            log.warning("OpenVINO's features differ from MXNet's by %.2g of their scale on the first batch "
                        "(tolerance %g): the features are computed with MXNet", error, FEATURE_TOLERANCE)
            self.engine = "mxnet"
            return
        speed = ""
        if self.wanted == "auto":  # the calls above were each engine's first: time a warm one
            mx_s, ov_s = _seconds(self.block, x.as_in_context(self.ctx)), _seconds(ov, x)
            speed = f"; {len(x) / mx_s:.1f} img/s on MXNet, {len(x) / ov_s:.1f} on OpenVINO"
            if ov_s * SPEED_MARGIN > mx_s:
                log.info("--feature-engine auto: MXNet (OpenVINO agrees with MXNet to %.1e but is not %gx faster%s)",
                         error, SPEED_MARGIN, speed)
                self.engine = "mxnet"
                return
        self.ov = ov
        log.info("features on OpenVINO fp32, %d threads: the first batch agrees with MXNet to %.1e of the "
                 "feature scale (tolerance %g)%s", engine_threads(), error, FEATURE_TOLERANCE, speed)
