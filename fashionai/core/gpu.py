"""GPU facts that MXNet itself cannot tell: which GPUs the driver sees (compute capability
included), which MXNet build is installed, whether that build has kernels for those GPUs, and
which CUDA libraries the build needs are on this host.

Standard library only, and no MXNet import: `scripts/bootstrap.sh` runs this module with the
system Python before the venv exists (`python3 -m fashionai.core.gpu choose-build`), and
`fashionai doctor` must report on a CUDA build whose libraries are missing (`import mxnet` fails
there with `OSError`).

Kernel coverage comes from MXNet 1.9.1's own build files (`config/distribution/linux_cu112.cmake`
and `linux_cu117.cmake`: `MXNET_CUDA_ARCH "5.0;6.0;7.0;8.0;8.6"`, no PTX). A GPU runs SASS built
for its own major version and a minor version at or below its own, so both wheels cover compute
capability 5.0 to 8.9 (Maxwell to Ada) and nothing from 9.0 on (Hopper, Blackwell): there the
first GPU operator fails with "no kernel image is available for execution on the device", and no
PTX is shipped that the driver could compile instead. CUDA 11.2 cannot target 9.0 at all; a
source build with CUDA >= 11.8 and `MXNET_CUDA_ARCH` including 9.0 is the way to run there.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata

VERSION = "1.9.1"
# The MXNet builds the project installs: the pip package of each, its CUDA architectures and the
# shared libraries `import mxnet` loads (CUDA runtime, cuDNN 8, NVRTC, cuBLAS; NCCL for kvstore nccl)
BUILDS = {
    "cpu": {"package": "mxnet", "cuda": "", "archs": (), "libraries": ()},
    "cu112": {"package": "mxnet-cu112", "cuda": "11.2", "archs": ("5.0", "6.0", "7.0", "8.0", "8.6"),
              "libraries": ("libcudart.so.11.0", "libcudnn.so.8", "libnvrtc.so.11.2", "libcublas.so.11")},
    "cu117": {"package": "mxnet-cu117", "cuda": "11.7", "archs": ("5.0", "6.0", "7.0", "8.0", "8.6"),
              "libraries": ("libcudart.so.11.0", "libcudnn.so.8", "libnvrtc.so.11.2", "libcublas.so.11")},
}
GPU_BUILD = "cu112"  # what `auto` installs where GPUs are seen: needs a driver >= 460 (cu117: >= 515)
SMI_QUERY = ("--query-gpu=index,name,compute_cap,memory.total", "--format=csv,noheader,nounits")


@dataclass(frozen=True)
class Gpu:
    """One GPU as the driver reports it."""

    index: int
    name: str
    compute_capability: str  # "8.6"
    memory_mib: int


def query_gpus(smi: str = "nvidia-smi", timeout_s: float = 20.0) -> list[Gpu]:
    """The GPUs `nvidia-smi` lists; [] where there is no nvidia-smi or it fails (no driver)."""
    path = shutil.which(smi)
    if path is None:
        return []
    try:
        out = subprocess.run([path, *SMI_QUERY], capture_output=True, text=True, timeout=timeout_s, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [gpu for line in out.splitlines() if (gpu := parse_smi_line(line)) is not None]


def parse_smi_line(line: str) -> Gpu | None:
    """One `nvidia-smi --query-gpu=index,name,compute_cap,memory.total` CSV line; None if malformed."""
    parts = [p.strip() for p in line.split(",")]
    if len(parts) != 4 or not parts[0].isdigit():
        return None
    memory = parts[3].split()[0] if parts[3] else "0"
    return Gpu(int(parts[0]), parts[1], parts[2], int(memory) if memory.isdigit() else 0)


def _version(cc: str) -> tuple[int, int]:
    major, _, minor = cc.partition(".")
    return (int(major), int(minor or 0)) if major.isdigit() and (minor or "0").isdigit() else (0, 0)


def has_kernels(build: str, compute_capability: str) -> bool:
    """Whether `build` ships SASS a GPU of `compute_capability` can run (same major version, minor
    at or below the GPU's; no PTX to fall back on)."""
    major, minor = _version(compute_capability)
    return any(a[0] == major and a[1] <= minor for a in map(_version, BUILDS[build]["archs"]))


def coverage(build: str) -> str:
    """The compute capabilities `build` runs on, in words ("5.0-8.9")."""
    archs = [_version(a) for a in BUILDS[build]["archs"]]
    return f"{archs[0][0]}.{archs[0][1]}-{archs[-1][0]}.9" if archs else "none (CPU build)"


def installed_build() -> str | None:
    """Which of the project's MXNet builds is installed in this Python ("cpu", "cu112", ...)."""
    for build, spec in BUILDS.items():
        try:
            metadata.version(spec["package"])
        except metadata.PackageNotFoundError:
            continue
        return build
    return None


def missing_libraries(build: str, load=ctypes.CDLL) -> list[str]:
    """The shared libraries `build` needs that the dynamic loader cannot find here."""
    missing = []
    for name in BUILDS[build]["libraries"]:
        try:
            load(name)
        except OSError:
            missing.append(name)
    return missing


def unusable_reason(gpu: Gpu, build: str) -> str | None:
    """Why `build` cannot run on `gpu` (one line with what to do), or None when it can."""
    if build == "cpu":
        return (f"GPU {gpu.index} ({gpu.name}): the installed MXNet is the CPU build; reinstall with "
                f"MXNET_BUILD={GPU_BUILD} scripts/bootstrap.sh (docs/gpu.md)")
    if has_kernels(build, gpu.compute_capability):
        return None
    return (f"GPU {gpu.index} ({gpu.name}, compute capability {gpu.compute_capability}): "
            f"{BUILDS[build]['package']} {VERSION} has kernels for compute capability {coverage(build)} only; "
            "use a GPU of an older generation, --devices cpu, or MXNet built from source with CUDA >= 11.8")


def choose_build(requested: str, gpus: list[Gpu]) -> tuple[str, str]:
    """(build, why) for the bootstrap: `requested` itself, or for `auto` a CUDA build where the
    driver lists GPUs that build runs on, else the CPU build."""
    if requested in BUILDS:
        return requested, f"MXNET_BUILD={requested}"
    if requested != "auto":
        raise ValueError(f"MXNET_BUILD must be auto or one of {', '.join(BUILDS)}, got {requested!r}")
    if not gpus:
        return "cpu", "no GPU listed by nvidia-smi"
    runnable = [g for g in gpus if has_kernels(GPU_BUILD, g.compute_capability)]
    if not runnable:
        shown = ", ".join(f"{g.name} (compute capability {g.compute_capability})" for g in gpus)
        return "cpu", (f"nvidia-smi lists {shown}, which no MXNet {VERSION} wheel has kernels for "
                       f"({coverage(GPU_BUILD)}): the CPU build")
    return GPU_BUILD, f"nvidia-smi lists {len(gpus)} GPU(s) that {BUILDS[GPU_BUILD]['package']} runs on"


def main(argv: list[str]) -> int:
    """`choose-build REQUESTED`: print the build and the reason, tab-separated (for bootstrap.sh);
    `missing-libraries BUILD`: print one missing library a line."""
    if argv[:1] == ["choose-build"] and len(argv) == 2:
        try:
            build, why = choose_build(argv[1], query_gpus())
        except ValueError as err:
            print(err, file=sys.stderr)
            return 2
        print(f"{build}\t{why}")
        return 0
    if argv[:1] == ["missing-libraries"] and len(argv) == 2 and argv[1] in BUILDS:
        print("\n".join(missing_libraries(argv[1])))
        return 0
    print("usage: python -m fashionai.core.gpu choose-build auto|cpu|cu112|cu117 | missing-libraries BUILD",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
