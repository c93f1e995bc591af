"""Distributed training plumbing: shards, launcher arguments, and a real ps-lite job on 127.0.0.1."""

import json
import os
import shlex
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from fashionai.launcher import COMMAND_VARIABLE, decode_command, encode_command, launch_args, worker_entry
from fashionai.training.distributed import WorkerInfo, check_launched, shard


def test_shards_are_disjoint_cover_everything_and_interleave_classes():
    parts = [shard(10, WorkerInfo(r, 3)) for r in range(3)]
    assert parts == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]
    assert sorted(i for p in parts for i in p) == list(range(10))
    assert shard(5, WorkerInfo()) == [0, 1, 2, 3, 4]
    assert WorkerInfo(0, 2).is_chief and not WorkerInfo(1, 2).is_chief


def test_launch_args_and_their_errors(monkeypatch):
    argv = launch_args(["fashionai", "train"], num_workers=2, num_servers=1)
    assert argv[0].endswith(os.path.join("mxnet", "tools", "launch.py"))
    # the command itself travels in the environment (see the next test): the launcher runs the decoder
    assert argv[1:] == ["-n", "2", "-s", "1", "--launcher", "local", *map(shlex.quote, worker_entry())]
    hosts = launch_args(["x"], num_workers=2, launcher="ssh", hostfile="h", env=["A"])
    assert hosts[hosts.index("--env") + 1:hosts.index("--env") + 4] == ["A", "--env", COMMAND_VARIABLE]
    assert launch_args(["x"], num_workers=3)[1:5] == ["-n", "3", "-s", "3"]  # servers default to workers
    with pytest.raises(ValueError, match="hostfile"):
        launch_args(["x"], num_workers=2, launcher="ssh")
    with pytest.raises(ValueError, match="num-workers"):
        launch_args(["x"], num_workers=0)
    with pytest.raises(ValueError, match="after --"):
        launch_args([], num_workers=1)
    monkeypatch.delenv("DMLC_ROLE", raising=False)
    with pytest.raises(ValueError, match="fashionai launch"):
        check_launched("dist_sync")
    check_launched("device")  # single-process kvstores need no launcher


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
    them is run (MXNet's tracker joins words with spaces and runs them through a shell)."""
    out = tmp_path / "dir with spaces" / "argv"
    out.parent.mkdir()
    marker = tmp_path / "injected"
    words = [str(out), "two words", "it's", '"quoted"', f"$(touch {marker})", f"; touch {marker}", "*", "\\n"]
    code, log = run_launcher(["-n", "2", "-s", "1", "--", sys.executable, "-c", ECHO_ARGV, *words], 120)
    assert code == 0, log[-3000:]
    seen = (out.parent / "argv.worker").read_text().splitlines()
    assert [json.loads(line) for line in seen] == [words, words]  # both workers, every word as given
    assert not marker.exists()
    assert decode_command(encode_command(words)) == words
    with pytest.raises(ValueError, match="not a command"):
        decode_command("%%%")


def run_launcher(args, timeout):
    """Run `fashionai launch ...` in its own process group; kill the whole group on a timeout."""
    proc = subprocess.Popen([sys.executable, "-m", "fashionai", "launch", *args], start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"launcher still running after {timeout} s:\n{out[-3000:]}")
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # nothing of the job may outlive the test
        except ProcessLookupError:
            pass
    return proc.returncode, out


def test_launcher_runs_scheduler_server_and_two_workers_that_end_with_the_same_weights(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    code, out = run_launcher(["-n", "2", "-s", "1", "--", sys.executable, str(script), str(tmp_path)], 120)
    assert code == 0, out[-3000:]
    w0, w1 = np.load(tmp_path / "w0.npy"), np.load(tmp_path / "w1.npy")
    np.testing.assert_array_equal(w0, w1)


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


def _fingerprints(out):
    """{epoch: [model fingerprint each worker logged]} from the job's combined log."""
    models = {}
    for line in out.splitlines():
        if " holds model " in line:
            epoch = int(line.split("epoch ")[1].split(":")[0])
            models.setdefault(epoch, []).append(line.split(" holds model ")[1].strip())
    return models


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
    models = _fingerprints(out)
    for epoch, (a, b) in val.items():  # BatchNorm statistics averaged: both workers hold one model
        assert len(models[epoch]) == 2 and len(set(models[epoch])) == 1, (epoch, models[epoch])
        assert _numbers(a) == _numbers(b), (epoch, a, b)
    run = out_root / "skirt_length_labels" / "dist"
    assert [p.name for p in (out_root / "skirt_length_labels").iterdir()] == ["dist"]  # rank 0 alone wrote
    for name in ("config.json", "metrics.csv", "best.params", "last.params", "last.states", "checkpoint.json"):
        assert (run / name).is_file(), name
    assert len((run / "metrics.csv").read_text().splitlines()) == 1 + 3
