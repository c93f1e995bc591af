"""Datasets and loaders of one task's prepared class folders, and how many workers feed them.

Folder layout read: `<prepared>/<task>/{train,val}/<class index>/<file>` (docs/design.md).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fashionai.core.cpu import usable_cores
from fashionai.data.transforms import as_array, eval_transform, resize_short

# what gluon's ImageFolderDataset reads (it skips other files with only a warning): what prepared
# folders hold, what training, int8 calibration and `predict --images DIR` read
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")

if TYPE_CHECKING:
    import mxnet as mx

log = logging.getLogger(__name__)


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


class ItemsDataset:
    """(image, label) from a list of (path, label), e.g. the union of several tasks' class folders,
    read like `ImageFolderDataset` (OpenCV decode, RGB, HWC uint8) and with the same `items`."""

    def __init__(self, items: Sequence[tuple[str, int]]):
        self.items = list(items)

    def __getitem__(self, idx: int):
        import mxnet as mx

        path, label = self.items[idx]
        return mx.image.imread(path, flag=1), label

    def __len__(self) -> int:
        return len(self.items)

    def transform_first(self, fn):
        import mxnet as mx

        return mx.gluon.data.SimpleDataset(self).transform_first(fn)


# --- images kept in memory ---------------------------------------------------------------------
MEMINFO = Path("/proc/meminfo")
CACHE_MEMORY_SHARE = 0.25  # of the memory available when the loaders are made


def available_memory(meminfo: Path = MEMINFO) -> int:
    """Bytes the kernel says can be allocated without swapping (MemAvailable), 0 where unknown."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def cache_fits(count: int, item_bytes: int, processes: int, available: int | None = None) -> bool:
    """Whether `count` items of `item_bytes` each, held by every one of `processes` (each loader
    process fills its own copy), take at most CACHE_MEMORY_SHARE of the available memory."""
    available = available_memory() if available is None else available
    return count * item_bytes * max(processes, 1) <= CACHE_MEMORY_SHARE * available


class ResizeShort:
    """An image's short side shrunk to `short` (transforms.resize_short), as uint8 numpy; a smaller
    image is kept as it is (a crop that needs it larger enlarges it itself, as from the file)."""

    def __init__(self, short: int):
        self.short = short

    def __call__(self, image) -> np.ndarray:
        image = as_array(image)
        return image if min(image.shape[:2]) <= self.short else resize_short(image, self.short)

    def item_bytes(self) -> int:
        return self.short * (self.short * 3 // 2) * 3  # up to a 2:3 image (the competition's are near square)


class CachedImages:
    """dataset[i] with `fn` applied to its image once per index and kept in this process: the
    training crops then start from a small resized copy instead of decoding the file every epoch
    (decoding a 215 px demo image took 0.3 ms, and the whole augmentation of the file 1.1-1.2 ms
    against 0.17 ms from the kept copy; a step of mobilenet0.25 at 64 px takes 0.8 ms per image). Exact where `fn` is the first step the transform takes anyway (the crops'
    resize to their short side; the val view, which draws nothing). `items` as the dataset's."""

    def __init__(self, dataset, fn):
        self.dataset, self.fn, self.items, self.kept = dataset, fn, dataset.items, {}

    def __getitem__(self, idx: int):
        if idx not in self.kept:
            image, label = self.dataset[idx]
            self.kept[idx] = (self.fn(image), label)
        return self.kept[idx]

    def __len__(self) -> int:
        return len(self.dataset)

    def transform_first(self, fn):
        import mxnet as mx

        return mx.gluon.data.SimpleDataset(self).transform_first(fn)


class ValView:
    """The val view of an image (transforms.eval_transform: it draws nothing) as float32 numpy."""

    def __init__(self, view):
        self.size, self.transform = view.size, eval_transform(view)

    def __call__(self, image) -> np.ndarray:
        return self.transform(image).asnumpy()

    def item_bytes(self) -> int:
        return 3 * self.size * self.size * 4


def keep_in_memory(dataset, fn, processes: int):
    """CachedImages(dataset, fn) where its items fit (cache_fits, `processes` copies), else the
    dataset as it is (`fn` None: nothing to keep)."""
    if fn is None:
        return dataset
    if not cache_fits(len(dataset), fn.item_bytes(), processes):
        log.info("%d images at %.0f kB each x %d processes exceed %.0f%% of the available memory: decoded every "
                 "epoch", len(dataset), fn.item_bytes() / 1e3, processes, 100 * CACHE_MEMORY_SHARE)
        return dataset
    return CachedImages(dataset, fn)


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


# --- reproducible augmentation (--deterministic) ---------------------------------------------------
def sample_seed(seed: int, key: int) -> int:
    """The 32-bit seed of one image's augmentation: a function of the run's seed and the key alone."""
    return int(np.random.SeedSequence([seed, key]).generate_state(1)[0])


class EpochKeys:
    """An epoch's order as keys `epoch * n + index`: the epoch travels with each index to whichever
    loader process transforms it, so its augmentation cannot depend on which process that is.

    `order` is a sampler whose order is a function of (seed, epoch) (set_epoch); iterating again
    starts the next epoch, and `set_epoch` sets it (a resumed run)."""

    def __init__(self, order, n: int):
        self.order, self.n, self.epoch = order, n, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.order.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.order)

    def __iter__(self) -> Iterator[int]:
        epoch = self.epoch
        self.set_epoch(epoch)
        self.epoch = epoch + 1
        return iter([epoch * self.n + i for i in self.order])


