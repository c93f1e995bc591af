"""Device contexts, resolved once per command and passed down explicitly.

Specs: `auto` (every visible GPU, else the CPU), `first` (the first GPU, else the CPU), `cpu`,
`cpu:N` (N CPU contexts: how the multi-device code is exercised on machines without a GPU), `gpu`
(all GPUs), `gpu:0,1`.
`num_gpus` (the tutorial / GluonCV flag) overrides the spec: 0 = CPU, N = gpu:0..N-1.
With no usable GPU (none visible, or a CPU-only MXNet wheel) a GPU request falls back to the CPU
with one warning; asking for a GPU index that does not exist while others do is an error, and so
is a GPU the installed MXNet build has no kernels for (`fashionai.core.gpu`: Hopper and newer with
the 1.9.1 wheels), said in one line before the first GPU operator would crash.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from fashionai.core.gpu import installed_build, query_gpus, unusable_reason

if TYPE_CHECKING:
    import mxnet as mx

log = logging.getLogger(__name__)


def visible_gpus() -> int:
    """How many GPUs MXNet can use (0 with a CPU-only wheel, which has no CUDA feature)."""
    import mxnet as mx

    try:
        if not mx.runtime.Features().is_enabled("CUDA"):
            return 0
        return mx.context.num_gpus()
    except mx.base.MXNetError:  # driver missing or broken: same as no GPU
        return 0


def _count(text: str, spec: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"device spec {spec!r}: expected a positive count after 'cpu:', e.g. cpu:2")
    return int(text)


def _gpu_ids(text: str, spec: str, available: int) -> list[int]:
    """GPU indices of `gpu`, `gpu:0,1`; ValueError for a malformed list."""
    if not text:
        return list(range(available))
    parts = [p.strip() for p in text.split(",")]
    if not all(p.isdigit() for p in parts) or len(set(parts)) != len(parts):
        raise ValueError(f"device spec {spec!r}: expected distinct GPU indices, e.g. gpu:0,1")
    return [int(p) for p in parts]


def _gpus(ids: list[int], spec: str, available: int) -> list[mx.Context]:
    import mxnet as mx

    if available == 0:
        log.warning("no GPU usable by MXNet (none visible or a CPU-only build); %s falls back to the CPU",
                    spec)
        return [mx.cpu(0)]
    missing = [i for i in ids if i >= available]
    if missing:
        raise ValueError(f"device spec {spec!r}: GPU(s) {missing} do not exist; {available} visible "
                         f"(indices 0..{available - 1})")
    check_runnable(ids)
    return [mx.gpu(i) for i in ids]


def share_of(available: int, env=None) -> list[int]:
    """The GPUs this process takes of the `available` ones: all of them, or for a worker of a
    `fashionai launch` job its slice by local rank (FASHIONAI_LOCAL_RANK of the host's
    FASHIONAI_PROCESSES_PER_HOST workers), so local workers never all train on the same GPUs; with
    more workers than GPUs, they take them in turn."""
    env = os.environ if env is None else env
    rank, count = env.get("FASHIONAI_LOCAL_RANK", ""), env.get("FASHIONAI_PROCESSES_PER_HOST", "")
    if not (rank.isdigit() and count.isdigit()) or int(count) <= 1:
        return list(range(available))
    rank, count = int(rank), int(count)
    per = available // count
    ids = list(range(rank * per, (rank + 1) * per)) if per else [rank % available]
    log.info("worker %d of %d on this host: GPU(s) %s of %d", rank, count, ids, available)
    return ids


def driver_index(i: int, visible: str | None) -> int:
    """The driver's (nvidia-smi's) index of MXNet's `gpu(i)` under CUDA_VISIBLE_DEVICES `visible`."""
    order = [p.strip() for p in (visible or "").split(",") if p.strip()]
    return int(order[i]) if i < len(order) and all(p.isdigit() for p in order) else i


def check_runnable(ids: list[int], gpus=None, build: str | None = None) -> None:
    """ValueError naming the first of MXNet's GPUs `ids` that the installed build has no kernels
    for; silent where the driver reports nothing to check against (no nvidia-smi)."""
    gpus = {g.index: g for g in (query_gpus() if gpus is None else gpus)}
    build = build or installed_build()
    if not gpus or build is None:
        return
    for i in ids:
        gpu = gpus.get(driver_index(i, os.environ.get("CUDA_VISIBLE_DEVICES")))
        reason = unusable_reason(gpu, build) if gpu is not None else None
        if reason:
            raise ValueError(f"gpu({i}) cannot run here: {reason} (`fashionai doctor` shows the details)")


def resolve_devices(spec: str = "auto", num_gpus: int | None = None) -> list[mx.Context]:
    """The contexts to run on, e.g. [gpu(0), gpu(1)] or [cpu(0)]; logged once."""
    import mxnet as mx

    spec = (spec or "auto").strip().lower()
    available = visible_gpus()
    if num_gpus is not None:
        if num_gpus < 0:
            raise ValueError(f"--num-gpus must be >= 0, got {num_gpus}")
        ctx = [mx.cpu(0)] if num_gpus == 0 else _gpus(list(range(num_gpus)), f"num_gpus={num_gpus}", available)
    elif spec == "auto":
        ctx = _gpus(share_of(available), spec, available) if available else [mx.cpu(0)]
        if not available:
            log.info("no GPU visible to MXNet: running on the CPU")
    elif spec == "first":  # one device: this process's first GPU, else the CPU (the demo preset)
        ctx = _gpus(share_of(available)[:1], spec, available) if available else [mx.cpu(0)]
    elif spec == "cpu":
        ctx = [mx.cpu(0)]
    elif spec.startswith("cpu:"):
        ctx = [mx.cpu(i) for i in range(_count(spec[4:], spec))]
    elif spec == "gpu":
        ctx = _gpus(share_of(available), spec, available)
    elif spec.startswith("gpu:"):
        ctx = _gpus(_gpu_ids(spec[4:], spec, available), spec, available)
    else:
        raise ValueError(f"unknown device spec {spec!r}; use auto, first, cpu, cpu:N, gpu or gpu:0,1")
    log.info("devices: %s", ", ".join(str(c) for c in ctx))
    return ctx


def context_list(ctx=None) -> list[mx.Context]:
    """`ctx` as a list: None -> [cpu()], one context -> [it], a list or tuple -> a list of it."""
    import mxnet as mx

    if ctx is None:
        return [mx.cpu()]
    return list(ctx) if isinstance(ctx, (list, tuple)) else [ctx]
