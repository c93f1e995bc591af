"""`fashionai doctor`: what this machine gives the pipeline, and what stands in its way.

The report a user pastes into a bug report (GluonCV's `collect_env`, PyTorch's `collect_env`):
MXNet's version and build, the GPUs the driver lists with their compute capability and whether
this build has kernels for them, the CUDA libraries the build loads, the CPU's features (AVX-512,
BF16, AMX), the runtime settings, and OpenVINO if installed. Every problem found is one line with
what to do; the command exits 1 when there is one, so a set-up script can stop on it.
"""

from __future__ import annotations

import importlib.util
import platform
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata

from fashionai import __version__
from fashionai.core.cpu import cpu_flags, machine_name, usable_cores
from fashionai.core.gpu import (BUILDS, Gpu, coverage, installed_build, missing_libraries, query_gpus,
                                unusable_reason)
from fashionai.core.runtime import Setting

CPU_FEATURES = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16", "amx_int8")


@dataclass
class Report:
    """Sections of (label, value) lines, and the problems found, each with what to do."""

    sections: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def add(self, section: str, label: str, value: str) -> None:
        self.sections.setdefault(section, []).append((label, value))


def mxnet_lines(report: Report, build: str | None, import_mxnet: Callable = lambda: __import__("mxnet")) -> None:
    """The installed MXNet build, whether it imports, and its compiled-in features."""
    if build is None:
        report.add("MXNet", "installed", "no")
        report.problems.append("MXNet is not installed: run scripts/bootstrap.sh (or `make venv`)")
        return
    package, cuda = BUILDS[build]["package"], BUILDS[build]["cuda"]
    try:
        version = metadata.version(package)
    except metadata.PackageNotFoundError:
        report.add("MXNet", "package", f"{package}: not installed")
        report.problems.append(f"{package} is not installed in this Python: "
                               f"run MXNET_BUILD={build} scripts/bootstrap.sh")
        return
    report.add("MXNet", "package", f"{package} {version} ({f'CUDA {cuda}' if cuda else 'CPU'} build)")
    try:
        mx = import_mxnet()
    except OSError as err:  # a CUDA build whose libraries are missing
        report.add("MXNet", "import", f"fails: {err}")
        report.problems.append(f"{package} does not load: {err}; install the libraries listed under CUDA, "
                               "or rebuild the venv with MXNET_BUILD=cpu scripts/bootstrap.sh")
        return
    features = mx.runtime.Features()
    wanted = ("CUDA", "CUDNN", "NCCL", "MKLDNN", "DIST_KVSTORE", "OPENCV")
    report.add("MXNet", "features", ", ".join(f"{f} {'on' if features.is_enabled(f) else 'off'}" for f in wanted))


def gpu_lines(report: Report, gpus: Sequence[Gpu], build: str | None) -> None:
    """Each GPU the driver lists, and whether the installed build runs on it."""
    if not gpus:
        report.add("GPUs", "nvidia-smi", "no GPU listed (no driver, or no NVIDIA GPU): training runs on the CPU")
        return
    for gpu in gpus:
        reason = unusable_reason(gpu, build) if build else None
        verdict = "kernels: yes" if reason is None else "kernels: NO"
        report.add("GPUs", f"gpu {gpu.index}", f"{gpu.name}, compute capability {gpu.compute_capability}, "
                                              f"{gpu.memory_mib} MiB, {verdict}")
        if reason:
            report.problems.append(reason)


def cuda_lines(report: Report, build: str | None) -> None:
    """The shared libraries a CUDA build loads, found or missing; for the CPU build, what the
    CUDA builds would run on."""
    if build in (None, "cpu"):
        report.add("CUDA", "libraries", "not needed by the CPU build; the CUDA builds (MXNET_BUILD=cu112 or "
                                        f"cu117) run on compute capability {coverage('cu112')}")
        return
    missing = missing_libraries(build)
    for name in BUILDS[build]["libraries"]:
        report.add("CUDA", name, "missing" if name in missing else "found")
    if missing:
        report.problems.append(f"{BUILDS[build]['package']} needs {', '.join(missing)} (CUDA 11.x and cuDNN 8 "
                               "runtime libraries): install them and put them on LD_LIBRARY_PATH")


def cpu_lines(report: Report, flags: set[str]) -> None:
    """The CPU's model, the cores this process may use, and the features the fast paths need."""
    report.add("CPU", "model", machine_name())
    report.add("CPU", "usable cores", str(usable_cores()))
    report.add("CPU", "features", ", ".join(f"{f} {'yes' if f in flags else 'no'}" for f in CPU_FEATURES))


def other_lines(report: Report, settings: Sequence[Setting]) -> None:
    """Runtime settings made before MXNet's import, and OpenVINO if installed."""
    for s in settings:
        report.add("Runtime", s.name, f"{s.value} ({s.reason})")
    found = importlib.util.find_spec("openvino") is not None
    report.add("Inference", "openvino", metadata.version("openvino") if found else "not installed")


def diagnose(settings: Sequence[Setting], *, gpus: Sequence[Gpu] | None = None, build: str | None = "installed",
             flags: set[str] | None = None) -> Report:
    """The whole report; `gpus`, `build` and `flags` stand in for this machine's (tests)."""
    report = Report()
    report.add("fashionai", "version", f"{__version__} on Python {platform.python_version()} ({sys.platform})")
    build = installed_build() if build == "installed" else build
    gpus = query_gpus() if gpus is None else gpus
    mxnet_lines(report, build)
    gpu_lines(report, gpus, build)
    cuda_lines(report, build)
    cpu_lines(report, cpu_flags() if flags is None else flags)
    other_lines(report, settings)
    return report


def format_report(report: Report) -> str:
    """Sections as aligned text, then the problems (or that there are none)."""
    lines = []
    for section, rows in report.sections.items():
        lines.append(f"{section}:")
        lines += [f"  {label:<18} {value}" for label, value in rows]
    lines.append(f"problems found: {len(report.problems)}")
    lines += [f"  - {p}" for p in report.problems]
    return "\n".join(lines)
