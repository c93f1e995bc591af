"""What one training epoch is, behind one interface (`EpochStage`), so `fit` runs one loop.

Two stages implement it: `FullNet` (forward and backward through the whole net over the image
loaders: ordinary fine-tuning, and the `--fine-tune-epochs` after a head stage) and
`fashionai.training.features.HeadStage` (the head alone on cached backbone features,
`--freeze-backbone --cache-features`). `fit` asks a stage only for its batches per epoch (the LR
schedule's length), to train one epoch with a trainer, and to validate; each returns its part of
the epoch's metrics row.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from fashionai.training.config import TrainConfig
from fashionai.training.distributed import AuxAverager, WorkerInfo, device_mean, model_fingerprint
from fashionai.training.inputs import Loaders
from fashionai.training.layout import SingleTask, TaskLayout
from fashionai.training.loop import train_one_epoch

if TYPE_CHECKING:
    import mxnet as mx

log = logging.getLogger(__name__)


class EpochStage(Protocol):
    """One kind of training epoch."""

    @property
    def iters_per_epoch(self) -> int:
        """Trainer updates per epoch (the LR schedule counts in them)."""

    def train_epoch(self, trainer: mx.gluon.Trainer, epoch: int) -> dict[str, float]:
        """One epoch of updates: train_loss, train_acc, img_per_s."""

    def validate(self) -> dict[str, float]:
        """The val figures of the weights as they are now: val_loss, val_acc, val_map, ..."""


def average_devices(net: mx.gluon.HybridBlock) -> None:
    """Give every device the mean of the devices' BatchNorm running statistics.

    Each device updates its own running mean/var from its slice of the batch; left apart,
    validation would mix the devices' statistics while save_parameters writes device 0's, so the
    logged val metrics would not be those of the saved weights. One average per epoch (what the
    distributed job does across workers) makes them identical everywhere.
    """
    for param in net.collect_params(".*running_mean|.*running_var").values():
        if len(param.list_ctx()) > 1:
            param.set_data(device_mean(param))


@dataclass
class FullNet:
    """Epochs of the whole net (what is not frozen) over the image loaders.

    `weights`: per-class loss weights (--balance weights) or None; `averager`: a distributed job's
    BatchNorm averager (None in one process, where several devices are averaged locally).
    """

    net: mx.gluon.HybridBlock
    loaders: Loaders
    ctx: Sequence[mx.Context]
    config: TrainConfig
    layout: SingleTask | TaskLayout
    info: WorkerInfo = WorkerInfo()
    weights: np.ndarray | None = None
    averager: AuxAverager | None = None

    @property
    def iters_per_epoch(self) -> int:
        return len(self.loaders.train)

    def train_epoch(self, trainer: mx.gluon.Trainer, epoch: int) -> dict[str, float]:
        """One pass over the train loader, then the same BatchNorm statistics on every device and worker."""
        if self.loaders.sampler is not None:
            self.loaders.sampler.set_epoch(epoch)  # epoch e's shard order, whatever ran (or resumed) before
        row = train_one_epoch(self.net, self.loaders.train, trainer, self.ctx, self.config, epoch, self.layout,
                              self.weights, self.info.num_workers)
        self.synchronise(epoch)
        return row

    def synchronise(self, epoch: int) -> None:
        """Average the running statistics the devices (or workers) gathered apart, so every one
        validates, and rank 0 saves, the same model."""
        if self.averager is not None:
            self.averager.average()
            log.info("epoch %d: worker %d holds model %s", epoch, self.info.rank, model_fingerprint(self.net))
        elif len(self.ctx) > 1:
            average_devices(self.net)

    def validate(self) -> dict[str, float]:
        step = self.config.batch_size * len(self.ctx)
        return self.layout.validate(self.net, self.loaders.val, self.ctx, step, self.loaders.val_labels)
