"""`fashionai launch`: a parameter-server job (MXNet's ps-lite kvstore, `dist_sync`) started and
watched to its end.

A job is one scheduler, S servers and N workers, each running the same command (e.g. `fashionai
train --kvstore dist_sync ...`); the `DMLC_*` environment tells each process its role, and MXNet
turns a scheduler or server into its kvstore loop at `import mxnet`. What training does inside
such a job is `fashionai.training.distributed`.

MXNet's own launcher (`tools/launch.py`, ps-lite's `dmlc_tracker`) is not used: when a worker
dies it leaves the scheduler, the servers and the other workers waiting for it for good, it exits 0
whatever its command did, its error message prints the worker's whole environment, and over ssh it
drops every variable but a few. This launcher starts the processes itself (as given, never
through a local shell; over ssh each word is quoted for the remote shell) and supervises them:
- the first process that ends with a failure (an exit status, a signal, an ssh link that went
  silent: `ssh -o ServerAliveInterval`) ends the job: every other process gets SIGTERM, then
  SIGKILL after `--grace` seconds, and `launch` exits 1 naming its role, rank, host and status;
- once every worker has ended well, the scheduler and servers get `--grace` seconds to end
  (ps-lite's finalisation), then are stopped;
- every process of the job keeps a heartbeat to `launch` (fashionai.core.heartbeat): one silent
  for `--heartbeat-timeout` seconds (a lost host, a link down), or still joining the kvstore after
  that long (a wrong address), ends the job the same way, named; a process that loses the launcher
  ends itself, so nothing is left behind on a host that was cut off;
- Ctrl-C or SIGTERM to `launch` stops the whole job the same way;
- local processes also get SIGTERM from the kernel when `launch` itself dies (PR_SET_PDEATHSIG).
Run folders stay resumable: training commits each epoch atomically (fashionai.training.checkpoint),
so the same `launch` line with `train --resume RUN` continues the job.
"""

from __future__ import annotations

import ctypes
import logging
import os
import shlex
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fashionai.core.heartbeat import BEAT_S, ROLE_VARIABLE, Heartbeats
from fashionai.core.heartbeat import VARIABLE as HEARTBEAT_VARIABLE

log = logging.getLogger(__name__)

LAUNCHERS = ("local", "ssh", "mpi", "sge", "yarn")
NOT_OFFERED = {  # launchers MXNet's tracker has that this one refuses, and why
    "mpi": "MXNet's mpi launcher passes only DMLC_* variables and never stops a job whose worker died; "
           "use --launcher ssh with the same hosts",
    "sge": "not supported: SGE jobs cannot be supervised from here; use --launcher ssh",
    "yarn": "not supported: YARN jobs cannot be supervised from here; use --launcher ssh",
}
GRACE_S = 30.0  # how long processes may take to end once asked (ps-lite finalises in ~1 s)
HEARTBEAT_S = 60.0  # a process silent this long (or joining the kvstore this long) ends the job
POLL_S = 0.2
SSH_ALIVE = ("-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3")  # a silent link ends ssh in ~15 s
PR_SET_PDEATHSIG = 1


class JobFailed(RuntimeError):
    """A process of the job failed; the rest of the job was stopped."""


@dataclass(frozen=True)
class Host:
    """One line of a hosts file: `HOST[:SSH_PORT] [interface=IF] [address=IP]` (the interface and
    address ps-lite binds to on that host: DMLC_INTERFACE, DMLC_NODE_HOST)."""

    name: str
    port: str = "22"
    interface: str = ""
    address: str = ""

    @classmethod
    def parse(cls, line: str, where: str) -> Host:
        words = line.split()
        name, _, port = words[0].partition(":")
        extra = dict(w.split("=", 1) for w in words[1:] if "=" in w)
        unknown = [w for w in words[1:] if "=" not in w or w.split("=", 1)[0] not in ("interface", "address")]
        if unknown or not name or (port and not port.isdigit()):
            raise ValueError(f"{where}: expected HOST[:SSH_PORT] [interface=IF] [address=IP], got {line!r}")
        return cls(name, port or "22", extra.get("interface", ""), extra.get("address", ""))


def read_hosts(path: str | Path) -> list[Host]:
    """The hosts of a hosts file (blank lines and `#` comments skipped); ValueError naming the line."""
    hosts = []
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if line:
            hosts.append(Host.parse(line, f"{path}:{number}"))
    if not hosts:
        raise ValueError(f"{path}: no hosts in it (one per line: HOST[:SSH_PORT] [interface=IF] [address=IP])")
    return hosts


@dataclass(frozen=True)
class Role:
    """One process of the job: `scheduler`, `server N` or `worker N`, and where it runs."""

    kind: str
    index: int
    host: Host | None = None  # None: this host, started directly

    def __str__(self) -> str:
        where = f" on {self.host.name}" if self.host else ""
        return f"{self.kind}{'' if self.kind == 'scheduler' else f' {self.index}'}{where}"


