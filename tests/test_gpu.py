"""GPU facts without a GPU: a fake `nvidia-smi` on PATH stands in for the driver. Which MXNet build
runs on which compute capability, the bootstrap's choice of build, `train`/`predict` refusing a GPU
the build has no kernels for, and `fashionai doctor`'s report."""

import os
import subprocess
import sys
from pathlib import Path

import mxnet as mx
import pytest

from fashionai.core import devices, gpu
from fashionai.core.runtime import Setting
from fashionai.pipeline import doctor

ROOT = Path(__file__).resolve().parents[1]
H200 = "0, NVIDIA H200, 9.0, 143771"
A100 = "1, NVIDIA A100-SXM4-80GB, 8.0, 81920"


@pytest.fixture
def fake_smi(tmp_path, monkeypatch):
    """Put an `nvidia-smi` on PATH that prints the given query lines (as the real one does with
    --query-gpu=index,name,compute_cap,memory.total --format=csv,noheader,nounits)."""
    def install(*lines: str) -> Path:
        tool = tmp_path / "bin" / "nvidia-smi"
        tool.parent.mkdir(exist_ok=True)
        body = "".join(f"echo '{line}'\n" for line in lines)
        tool.write_text(f"#!/bin/sh\ncase \"$*\" in *--query-gpu=index,name,compute_cap*) {body};; *) exit 9;; esac\n")
        tool.chmod(0o755)
        monkeypatch.setenv("PATH", f"{tool.parent}{os.pathsep}{os.environ['PATH']}")
        return tool.parent
    return install


@pytest.mark.parametrize("cc, runs", [("5.0", True), ("6.1", True), ("7.0", True), ("7.5", True), ("8.0", True),
                                      ("8.6", True), ("8.9", True), ("3.7", False), ("9.0", False),
                                      ("10.0", False), ("12.0", False)])
def test_the_1_9_1_wheels_run_from_maxwell_to_ada_only(cc, runs):
    assert gpu.has_kernels("cu112", cc) is runs and gpu.has_kernels("cu117", cc) is runs
    assert not gpu.has_kernels("cpu", cc)


def test_nvidia_smi_lines_are_parsed_and_a_missing_tool_means_no_gpu(fake_smi, monkeypatch):
    assert gpu.parse_smi_line(H200) == gpu.Gpu(0, "NVIDIA H200", "9.0", 143771)
    assert gpu.parse_smi_line("No devices were found") is None
    fake_smi(H200, A100)
    assert [g.name for g in gpu.query_gpus()] == ["NVIDIA H200", "NVIDIA A100-SXM4-80GB"]
    monkeypatch.setenv("PATH", "/nonexistent")
    assert gpu.query_gpus() == []


def _choose(requested: str, path: Path | None) -> subprocess.CompletedProcess:
    """The bootstrap's call, as bootstrap.sh makes it: the system Python, no venv, no MXNet."""
    search = f"{path}{os.pathsep}/usr/bin:/bin" if path else "/usr/bin:/bin"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PATH": search}
    return subprocess.run([sys.executable, "-S", "-m", "fashionai.core.gpu", "choose-build", requested],
                          capture_output=True, text=True, env=env, cwd=ROOT)


def test_the_bootstrap_chooses_a_cuda_build_only_for_gpus_it_runs_on(fake_smi):
    assert _choose("auto", None).stdout.split("\t")[0] == "cpu"
    assert _choose("auto", fake_smi(A100)).stdout.split("\t")[0] == "cu112"
    hopper = _choose("auto", fake_smi(H200))
    assert hopper.stdout.split("\t")[0] == "cpu" and "NVIDIA H200 (compute capability 9.0)" in hopper.stdout
    assert _choose("cu117", None).stdout.split("\t")[0] == "cu117"  # asked for: taken as is
    wrong = _choose("cu999", None)
    assert wrong.returncode == 2 and "MXNET_BUILD must be auto or one of cpu, cu112, cu117" in wrong.stderr


def test_a_gpu_without_kernels_is_refused_in_one_line(fake_smi, monkeypatch):
    fake_smi(H200, A100)
    monkeypatch.setattr(devices, "visible_gpus", lambda: 2)
    monkeypatch.setattr(devices, "installed_build", lambda: "cu112")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert devices.resolve_devices("gpu:1") == [mx.gpu(1)]
    for spec in ("gpu:0", "gpu", "auto"):
        with pytest.raises(ValueError) as err:
            devices.resolve_devices(spec)
        message = str(err.value)
        assert "\n" not in message and message.startswith("gpu(0) cannot run here: GPU 0 (NVIDIA H200")
        assert "compute capability 5.0-8.9 only" in message and "--devices cpu" in message
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")  # MXNet's gpu(0) is the driver's GPU 1, the A100
    monkeypatch.setattr(devices, "visible_gpus", lambda: 1)
    assert devices.resolve_devices("gpu:0") == [mx.gpu(0)]


