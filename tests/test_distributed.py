"""Distributed training plumbing: shards, the launcher's job and its supervision, and real ps-lite jobs on
127.0.0.1: arguments intact, equal weights, and a worker killed mid-epoch ending the whole job."""

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from fashionai.launcher import Host, job_spec, read_hosts, remote_argv, role_env, roles
from fashionai.training.distributed import WorkerInfo, check_launched, overlapping_pushpull, shard
from fashionai.training.rundir import read_metrics

from conftest import fingerprints, finish_group


def test_shards_are_disjoint_cover_everything_and_interleave_classes():
    parts = [shard(10, WorkerInfo(r, 3)) for r in range(3)]
    assert parts == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]
    assert sorted(i for p in parts for i in p) == list(range(10))
    assert shard(5, WorkerInfo()) == [0, 1, 2, 3, 4]
    assert WorkerInfo(0, 2).is_chief and not WorkerInfo(1, 2).is_chief


def test_job_spec_roles_and_their_errors(tmp_path, monkeypatch):
    spec = job_spec(["fashionai", "train"], num_workers=2, num_servers=1)
    assert [str(r) for r in roles(spec)] == ["scheduler", "server 0", "worker 0", "worker 1"]
    assert job_spec(["x"], num_workers=3).num_servers == 3  # servers default to workers
    env = role_env(spec, roles(spec)[2], "127.0.0.1", 9000)
    assert env == {"DMLC_ROLE": "worker", "DMLC_PS_ROOT_URI": "127.0.0.1", "DMLC_PS_ROOT_PORT": "9000",
                   "DMLC_NUM_WORKER": "2", "DMLC_NUM_SERVER": "1", "FASHIONAI_PROCESSES_PER_HOST": "2",
                   "FASHIONAI_LOCAL_RANK": "0"}  # its place among this host's workers: its share of the GPUs
    for kw, match in [(dict(num_workers=0), "num-workers"), (dict(num_workers=1, num_servers=0), "num-servers"),
                      (dict(num_workers=2, launcher="ssh"), "hostfile"),
                      (dict(num_workers=2, launcher="mpi"), "--launcher mpi: MXNet's mpi launcher passes only"),
                      (dict(num_workers=2, hostfile="h"), "are for --launcher ssh")]:
        with pytest.raises(ValueError, match=match):
            job_spec(["x"], **kw)
    with pytest.raises(ValueError, match="after --"):
        job_spec([], num_workers=1)
    monkeypatch.delenv("DMLC_ROLE", raising=False)
    with pytest.raises(ValueError, match="fashionai launch"):
        check_launched("dist_sync")
    check_launched("device")  # single-process kvstores need no launcher


def test_hosts_files_and_the_ssh_command_line(tmp_path, monkeypatch):
    hosts = tmp_path / "hosts.txt"
    hosts.write_text("# cluster\nnode-a\nnode-b:2222 interface=eth1 address=10.0.0.2\n\n")
    assert read_hosts(hosts) == [Host("node-a"), Host("node-b", "2222", "eth1", "10.0.0.2")]
    spec = job_spec(["python", "-m", "fashionai", "train", "--name", "a b", "$(x)"], num_workers=2,
                    num_servers=1, launcher="ssh", hostfile=str(hosts), host_ip="10.0.0.1", env=["MY_VAR"])
    assert [str(r) for r in roles(spec)] == ["scheduler", "server 0 on node-a", "worker 0 on node-b",
                                              "worker 1 on node-a"]
    worker = roles(spec)[2]
    monkeypatch.setenv("MY_VAR", "it's")
    env = role_env(spec, worker, "10.0.0.1", 9000)
    assert env["DMLC_INTERFACE"] == "eth1" and env["DMLC_NODE_HOST"] == "10.0.0.2" and env["MY_VAR"] == "it's"
    assert env["FASHIONAI_PROCESSES_PER_HOST"] == "1" and "OMP_NUM_THREADS" not in env  # each host its own cores
    argv = remote_argv(spec, worker, env)
    assert argv[:argv.index("-p")] == ["ssh", "-o", "BatchMode=yes", "-o", "ServerAliveInterval=5", "-o",
                                       "ServerAliveCountMax=3"]
    assert argv[-2] == "node-b" and argv[argv.index("-p") + 1] == "2222"
    words = shlex.split(argv[-1])  # as the remote shell reads it: every word intact, `$(x)` not run
    assert words[:5] == ["cd", os.getcwd(), "&&", "exec", "env"] and "MY_VAR=it's" in words
    assert words[-7:] == ["python", "-m", "fashionai", "train", "--name", "a b", "$(x)"]
    bad = tmp_path / "bad.txt"
    bad.write_text("node-a\nnode-b colour=blue\n")
    with pytest.raises(ValueError, match=r"bad.txt:2: expected HOST\[:SSH_PORT\]"):
        read_hosts(bad)


