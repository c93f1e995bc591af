"""What this CPU is and can run: its model name, its feature flags, and BF16 answered by running it.

CPU flags do not tell the whole story (MXNet's oneDNN picks kernels by ISA and build options;
without AVX-512 its BF16 path falls through to an error), so the probe runs what would be run.
"""

from __future__ import annotations

import functools
import logging
import os
import warnings

log = logging.getLogger(__name__)


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask, e.g. a container's share)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@functools.lru_cache(maxsize=None)
def bf16_supported() -> tuple[bool, str]:
    """(True, "") when a BF16-converted conv + dense runs on the CPU; else (False, the reason)."""
    import mxnet as mx
    from mxnet.contrib import amp

    net = mx.gluon.nn.HybridSequential()
    net.add(mx.gluon.nn.Conv2D(8, 3, padding=1, in_channels=3), mx.gluon.nn.GlobalAvgPool2D(),
            mx.gluon.nn.Dense(2, in_units=8))
    net.initialize()
    net.hybridize()
    x = mx.nd.ones((2, 3, 8, 8))
    net(x).wait_to_read()
    try:
        # ctx: convert_hybrid_block's default is gpu(0), which fails on CPU-only builds for another reason
        with warnings.catch_warnings():  # "Cannot decide type for ... data": the input comes at the call
            warnings.simplefilter("ignore", UserWarning)
            converted = amp.convert_hybrid_block(net, target_dtype="bfloat16", cast_optional_params=True,
                                                 ctx=mx.cpu())
        converted(x).wait_to_read()
    except mx.base.MXNetError as err:
        flags = cpu_flags()
        has = [f for f in ("avx512f", "avx512_bf16", "amx_bf16") if f in flags]
        return False, f"MXNet's BF16 kernels failed: {str(err).splitlines()[-1][:120]}; CPU flags: " \
                      f"{', '.join(has) or 'no avx512f / avx512_bf16'}"
    return True, ""


def cpu_flags() -> set[str]:
    """The CPU feature flags Linux reports (empty elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def machine_name() -> str:
    """The CPU model (a speed decision made on one CPU does not hold on another)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()
