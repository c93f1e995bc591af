"""What the network's output means: one task's classes (`SingleTask`) or several tasks' heads as
slices of one output layer (`TaskLayout`, `fashionai train --tasks`). Both have the same methods,
so the training loop and `fit` never ask which one they have.

Multi-task: the heads are slices of one `Dense(sum K_t)`: the rows of task t's classes form exactly
a `Dense(K_t)`. Each image's loss is the softmax cross-entropy over its own task's slice only (the
other tasks' logits are masked to -inf before the softmax), so a skirt photo teaches the skirt head
and the shared features, never the collar head. Trained on the union of the tasks' images.

After training a multi-task run is split into one ordinary single-task run per task,
`<out>/<task>/<name>/` (config.json, best.params, last.params, metrics.csv, multitask.json), whose
head is that task's slice of the shared one: predict, evaluate, submit and export take them like
any other run. The multi-task run itself lives in `<out>/multitask-<tasks>/<name>/`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fashionai.core.tasks import num_classes
from fashionai.data.loaders import ItemsDataset, image_folder, split_dir
from fashionai.data.manifest import label_strings
from fashionai.training.config import TrainConfig, multitask_tasks
from fashionai.training.loop import predict_loader, soft_targets, val_metrics, validate
from fashionai.training.rundir import split_run

if TYPE_CHECKING:
    import mxnet as mx

log = logging.getLogger(__name__)

MASKED = -1e4  # logit added outside an image's task: exp(-1e4) is 0 in float32


@dataclass(frozen=True)
class SingleTask:
    """One task: the whole output is its K classes."""

    task: str

    @property
    def tasks(self) -> tuple[str, ...]:
        return (self.task,)

    @property
    def total(self) -> int:
        return num_classes(self.task)

    def targets(self, labels: mx.nd.NDArray, smoothing: float) -> mx.nd.NDArray:
        return soft_targets(labels, self.total, smoothing)

    def masked(self, outputs: list, labels: list) -> list:
        """The outputs unchanged: every logit is this task's."""
        return outputs

    def dataset(self, prepared: str | Path, split: str):
        """(dataset of (image, class index), full label strings) of the task's `split` folder."""
        folder = image_folder(split_dir(prepared, self.task, split), self.total)
        return folder, label_strings(folder, Path(prepared), self.task)

    def validate(self, net, loader, ctx: Sequence, step: int, labels: Sequence[str]) -> dict[str, float]:
        return validate(net, loader, ctx, step, labels)

    def finish(self, run_dir: Path, config: TrainConfig, rows: Sequence[dict]) -> None:
        """Nothing: the run directory is already the task's run."""


@dataclass(frozen=True)
class TaskLayout:
    """Where each task's classes sit in the shared output: task t owns [offsets[t], offsets[t] + K_t)."""

    tasks: tuple[str, ...]

    @classmethod
    def of(cls, spec: str) -> TaskLayout:
        """`length`, `design`, `all` or a comma list of task names (at least two)."""
        return cls(multitask_tasks(spec))

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

    def masked(self, outputs: list, labels: list) -> list:
        """Other tasks' logits of each image to -inf: its softmax is over its own task."""
        return [o + self.mask_bias(y) for o, y in zip(outputs, labels)]

    def dataset(self, prepared: str | Path, split: str):
        """The tasks' `split` images with global labels, and their full label strings (manifest)."""
        items, labels = [], []
        for task, offset in zip(self.tasks, self.offsets):
            folder = image_folder(split_dir(prepared, task, split), num_classes(task))
            items += [(path, offset + int(y)) for path, y in folder.items]
            labels += label_strings(folder, Path(prepared), task)
        return ItemsDataset(items), labels

    def validate(self, net, loader, ctx: Sequence, step: int, labels: Sequence[str]) -> dict[str, float]:
        """Per-task val figures and their means (see `task_metrics`)."""
        outputs, y = predict_loader(net, loader, ctx, step, logits=True)
        row = task_metrics(self, outputs, y, labels)
        log.info("val mAP per task: %s", ", ".join(f"{t} {row[f'val_map/{t}']:.4f}" for t in self.tasks))
        return row

    def finish(self, run_dir: Path, config: TrainConfig, rows: Sequence[dict]) -> None:
        """Split the run into one single-task run per task (`split_run`)."""
        split_run(run_dir, config, rows, self)


def layout_for(config: TrainConfig) -> SingleTask | TaskLayout:
    """The head of a checked config: a multi-task layout for `--tasks`, else its task's."""
    return TaskLayout.of(config.tasks) if config.tasks else SingleTask(config.task)


def task_metrics(layout: TaskLayout, logits: np.ndarray, y: np.ndarray, labels: Sequence[str]) -> dict:
    """Per-task val figures (`<metric>/<task>`) and their means over the tasks (the plain names,
    which pick the best epoch like a single-task run's)."""
    task = layout.task_of(y)
    out: dict[str, float] = {}
    per: dict[str, list[float]] = {}
    for i, name in enumerate(layout.tasks):
        rows = np.flatnonzero(task == i)
        figures = val_metrics(layout.task_probs(logits[rows], name), y[rows] - layout.offsets[i],
                              [labels[r] for r in rows])
        for key, value in figures.items():
            out[f"{key}/{name}"] = value
            per.setdefault(key, []).append(value)
    out.update({key: float(np.nanmean(values)) for key, values in per.items()})
    return out