WORKER = textwrap.dedent("""
    import os, sys
    import numpy as np
    import mxnet as mx
    kv = mx.kv.create("dist_sync")
    net = mx.gluon.nn.Dense(3, in_units=4)
    mx.random.seed(0)
    net.initialize(mx.init.Xavier())
    trainer = mx.gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1}, kvstore=kv)
    rng = np.random.default_rng(kv.rank)  # each worker its own data
    for _ in range(3):
        x = mx.nd.array(rng.normal(size=(8, 4)))
        with mx.autograd.record():
            loss = (net(x) ** 2).sum()
        loss.backward()
        trainer.step(8 * kv.num_workers)
    np.save(os.path.join(sys.argv[1], f"w{kv.rank}.npy"), net.weight.data().asnumpy())
""")


ECHO_ARGV = "import json, sys; open(sys.argv[1] + '.' + __import__('os').environ['DMLC_ROLE'], 'a').write(json.dumps(sys.argv[1:]) + '\\n')"


def test_the_launcher_keeps_every_argument_intact_and_runs_no_shell_syntax(tmp_path):
    """Words with spaces, quotes and shell syntax reach every process exactly as given; nothing in
    them is run (the launcher starts the command without a shell)."""
    out = tmp_path / "dir with spaces" / "argv"
    out.parent.mkdir()
    marker = tmp_path / "injected"
    words = [str(out), "two words", "it's", '"quoted"', f"$(touch {marker})", f"; touch {marker}", "*", "\\n"]
    code, log = run_launcher(["-n", "2", "-s", "1", "--", sys.executable, "-c", ECHO_ARGV, *words], 120)
    assert code == 0, log[-3000:]
    seen = (out.parent / "argv.worker").read_text().splitlines()
    assert [json.loads(line) for line in seen] == [words, words]  # both workers, every word as given
    assert not marker.exists()


