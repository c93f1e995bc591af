"""Multi-process data-parallel training on MXNet's parameter-server kvstore (`dist_sync`,
`dist_device_sync`; `dist_async` is not offered: it needs the optimizer on the servers).

MXNet's own launcher (`mxnet/tools/launch.py` with ps-lite's `dmlc_tracker`) starts a scheduler,
servers and workers, each worker running the same `fashionai train --kvstore dist_sync` command;
the environment (`DMLC_ROLE`, ...) tells each process its role. This module
- runs that launcher in-process, with the one-line fix it needs on Python 3.11 (`Thread.isAlive`
  was removed; the stock tracker still calls it);
- gives training what it needs to know about the job: a worker's rank and the worker count
  (`WorkerInfo`), and its share of the data (`shard`): each worker reads a disjoint 1/N of the
  training images, so an epoch is one pass over the data across the whole job.

Scaling rule (documented in the README): `--batch-size` stays per device, so the global batch is
`batch_size x devices x workers`; the learning rate is NOT changed silently: pass the linearly
scaled LR yourself (Goyal et al. 2017: lr x workers, with warm-up) if you keep the epoch count.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import logging
import os
import runpy
import shlex
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

DIST_KVSTORES = ("dist_sync", "dist_device_sync")
LAUNCHERS = ("local", "ssh", "mpi", "sge", "yarn")
# AuxAverager's kvstore keys: above the Trainer's (one per parameter) and below 2**31 / 9973: MXNet
# picks a key's server as (key * 9973) % servers in a 32-bit int, which overflows above that
AUX_KEY_BASE = 100_000
# The worker command travels to every process in this variable, never through a shell: MXNet's
# tracker joins the words it is given with spaces and runs them through one shell (local, mpi, the
# scheduler) or two (ssh), so a path with spaces would split and `$(...)` inside an argument would
# run. The launcher is given only `python -m fashionai.training.distributed`, which decodes the
# variable and execs the command with its words intact.
COMMAND_VARIABLE = "FASHIONAI_LAUNCH_COMMAND"


@dataclass(frozen=True)
class WorkerInfo:
    """Where this process stands in the job: rank 0 of 1 outside distributed training."""

    rank: int = 0
    num_workers: int = 1

    @property
    def is_chief(self) -> bool:
        """Rank 0 writes checkpoints, metrics and logs the summary; the others only train."""
        return self.rank == 0


def is_distributed(kvstore: str) -> bool:
    """True for the ps-lite kvstores that need the launcher (the process must have DMLC_ROLE)."""
    return kvstore in DIST_KVSTORES


def check_launched(kvstore: str) -> None:
    """Refuse a dist kvstore outside the launcher: MXNet would wait forever for a scheduler."""
    if is_distributed(kvstore) and "DMLC_ROLE" not in os.environ:
        raise ValueError(f"--kvstore {kvstore} needs MXNet's launcher: run it through "
                         "`fashionai launch -n WORKERS -- fashionai train ...` (or "
                         "scripts/train_distributed.sh); for one machine use --kvstore device")


def worker_info(kvstore) -> WorkerInfo:
    """Rank and worker count of a created kvstore (a plain object or None: a single process)."""
    if kvstore is None or isinstance(kvstore, str):
        return WorkerInfo()
    return WorkerInfo(int(kvstore.rank), int(kvstore.num_workers))


def shard(count: int, info: WorkerInfo) -> list[int]:
    """The indices of `count` items that worker `info.rank` reads: every N-th, starting at its rank.

    Strided rather than contiguous so that every worker sees every class of a class-sorted
    dataset; the shards are disjoint and cover all items.
    """
    return list(range(info.rank, count, info.num_workers))


class ShardSampler:
    """A distributed worker's training order: each epoch, one permutation of all items (or a
    class-balanced draw) from an RNG seeded by (seed, epoch), the same on every worker, of which
    this worker takes every N-th item, cut to `count // N` so every worker runs the same number of
    steps (dist_sync waits for all workers at each step; one extra batch would hang the job).
    """

    def __init__(self, labels: Sequence[int], info: WorkerInfo, seed: int, balanced: bool = False):
        self._labels = np.asarray(labels)
        self._info, self._seed, self._balanced, self._epoch = info, seed, balanced, 0
        self._weights = None
        if balanced:
            counts = np.bincount(self._labels)
            self._weights = 1.0 / counts[self._labels]
            self._weights /= self._weights.sum()

    def set_epoch(self, epoch: int) -> None:
        """Resume support: the order of epoch e does not depend on the epochs run before it."""
        self._epoch = epoch

    def __len__(self) -> int:
        return len(self._labels) // self._info.num_workers

    def __iter__(self):
        rng = np.random.default_rng([self._seed, self._epoch])
        self._epoch += 1
        n = len(self._labels)
        order = rng.choice(n, size=n, p=self._weights) if self._balanced else rng.permutation(n)
        return iter(order[shard(n, self._info)][:len(self)].tolist())


class AuxAverager:
    """Averages the non-trained parameters (BatchNorm running mean/var) over the workers.

    The kvstore synchronises gradients only; each worker's running statistics follow its own
    shard, so without this the workers would validate (and rank 0 save) different models.
    Called before each validation, it makes every worker's network identical, hence the val
    metrics too. Keys start at AUX_KEY_BASE.
    """

    def __init__(self, net, kv, info: WorkerInfo):
        self._kv, self._n = kv, info.num_workers
        self._params = [p for p in net.collect_params().values() if p.grad_req == "null"]
        self._ready = False

    def _init_keys(self) -> None:
        """First call, after a forward pass: shapes of a from-scratch net are known only then."""
        import mxnet as mx

        for i, param in enumerate(self._params):
            self._kv.init(AUX_KEY_BASE + i, mx.nd.zeros(param.shape, dtype=param.dtype))
        self._ready = True

    def average(self) -> None:
        import mxnet as mx

        if not self._ready:
            self._init_keys()
        for i, param in enumerate(self._params):
            key = AUX_KEY_BASE + i
            self._kv.push(key, device_mean(param))
            total = mx.nd.zeros(param.shape, dtype=param.dtype)
            self._kv.pull(key, out=total)
            param.set_data(total / self._n)
        mx.nd.waitall()


def dist_trainer(params, optimizer: str, optimizer_params: dict, kv):
    """A Gluon Trainer over the distributed kvstore `kv`, updating locally (update_on_kvstore=False),
    that waits for its inputs before it talks to the servers.

    Why: with MXNet 1.9.1 under load, the workers of one job ended up holding different models.
    Measured with 2 and 4 busy processes on 2 cores (logged model fingerprints, below): without
    waits the workers disagreed from epoch 0 (4 of 4 runs); waiting for the gradients of a step to
    be complete before pushing them fixed every epoch after the first step; waiting also for the
    first step's broadcast of rank 0's weights made every run identical, run after run. The waits
    cost little: the loop reads each step's loss right after anyway. (Where exactly MXNet's engine
    lets the push run early was not found; oneDNN-layout arrays and the kvstore's zero-copy
    buffers are the suspects.)
    """
    import mxnet as mx

    class WaitingTrainer(mx.gluon.Trainer):
        def _init_params(self):  # the broadcast of rank 0's parameters, inside the first step()
            super()._init_params()
            mx.nd.waitall()

        def _allreduce_grads(self):  # push/pull of the gradients, inside step()
            for param in self._params:
                if param.grad_req != "null":
                    for grad in param.list_grad():
                        grad.wait_to_read()
            super()._allreduce_grads()

    return WaitingTrainer(params, optimizer, optimizer_params, kvstore=kv, update_on_kvstore=False)


def model_fingerprint(net) -> str:
    """A short SHA-1 of every parameter (first device's copy, in name order): two workers print the
    same fingerprint exactly when they hold the same model."""
    import mxnet as mx

    mx.nd.waitall()
    digest = hashlib.sha1()
    for name, param in sorted(net.collect_params().items()):
        digest.update(name.encode())
        digest.update(param.list_data()[0].asnumpy().tobytes())
    return digest.hexdigest()[:16]


def device_mean(param):
    """The mean of a parameter's copies on this process's devices (an NDArray on the first)."""
    import mxnet as mx

    local = param.list_data()
    return mx.nd.add_n(*[d.as_in_context(local[0].context) for d in local]) / len(local)


def _patch_tracker() -> None:
    """dmlc_tracker calls `Thread.isAlive`, removed in Python 3.9: alias it to `is_alive`."""
    if not hasattr(threading.Thread, "isAlive"):
        threading.Thread.isAlive = threading.Thread.is_alive  # type: ignore[attr-defined]


def launcher_path() -> Path:
    """MXNet's `tools/launch.py`, shipped inside the mxnet wheel."""
    spec = importlib.util.find_spec("mxnet")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("mxnet is not installed in this environment")
    path = Path(spec.origin).parent / "tools" / "launch.py"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: MXNet's launcher is missing from this mxnet installation")
    return path


def launch_args(command: Sequence[str], *, num_workers: int, num_servers: int | None = None,
                launcher: str = "local", hostfile: str | None = None,
                sync_dst_dir: str | None = None, env: Sequence[str] = ()) -> list[str]:
    """The argv of MXNet's launch.py for `command` (checked here, so errors name our flags)."""
    if num_workers < 1:
        raise ValueError(f"-n/--num-workers must be >= 1, got {num_workers}")
    if launcher not in LAUNCHERS:
        raise ValueError(f"--launcher must be one of {LAUNCHERS}, got {launcher!r}")
    if launcher in ("ssh", "mpi") and not hostfile:
        raise ValueError(f"--launcher {launcher} needs -H/--hostfile (one host per line)")
    if not command:
        raise ValueError("give the command each worker runs after --, e.g. -- fashionai train ...")
    argv = [str(launcher_path()), "-n", str(num_workers), "-s", str(num_servers or num_workers),
            "--launcher", launcher]
    if hostfile:
        argv += ["-H", hostfile]
    if sync_dst_dir:
        argv += ["--sync-dst-dir", sync_dst_dir]
    for name in [*env, *([COMMAND_VARIABLE] if launcher in ("ssh", "mpi") else [])]:
        argv += ["--env", name]
    entry = worker_entry()
    if launcher == "ssh" and any(shlex.quote(w) != w for w in entry):
        raise ValueError(f"the Python path {entry[0]!r} has characters the ssh launcher cannot pass through its "
                         "two shells; use a Python installed at a plain path")
    return argv + [shlex.quote(word) for word in entry]


def worker_entry() -> list[str]:
    """What the launcher runs in every process: this module, which execs the encoded command."""
    return [sys.executable, "-m", "fashionai.training.distributed"]


def encode_command(command: Sequence[str]) -> str:
    """The command as URL-safe base64 of its JSON: letters, digits, `-_=` only, so it passes any
    shell (ssh's `export NAME=value`) unchanged."""
    return base64.urlsafe_b64encode(json.dumps([str(w) for w in command]).encode()).decode()


def decode_command(text: str) -> list[str]:
    """The inverse of `encode_command`; ValueError for anything else."""
    try:
        command = json.loads(base64.urlsafe_b64decode(text.encode()).decode())
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"{COMMAND_VARIABLE} is not a command encoded by `fashionai launch` ({err})") from None
    if not isinstance(command, list) or not command or not all(isinstance(w, str) for w in command):
        raise ValueError(f"{COMMAND_VARIABLE} does not hold a command line")
    return command