@dataclass(frozen=True)
class JobSpec:
    """What `launch` was asked for, checked."""

    command: tuple[str, ...]
    num_workers: int
    num_servers: int
    launcher: str = "local"
    hosts: tuple[Host, ...] = ()
    host_ip: str = ""
    env: tuple[str, ...] = ()
    sync_dst_dir: str = ""
    grace_s: float = GRACE_S
    heartbeat_s: float = HEARTBEAT_S


def job_spec(command: Sequence[str], *, num_workers: int, num_servers: int | None = None, launcher: str = "local",
             hostfile: str | None = None, host_ip: str | None = None, env: Sequence[str] = (),
             sync_dst_dir: str | None = None, grace_s: float = GRACE_S, heartbeat_s: float = HEARTBEAT_S) -> JobSpec:
    """The job, checked here so that errors name our flags."""
    if num_workers < 1:
        raise ValueError(f"-n/--num-workers must be >= 1, got {num_workers}")
    if launcher in NOT_OFFERED:
        raise ValueError(f"--launcher {launcher}: {NOT_OFFERED[launcher]}")
    if launcher not in LAUNCHERS:
        raise ValueError(f"--launcher must be one of local, ssh, got {launcher!r}")
    if launcher == "ssh" and not hostfile:
        raise ValueError("--launcher ssh needs -H/--hostfile (one host per line)")
    if launcher == "local" and (hostfile or sync_dst_dir):
        raise ValueError("-H/--hostfile and --sync-dst-dir are for --launcher ssh; the local launcher runs "
                         "every process on this host")
    if not command:
        raise ValueError("give the command each worker runs after --, e.g. -- fashionai train ...")
    hosts = tuple(read_hosts(hostfile)) if launcher == "ssh" else ()
    servers = num_workers if num_servers is None else num_servers
    if servers < 1:
        raise ValueError(f"-s/--num-servers must be >= 1, got {servers}")
    if heartbeat_s < 4 * BEAT_S:
        raise ValueError(f"--heartbeat-timeout must be at least {4 * BEAT_S:g} s (beats come every {BEAT_S:g} s)")
    return JobSpec(tuple(str(w) for w in command), num_workers, servers, launcher, hosts, host_ip or "",
                   tuple(env), sync_dst_dir or "", grace_s, heartbeat_s)


def roles(spec: JobSpec) -> list[Role]:
    """The scheduler here, then servers and workers; over ssh dealt to the hosts in turn."""
    out = [Role("scheduler", 0)]
    kinds = [("server", i) for i in range(spec.num_servers)] + [("worker", i) for i in range(spec.num_workers)]
    for n, (kind, i) in enumerate(kinds):
        out.append(Role(kind, i, spec.hosts[n % len(spec.hosts)] if spec.hosts else None))
    return out


def own_address(spec: JobSpec) -> str:
    """The scheduler's address as the other hosts reach it: --host-ip, 127.0.0.1 for a local job,
    else the source address of the route to the first host (a UDP connect sends nothing, and needs
    no default route)."""
    if spec.host_ip:
        return spec.host_ip
    if not spec.hosts:
        return "127.0.0.1"
    target = spec.hosts[0].name
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((socket.gethostbyname(target), 9))
            return s.getsockname()[0]
    except OSError as err:
        raise ValueError(f"cannot find this host's address toward {target} ({err}); give it with --host-ip") from None


