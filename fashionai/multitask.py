"""One network for several tasks: a shared backbone, one head per task (`fashionai train --tasks`).

The heads are slices of one `Dense(sum K_t)`: the rows of task t's classes form exactly a
`Dense(K_t)`. Each image's loss is the softmax cross-entropy over its own task's slice only (the
other tasks' logits are masked to -inf before the softmax), so a skirt photo teaches the skirt head
and the shared features, never the collar head. Trained on the union of the tasks' images.

After training the run is split into one ordinary single-task run per task,
`<out>/<task>/<name>/` (config.json, best.params, last.params, metrics.csv, multitask.json), whose
head is that task's slice of the shared one: predict, evaluate, submit and export take them like
any other run. The multi-task run itself lives in `<out>/multitask-<tasks>/<name>/`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fashionai.tasks import expand_tasks, num_classes

if TYPE_CHECKING:
    import mxnet as mx

log = logging.getLogger(__name__)

MASKED = -1e4  # logit added outside an image's task: exp(-1e4) is 0 in float32


@dataclass(frozen=True)
class HeadLayout:
    """Where each task's classes sit in the shared output: task t owns [offsets[t], offsets[t] + K_t)."""

    tasks: tuple[str, ...]

    @classmethod
    def of(cls, spec: str) -> HeadLayout:
        """`length`, `design`, `all` or a comma list of task names (at least two)."""
        tasks = expand_tasks(spec)
        if len(tasks) < 2:
            raise ValueError(f"--tasks {spec!r} names {len(tasks)} task; a multi-task run needs two or more "
                             "(use --task for one)")
        return cls(tuple(tasks))

    @property
    def sizes(self) -> list[int]:
        return [num_classes(t) for t in self.tasks]

    @property
    def offsets(self) -> list[int]:
        return [int(o) for o in np.concatenate([[0], np.cumsum(self.sizes)[:-1]])]

    @property
    def total(self) -> int:
        return int(sum(self.sizes))

    def task_of(self, labels: np.ndarray) -> np.ndarray:
        """Index into `tasks` of each global class label."""
        return np.searchsorted(np.cumsum(self.sizes), np.asarray(labels), side="right")

    def mask(self, labels: np.ndarray) -> np.ndarray:
        """(B, total) 1.0 on each image's own task's classes, 0.0 elsewhere."""
        task = self.task_of(labels)
        cols = np.arange(self.total)
        lo = np.asarray(self.offsets)[task][:, None]
        hi = lo + np.asarray(self.sizes)[task][:, None]
        return ((cols >= lo) & (cols < hi)).astype(np.float32)

    def mask_bias(self, labels: mx.nd.NDArray) -> mx.nd.NDArray:
        """(B, total): 0 on the image's task's logits, MASKED on every other task's."""
        import mxnet as mx

        mask = self.mask(labels.asnumpy().astype(np.int64))
        return mx.nd.array((1.0 - mask) * MASKED, ctx=labels.context)

    def targets(self, labels: mx.nd.NDArray, smoothing: float) -> mx.nd.NDArray:
        """One-hot targets, label smoothing spread over the image's own task's K_t classes only."""
        import mxnet as mx

        y = labels.asnumpy().astype(np.int64)
        mask = self.mask(y)
        k = mask.sum(axis=1, keepdims=True)
        hot = np.zeros_like(mask)
        hot[np.arange(len(y)), y] = 1.0
        return mx.nd.array((1 - smoothing) * hot + smoothing * mask / k, ctx=labels.context)

    def task_probs(self, logits: np.ndarray, task: str) -> np.ndarray:
        """(N, K_t) probabilities of one task: the softmax over its slice of the (N, total) logits
        (what the split-out single-task run's Dense(K_t) gives; renormalising a full softmax would
        lose a task whose logits sit far below another's to float32 underflow)."""
        import mxnet as mx

        i = self.tasks.index(task)
        part = logits[:, self.offsets[i]:self.offsets[i] + self.sizes[i]]
        return mx.nd.softmax(mx.nd.array(part), axis=-1).asnumpy()  # the same float32 op as validation


class ItemsDataset:
    """(image, label) from a list of (path, label): the union of several tasks' class folders,
    read like `ImageFolderDataset` (OpenCV decode, RGB, HWC uint8)."""

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


def union(prepared: str | Path, layout: HeadLayout, split: str) -> tuple[ItemsDataset, list[str]]:
    """The tasks' `split` images with global labels, and their full label strings (manifest)."""
    from fashionai import data
    from fashionai.train import val_label_strings

    items, labels = [], []
    for task, offset in zip(layout.tasks, layout.offsets):
        folder = data.image_folder(data.split_dir(prepared, task, split), num_classes(task))
        items += [(path, offset + int(y)) for path, y in folder.items]
        labels += val_label_strings(folder, Path(prepared), task)
    return ItemsDataset(items), labels