def exec_launched_command() -> None:
    """Replace this process by the command `fashionai launch` encoded (the launcher's workers,
    servers and scheduler all run this)."""
    if COMMAND_VARIABLE not in os.environ:
        raise SystemExit(f"{COMMAND_VARIABLE} is not set: this module is run by `fashionai launch`")
    command = decode_command(os.environ[COMMAND_VARIABLE])
    os.execvp(command[0], command)


def launch(command: Sequence[str], **kw) -> None:
    """Run MXNet's launcher for `command` in this process (blocks until the job ends).

    The local launcher starts the scheduler here and `num_workers + num_servers` shells running
    `command`; each worker's exit status is checked by the tracker (non-zero raises there).
    """
    argv = launch_args(command, **kw)
    _patch_tracker()
    log.info("launching %s with: %s", shlex.join(command), " ".join(argv[1:]))
    saved, saved_env = sys.argv, os.environ.get(COMMAND_VARIABLE)
    sys.argv, os.environ[COMMAND_VARIABLE] = argv, encode_command(command)
    try:
        runpy.run_path(argv[0], run_name="__main__")
    finally:
        sys.argv = saved
        if saved_env is None:
            os.environ.pop(COMMAND_VARIABLE, None)
        else:
            os.environ[COMMAND_VARIABLE] = saved_env


if __name__ == "__main__":
    exec_launched_command()
