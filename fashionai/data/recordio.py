"""The RecordIO pack format and its reader (`fashionai train --input rec`).

A packed split is four files next to its class folders (written by fashionai.data.pack):
`<prepared>/<task>/<split>.lst` (our list: index, class index = the class folder's name, path
relative to the split folder; val in `ImageFolderDataset` order (class folders 0..K-1, file names
sorted), so val batches come in the folder path's order; train in a fixed shuffle of that order
(im2rec --list's seed), so the contiguous parts ImageRecordIter gives distributed workers hold every
class), `<split>.rec` + `<split>.idx` (encoded by MXNet's own `tools/im2rec.py` functions) and
`<split>.rec.json` (the packed settings and a fingerprint of the folder: sorted relative paths,
labels and byte sizes). The reader compares that fingerprint with the folder and refuses a stale
pack; the sidecar is written last, so an interrupted pack is never read.

Reading: MXNet's C++ `mx.io.ImageRecordIter` decodes and augments in native threads (`RecordLoader`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fashionai.core.tasks import num_classes
from fashionai.core.view import View
from fashionai.data.loaders import AUTO_WORKERS, IMAGE_EXTENSIONS, record_threads
from fashionai.data.transforms import SHIFT_ZOOM

if TYPE_CHECKING:
    import mxnet as mx

log = logging.getLogger(__name__)

SPLITS = ("train", "val")
FORMAT = 1  # version of the sidecar layout
TRAIN_ORDER_SEED = 100  # im2rec --list shuffles with random.seed(100); any fixed seed would do


class StalePackError(ValueError):
    """The pack is missing, from another layout, or older than the folder it was made from."""


@dataclass(frozen=True)
class PackFiles:
    """The four files of one packed split."""

    folder: Path  # the split's class folders
    lst: Path
    rec: Path
    idx: Path
    meta: Path

    @classmethod
    def of(cls, prepared: str | Path, task: str, split: str) -> PackFiles:
        base = Path(prepared) / task
        return cls(base / split, base / f"{split}.lst", base / f"{split}.rec", base / f"{split}.idx",
                   base / f"{split}.rec.json")


def repack_hint(prepared: str | Path, task: str) -> str:
    return f"run `fashionai pack --prepared {prepared} --tasks {task}` again"


# --- the folder ---------------------------------------------------------------------------------
def list_split(folder: str | Path, classes: int) -> list[tuple[str, int]]:
    """(path relative to `folder`, class index) of every image, in ImageFolderDataset's order.

    Same rules as gluon's ImageFolderDataset (sorted class folders, sorted file names, .jpg /
    .jpeg / .png), so item i of a pack is item i of the folder dataset and its label is the folder's
    class index; the folders must be exactly 0..K-1 (as fashionai.data.loaders.image_folder checks).
    """
    folder = Path(folder)
    found = sorted(p.name for p in folder.iterdir() if p.is_dir())
    expected = [str(i) for i in range(classes)]
    if found != expected:
        raise ValueError(f"{folder}: class folders {found}, expected {expected} (fashionai prepare)")
    items = []
    for label, name in enumerate(expected):
        for file in sorted(os.listdir(folder / name)):
            if os.path.splitext(file)[1].lower() in IMAGE_EXTENSIONS:
                items.append((f"{name}/{file}", label))
    if not items:
        raise ValueError(f"{folder}: no images")
    return items


def pack_order(items: Sequence[tuple[str, int]], split: str) -> list[tuple[str, int]]:
    """The order written to the pack: val as listed, train shuffled by a fixed seed (the module
    docstring says why). Deterministic: the same folder always packs the same way."""
    items = list(items)
    if split == "train":
        random.Random(TRAIN_ORDER_SEED).shuffle(items)
    return items


def fingerprint(folder: str | Path, items: Sequence[tuple[str, int]]) -> str:
    """sha256 of the sorted (relative path, label, byte size) lines: changes when an image is added,
    removed, moved to another class or rewritten with another size. Sizes, not contents, so that
    checking a split before training costs one stat per image, not a read."""
    folder = Path(folder)
    lines = sorted(f"{rel}\t{label}\t{(folder / rel).stat().st_size}\n" for rel, label in items)
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def read_lst(path: str | Path) -> list[tuple[str, int]]:
    """(relative path, class index) of every line of a `.lst` file we wrote, in order. Parsed here
    rather than by im2rec's `read_list`, whose module imports OpenCV (seconds at training start)."""
    items = []
    for line in Path(path).read_text().splitlines():
        _, label, rel = line.split("\t")
        items.append((rel, int(float(label))))
    return items