def make_loaders(config, num_devices: int, info):
    """(train loader, val loader, train global labels, val label strings) over the union of tasks."""
    from fashionai import data
    from fashionai.distributed import ShardSampler

    layout = HeadLayout.of(config.tasks)
    train_set, _ = union(config.prepared, layout, "train")
    val_set, val_labels = union(config.prepared, layout, "val")
    step = config.batch_size * num_devices
    augment = data.train_transform(config.data_shape, min_scale=config.min_scale, jitter=config.jitter,
                                   lighting=config.lighting)
    train_labels = data.labels_of(train_set)
    sampler = (ShardSampler(train_labels, info, config.seed, config.balance == "sampler")
               if info.num_workers > 1 else None)
    train = data.make_loader(train_set, augment, step, train=True, workers=config.workers,
                             balanced=config.balance == "sampler", sampler=sampler)
    train.shard_sampler = sampler
    val = data.make_loader(val_set, data.eval_transform(config.data_shape), step, train=False,
                           workers=config.workers)
    log.info("%s: %d train / %d val images over %d tasks, %d outputs", ",".join(layout.tasks), len(train_set),
             len(val_set), len(layout.tasks), layout.total)
    return train, val, train_labels, val_labels


def task_metrics(layout: HeadLayout, logits: np.ndarray, y: np.ndarray, label_strings: Sequence[str]) -> dict:
    """Per-task val figures (`<metric>/<task>`) and their means over the tasks (the plain names,
    which pick the best epoch like a single-task run's)."""
    from fashionai.train import val_metrics

    task = layout.task_of(y)
    out: dict[str, float] = {}
    per: dict[str, list[float]] = {}
    for i, name in enumerate(layout.tasks):
        rows = np.flatnonzero(task == i)
        figures = val_metrics(layout.task_probs(logits[rows], name), y[rows] - layout.offsets[i],
                              [label_strings[r] for r in rows])
        for key, value in figures.items():
            out[f"{key}/{name}"] = value
            per.setdefault(key, []).append(value)
    out.update({key: float(np.nanmean(values)) for key, values in per.items()})
    return out


def run_root(config) -> str:
    """Folder name of a multi-task run under `out`: `multitask-<spec>`."""
    return "multitask-" + config.tasks.replace(",", "+")


# --- split into single-task runs ----------------------------------------------------------------
def slice_head(params: dict, head: str, start: int, k: int) -> dict:
    """Params of a save_parameters file with the head's Dense cut to rows [start, start + k)."""
    out = {}
    for key, value in params.items():
        if key.startswith(head + ".") and (key.endswith("weight") or key.endswith("bias")):
            value = value[start:start + k]
        out[key] = value
    return out


def split_run(run_dir: Path, config, rows: Sequence[dict]) -> dict[str, Path]:
    """Write one single-task run per task next to the multi-task run; returns {task: run dir}."""
    import mxnet as mx

    from fashionai.model import head_attr, make_net
    from fashionai.train import atomic_save, atomic_write, save_config, write_metrics

    layout = HeadLayout.of(config.tasks)
    head = head_attr(make_net(config.model, layout.total))
    weights = {name: mx.nd.load(str(run_dir / f"{name}.params")) for name in ("best", "last")
               if (run_dir / f"{name}.params").is_file()}
    runs = {}
    for task, start, k in zip(layout.tasks, layout.offsets, layout.sizes):
        out = Path(config.out) / task / config.name
        out.mkdir(parents=True, exist_ok=True)
        save_config(config.replace(task=task, tasks="", num_classes=k, resume=""), out)
        for name, params in weights.items():
            sliced = slice_head(params, head, start, k)
            atomic_save(out / f"{name}.params", lambda f, p=sliced: mx.nd.save(f, p))
        write_metrics([{**r, **{m: r[f"{m}/{task}"] for m in ("val_loss", "val_acc", "val_map",
                                                               "val_basic_precision") if f"{m}/{task}" in r}}
                       for r in rows], out)
        best = max((r for r in rows if f"val_map/{task}" in r), key=lambda r: r["val_map"], default=None)
        info = {"multitask_run": str(run_dir), "tasks": list(layout.tasks), "head_rows": [start, start + k],
                "best_epoch": best["epoch"] if best else None,
                "val_map_at_best_epoch": best[f"val_map/{task}"] if best else None}
        atomic_write(out / "multitask.json", json.dumps(info, indent=2) + "\n")
        runs[task] = out
    log.info("multi-task run split into %s", ", ".join(str(p) for p in runs.values()))
    return runs
