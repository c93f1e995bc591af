"""Datasets, transforms and loaders for one task's prepared class folders.

The normalisation constants are defined here once (ImageNet statistics, which the model-zoo weights
were trained with). The evaluation transform is the single definition of "the val view"; prediction
reproduces it exactly for TTA mode `none` (see fashionai.predict).
Folder layout read: `<prepared>/<task>/{train,val}/<class index>/<file>` (docs/design.md).
"""

from __future__ import annotations

import logging
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
    return DataLoader(data, batch_sampler=batches, num_workers=workers)
