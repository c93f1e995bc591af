"""The training run's loaders (`Loaders`: train, val, train labels, val label strings, shard sampler).

Folder input reads the head's datasets (one task's class folders, or the union of several tasks'
for a multi-task layout) through gluon's DataLoader; `--input rec` reads the task's RecordIO packs.
A distributed worker trains on its shard (`ShardSampler`) and validates on the whole val split, so
every worker computes the same val metrics from the same synchronised weights. The sampler is
returned beside the loaders, for the stage that sets its epoch, rather than hung on the DataLoader.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from fashionai.data.loaders import (
    CachedImages, EpochKeys, ResizeShort, ValView, keep_in_memory, labels_of, loader_workers, make_loader,
    record_threads,
)
from fashionai.data.manifest import label_strings
from fashionai.data.recordio import check_pack, record_loader
from fashionai.data.transforms import as_array, cache_short, eval_transform, train_transform
from fashionai.training.config import TrainConfig, augmentation
from fashionai.training.distributed import ShardSampler, WorkerInfo
from fashionai.training.layout import layout_for

if TYPE_CHECKING:
    import mxnet as mx

    from fashionai.data.recordio import RecordLoader

log = logging.getLogger(__name__)


class Loaders(NamedTuple):
    """What a run reads: the loaders, the training images' class indices (class weights) and the val
    images' full label strings (the official AP), in loader order; `sampler` is the training order
    where the run fixes it (`training_order`: a distributed worker's `ShardSampler`, or the
    `EpochKeys` of `--deterministic`), for the stage to set each epoch; None otherwise (the loader's
    own random order, or RecordIO, whose iterator reads its part itself)."""

    train: mx.gluon.data.DataLoader | RecordLoader
    val: mx.gluon.data.DataLoader | RecordLoader
    train_labels: np.ndarray
    val_labels: list[str]
    sampler: ShardSampler | EpochKeys | None = None



def input_kind(config: TrainConfig, pin_device: int) -> str:
    """`--input` resolved: `auto` reads RecordIO packs where GPUs train (Python decoding would starve
    them) and the task's packs are there and fresh, the folders otherwise (a CPU trains slower than
    either decodes)."""
    if config.input != "auto":
        return config.input
    if pin_device < 0 or config.tasks or config.balance == "sampler" or config.cache_features:
        return "folder"
    try:
        for split in ("train", "val"):
            check_pack(config.prepared, config.task, split)
    except (FileNotFoundError, ValueError) as err:
        log.info("--input auto: the folders (%s; `fashionai pack` makes packs for faster GPU input)", err)
        return "folder"
    log.info("--input auto: the RecordIO packs (GPU training)")
    return "rec"


def training_order(config: TrainConfig, labels: np.ndarray, info: WorkerInfo) -> ShardSampler | EpochKeys | None:
    """The training order, where the run fixes it: a function of (seed, epoch) for a distributed
    worker's shard and under `--deterministic` (keyed by epoch, for the seeded augmentation); None
    leaves it to the loader's own random sampler."""
    if info.num_workers <= 1 and not config.deterministic:
        return None
    order = ShardSampler(labels, info, config.seed, config.balance == "sampler")
    return EpochKeys(order, len(labels)) if config.deterministic else order


def make_loaders(config: TrainConfig, num_devices: int, info: WorkerInfo = WorkerInfo(),
                 pin_device: int = -1) -> Loaders:
    """The loaders of a checked config; `pin_device`: the GPU that reads the batches first (their
    host memory is page-locked for it), -1 on the CPU."""
    if input_kind(config, pin_device) == "rec":
        return _record_loaders(config, num_devices, info, pin_device)
    head = layout_for(config)
    train_set, _ = head.dataset(config.prepared, "train")
    val_set, val_labels = head.dataset(config.prepared, "val")
    step = config.batch_size * num_devices
    augment = train_transform(config.view, **augmentation(config))
    train_labels = labels_of(train_set)
    sampler = training_order(config, train_labels, info)
    gpus = num_devices if pin_device >= 0 else 0
    processes = max(loader_workers(config.workers, gpus), 1)
    short = cache_short(augment)
    train_set = keep_in_memory(train_set, None if short is None else ResizeShort(short), processes)
    val_set = keep_in_memory(val_set, ValView(config.view), processes)
    train = make_loader(train_set, augment, step, train=True, workers=config.workers,
                        balanced=config.balance == "sampler", sampler=sampler, pin_device=pin_device, gpus=gpus,
                        seed=config.seed if config.deterministic else None)
    val_view = as_array if isinstance(val_set, CachedImages) else eval_transform(config.view)
    val = make_loader(val_set, val_view, step, train=False, workers=config.workers, pin_device=pin_device, gpus=gpus)
    log.info("%s: %d train / %d val images, %d classes", ",".join(head.tasks), len(train_set), len(val_set),
             head.total)
    return Loaders(train, val, train_labels, val_labels, sampler)


def _record_loaders(config: TrainConfig, num_devices: int, info: WorkerInfo, pin_device: int) -> Loaders:
    """make_loaders for `--input rec`: ImageRecordIter over the task's packs (fashionai pack); a
    distributed worker reads its part (`part_index`) of the training pack."""
    prepared, step = Path(config.prepared), config.batch_size * num_devices
    common = dict(view=config.view, workers=config.workers, seed=config.seed, pin_device=pin_device)
    train = record_loader(prepared, config.task, "train", step, train=True, rank=info.rank,
                          num_workers=info.num_workers, **augmentation(config), **common)
    val = record_loader(prepared, config.task, "val", step, train=False, **common)
    log.info("%s: %d train / %d val images from RecordIO packs, %d classes, %d decoding threads", config.task,
             len(train.items), len(val.items), config.num_classes, record_threads(config.workers))
    return Loaders(train, val, labels_of(train), label_strings(val, prepared, config.task))
