"""Several hosts, simulated: two Linux network namespaces joined by a veth pair stand for two hosts,
and `ssh` is a script that runs the remote command in the other namespace with the bare
environment a fresh sshd session gives. Through docs/hosts.md's multi-host command both hosts train
to the same model; a host whose link goes down ends the job, named, within the heartbeat timeout.
Needs root and `ip netns` (skipped with the reason elsewhere). No test waits on a clock: the link
goes down once an epoch has been logged, and the job must end by itself."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import fingerprints, finish_group

ROOT = Path(__file__).resolve().parents[1]
TASK = "skirt_length_labels"
PREFIX = f"fa{os.getpid() % 100000}"
A_IP, B_IP, B_OTHER_IP = "10.231.0.1", "10.231.0.2", "10.232.0.2"
FAKE_SSH = """#!/bin/sh
# ssh [-o OPTION]... [-p PORT] HOST COMMAND: COMMAND in HOST's namespace, environment as sshd gives it
while [ $# -gt 2 ]; do case "$1" in -o|-p) shift 2;; *) break;; esac; done
case "$1" in {a}) ns={na};; {b}) ns={nb};; *) echo "ssh: $1: no such host" >&2; exit 255;; esac
exec ip netns exec "$ns" env -i HOME=/root PATH=/usr/local/bin:/usr/bin:/bin sh -c "$2"
"""


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    """Two namespaces (A: 10.231.0.1, B: 10.231.0.2), a fake ssh for them, a hosts file; yields
    (run in A: a function giving the argv prefix, PATH with the fake ssh, the hosts file)."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("simulated hosts need root and iproute2's `ip netns`")
    na, nb = f"{PREFIX}a", f"{PREFIX}b"
    try:
        _ip("netns", "add", na)
        _ip("netns", "add", nb)
    except subprocess.CalledProcessError as err:
        pytest.skip(f"cannot make network namespaces here: {err.stderr.decode().strip()}")
    try:
        _ip("link", "add", f"{PREFIX}va", "type", "veth", "peer", "name", f"{PREFIX}vb")
        _ip("link", "set", f"{PREFIX}va", "netns", na)
        _ip("link", "set", f"{PREFIX}vb", "netns", nb)
        # host B has two addresses, the first one (which ps-lite takes by default) unreachable from A
        _ip("-n", nb, "addr", "add", f"{B_OTHER_IP}/24", "dev", f"{PREFIX}vb")
        for ns, dev, ip in ((na, f"{PREFIX}va", A_IP), (nb, f"{PREFIX}vb", B_IP)):
            _ip("-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
            _ip("-n", ns, "link", "set", dev, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        folder = tmp_path_factory.mktemp("hosts")
        (folder / "bin").mkdir()
        ssh = folder / "bin" / "ssh"
        ssh.write_text(FAKE_SSH.format(a=A_IP, b=B_IP, na=na, nb=nb))
        ssh.chmod(0o755)
        hostfile, plain = folder / "hosts.txt", folder / "hosts-plain.txt"
        hostfile.write_text(f"{A_IP}\n{B_IP}  address={B_IP}\n")
        plain.write_text(f"{A_IP}\n{B_IP}\n")
        path = f"{folder / 'bin'}{os.pathsep}{os.environ['PATH']}"
        yield {"a": na, "b": nb, "path": path, "hostfile": hostfile, "plain": plain, "b_link": f"{PREFIX}vb"}
    finally:
        for ns in (na, nb):
            subprocess.run(["ip", "netns", "pids", ns], capture_output=True)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def _in_a(hosts, argv, **env) -> subprocess.Popen:
    """Start `argv` in host A, as the launching host, in its own process group."""
    full = ["ip", "netns", "exec", hosts["a"], "env", f"PATH={hosts['path']}",
            *[f"{k}={v}" for k, v in env.items()], *argv]
    return subprocess.Popen(full, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)



def _train_flags(prepared, out, name, epochs):
    return ["--prepared", str(prepared), "--out", str(out), "--name", name, "--preset", "demo", "--epochs",
            str(epochs), "--data-shape", "32", "--batch-size", "8", "--warmup-epochs", "0", "-j", "0"]



@pytest.mark.slow
def test_the_readme_multi_host_command_trains_one_model_on_two_hosts(hosts, prepared_data, tmp_path):
    proc = _in_a(hosts, ["scripts/train_distributed.sh", "2", TASK, *_train_flags(prepared_data, tmp_path, "two", 2)],
                 HOSTS=hosts["hostfile"], PY=sys.executable)
    out = finish_group(proc, 240)
    assert proc.returncode == 0, out[-3000:]
    models = fingerprints(out)
    assert sorted(models) == [0, 1] and all(len(m) == 2 and len(set(m)) == 1 for m in models.values()), models
    assert f"worker 0 on {B_IP}" not in out  # nothing failed
    assert (tmp_path / TASK / "two" / "checkpoint.json").is_file()


def _launch(hosts, hostfile, prepared, out, name, epochs):
    return [sys.executable, "-m", "fashionai", "launch", "-n", "2", "-s", "1", "--launcher", "ssh", "-H",
            str(hostfile), "--heartbeat-timeout", "8", "--grace", "2", "--", sys.executable, "-m", "fashionai",
            "train", "--task", TASK, "--kvstore", "dist_sync", *_train_flags(prepared, out, name, epochs)]


@pytest.mark.slow
def test_a_host_announcing_an_address_the_others_cannot_reach_is_named(hosts, prepared_data, tmp_path):
    """Host B's first address is one host A cannot reach: without `address=` in the hosts file its
    worker never joins the kvstore, and the job ends saying so (the other test above gives the
    address and trains)."""
    proc = _in_a(hosts, _launch(hosts, hosts["plain"], prepared_data, tmp_path, "homed", 2))
    out = finish_group(proc, 120)
    assert proc.returncode == 1, out[-3000:]
    last = out.strip().splitlines()[-1]
    assert f"on {B_IP}" in last.split(" did not join the job's kvstore within 8 s")[0] and "address=" in last, last


@pytest.mark.slow
def test_a_host_whose_link_goes_down_ends_the_job_named(hosts, prepared_data, tmp_path):
    proc = _in_a(hosts, _launch(hosts, hosts["hostfile"], prepared_data, tmp_path, "lost", 40))
    seen = []
    for line in proc.stdout:  # once an epoch is done on both hosts, host B loses its link
        seen.append(line)
        if " holds model " in line:
            _ip("-n", hosts["b"], "link", "set", hosts["b_link"], "down")
            break
    out = finish_group(proc, 120, "".join(seen))
    _ip("-n", hosts["b"], "link", "set", hosts["b_link"], "up")
    assert proc.returncode == 1, out[-3000:]
    last = out.strip().splitlines()[-1]
    assert f"on {B_IP}" in last.split(" went silent: no heartbeat for")[0] and "--resume" in last, last