def free_port() -> int:
    """A TCP port free on this host for the scheduler."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def role_env(spec: JobSpec, role: Role, uri: str, port: int) -> dict[str, str]:
    """The variables a process of the job needs (its role, the scheduler, the job's size, where it
    binds, its share of its host's cores, and the variables `--env` names)."""
    env = {"DMLC_ROLE": role.kind, "DMLC_PS_ROOT_URI": uri, "DMLC_PS_ROOT_PORT": str(port),
           "DMLC_NUM_WORKER": str(spec.num_workers), "DMLC_NUM_SERVER": str(spec.num_servers)}
    if role.host and role.host.interface:
        env["DMLC_INTERFACE"] = role.host.interface
    if role.host and role.host.address:
        env["DMLC_NODE_HOST"] = role.host.address
    # the workers on one host share its cores and GPUs: how many they are, and which one this is
    here = [r for r in roles(spec) if r.kind == "worker" and r.host == role.host]
    if role.kind != "scheduler":
        env["FASHIONAI_PROCESSES_PER_HOST"] = str(max(len(here), 1))
    if role in here:
        env["FASHIONAI_LOCAL_RANK"] = str(here.index(role))
    for name in spec.env:
        if name in os.environ:
            env[name] = os.environ[name]
    return env


def remote_argv(spec: JobSpec, role: Role, env: dict[str, str]) -> list[str]:
    """`ssh` running the command on `role.host` in the same folder (or --sync-dst-dir), with `env`:
    every word quoted for the remote shell, so nothing in them runs there."""
    folder = spec.sync_dst_dir or os.getcwd()
    assign = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    remote = f"cd {shlex.quote(folder)} && exec env {assign} {shlex.join(spec.command)}"
    return ["ssh", "-o", "BatchMode=yes", *SSH_ALIVE, "-p", role.host.port, role.host.name, remote]


def _die_with_parent() -> None:
    """In a child before exec: SIGTERM when the launcher dies (Linux), so no process is orphaned."""
    try:
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def start(spec: JobSpec, role: Role, env: dict[str, str]) -> subprocess.Popen:
    """One process of the job, started without a shell."""
    if role.host is None:
        return subprocess.Popen(list(spec.command), env={**os.environ, **env}, preexec_fn=_die_with_parent)
    return subprocess.Popen(remote_argv(spec, role, env), stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)


def status_text(code: int) -> str:
    """`exit status 3`, `SIGKILL`, ...; ssh's 255 means the link or the login failed."""
    if code < 0:
        try:
            return signal.Signals(-code).name
        except ValueError:
            return f"signal {-code}"
    return f"exit status {code}" + (" (ssh: the connection failed or went silent)" if code == 255 else "")


@dataclass
class Job:
    """The running processes of a job, by role."""

    procs: dict[Role, subprocess.Popen] = field(default_factory=dict)

    def stop(self, grace_s: float, keep: Sequence[Role] = ()) -> None:
        """SIGTERM to every live process, SIGKILL to those still alive after `grace_s`."""
        live = [p for r, p in self.procs.items() if r not in keep and p.poll() is None]
        for p in live:
            p.terminate()
        deadline = time.monotonic() + grace_s
        for p in live:
            try:
                p.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def first_failure(self) -> tuple[Role, int] | None:
        for role, p in self.procs.items():
            code = p.poll()
            if code not in (None, 0):
                return role, code
        return None

    def workers_done(self) -> bool:
        return all(p.poll() == 0 for r, p in self.procs.items() if r.kind == "worker")


RESUME_HINT = ("Its run folder keeps every committed epoch: run the same launch line with `train --resume "
               "RUN_DIR` to continue")


def supervise(job: Job, grace_s: float, beats: Heartbeats | None = None, timeout_s: float = HEARTBEAT_S,
              poll_s: float = POLL_S) -> None:
    """Wait for the job; JobFailed at the first process that fails, goes silent or cannot join
    (after stopping the rest)."""
    while True:
        failed = job.first_failure()
        if failed is not None:
            role, code = failed
            pid = job.procs[role].pid
            job.stop(grace_s)
            raise JobFailed(f"{role} (pid {pid}) ended with {status_text(code)}; the job's {len(job.procs) - 1} "
                            f"other process(es) were stopped. {RESUME_HINT}")
        trouble = beats.trouble(timeout_s) if beats is not None else None
        if trouble is not None:
            job.stop(grace_s)
            raise JobFailed(f"{trouble}; the job's processes were stopped. {RESUME_HINT}")
        if job.workers_done():
            deadline = time.monotonic() + grace_s
            while time.monotonic() < deadline and any(p.poll() is None for p in job.procs.values()):
                time.sleep(poll_s)
            job.stop(0.0)
            return
        time.sleep(poll_s)


def launch(command: Sequence[str], **kw) -> None:
    """Start the job for `command` and supervise it to its end (JobFailed when a process fails)."""
    spec = job_spec(command, **kw)
    uri, port = own_address(spec), free_port()
    if spec.sync_dst_dir:
        sync(spec)
    log.info("launching %d worker(s) and %d server(s) (%s), scheduler at %s:%d: %s", spec.num_workers,
             spec.num_servers, spec.launcher, uri, port, shlex.join(spec.command))
    job, beats = Job(), Heartbeats(uri)
    try:
        for role in roles(spec):
            env = {**role_env(spec, role, uri, port), HEARTBEAT_VARIABLE: f"{beats.address}:{spec.heartbeat_s:g}",
                   ROLE_VARIABLE: str(role)}
            job.procs[role] = start(spec, role, env)
        supervise(job, spec.grace_s, beats, spec.heartbeat_s)
    except BaseException:  # Ctrl-C, SIGTERM, a failed start: nothing of the job outlives launch
        job.stop(spec.grace_s)
        raise
    finally:
        beats.close()
    log.info("job done: %d worker(s) ended well", spec.num_workers)


def sync(spec: JobSpec) -> None:
    """Copy this folder to --sync-dst-dir on every host (rsync over ssh), before the job starts."""
    source = os.getcwd().rstrip("/") + "/"
    for host in dict.fromkeys(spec.hosts):
        argv = ["rsync", "-az", "-e", f"ssh -o BatchMode=yes -p {host.port}", source,
                f"{host.name}:{spec.sync_dst_dir}"]
        done = subprocess.run(argv, capture_output=True, text=True)
        if done.returncode != 0:
            raise JobFailed(f"--sync-dst-dir: copying {source} to {host.name}:{spec.sync_dst_dir} failed: "
                            f"{done.stderr.strip().splitlines()[-1:] or done.returncode}")