class SeededDataset:
    """(transform(image), label) of item `key % n`, with Python's and numpy's random generators
    seeded from (seed, key) first: every crop, flip and jitter of an epoch (all drawn from Python's
    `random`, fashionai.data.transforms) is then the same in any loader process, on any rerun.
    Costs ~25 us per image."""

    def __init__(self, dataset, transform, seed: int):
        self.dataset, self.transform, self.seed = dataset, transform, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: int):
        image, label = self.dataset[key % len(self.dataset)]
        seed = sample_seed(self.seed, key)
        random.seed(seed)
        np.random.seed(seed)
        return self.transform(image), label


def make_loader(
    dataset, transform, batch_size: int, *, train: bool, workers: int = 0, balanced: bool = False,
    sampler=None, pin_device: int = -1, gpus: int = 0, seed: int | None = None,
) -> mx.gluon.data.DataLoader:
    """DataLoader over `dataset` with `transform` on the image; `sampler` replaces the training
    order (a distributed worker's shard, see fashionai.training.distributed.ShardSampler). With a
    `seed` the training images are a SeededDataset: `sampler` must then yield EpochKeys.

    Training drops the last partial batch (`discard`) so every step has the same shape, which
    `hybridize(static_shape=True)` needs; evaluation keeps every image (`keep`) and the caller pads.
    `pin_device` >= 0: batches land in page-locked memory for that GPU (faster copies to it).
    """
    from mxnet.gluon.data import DataLoader
    from mxnet.gluon.data.sampler import BatchSampler, RandomSampler, SequentialSampler

    seeded = train and seed is not None
    data = SeededDataset(dataset, transform, seed) if seeded else dataset.transform_first(transform)
    if train:
        if sampler is None:
            sampler = BalancedSampler(labels_of(dataset)) if balanced else RandomSampler(len(dataset))
        if len(sampler) < batch_size:
            raise ValueError(f"{len(sampler)} training images is fewer than one batch ({batch_size}); lower -b")
        batches = BatchSampler(sampler, batch_size, last_batch="discard")
    else:
        batches = BatchSampler(SequentialSampler(len(dataset)), batch_size, last_batch="keep")
    return DataLoader(data, batch_sampler=batches, num_workers=loader_workers(workers, gpus),
                      pin_memory=pin_device >= 0, pin_device_id=max(pin_device, 0))


# --- workers ------------------------------------------------------------------------------------
AUTO_WORKERS = -1  # TrainConfig.workers default: sized from the cores (loader_workers, record_threads)
MAX_AUTO_PROCESSES = 4  # the Gluon tutorial's 4 loader processes, on hosts with at least 4 cores


def loader_workers(workers: int, gpus: int = 0) -> int:
    """DataLoader worker processes: `workers` as given (0 = decode in the training process), or
    for AUTO_WORKERS (any negative value) 4 per GPU that trains (one for the CPU), at most one per
    core: one process decodes ~150-180 img/s, a GPU trains faster; more processes than cores only
    contend."""
    return min(MAX_AUTO_PROCESSES * max(gpus, 1), usable_cores()) if workers < 0 else workers


def record_threads(workers: int) -> int:
    """ImageRecordIter decoding threads: `workers` when > 0, else one per core (GluonCV's
    `--use-rec` path gives it all cores; C++ threads do not pay Python's per-process costs), at most
    half the cores: MXNet 1.9.1's prefetching ImageRecordIter caps them there itself (its guess at
    the physical cores, iter_image_recordio_2.cc), so this says what it will really use."""
    return min(workers if workers > 0 else usable_cores(), max(usable_cores() // 2, 1))
