"""What this CPU is and can run: its model name, its feature flags, and BF16 answered by running it.

CPU flags do not tell the whole story (MXNet's oneDNN picks kernels by ISA and build options;
without AVX-512 its BF16 path falls through to an error), so the probe runs what would be run.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import time
import warnings
from pathlib import Path

log = logging.getLogger(__name__)


CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


def affinity_cpus() -> set[int]:
    """The CPUs of this process's affinity mask (all of them where the OS has no masks)."""
    return os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))


def affinity_cores() -> int:
    """Cores in this process's affinity mask."""
    return len(affinity_cpus())


def usable_cores(root: Path | None = None, proc_cgroup: Path | None = None) -> int:
    """Cores this process may keep busy: the smaller of its affinity mask and its cgroup's CPU quota
    rounded up (a container limited to 2 CPUs on a 64-core host sees 64 cores in its mask, and 64
    threads sharing 2 CPUs' time wait at every OpenMP barrier for a descheduled one)."""
    quota = cgroup_cpu_quota(CGROUP_ROOT if root is None else root, PROC_CGROUP if proc_cgroup is None else proc_cgroup)
    cores = affinity_cores()
    return cores if quota is None else max(1, min(cores, math.ceil(quota - 1e-9)))


PROC_STAT = Path("/proc/stat")
BUSY_SAMPLE_S = 0.05  # how long `busy_cores` watches the cores (a process start pays it once)


def _cpu_times(stat: Path, cpus: set[int]) -> tuple[float, float]:
    """(busy, total) jiffies of the `cpuN` lines of /proc/stat for N in `cpus`."""
    busy = total = 0.0
    for line in stat.read_text().splitlines():
        name, *fields = line.split()
        if not name.startswith("cpu") or name == "cpu" or int(name[3:]) not in cpus:
            continue
        values = [float(v) for v in fields[:8]]
        idle = values[3] + (values[4] if len(values) > 4 else 0.0)  # idle + iowait
        busy, total = busy + sum(values) - idle, total + sum(values)
    return busy, total


def busy_cores(stat: Path | None = None, sample_s: float = BUSY_SAMPLE_S, sleep=time.sleep) -> float:
    """How many of this process's cores other work keeps busy right now: /proc/stat read twice,
    `sample_s` apart, over the CPUs of the affinity mask (0.0 where it cannot be read). Measured
    before this process does any work, so what it sees is everyone else."""
    stat = PROC_STAT if stat is None else stat
    cpus = affinity_cpus()
    try:
        busy0, total0 = _cpu_times(stat, cpus)
        sleep(sample_s)
        busy1, total1 = _cpu_times(stat, cpus)
    except (OSError, ValueError):
        return 0.0
    if total1 <= total0:
        return 0.0
    return len(cpus) * (busy1 - busy0) / (total1 - total0)


def _cgroup_paths(proc_cgroup: Path) -> dict[str, str]:
    """{controller ("" for cgroup v2): this process's cgroup path} from /proc/self/cgroup."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return {}
    paths = {}
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) == 3:
            for controller in parts[1].split(","):
                paths[controller] = parts[2]
    return paths


def _ancestors(base: Path, path: str) -> list[Path]:
    """`base/path` and each folder above it up to `base` (a limit anywhere above applies too);
    just `base` where the path is not mounted there (a container sees its own cgroup as the root)."""
    folder = base / path.strip("/")
    if not folder.is_dir():
        return [base]
    chain = [folder]
    while chain[-1] != base and base in chain[-1].parents:
        chain.append(chain[-1].parent)
    return chain


def _read_quota(files: tuple[Path, Path] | Path) -> float | None:
    """CPUs a cgroup v2 `cpu.max` ("max 100000" / "200000 100000") or a v1 (cfs_quota_us,
    cfs_period_us) pair allows; None for no limit or an unreadable file."""
    try:
        if isinstance(files, Path):
            quota, period = (files.read_text().split() + ["100000"])[:2]
        else:
            quota, period = (f.read_text().strip() for f in files)
        if quota in ("max", "-1") or int(period) <= 0 or int(quota) <= 0:
            return None
        return int(quota) / int(period)
    except (OSError, ValueError):
        return None


def cgroup_cpu_quota(root: Path, proc_cgroup: Path) -> float | None:
    """The CPUs the cgroup CPU quota allows this process (v2 `cpu.max`, v1 `cpu.cfs_quota_us` /
    `cpu.cfs_period_us`), the smallest along its cgroup's ancestors; None where there is no quota."""
    paths = _cgroup_paths(proc_cgroup)
    limits = []
    if "" in paths:
        limits += [_read_quota(d / "cpu.max") for d in _ancestors(root, paths[""])]
    if "cpu" in paths:
        base = next((root / n for n in ("cpu", "cpu,cpuacct", "cpuacct,cpu") if (root / n).is_dir()), root / "cpu")
        limits += [_read_quota((d / "cpu.cfs_quota_us", d / "cpu.cfs_period_us")) for d in _ancestors(base, paths["cpu"])]
    found = [q for q in limits if q is not None]
    return min(found) if found else None


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