def run_launcher(args, timeout):
    """Run `fashionai launch ...` in its own process group; kill the whole group on a timeout."""
    proc = subprocess.Popen([sys.executable, "-m", "fashionai", "launch", *args], start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = finish_group(proc, timeout)  # nothing of the job may outlive the test
    return proc.returncode, out


def test_launcher_runs_scheduler_server_and_two_workers_that_end_with_the_same_weights(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    code, out = run_launcher(["-n", "2", "-s", "1", "--", sys.executable, str(script), str(tmp_path)], 120)
    assert code == 0, out[-3000:]
    w0, w1 = np.load(tmp_path / "w0.npy"), np.load(tmp_path / "w1.npy")
    np.testing.assert_array_equal(w0, w1)


class _Grad:
    def __init__(self, name, log):
        self.name, self.log = name, log

    def wait_to_read(self):
        self.log.append(("wait", self.name))


class _Param:
    def __init__(self, name, grad_req, log):
        self.name, self.grad_req, self._grads = name, grad_req, [_Grad(f"{name}@0", log), _Grad(f"{name}@1", log)]

    def list_grad(self):
        return self._grads


class _KVStore:
    def __init__(self, log):
        self.log = log

    def pushpull(self, key, grads, priority):
        self.log.append(("pushpull", key, priority, [g.name for g in grads]))


def test_gradients_are_pushed_one_parameter_at_a_time_last_layer_first_each_after_its_own_wait():
    """Communication overlaps backward: the last layer's allreduce is issued before the first layer's
    gradient is waited for, and no gradient is pushed before it is complete (the fingerprint fix)."""
    log = []
    params = [_Param("conv0", "write", log), _Param("bn_mean", "null", log), _Param("fc", "write", log)]
    overlapping_pushpull(_KVStore(log), params)
    assert log == [("wait", "fc@0"), ("wait", "fc@1"), ("pushpull", 2, -2, ["fc@0", "fc@1"]),
                   ("wait", "conv0@0"), ("wait", "conv0@1"), ("pushpull", 0, 0, ["conv0@0", "conv0@1"])]


def _numbers(text):
    """[floats] of 'loss=1.0 acc=0.5 ...'."""
    return [float(part.split("=")[1]) for part in text.split()]


def _val_lines(out):
    """{epoch: [val part of each worker's epoch line]} from the job's combined log."""
    lines = {}
    for line in out.splitlines():
        if "[Epoch " in line:
            epoch = int(line.split("[Epoch ")[1].split("]")[0])
            lines.setdefault(epoch, []).append(line.split("| val: ")[1].split(" | lr=")[0])
    return lines



@pytest.mark.slow
def test_fashionai_train_under_the_launcher_two_workers_one_run_dir_same_val_metrics(prepared_data, tmp_path):
    out_root = tmp_path / "runs"
    train = [sys.executable, "-m", "fashionai", "train", "--preset", "demo", "--task", "skirt_length_labels",
             "--prepared", str(prepared_data), "--out", str(out_root), "--name", "dist", "--kvstore", "dist_sync",
             "--epochs", "3", "--data-shape", "32", "--batch-size", "8", "--warmup-epochs", "0"]
    code, out = run_launcher(["-n", "2", "-s", "1", "--", *train], 240)
    assert code == 0, out[-3000:]
    assert out.count("distributed worker") == 2
    val = _val_lines(out)
    assert sorted(val) == [0, 1, 2]
    models = fingerprints(out)
    for epoch, (a, b) in val.items():  # BatchNorm statistics averaged: both workers hold one model
        assert len(models[epoch]) == 2 and len(set(models[epoch])) == 1, (epoch, models[epoch])
        assert _numbers(a) == _numbers(b), (epoch, a, b)
    run = out_root / "skirt_length_labels" / "dist"
    assert [p.name for p in (out_root / "skirt_length_labels").iterdir()] == ["dist"]  # rank 0 alone wrote
    for name in ("config.json", "metrics.csv", "best.params", "last.params", "last.states", "checkpoint.json"):
        assert (run / name).is_file(), name
    assert len((run / "metrics.csv").read_text().splitlines()) == 1 + 3


def _job_processes(launcher_pid: int) -> dict[int, str]:
    """{pid: DMLC_ROLE} of the processes `fashionai launch` started (its children)."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == launcher_pid:
                environ = (stat.parent / "environ").read_bytes().split(b"\0")
                role = next((e.split(b"=", 1)[1].decode() for e in environ if e.startswith(b"DMLC_ROLE=")), "")
                found[int(stat.parent.name)] = role
        except (OSError, IndexError, ValueError):
            continue  # ended meanwhile
    return found


@pytest.mark.slow
def test_a_worker_killed_mid_epoch_ends_the_whole_job_and_the_same_line_resumes_it(prepared_data, tmp_path):
    """SIGKILL one worker after an epoch: launch stops the scheduler, the server and the other
    worker (ps-lite alone would leave them waiting for good), exits 1 naming the worker and the
    signal; the same launch line with --resume then finishes the run."""
    out_root = tmp_path / "runs"
    train = [sys.executable, "-m", "fashionai", "train", "--preset", "demo", "--task", "skirt_length_labels",
             "--prepared", str(prepared_data), "--out", str(out_root), "--name", "killed", "--kvstore",
             "dist_sync", "--epochs", "4", "--data-shape", "32", "--batch-size", "8", "--warmup-epochs", "0"]
    launch = [sys.executable, "-m", "fashionai", "launch", "-n", "2", "-s", "1", "--grace", "5", "--"]
    proc = subprocess.Popen([*launch, *train], start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        seen = []
        for line in proc.stdout:  # until a worker has finished an epoch: the job is mid-run
            seen.append(line)
            if " holds model " in line:
                break
        workers = sorted(pid for pid, role in _job_processes(proc.pid).items() if role == "worker")
        assert len(workers) == 2, "".join(seen)[-3000:]
        os.kill(workers[-1], signal.SIGKILL)
        rest, _ = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("the job did not end after a worker was killed")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 1
    last = rest.strip().splitlines()[-1]
    assert "worker " in last and f"(pid {workers[-1]}) ended with SIGKILL; the job's 3 other process(es) were " \
                                 "stopped" in last and "--resume" in last
    assert "DMLC_PS_ROOT_URI" not in "".join(seen) + rest  # no environment dump
    with pytest.raises(ProcessLookupError):
        os.killpg(proc.pid, 0)  # nothing of the job is left
    run = out_root / "skirt_length_labels" / "killed"
    code, out = run_launcher(["-n", "2", "-s", "1", "--", *train, "--resume", str(run)], 240)
    assert code == 0, out[-3000:]
    assert [r["epoch"] for r in read_metrics(run)] == [0, 1, 2, 3]


def test_launch_returns_its_commands_failure(tmp_path):
    code, out = run_launcher(["-n", "1", "-s", "1", "--grace", "5", "--", "/bin/sh", "-c", "exit 3"], 60)
    assert code == 1 and "ended with exit status 3" in out.strip().splitlines()[-1]
    code, out = run_launcher(["-n", "1", "--launcher", "yarn", "--", "true"], 60)
    assert code == 2 and "--launcher yarn: not supported" in out