# --- the reading side's check -------------------------------------------------------------------
def check_pack(prepared: str | Path, task: str, split: str) -> tuple[PackFiles, dict, list[tuple[str, int]]]:
    """(files, sidecar, items of the .lst) of a pack that matches its folder; StalePackError
    (a ValueError) or FileNotFoundError saying to run `fashionai pack` again otherwise."""
    files = PackFiles.of(prepared, task, split)
    if not files.folder.is_dir():
        raise FileNotFoundError(f"{files.folder}: no such folder; run `fashionai prepare --out {prepared}` first")
    missing = [p.name for p in (files.lst, files.rec, files.idx, files.meta) if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{files.folder.parent}: no complete RecordIO pack of {split} (missing "
                                f"{', '.join(missing)}) for --input rec: {repack_hint(prepared, task)}")
    try:
        meta = json.loads(files.meta.read_text())
    except json.JSONDecodeError as err:
        raise StalePackError(f"{files.meta}: unreadable ({err}): {repack_hint(prepared, task)}") from None
    if meta.get("format") != FORMAT:
        raise StalePackError(f"{files.meta}: pack format {meta.get('format')}, this version reads {FORMAT}: "
                             f"{repack_hint(prepared, task)}")
    packed = read_lst(files.lst)
    current = list_split(files.folder, num_classes(task))
    if len(packed) != meta["count"] or fingerprint(files.folder, current) != meta["fingerprint"]:
        change = _difference(packed, current, meta["count"])
        raise StalePackError(f"{files.folder} changed after it was packed ({change}); the pack is stale: "
                             f"{repack_hint(prepared, task)}")
    return files, meta, packed


def _difference(packed: list[tuple[str, int]], current: list[tuple[str, int]], count: int) -> str:
    """A short description of what changed: added / removed files, else 'an image was rewritten'."""
    old, new = {p for p, _ in packed}, {p for p, _ in current}
    parts = [f"{len(new)} images now, {count} packed"]
    for word, names in (("added", sorted(new - old)), ("removed", sorted(old - new))):
        if names:
            parts.append(f"{word} {', '.join(names[:3])}" + (" ..." if len(names) > 3 else ""))
    if len(parts) == 1:
        parts.append("an image was rewritten or its label changed")
    return "; ".join(parts)
# --- reading -------------------------------------------------------------------------------------


class RecordSplit:
    """A packed split checked against its folder (`check_pack`): the .rec/.idx files,
    the sidecar and `items`, (absolute path, class index) in pack order, the same attribute
    gluon's ImageFolderDataset has, so `labels_of` and `manifest.label_strings` read it unchanged."""

    def __init__(self, prepared: str | Path, task: str, split: str):
        self.files, self.meta, packed = check_pack(prepared, task, split)
        self.items = [(str(self.files.folder / rel), label) for rel, label in packed]
        self.task, self.split = task, split

    def __len__(self) -> int:
        return len(self.items)

    def check_size(self, view: View) -> None:
        """Warn when the pack is smaller than the evaluation resize: every view gets upsampled."""
        if self.meta["short_side"] < view.short:
            log.warning("%s/%s was packed at short side %d px, below the %d px that %d px input resizes to: "
                        "images are upsampled; `fashionai pack --short-side %d` keeps their detail",
                        self.task, self.split, self.meta["short_side"], view.short, view.size, view.short)


def part_sizes(count: int, parts: int) -> list[int]:
    """Images in each of `parts` parts of a pack, as ImageRecordIter's indexed RecordIO splitter cuts
    it (dmlc-core IndexedRecordIOSplitter::ResetPartition: contiguous runs of ceil(count / parts))."""
    step = -(-count // parts)
    return [max(0, min(count, (r + 1) * step) - r * step) for r in range(parts)]


def record_iter_args(view: View, *, train: bool, augment: str = "crop", min_scale: float = 0.08,
                     jitter: float = 0.0, lighting: float = 0.0) -> dict:
    """ImageRecordIter options matching `train_transform` / `eval_transform`: for training `crop`
    (resize the short side to `view.short`, a random crop anywhere, mirror), `shift` (the same from
    an image scaled by up to 1 + SHIFT_ZOOM) or `imagenet`
    (GluonCV train_imagenet.py `--use-rec`: random resized crop, area [min_scale, 1], aspect
    [3/4, 4/3], mirror; MXNet's C++ crop falls back to a centre crop when a draw does not fit, as
    the folder path's FittedResizedCrop does not), colour jitter and PCA lighting; for evaluation
    the short side resized to `view.short` and a centre crop; both normalised with the view's mean /
    std on 0..255."""
    args = dict(data_shape=(3, view.size, view.size),
                **{f"mean_{c}": 255 * m for c, m in zip("rgb", view.mean)},
                **{f"std_{c}": 255 * s for c, s in zip("rgb", view.std)})
    if not train:
        return {**args, "resize": view.short}
    colour = {"brightness": jitter, "contrast": jitter, "saturation": jitter, "pca_noise": lighting}
    if augment == "crop":
        return {**args, "resize": view.short, "rand_crop": True, "rand_mirror": True, **colour}
    if augment == "shift":  # the image scaled by up to 1 + SHIFT_ZOOM after the resize, then cropped
        return {**args, "resize": view.short, "rand_crop": True, "rand_mirror": True, "min_random_scale": 1.0,
                "max_random_scale": 1.0 + SHIFT_ZOOM, **colour}
    return {**args, "random_resized_crop": True, "min_random_area": min_scale, "max_random_area": 1.0,
            "min_aspect_ratio": 3 / 4, "max_aspect_ratio": 4 / 3, "rand_mirror": True, **colour}


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

    def __init__(self, split: RecordSplit, batch_size: int, *, train: bool, view: View,
                 threads: int, seed: int = 0, rank: int = 0, num_workers: int = 1, pin_device: int = -1,
                 **augment: float):
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
            device_id=pin_device,  # pinned host memory for the GPU that reads first (-1: none, the CPU reads)
            **record_iter_args(view, train=train, **augment))
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
                  view: View, workers: int = AUTO_WORKERS, seed: int = 0, rank: int = 0,
                  num_workers: int = 1, pin_device: int = -1, **augment: float) -> RecordLoader:
    """RecordLoader over `<prepared>/<task>/<split>.rec` at `view`, refusing a missing or stale pack."""
    split_data = RecordSplit(prepared, task, split)
    split_data.check_size(view)
    return RecordLoader(split_data, batch_size, train=train, view=view,
                        threads=record_threads(workers), seed=seed, rank=rank, num_workers=num_workers,
                        pin_device=pin_device, **augment)
