"""Multi-process data-parallel training on MXNet's parameter-server kvstore (`dist_sync`,
`dist_device_sync`; `dist_async` is not offered: it needs the optimizer on the servers).

The job is started by `fashionai launch` (`fashionai.launcher`); every worker runs the same
`fashionai train --kvstore dist_sync` command. This module gives training what it needs to know
about the job: a worker's rank and the worker count (`WorkerInfo`), and its share of the data
(`shard`): each worker reads a disjoint 1/N of the training images, so an epoch is one pass over
the data across the whole job.

Scaling rule (documented in docs/runtime.md): `--batch-size` stays per device, so the global batch is
`batch_size x devices x workers`; the learning rate is NOT changed silently: pass the linearly
scaled LR yourself (Goyal et al. 2017: lr x workers, with warm-up) if you keep the epoch count.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


DIST_KVSTORES = ("dist_sync", "dist_device_sync")
# AuxAverager's kvstore keys: above the Trainer's (one per parameter) and below 2**31 / 9973: MXNet
# picks a key's server as (key * 9973) % servers in a 32-bit int, which overflows above that
AUX_KEY_BASE = 100_000


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
            overlapping_pushpull(self._kvstore, self._params)

    return WaitingTrainer(params, optimizer, optimizer_params, kvstore=kv, update_on_kvstore=False)


def overlapping_pushpull(kvstore, params) -> None:
    """Push/pull each parameter's gradients as soon as they are complete, the last layer's first.

    Why: backward computes the last layers' gradients first, and every call here is asynchronous
    in MXNet's engine, so a parameter's allreduce runs while the earlier layers' gradients are
    still being computed. Waiting for every gradient before the first push (the fix for workers
    drifting apart, see dist_trainer) had removed that overlap; waiting per parameter keeps the
    fix, since no gradient is pushed before it is complete. Keys and priorities are Gluon's own
    (`Trainer._allreduce_grads`: key i, priority -i); dense gradients only, as the nets here have.
    """
    for i in reversed(range(len(params))):
        param = params[i]
        if param.grad_req == "null":
            continue
        grads = param.list_grad()
        for grad in grads:
            grad.wait_to_read()
        kvstore.pushpull(i, grads, priority=-i)


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
