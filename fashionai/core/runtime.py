"""Process-wide settings that must be in place before MXNet is imported: the OpenMP thread count,
OpenMP's spin policy, and oneDNN's AMX kernels on CPUs that have them.

Every process that runs MXNet kernels calls `configure_runtime` first (the command line does, and
so do the launcher's workers, which run the command line, the benchmarks' children and the test
suite); a setting the user made in the environment always wins, and `log_runtime` says once what
applies and why.

- Threads: MXNet starts OpenMP with half the processors (1 thread on a 2-core machine); the core
  count roughly doubles CPU throughput. The count is the smaller of the affinity mask and the cgroup
  CPU quota (`core.cpu.usable_cores`): a container allowed 2 CPUs of a 64-core host runs 2 threads.
  Where other work already keeps cores busy when the process starts (`core.cpu.busy_cores`), it
  takes only the free ones: OpenMP threads that share a core with another process wait for each
  other at every barrier (the demo net trained 8.8x faster with 1 thread than with 2 beside
  another 2-thread job on 2 cores; ResNet50_v2 prediction 1.04x).
- Spin policy: GNU OpenMP threads spin-wait between kernels. When other processes compete for the
  cores (another job, a test, the loader's own workers), spinning threads burn the time slices the
  working threads need, and throughput collapses far below a fair share. `GOMP_SPINCOUNT` bounds
  the spin (bench/bench_contention.py measures it).
- AMX: MXNet 1.9.1's oneDNN 2.4.4 uses its AMX (BF16 / INT8 tile) kernels only when
  `DNNL_MAX_CPU_ISA=AVX512_CORE_AMX` is set before the first oneDNN primitive, and Linux gives a
  process AMX tile state only after it asks (`arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`,
  which this oneDNN does not do: the ISA setting alone dies with SIGILL). Both are done here,
  per process (a forked child inherits the permission; an exec'd one asks again by running this).
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
import sys
from collections.abc import MutableMapping
from dataclasses import dataclass

from fashionai.core.cpu import busy_cores, cpu_flags, usable_cores

log = logging.getLogger(__name__)

THREADS = "OMP_NUM_THREADS"
THREADS_CHOSEN = "FASHIONAI_THREADS_CHOSEN"  # the count configure_threads chose (children choose again)
PROCESSES_PER_HOST = "FASHIONAI_PROCESSES_PER_HOST"  # processes of one job on this host (fashionai launch)
SPIN = "GOMP_SPINCOUNT"
SPIN_VARIABLES = (SPIN, "OMP_WAIT_POLICY")  # either one set by the user: the spin policy is theirs
DEFAULT_SPINCOUNT = "10000"  # chosen by measurement: bench/bench_contention.py, bench/RESULTS.md
ISA = "DNNL_MAX_CPU_ISA"
AMX_ISA = "AVX512_CORE_AMX"
AMX_SWITCH = "FASHIONAI_AMX"  # "0" (or off/no/false) keeps oneDNN's default ISA
AMX_FLAGS = frozenset({"amx_tile", "amx_bf16"})
SYS_ARCH_PRCTL = 158  # x86-64
ARCH_REQ_XCOMP_PERM = 0x1023
XFEATURE_XTILEDATA = 18


@dataclass(frozen=True)
class Setting:
    """One runtime setting as it applies to this process, and why."""

    name: str
    value: str
    reason: str


def configure_threads(env: MutableMapping[str, str] | None = None, by_load: bool = False,
                      most: int | None = None) -> Setting:
    """OMP_NUM_THREADS = the usable core count (shared out among the processes of a job on this
    host: FASHIONAI_PROCESSES_PER_HOST, set by `fashionai launch`), unless the user set it. A count
    this function chose in a parent process (marked in THREADS_CHOSEN) is chosen again here: the
    parent's share is not this process's. `by_load`: fewer where other work keeps cores busy right
    now; not for a run that must repeat exactly, since a kernel's sums depend on its thread count.
    `most`: a cap the command knows suits its work (fashionai.cli.thread_cap), whatever the load."""
    env = os.environ if env is None else env
    if THREADS in env and env.get(THREADS_CHOSEN) != env[THREADS]:
        return Setting(THREADS, env[THREADS], "set by you")
    share = env.get(PROCESSES_PER_HOST, "1")
    share = int(share) if share.isdigit() and int(share) > 0 else 1
    usable = usable_cores()
    cores = max(1, usable // share)
    why = "the usable cores: affinity mask and cgroup CPU quota (MXNet's own default is half the processors)"
    why = why if share == 1 else f"{why}, shared by {share} processes of a job"
    busy = busy_cores() if by_load and cores > 1 and not mxnet_already_imported() else 0.0  # too late otherwise
    free = max(1, int(usable - busy + 0.5))
    if free < cores:
        cores, why = free, f"{why}, fewer while other work keeps {busy:.1f} of them busy"
    if most is not None and most < cores:
        cores, why = most, f"at most {most} for this command's small net (faster, and fair to other work)"
    env[THREADS] = env[THREADS_CHOSEN] = str(cores)
    return Setting(THREADS, env[THREADS], why)


def configure_spin(env: MutableMapping[str, str] | None = None) -> Setting:
    """A bounded OpenMP spin (GOMP_SPINCOUNT), unless the user chose a spin policy."""
    env = os.environ if env is None else env
    mine = [name for name in SPIN_VARIABLES if name in env]
    if mine:
        return Setting(SPIN, env.get(SPIN, "-"), f"your {', '.join(f'{n}={env[n]}' for n in mine)} applies")
    env[SPIN] = DEFAULT_SPINCOUNT
    return Setting(SPIN, DEFAULT_SPINCOUNT, "spin briefly, then sleep: a fair share of the cores when "
                                            "other processes compete for them")


def amx_wanted(env: MutableMapping[str, str], flags: set[str], machine: str, system: str) -> tuple[bool, str]:
    """(whether to turn AMX on, why): on Linux x86-64 CPUs with AMX tiles and AMX BF16, unless the
    user switched it off or chose oneDNN's ISA themselves."""
    if env.get(AMX_SWITCH, "").strip().lower() in ("0", "off", "no", "false"):
        return False, f"off: {AMX_SWITCH}={env[AMX_SWITCH]}"
    if ISA in env:
        return False, f"your {ISA}={env[ISA]} applies"
    if system != "Linux" or machine not in ("x86_64", "AMD64"):
        return False, f"off: AMX is requested from Linux on x86-64, this is {system} on {machine}"
    missing = sorted(AMX_FLAGS - flags)
    if missing:
        return False, f"off: this CPU has no {', '.join(missing)}"
    return True, "on: oneDNN's AMX kernels for BF16 and INT8"


