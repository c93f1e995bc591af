"""Runtime settings made before MXNet is imported: threads, the spin policy, AMX. The decisions are
checked on given environments and CPU flags (a user's setting always wins); on a machine with AMX,
BF16 outputs with AMX on are checked against the same outputs with it off."""

import json
import subprocess
import sys

import pytest

from fashionai.core import runtime
from fashionai.core.cpu import cpu_flags, usable_cores

AMX_CPU = {"avx512f", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8"}
GRANTED = lambda: (True, "")  # noqa: E731
REFUSED = lambda: (False, "arch_prctl(ARCH_REQ_XCOMP_PERM) failed: Invalid argument")  # noqa: E731


@pytest.fixture(autouse=True)
def idle_machine(monkeypatch):
    """Thread counts as on an idle machine (other tests' load must not change them); the busy case
    is tested on its own."""
    monkeypatch.setattr(runtime, "busy_cores", lambda: 0.0)


def test_threads_default_to_the_cores_and_the_users_setting_wins():
    env = {}
    assert runtime.configure_threads(env).value == env["OMP_NUM_THREADS"] == str(usable_cores())
    env = {"OMP_NUM_THREADS": "1"}
    assert runtime.configure_threads(env) == runtime.Setting("OMP_NUM_THREADS", "1", "set by you")
    assert env == {"OMP_NUM_THREADS": "1"}


def test_the_spin_is_bounded_unless_the_user_chose_a_policy():
    env = {}
    assert runtime.configure_spin(env).value == env["GOMP_SPINCOUNT"] == runtime.DEFAULT_SPINCOUNT
    for mine in ({"GOMP_SPINCOUNT": "0"}, {"OMP_WAIT_POLICY": "PASSIVE"}):
        env = dict(mine)
        assert "applies" in runtime.configure_spin(env).reason and env == mine


def test_amx_is_turned_on_only_on_linux_x86_64_cpus_with_amx_and_no_user_setting(monkeypatch):
    monkeypatch.setattr(runtime.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(runtime.platform, "system", lambda: "Linux")
    env = {}
    setting = runtime.configure_amx(env, flags=AMX_CPU, request=GRANTED)
    assert env == {"DNNL_MAX_CPU_ISA": "AVX512_CORE_AMX"} and setting.reason.startswith("on")
    for flags in ({"avx512f", "avx512_bf16"}, {"amx_tile"}, set()):  # no AMX, or tiles without BF16
        env = {}
        assert "this CPU has no" in runtime.configure_amx(env, flags=flags, request=GRANTED).reason and env == {}
    for off in ("0", "off", "no"):
        env = {"FASHIONAI_AMX": off}
        assert runtime.configure_amx(env, flags=AMX_CPU, request=GRANTED).reason.startswith("off: FASHIONAI_AMX")
        assert "DNNL_MAX_CPU_ISA" not in env
    monkeypatch.setattr(runtime.platform, "machine", lambda: "aarch64")
    env = {}
    assert "x86-64" in runtime.configure_amx(env, flags=AMX_CPU, request=GRANTED).reason and env == {}


def test_a_users_isa_wins_and_still_gets_the_permission_amx_needs(monkeypatch):
    monkeypatch.setattr(runtime.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(runtime.platform, "system", lambda: "Linux")
    asked = []
    env = {"DNNL_MAX_CPU_ISA": "AVX512_CORE_BF16"}
    setting = runtime.configure_amx(env, flags=AMX_CPU, request=lambda: asked.append(1) or (True, ""))
    assert env == {"DNNL_MAX_CPU_ISA": "AVX512_CORE_BF16"} and "your" in setting.reason and not asked
    env = {"DNNL_MAX_CPU_ISA": "AVX512_CORE_AMX"}
    runtime.configure_amx(env, flags=AMX_CPU, request=lambda: asked.append(1) or (True, ""))
    assert asked == [1] and env == {"DNNL_MAX_CPU_ISA": "AVX512_CORE_AMX"}


def test_a_refused_request_keeps_the_default_isa(monkeypatch):
    monkeypatch.setattr(runtime.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(runtime.platform, "system", lambda: "Linux")
    env = {}
    setting = runtime.configure_amx(env, flags=AMX_CPU, request=REFUSED)
    assert env == {} and setting.reason.startswith("off: arch_prctl")


BF16_NET = """
import json, sys
from fashionai.core.runtime import configure_runtime
print(json.dumps([s.__dict__ for s in configure_runtime()]), file=sys.stderr)
import mxnet as mx, numpy as np
from mxnet.contrib import amp
from gluoncv.model_zoo import get_model
mx.random.seed(0)
net = get_model("mobilenet0.25", classes=6)
net.initialize(mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2))
net.hybridize(static_alloc=True, static_shape=True)
x = mx.nd.array(np.random.RandomState(1).uniform(-1, 1, size=(8, 3, 64, 64)))
net(x).wait_to_read()
bf16 = amp.convert_hybrid_block(net, target_dtype="bfloat16", cast_optional_params=True, ctx=mx.cpu())
out = mx.nd.amp_cast(bf16(x), dtype="float32").asnumpy()
np.save(sys.argv[1], out)
"""


@pytest.mark.skipif(not {"amx_tile", "amx_bf16"} <= cpu_flags(), reason="this CPU has no AMX")
def test_bf16_outputs_with_amx_on_equal_those_with_it_off(tmp_path):
    """Same net, same input, a process each: AMX changes which kernels run, not the numbers."""
    import numpy as np

    outs = {}
    for name, switch in (("on", "1"), ("off", "0")):
        env = {k: v for k, v in __import__("os").environ.items() if k != "DNNL_MAX_CPU_ISA"}
        done = subprocess.run([sys.executable, "-c", BF16_NET, str(tmp_path / name)],
                              env={**env, "FASHIONAI_AMX": switch}, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
        settings = {s["name"]: s for s in json.loads(done.stderr.splitlines()[0])}
        assert settings["DNNL_MAX_CPU_ISA"]["value"] == ("AVX512_CORE_AMX" if name == "on" else "-")
        outs[name] = np.load(tmp_path / f"{name}.npy")
    np.testing.assert_allclose(outs["on"], outs["off"], rtol=2e-2, atol=1e-2)
    assert np.abs(outs["on"]).max() > 0


def test_amx_on_reads_the_isa_cap_whoever_set_it():
    assert runtime.amx_on({"DNNL_MAX_CPU_ISA": "AVX512_CORE_AMX"}) and runtime.amx_on({"DNNL_MAX_CPU_ISA": "avx512_core_amx"})
    assert not runtime.amx_on({}) and not runtime.amx_on({"DNNL_MAX_CPU_ISA": "AVX512_CORE_BF16"})


def test_a_jobs_processes_share_the_cores_and_choose_again_in_each_process():
    env = {"FASHIONAI_PROCESSES_PER_HOST": "2"}
    chosen = runtime.configure_threads(env)
    assert chosen.value == str(max(1, usable_cores() // 2)) and "shared by 2 processes" in chosen.reason
    child = {**env, "FASHIONAI_PROCESSES_PER_HOST": "1"}  # a child inherits the parent's chosen count...
    assert runtime.configure_threads(child).value == str(usable_cores())  # ...and chooses its own
    mine = {**env, "OMP_NUM_THREADS": "7"}  # a count the user set is kept whatever the share
    assert runtime.configure_threads(mine) == runtime.Setting("OMP_NUM_THREADS", "7", "set by you")


def _fake_cgroup(tmp_path, proc_lines: str, files: dict[str, str]):
    """A fake /sys/fs/cgroup tree and /proc/self/cgroup file under tmp_path."""
    root = tmp_path / "cgroup"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    root.mkdir(exist_ok=True)
    proc = tmp_path / "proc_cgroup"
    proc.write_text(proc_lines)
    return root, proc


@pytest.mark.parametrize("proc_lines, files, quota", [
    ("0::/\n", {"cpu.max": "200000 100000\n"}, 2.0),                      # v2, container view
    ("0::/\n", {"cpu.max": "max 100000\n"}, None),                          # v2, no limit
    ("0::/job/step\n", {"cpu.max": "150000 100000\n", "job/cpu.max": "max 100000\n",
                        "job/step/cpu.max": "max 100000\n"}, 1.5),          # v2, a limit above applies
    ("4:cpu,cpuacct:/docker/abc\n0::/\n",
     {"cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "50000", "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000",
      "cpu,cpuacct/cpu.cfs_quota_us": "-1", "cpu,cpuacct/cpu.cfs_period_us": "100000"}, 0.5),  # v1
    ("1:cpu:/\n", {"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),  # v1, none
    ("0::/\n", {}, None),                                                    # no files at all
])
def test_the_cgroup_cpu_quota_is_read_from_v1_and_v2_files(tmp_path, proc_lines, files, quota):
    from fashionai.core import cpu

    root, proc = _fake_cgroup(tmp_path, proc_lines, files)
    assert cpu.cgroup_cpu_quota(root, proc) == quota


def test_threads_take_the_smaller_of_the_affinity_mask_and_the_quota(tmp_path, monkeypatch):
    from fashionai.core import cpu

    monkeypatch.setattr(cpu, "affinity_cores", lambda: 64)  # a 64-core host...
    root, proc = _fake_cgroup(tmp_path, "0::/\n", {"cpu.max": "200000 100000\n"})  # ...2 CPUs for this container
    monkeypatch.setattr(cpu, "CGROUP_ROOT", root)
    monkeypatch.setattr(cpu, "PROC_CGROUP", proc)
    assert cpu.usable_cores() == 2
    env = {}
    assert runtime.configure_threads(env).value == env["OMP_NUM_THREADS"] == "2"
    (root / "cpu.max").write_text("250000 100000\n")  # 2.5 CPUs: a third thread still gets half a core
    assert cpu.usable_cores() == 3
    (root / "cpu.max").write_text("max 100000\n")
    assert cpu.usable_cores() == 64


def test_threads_leave_out_the_cores_other_work_keeps_busy(tmp_path, monkeypatch):
    from fashionai.core import cpu

    monkeypatch.setattr(cpu, "affinity_cores", lambda: 4)
    monkeypatch.setattr(cpu, "cgroup_cpu_quota", lambda root, proc: None)
    monkeypatch.setattr(runtime, "mxnet_already_imported", lambda: False)
    for busy, threads in ((0.2, "4"), (1.6, "2"), (3.9, "1")):
        monkeypatch.setattr(runtime, "busy_cores", lambda busy=busy: busy)
        env = {}
        chosen = runtime.configure_threads(env, by_load=True)
        assert chosen.value == env["OMP_NUM_THREADS"] == threads
        assert ("busy" in chosen.reason) == (threads != "4")
        assert runtime.configure_threads({}).value == "4"  # a run that must repeat: the load is not asked
    assert runtime.configure_threads({"OMP_NUM_THREADS": "3"}, by_load=True).value == "3"  # the user's count wins


def test_only_a_training_run_that_must_repeat_exactly_keeps_its_threads_whatever_the_load():
    from fashionai.cli import build_parser, threads_by_load

    parse = build_parser().parse_args
    assert not threads_by_load(parse(["train", "--task", "skirt_length_labels"]))  # --deterministic by default
    assert not threads_by_load(parse(["demo"]))
    assert threads_by_load(parse(["train", "--task", "skirt_length_labels", "--no-deterministic"]))
    assert threads_by_load(parse(["predict", "--run", "r", "--images", "i"]))


def test_busy_cores_reads_the_affinity_masks_cpus_in_proc_stat(tmp_path, monkeypatch):
    from fashionai.core import cpu

    monkeypatch.setattr(cpu.os, "sched_getaffinity", lambda pid: {0, 1})
    stat = tmp_path / "stat"
    # user nice system idle iowait irq softirq steal; cpu2 is outside the mask
    before = "cpu  0 0 0 0 0 0 0 0\ncpu0 100 0 0 100 0 0 0 0\ncpu1 0 0 0 200 0 0 0 0\ncpu2 0 0 0 0 0 0 0 0\n"
    after = "cpu  0 0 0 0 0 0 0 0\ncpu0 200 0 0 100 0 0 0 0\ncpu1 50 0 0 250 0 0 0 0\ncpu2 999 0 0 0 0 0 0 0\n"
    stat.write_text(before)
    busy = cpu.busy_cores(stat, sample_s=0, sleep=lambda s: stat.write_text(after))
    assert busy == pytest.approx(2 * 150 / 200)  # cpu0 fully busy, cpu1 half: 1.5 cores
    assert cpu.busy_cores(tmp_path / "missing", sample_s=0) == 0.0


def test_the_demo_presets_small_net_trains_on_one_thread_whatever_the_cores(monkeypatch):
    from fashionai.cli import build_parser, thread_cap
    from fashionai.core import runtime

    parse = build_parser().parse_args
    assert thread_cap(parse(["demo"])) == 1
    assert thread_cap(parse(["train", "--preset", "demo", "--task", "skirt_length_labels"])) == 1
    assert thread_cap(parse(["demo", "--model", "ResNet50_v2"])) is None  # a real net uses every core
    assert thread_cap(parse(["train", "--preset", "demo", "--task", "skirt_length_labels", "--data-shape", "224"])) is None
    assert thread_cap(parse(["train", "--task", "skirt_length_labels"])) is None
    monkeypatch.setattr(runtime, "usable_cores", lambda: 4)
    env = {}
    chosen = runtime.configure_threads(env, most=1)
    assert chosen.value == "1" == env["OMP_NUM_THREADS"] and "at most 1" in chosen.reason
    assert runtime.configure_threads({"OMP_NUM_THREADS": "3"}, most=1).value == "3"  # the user's count wins