SETTINGS = [Setting("OMP_NUM_THREADS", "2", "the usable cores")]


def test_doctor_reports_each_gpu_and_what_stands_in_the_way(monkeypatch):
    monkeypatch.setattr(doctor, "missing_libraries", lambda build: ["libcudnn.so.8"])
    gpus = [gpu.parse_smi_line(H200), gpu.parse_smi_line(A100)]
    report = doctor.diagnose(SETTINGS, gpus=gpus, build="cu112", flags={"avx512f", "amx_tile"})
    text = doctor.format_report(report)
    assert "NVIDIA H200, compute capability 9.0, 143771 MiB, kernels: NO" in text
    assert "NVIDIA A100-SXM4-80GB, compute capability 8.0, 81920 MiB, kernels: yes" in text
    assert "libcudnn.so.8      missing" in text and "libcudart.so.11.0  found" in text
    assert "avx512f yes" in text and "avx512_bf16 no" in text and "amx_tile yes" in text
    assert "OMP_NUM_THREADS    2 (the usable cores)" in text
    assert len(report.problems) == 3  # the H200, the missing cuDNN, and mxnet-cu112 not installed here
    assert any("mxnet-cu112 needs libcudnn.so.8" in p for p in report.problems)


def test_doctor_on_a_cpu_machine_exits_0(capsys, monkeypatch):
    from fashionai.cli import main

    monkeypatch.setenv("PATH", os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep)
                                               if not (Path(p) / "nvidia-smi").exists()))
    code = main(["doctor"])
    out = capsys.readouterr().out
    assert "mxnet 1.9.1 (CPU build)" in out and "MKLDNN on" in out and "no GPU listed" in out
    assert code == 0 and "problems found: 0" in out


def _fake_venv(venv: Path, build: str, import_error: str) -> None:
    """A venv the bootstrap takes as built from today's pins with `build`, whose `import mxnet` fails
    as a CUDA build fails without its libraries."""
    import hashlib

    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text(f"#!/bin/sh\necho '{import_error}' >&2\nexit 1\n")
    python.chmod(0o755)
    pins = hashlib.sha256((ROOT / "constraints.txt").read_bytes() + (ROOT / "setup.py").read_bytes()).hexdigest()
    (venv / ".fashionai-installed").write_text(f"{pins} {build}\n")
    (venv / ".fashionai-mxnet-build").write_text(f"{build}\n")


def test_the_bootstrap_names_a_missing_cuda_library_and_keeps_the_venv(tmp_path):
    venv = tmp_path / "venv"
    _fake_venv(venv, "cu112", "OSError: libcudnn.so.8: cannot open shared object file: No such file or directory")
    env = {**os.environ, "VENV": str(venv), "PATH": "/usr/bin:/bin"}
    env.pop("MXNET_BUILD", None)
    done = subprocess.run(["bash", str(ROOT / "scripts" / "bootstrap.sh")], capture_output=True, text=True, env=env)
    assert done.returncode == 1
    assert "mxnet-cu112 is installed" in done.stderr and "libcudnn.so.8" in done.stderr
    assert "MXNET_BUILD=cpu" in done.stderr and "building" not in done.stderr
    assert (venv / "bin" / "python").is_file()  # kept: a missing library is not a broken venv


def test_setup_never_requires_a_particular_mxnet_build():
    """A reinstall (`pip install -e .`) must not put the CPU build back over a CUDA one: MXNet is
    only in the per-build extras, each pinned in constraints.txt."""
    import ast

    call = next(n for n in ast.walk(ast.parse((ROOT / "setup.py").read_text()))
                if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup")
    kw = {k.arg: ast.literal_eval(k.value) for k in call.keywords if k.arg in ("install_requires", "extras_require")}
    assert not [r for r in kw["install_requires"] if r.startswith("mxnet")]
    pins = (ROOT / "constraints.txt").read_text().split()
    for build, spec in gpu.BUILDS.items():
        assert kw["extras_require"][build] == [f"{spec['package']}==1.9.1"] and f"{spec['package']}==1.9.1" in pins