def request_amx() -> tuple[bool, str]:
    """Ask Linux for AMX tile state for this process: (granted, reason when not)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        done = libc.syscall(SYS_ARCH_PRCTL, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)
    except (OSError, AttributeError) as err:
        return False, f"arch_prctl is not callable here ({err})"
    if done != 0:
        errno = ctypes.get_errno()
        return False, f"arch_prctl(ARCH_REQ_XCOMP_PERM) failed: {os.strerror(errno)} (an older kernel?)"
    return True, ""


def configure_amx(env: MutableMapping[str, str] | None = None, *, flags: set[str] | None = None,
                  request=request_amx) -> Setting:
    """Turn oneDNN's AMX kernels on where `amx_wanted` says so and Linux grants the tile state.

    A user's own `DNNL_MAX_CPU_ISA` naming AMX still needs the permission, so it is requested then
    too (without it oneDNN's AMX kernels die with SIGILL); where the request fails nothing is set.
    """
    env = os.environ if env is None else env
    flags = cpu_flags() if flags is None else flags
    wanted, why = amx_wanted(env, flags, platform.machine(), platform.system())
    if not wanted and "AMX" in env.get(ISA, "").upper():
        granted, failure = request()
        return Setting(ISA, env[ISA], why if granted else f"{why}, but {failure}: expect SIGILL in AMX kernels")
    if not wanted:
        return Setting(ISA, env.get(ISA, "-"), why)
    granted, failure = request()
    if not granted:
        log.debug("AMX stays off: %s", failure)
        return Setting(ISA, "-", f"off: {failure}")
    env[ISA] = AMX_ISA
    return Setting(ISA, AMX_ISA, why)


def amx_on(env: MutableMapping[str, str] | None = None) -> bool:
    """Whether this process's oneDNN may use its AMX kernels (the ISA cap is AMX, set by
    `configure_amx` or by the user): BF16 and INT8 run on AMX tiles."""
    env = os.environ if env is None else env
    return env.get(ISA, "").upper().startswith(AMX_ISA)


def configure_runtime(env: MutableMapping[str, str] | None = None, by_load: bool = False,
                      most_threads: int | None = None) -> list[Setting]:
    """Every setting, in the order they are made; call before the first `import mxnet`. `by_load`,
    `most_threads` (its `most`): see configure_threads."""
    if mxnet_already_imported():
        log.warning("MXNet was imported before the runtime settings: threads, spin policy and AMX may not apply")
    return [configure_threads(env, by_load, most_threads), configure_spin(env), configure_amx(env)]


def log_runtime(settings: list[Setting]) -> None:
    """One log line saying what applies and why."""
    log.info("runtime: %s", "; ".join(f"{s.name}={s.value} ({s.reason})" for s in settings))


def mxnet_already_imported() -> bool:
    """True when MXNet was imported before the runtime settings could take effect."""
    return "mxnet" in sys.modules
