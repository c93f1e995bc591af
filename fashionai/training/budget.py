"""`--budget-seconds`: as many epochs as fit in a time budget on the machine at hand.

A budget in seconds means the same thing on a laptop and on a GPU host; a count of epochs does not.
Before the run starts, a short probe times real training steps (the run's loaders, augmentation,
net, input size and devices: forward, backward and an update of a throwaway copy) and one val
batch, and the run gets the epochs that fit: the resolved count is what config.json records, so a
resume continues the same schedule. The probe runs before the run's seeds are set, so it changes no
random draw of the run itself.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from fashionai.model import build_net
from fashionai.training.config import TrainConfig
from fashionai.training.inputs import make_loaders
from fashionai.training.layout import layout_for
from fashionai.training.loop import softmax_loss, step

if TYPE_CHECKING:
    import mxnet as mx

log = logging.getLogger(__name__)

PROBE_BATCHES = 4  # timed training steps, after one untimed (hybridize, kernel selection)


def probe_seconds(config: TrainConfig, ctx: Sequence[mx.Context]) -> tuple[float, float, int, int]:
    """(seconds per training batch, seconds per val batch, training batches, val batches) of the
    config's run on `ctx`, with the loaders as the run reads them (decoding and augmentation
    included)."""
    import mxnet as mx

    loaders = make_loaders(config, len(ctx))
    layout = layout_for(config)
    net = build_net(config.model, config.num_classes, ctx=list(ctx))  # random weights: speed only
    trainer = mx.gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.0})
    batches = iter(loaders.train)
    times = []
    for _ in range(min(PROBE_BATCHES + 1, len(loaders.train))):
        start = time.time()
        data, label = next(batches)
        xs, ts, ys = (mx.gluon.utils.split_and_load(x, ctx) for x in (data, layout.targets(label, 0.0), label))
        step(net, softmax_loss(), xs, ts, [None] * len(ctx), trainer, data.shape[0],
             adjust=lambda outs: layout.masked(outs, ys))
        mx.nd.waitall()
        times.append(time.time() - start)
    start = time.time()
    data, _ = next(iter(loaders.val))
    _ = [net(x).asnumpy() for x in mx.gluon.utils.split_and_load(data, ctx)]
    train_batch = sum(times[1:]) / max(len(times) - 1, 1) if len(times) > 1 else times[0]
    return train_batch, time.time() - start, len(loaders.train), len(loaders.val)


def budget_epochs(seconds: float, train_batch: float, val_batch: float, train_batches: int,
                  val_batches: int, most: int) -> int:
    """Whole epochs (1 to `most`) whose training and validation fit in `seconds`."""
    epoch = train_batch * train_batches + val_batch * val_batches
    return max(1, min(most, math.floor(seconds / max(epoch, 1e-9))))


def fit_budget(config: TrainConfig, ctx: Sequence[mx.Context]) -> TrainConfig:
    """The config with `epochs` resolved from `budget_s` (at most config.epochs: the budget only
    shortens a schedule), and its warm-up kept shorter than the run; unchanged without a budget or
    on a resume (the run's own count stands)."""
    if config.budget_s <= 0 or config.resume:
        return config
    train_batch, val_batch, train_batches, val_batches = probe_seconds(config, ctx)
    epochs = budget_epochs(config.budget_s, train_batch, val_batch, train_batches, val_batches, config.epochs)
    log.info("--budget-seconds %.0f: %.3f s per training batch, %.3f s per val batch here -> %d epochs (of at "
             "most %d)", config.budget_s, train_batch, val_batch, epochs, config.epochs)
    return config.replace(epochs=epochs, warmup_epochs=min(config.warmup_epochs, epochs - 1))

