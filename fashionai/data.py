"""Datasets, transforms and loaders for one task's prepared class folders.

The normalisation constants are defined here once (ImageNet statistics, which the model-zoo weights
were trained with). The evaluation transform is the single definition of "the val view"; prediction
reproduces it exactly for TTA mode `none` (see fashionai.predict).
Folder layout read: `<prepared>/<task>/{train,val}/<class index>/<file>` (docs/design.md).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import mxnet as mx

log = logging.getLogger(__name__)

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
CROP_FRACTION = 0.875  # evaluation: resize the short side to data_shape / 0.875, then centre-crop


def resize_size(data_shape: int) -> int:
    """Short side the evaluation transform resizes to before its centre crop (256 for 224)."""
    return int(data_shape / CROP_FRACTION)


def eval_transform(data_shape: int) -> mx.gluon.Block:
    """HWC uint8 image -> (3, data_shape, data_shape) float32: resize short side, centre crop, normalise."""
    from mxnet.gluon.data.vision import transforms

    return transforms.Compose([
        transforms.Resize(resize_size(data_shape), keep_ratio=True),
        transforms.CenterCrop(data_shape),
        transforms.ToTensor(),
        transforms.Normalize(MEAN, STD),
    ])


def train_transform(
    data_shape: int, *, min_scale: float = 0.08, jitter: float = 0.4, lighting: float = 0.1,
) -> mx.gluon.Block:
    """The GluonCV ImageNet training augmentation: random resized crop, flip, colour jitter, PCA
    lighting noise, normalise. `min_scale` is the smallest crop area share (0.08 in GluonCV)."""
    from mxnet.gluon.data.vision import transforms

    steps = [transforms.RandomResizedCrop(data_shape, scale=(min_scale, 1.0)), transforms.RandomFlipLeftRight()]
    if jitter > 0:
        steps.append(transforms.RandomColorJitter(brightness=jitter, contrast=jitter, saturation=jitter))
    if lighting > 0:
        steps.append(transforms.RandomLighting(lighting))
    steps += [transforms.ToTensor(), transforms.Normalize(MEAN, STD)]
    return transforms.Compose(steps)


def split_dir(prepared: str | Path, task: str, split: str) -> Path:
    """`<prepared>/<task>/<split>`; FileNotFoundError naming the command that makes it."""
    path = Path(prepared) / task / split
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such folder; run `fashionai prepare --out {prepared}` first")
    return path


def image_folder(folder: str | Path, num_classes: int) -> mx.gluon.data.vision.ImageFolderDataset:
    """ImageFolderDataset whose labels are the class indices named by the folders `0..K-1`.

    ImageFolderDataset numbers folders in sorted string order; checking that the names are exactly
    0..K-1 in that order guarantees label == class index (K <= 10, so no '10' < '2' problem).
    """
    from mxnet.gluon.data.vision import ImageFolderDataset

    dataset = ImageFolderDataset(str(folder), flag=1)
    expected = [str(i) for i in range(num_classes)]
    if dataset.synsets != expected:
        raise ValueError(f"{folder}: class folders {dataset.synsets}, expected {expected} (fashionai prepare)")
    if not dataset.items:
        raise ValueError(f"{folder}: no images")
    return dataset


def labels_of(dataset) -> np.ndarray:
    """(N,) int class index of every item of an ImageFolderDataset, without decoding images."""
    return np.array([label for _, label in dataset.items], dtype=np.int64)


class BalancedSampler:
    """Draws `len(labels)` indices per epoch with replacement, each class equally likely.

    Hand-written: gluon 1.x has no weighted sampler. Uses numpy's global RNG, seeded by `fit`.
    """

    def __init__(self, labels: Sequence[int]):
        labels = np.asarray(labels)
        counts = np.bincount(labels)
        self._weights = 1.0 / counts[labels]
        self._weights /= self._weights.sum()

    def __iter__(self) -> Iterator[int]:
        return iter(np.random.choice(len(self._weights), size=len(self._weights), p=self._weights).tolist())

    def __len__(self) -> int:
        return len(self._weights)


def make_loader(
    dataset, transform, batch_size: int, *, train: bool, workers: int = 0, balanced: bool = False,
    sampler=None,
) -> mx.gluon.data.DataLoader:
    """DataLoader over `dataset` with `transform` on the image; `sampler` replaces the training
    order (a distributed worker's shard, see fashionai.distributed.ShardSampler).

    Training drops the last partial batch (`discard`) so every step has the same shape, which
    `hybridize(static_shape=True)` needs; evaluation keeps every image (`keep`) and the caller pads.
    """
    from mxnet.gluon.data import DataLoader
    from mxnet.gluon.data.sampler import BatchSampler, RandomSampler, SequentialSampler

    data = dataset.transform_first(transform)
    if train:
        if sampler is None:
            sampler = BalancedSampler(labels_of(dataset)) if balanced else RandomSampler(len(dataset))
        if len(sampler) < batch_size:
            raise ValueError(f"{len(sampler)} training images is fewer than one batch ({batch_size}); lower -b")
        batches = BatchSampler(sampler, batch_size, last_batch="discard")
    else:
        batches = BatchSampler(SequentialSampler(len(dataset)), batch_size, last_batch="keep")
    return DataLoader(data, batch_sampler=batches, num_workers=loader_workers(workers))


# --- workers ------------------------------------------------------------------------------------
AUTO_WORKERS = -1  # TrainConfig.workers default: sized from the cores (loader_workers, record_threads)
MAX_AUTO_PROCESSES = 4  # the Gluon tutorial's 4 loader processes, on hosts with at least 4 cores


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask, e.g. a container's share)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def loader_workers(workers: int) -> int:
    """DataLoader worker processes: `workers` as given (0 = decode in the training process), or
    for AUTO_WORKERS (any negative value) min(4, cores): more processes than cores only contend."""
    return min(MAX_AUTO_PROCESSES, usable_cores()) if workers < 0 else workers


def record_threads(workers: int) -> int:
    """ImageRecordIter decoding threads: `workers` when > 0, else one per core (GluonCV's
    `--use-rec` path gives it all cores; C++ threads do not pay Python's per-process costs), at most
    half the cores: MXNet 1.9.1's prefetching ImageRecordIter caps them there itself (its guess at
    the physical cores, iter_image_recordio_2.cc), so this says what it will really use."""
    return min(workers if workers > 0 else usable_cores(), max(usable_cores() // 2, 1))


# --- RecordIO input (`--input rec`, packed by fashionai.pack) -----------------------------------
class RecordSplit:
    """A packed split checked against its folder (fashionai.pack.check_pack): the .rec/.idx files,
    the sidecar and `items`, (absolute path, class index) in pack order, the same attribute
    gluon's ImageFolderDataset has, so `labels_of` and `train.val_label_strings` read it unchanged."""

    def __init__(self, prepared: str | Path, task: str, split: str):
        from fashionai.pack import check_pack

        self.files, self.meta, packed = check_pack(prepared, task, split)
        self.items = [(str(self.files.folder / rel), label) for rel, label in packed]
        self.task, self.split = task, split

    def __len__(self) -> int:
        return len(self.items)

    def check_size(self, data_shape: int) -> None:
        """Warn when the pack is smaller than the evaluation resize: every view gets upsampled."""
        if self.meta["short_side"] < resize_size(data_shape):
            log.warning("%s/%s was packed at short side %d px, below the %d px that %d px input resizes to: "
                        "images are upsampled; `fashionai pack --short-side %d` keeps their detail",
                        self.task, self.split, self.meta["short_side"], resize_size(data_shape), data_shape,
                        resize_size(data_shape))


def part_sizes(count: int, parts: int) -> list[int]:
    """Images in each of `parts` parts of a pack, as ImageRecordIter's indexed RecordIO splitter cuts
    it (dmlc-core IndexedRecordIOSplitter::ResetPartition: contiguous runs of ceil(count / parts))."""
    step = -(-count // parts)
    return [max(0, min(count, (r + 1) * step) - r * step) for r in range(parts)]


def record_iter_args(data_shape: int, *, train: bool, min_scale: float = 0.08, jitter: float = 0.4,
                     lighting: float = 0.1) -> dict:
    """ImageRecordIter options matching `train_transform` / `eval_transform` (GluonCV
    train_imagenet.py `--use-rec`): random resized crop (area [min_scale, 1], aspect [3/4, 4/3]),
    mirror, colour jitter and PCA lighting for training; resize the short side to
    data_shape / 0.875 and centre-crop for evaluation; both normalised with MEAN / STD on 0..255."""
    args = dict(data_shape=(3, data_shape, data_shape),
                **{f"mean_{c}": 255 * m for c, m in zip("rgb", MEAN)},
                **{f"std_{c}": 255 * s for c, s in zip("rgb", STD)})
    if not train:
        return {**args, "resize": resize_size(data_shape)}
    return {**args, "random_resized_crop": True, "min_random_area": min_scale, "max_random_area": 1.0,
            "min_aspect_ratio": 3 / 4, "max_aspect_ratio": 4 / 3, "rand_mirror": True,
            "brightness": jitter, "contrast": jitter, "saturation": jitter, "pca_noise": lighting}


class RecordLoader:
    """What the training loop needs of a gluon DataLoader, over MXNet's C++ `mx.io.ImageRecordIter`
    (decoding and augmentation in native threads, batches prefetched in the background).

    Iterating yields (data (B, 3, S, S) float32, label (B,) int64) like the folder loader; `len` is
    the batches per epoch (the LR schedule's iters_per_epoch) and each `iter` starts a new epoch.
    Training yields only full batches, the same number on every distributed worker (the smallest
    part's), so `hybridize(static_shape=True)` keeps one shape and dist_sync never waits on a worker
    that has run out; evaluation yields every image once, in pack order, the last batch cut to the
    images left. The iterator's own pad count is not used: with round_batch=False MXNet 1.9.1
    reports pad 0 for a short last batch (iter_image_recordio_2.cc), so the counts come from the pack.
    A batch's arrays are the iterator's buffers, reused a few batches later: use or copy them then.
    """

    shard_sampler = None  # the folder loader's distributed sampler; a part_index does that here

    def __init__(self, split: RecordSplit, batch_size: int, *, train: bool, data_shape: int,
                 threads: int, seed: int = 0, rank: int = 0, num_workers: int = 1, **augment: float):
        import mxnet as mx

        self.items, self.batch_size, self.train = split.items, batch_size, train
        parts = part_sizes(len(split), num_workers) if train else [len(split)]
        if train and min(parts) < batch_size:
            raise ValueError(f"{split.task}/{split.split}: {min(parts)} training images per worker is fewer "
                             f"than one batch ({batch_size}); lower -b")
        self._batches = min(parts) // batch_size if train else -(-len(split) // batch_size)
        self._iter = mx.io.ImageRecordIter(
            path_imgrec=str(split.files.rec), path_imgidx=str(split.files.idx), batch_size=batch_size,
            preprocess_threads=threads, shuffle=train, seed=seed, num_parts=num_workers if train else 1,
            part_index=rank if train else 0, round_batch=False, verbose=False,
            device_id=0 if mx.context.num_gpus() else -1,  # pinned host memory only where a GPU reads it
            **record_iter_args(data_shape, train=train, **augment))
        self._fresh = True  # a new iterator is already at the start (and prefetching)

    def __len__(self) -> int:
        return self._batches

    def __iter__(self) -> Iterator[tuple[mx.nd.NDArray, mx.nd.NDArray]]:
        if not self._fresh:
            self._iter.reset()
        self._fresh = False
        left = len(self.items)
        for _ in range(self._batches):
            try:
                batch = self._iter.next()
            except StopIteration:
                raise RuntimeError(f"the RecordIO iterator ended early ({left} images left): re-pack") from None
            keep = self.batch_size if self.train else min(self.batch_size, left)
            left -= keep
            data, label = batch.data[0], batch.label[0].reshape((-1,)).astype("int64")
            yield (data, label) if keep == self.batch_size else (data[:keep], label[:keep])


def record_loader(prepared: str | Path, task: str, split: str, batch_size: int, *, train: bool,
                  data_shape: int, workers: int = AUTO_WORKERS, seed: int = 0, rank: int = 0,
                  num_workers: int = 1, **augment: float) -> RecordLoader:
    """RecordLoader over `<prepared>/<task>/<split>.rec`, refusing a missing or stale pack."""
    split_data = RecordSplit(prepared, task, split)
    split_data.check_size(data_shape)
    return RecordLoader(split_data, batch_size, train=train, data_shape=data_shape,
                        threads=record_threads(workers), seed=seed, rank=rank, num_workers=num_workers,
                        **augment)
