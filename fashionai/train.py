"""Fine-tune a model-zoo network on one task's prepared folders: `TrainConfig`, `fit`, the run directory.

Run directory `<out>/<task>/<name>/` (docs/design.md): `config.json` (this resolved config: enough to
rebuild the net), `train.log`, `metrics.csv` (one row per epoch), `best.params` (highest val mAP, the
official FashionAI AP of `fashionai.metrics`), `last.params` + `last.states` (trainer: momentum, update
count, LR schedule) + `checkpoint.json` (epoch, best score, early-stopping count), `curves.png`.
Every file is written to a temporary name and renamed, and `checkpoint.json` last: it is the commit
point a resume starts from.

Defaults are the Gluon FashionAI tutorial's (`train_task.py`: SGD, lr 0.001, momentum 0.9, wd 1e-4,
step decay x0.75 at epochs 10/20/30, 40 epochs, batch 64 per device) on ResNet50_v2 at 224 px,
with the tutorial's 4 loader workers where there are 4 cores (`workers` -1: min(4, cores));
`TrainConfig.demo` is the small from-scratch setting for generated data.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import math
import os
import random
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from fashionai.distributed import AuxAverager, ShardSampler, WorkerInfo, check_launched, is_distributed, worker_info
from fashionai.tasks import check_task, label_string, num_classes

if TYPE_CHECKING:
    import mxnet as mx

log = logging.getLogger(__name__)

BEST_METRIC = "val_map"  # official FashionAI AP on the val split; ties keep the earlier epoch
METRIC_COLUMNS = (
    "epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "val_map", "val_basic_precision",
    "img_per_s", "epoch_s",
)
CHOICES = {
    "optimizer": ("sgd", "nag"), "lr_mode": ("step", "cosine"), "balance": ("none", "sampler", "weights"),
    "kvstore": ("device", "local", "dist_sync", "dist_device_sync"),
    "dtype": ("float32", "bfloat16", "float16"),
    "cache_views": ("none", "flip", "five-crop", "ten-crop"),
    "input": ("folder", "rec"),
}
ARCH_FIELDS = ("task", "tasks", "model", "data_shape", "num_classes")  # a resume must not change these


@dataclass
class TrainConfig:
    """Everything a training run needs; saved as the run's `config.json`. CLI and YAML are views."""

    task: str = ""
    tasks: str = ""
    prepared: str = "data/prepared"
    out: str = "runs"
    name: str = ""
    model: str = "ResNet50_v2"
    num_classes: int = 0
    data_shape: int = 224
    pretrained: str = "cache"
    download: bool = False
    mxnet_home: str = ""
    devices: str = "auto"
    dtype: str = "float32"
    num_gpus: int | None = None
    kvstore: str = "device"
    workers: int = -1  # auto: fashionai.data.loader_workers / record_threads size it from the cores
    input: str = "folder"
    epochs: int = 40
    batch_size: int = 64
    optimizer: str = "sgd"
    lr: float = 0.001
    momentum: float = 0.9
    wd: float = 1e-4
    no_wd: bool = False
    lr_mode: str = "step"
    warmup_epochs: int = 0
    lr_steps: list[int] = field(default_factory=lambda: [10, 20, 30])
    lr_factor: float = 0.75
    head_lr_mult: float = 1.0
    label_smoothing: float = 0.0
    mixup: float = 0.0
    mixup_off_epochs: int = 0
    balance: str = "none"
    min_scale: float = 0.08
    jitter: float = 0.4
    lighting: float = 0.1
    patience: int = 0
    freeze_backbone: bool = False
    cache_features: bool = False
    cache_views: str = "none"
    fine_tune_epochs: int = 0
    fine_tune_lr_mult: float = 0.1
    seed: int = 0
    resume: str = ""

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Config from a dict (JSON/YAML); `-` in keys is read as `_`; unknown keys are an error."""
        values = {str(k).replace("-", "_"): v for k, v in values.items()}
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown training option(s) {unknown}; valid: {', '.join(sorted(names))}")
        return cls(**values)

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        """Config from a `.json` or `.yaml`/`.yml` file (e.g. a run's config.json or `-c FILE`)."""
        return cls.from_dict(read_config_file(path))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    @classmethod
    def demo(cls, task: str, prepared: str | Path, out: str | Path, **changes: Any) -> TrainConfig:
        """The from-scratch setting for generated demo data (README, "Training"): all 8 tasks in
        about 5 minutes on 2 CPU cores. mobilenet0.25 at 64 px trains ~15x faster than
        cifar_resnet20_v1 at 64 px here (1200 vs 63 img/s compute) and, given 25 epochs, learns the
        demo classes better (skirt / collar / neckline val acc 0.59 / 0.86 / 0.78 at 80 images per
        class, chance 0.17 / 0.2 / 0.1). Crops keep >= 60% of the image: the length classes are
        about where a hem ends, which small crops would cut away."""
        preset = dict(
            task=task, prepared=str(prepared), out=str(out), name="demo", model="mobilenet0.25",
            data_shape=64, pretrained="none", devices="auto", workers=0, epochs=25, batch_size=32,
            optimizer="nag", lr=0.1, wd=1e-4, lr_mode="cosine", warmup_epochs=1, lr_steps=[],
            min_scale=0.6, jitter=0.2, lighting=0.0, seed=0,
        )
        if changes.get("epochs", preset["epochs"]) < 2 and "warmup_epochs" not in changes:
            preset["warmup_epochs"] = 0  # a one-epoch run has no room for a warm-up
        return cls.from_dict({**preset, **changes})


PRESETS: dict[str, Callable[..., TrainConfig]] = {"demo": TrainConfig.demo}


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A dict from a JSON or YAML file; ValueError when it is not a mapping."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such config file")
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        values = yaml.safe_load(path.read_text()) or {}
    else:
        values = json.loads(path.read_text())
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a mapping of option: value, got {type(values).__name__}")
    return values


def check_config(config: TrainConfig) -> TrainConfig:
    """Validate and fill derived fields (num_classes, name); returns the resolved config."""
    for key, allowed in CHOICES.items():
        if getattr(config, key) not in allowed:
            raise ValueError(f"{key} must be one of {allowed}, got {getattr(config, key)!r}")
    if config.epochs < 1 or config.batch_size < 1 or config.data_shape < 8:
        raise ValueError("epochs and batch_size must be >= 1 and data_shape >= 8")
    if not 0 < config.min_scale <= 1 or not 0 <= config.label_smoothing < 1 or config.mixup < 0:
        raise ValueError("min_scale must be in (0, 1], label_smoothing in [0, 1), mixup >= 0")
    if config.warmup_epochs >= config.epochs and config.warmup_epochs:
        raise ValueError(f"warmup_epochs ({config.warmup_epochs}) must be < epochs ({config.epochs})")
    check_head_training(config)
    check_input(config)
    config = _check_multitask(config) if config.tasks else config.replace(num_classes=_task_classes(config))
    name = config.name or f"{config.model.lower()}_{config.data_shape}px_{time.strftime('%Y%m%d-%H%M%S')}"
    return config.replace(name=name, lr_steps=[int(s) for s in config.lr_steps])


def _task_classes(config: TrainConfig) -> int:
    k = num_classes(check_task(config.task))
    if config.num_classes not in (0, k):
        raise ValueError(f"num_classes {config.num_classes} != {k} classes of {config.task}")
    return k


def _check_multitask(config: TrainConfig) -> TrainConfig:
    """A `--tasks` run: no single --task, no mixup (it would blend two tasks' targets), no cache."""
    from fashionai.multitask import HeadLayout

    layout = HeadLayout.of(config.tasks)
    if config.task:
        raise ValueError(f"give --task ({config.task}) or --tasks ({config.tasks}), not both")
    if config.mixup > 0 or config.cache_features:
        raise ValueError("--tasks trains on several tasks' images: no --mixup, no --cache-features")
    if config.num_classes not in (0, layout.total):
        raise ValueError(f"num_classes {config.num_classes} != {layout.total} outputs of {config.tasks}")
    return config.replace(tasks=",".join(layout.tasks), num_classes=layout.total)


def check_head_training(config: TrainConfig) -> None:
    """Refuse feature-cache options that cannot mean what they say (before anything is written)."""
    if config.fine_tune_epochs < 0:
        raise ValueError("fine_tune_epochs must be >= 0")
    if not config.cache_features:
        return
    why = {
        "needs --freeze-backbone (features of a backbone that trains go stale every step)":
            not config.freeze_backbone,
        "cannot run under a distributed kvstore (each worker would cache every image)":
            is_distributed(config.kvstore),
        "takes one view per cached sample: no mixup": config.mixup > 0,
        "has no sampler: use --balance weights": config.balance == "sampler",
        "reads the JPEG folders: use --input folder": getattr(config, "input", "folder") != "folder",
    }
    problems = [reason for reason, bad in why.items() if bad]
    if problems:
        raise ValueError("--cache-features " + "; ".join(problems))


# --- small pieces -------------------------------------------------------------------------------
def seed_everything(seed: int) -> None:
    """Seed python (mx.image crops), numpy (samplers, mixup) and MXNet (init, flips, jitter)."""
    import mxnet as mx

    random.seed(seed)
    np.random.seed(seed)
    mx.random.seed(seed)


def atomic_write(path: Path, data: bytes | str) -> None:
    """Write `data` to `path` through a temporary file in the same folder and a rename."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
    os.replace(tmp, path)


def atomic_save(path: Path, save: Callable[[str], None]) -> None:
    """Let `save(filename)` (save_parameters, save_states) write a temp file, then rename it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save(str(tmp))
    os.replace(tmp, path)


def make_scheduler(config: TrainConfig, iters_per_epoch: int):
    """GluonCV schedule: linear warm-up from 0 over `warmup_epochs`, then step (x lr_factor at
    `lr_steps`, counted from epoch 0) or cosine to 0 over the remaining epochs."""
    from gluoncv.utils import LRScheduler, LRSequential

    parts = []
    if config.warmup_epochs:
        parts.append(LRScheduler("linear", base_lr=0.0, target_lr=config.lr, nepochs=config.warmup_epochs,
                                 iters_per_epoch=iters_per_epoch))
    rest = config.epochs - config.warmup_epochs
    steps = [s - config.warmup_epochs for s in config.lr_steps if s > config.warmup_epochs]
    mode = config.lr_mode if rest * iters_per_epoch > 1 else "constant"  # cosine needs 2+ updates
    parts.append(LRScheduler(mode, base_lr=config.lr, target_lr=0.0, nepochs=rest,
                             iters_per_epoch=iters_per_epoch, step_epoch=steps, step_factor=config.lr_factor))
    return LRSequential(parts)


def make_trainer(net, config: TrainConfig, iters_per_epoch: int, num_devices: int, kv=None) -> mx.gluon.Trainer:
    """SGD/NAG with momentum and wd, the LR schedule, `head_lr_mult` on the new head, kvstore
    (`kv`: the job's created distributed kvstore, else the `config.kvstore` name for 2+ devices)."""
    import mxnet as mx

    from fashionai.model import head_attr

    getattr(net, head_attr(net)).collect_params().setattr("lr_mult", config.head_lr_mult)
    if config.no_wd:  # GluonCV's --no-wd: no weight decay on BN and biases
        net.collect_params(".*beta|.*gamma|.*bias").setattr("wd_mult", 0.0)
    # the base LR lives in the scheduler; passing learning_rate too only makes MXNet print a warning
    params = {"momentum": config.momentum, "wd": config.wd, "lr_scheduler": make_scheduler(config, iters_per_epoch)}
    if kv is not None:
        # Workers update locally from the summed gradients (update_on_kvstore=False): the servers
        # then never unpickle the optimizer, whose GluonCV LR schedule they could not import, and
        # the trainer's states stay saveable for --resume. Same result as updating on the servers.
        return mx.gluon.Trainer(net.collect_params(), config.optimizer, params, kvstore=kv,
                                update_on_kvstore=False)
    kvstore = config.kvstore if num_devices > 1 else None
    return mx.gluon.Trainer(net.collect_params(), config.optimizer, params, kvstore=kvstore)


def check_dtype(dtype: str, ctx: Sequence) -> None:
    """Refuse a training precision the devices cannot run, before anything is built.

    float16 AMP needs GPUs (MXNet has no FP16 GEMM on CPU); bfloat16 AMP needs CPUs whose oneDNN
    build runs BF16 kernels (AVX-512 and up), which a one-layer probe answers directly.
    """
    if dtype == "float32":
        return
    on_gpu = all(c.device_type == "gpu" for c in ctx)
    if dtype == "float16" and not on_gpu:
        raise ValueError("--dtype float16 needs GPUs (MXNet has no FP16 matrix multiply on CPU); "
                         "on a CPU use --dtype bfloat16 where supported, else float32")
    if dtype == "bfloat16":
        if on_gpu:
            raise ValueError("--dtype bfloat16 is for CPUs in MXNet 1.9; on GPUs use --dtype float16")
        from fashionai.precision_probe import bf16_supported

        ok, why = bf16_supported()
        if not ok:
            raise ValueError(f"--dtype bfloat16 is not supported on this CPU ({why}); use float32")


def start_amp(dtype: str) -> None:
    """Switch MXNet to automatic mixed precision for this process (before the net is built).

    `amp.init` rewrites MXNet's operators process-wide and cannot be undone: one training
    process per precision (the CLI runs one), never a mix in one process.
    """
    if dtype == "float32":
        return
    from mxnet.contrib import amp

    amp.init(target_dtype=dtype)
    log.info("automatic mixed precision: %s compute, float32 master weights", dtype)


def soft_targets(labels: mx.nd.NDArray, k: int, smoothing: float) -> mx.nd.NDArray:
    """(B,) class indices -> (B, K) targets: one-hot, smoothed to (1 - s) + s / K on the class."""
    import mxnet as mx

    return mx.nd.one_hot(labels, k, on_value=1 - smoothing + smoothing / k, off_value=smoothing / k)


def mixup_batch(data, targets, alpha: float):
    """Mixup (GluonCV train_imagenet): blend the batch with its reverse by lam ~ Beta(alpha, alpha)."""
    import mxnet as mx

    lam = float(np.random.beta(alpha, alpha))
    return (lam * data + (1 - lam) * mx.nd.flip(data, axis=0),
            lam * targets + (1 - lam) * mx.nd.flip(targets, axis=0))


def class_weights(labels: np.ndarray, k: int) -> np.ndarray:
    """(K,) weights N / (K * n_c): every class carries the same total loss (1 for absent classes)."""
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    return np.where(counts > 0, len(labels) / (k * np.maximum(counts, 1)), 1.0).astype(np.float32)


def pad_batch(batch: mx.nd.NDArray, size: int) -> mx.nd.NDArray:
    """Pad (b, ...) with zero rows to (size, ...): the last eval batch keeps the static shape."""
    import mxnet as mx

    if batch.shape[0] == size:
        return batch
    pad = mx.nd.zeros((size - batch.shape[0],) + batch.shape[1:], dtype=batch.dtype)
    return mx.nd.concat(batch, pad, dim=0)


def amp_scaled(losses: list, trainer) -> list:
    """The losses times AMP's current loss scale (call inside `autograd.record()`)."""
    from mxnet.contrib import amp

    with amp.scale_loss(losses, trainer) as scaled:
        return scaled


# --- one epoch ----------------------------------------------------------------------------------
def train_one_epoch(net, loader, trainer, ctx: Sequence, config: TrainConfig, epoch: int,
                    weights: np.ndarray | None = None, num_workers: int = 1, layout=None) -> dict[str, float]:
    """One pass over `loader`; returns train_loss, train_acc (vs the unmixed labels), img_per_s.

    With `num_workers` distributed workers the servers sum every worker's gradients, so the step
    normalises by the global batch: the update is the mean over all workers' images. With a
    multi-task `layout` each image's loss and accuracy count its own task's outputs only."""
    import mxnet as mx
    from mxnet import autograd

    loss_fn = mx.gluon.loss.SoftmaxCrossEntropyLoss(sparse_label=False)
    use_mixup = config.mixup > 0 and epoch < config.epochs - config.mixup_off_epochs
    total_loss, correct, seen, start = 0.0, 0, 0, time.time()
    bar = tqdm(loader, desc=f"epoch {epoch}", unit="batch", leave=False, disable=None)
    for data, label in bar:
        targets = (layout.targets(label, config.label_smoothing) if layout is not None
                   else soft_targets(label, config.num_classes, config.label_smoothing))
        if use_mixup:
            data, targets = mixup_batch(data, targets, config.mixup)
        # (B, 1): the loss is (B, 1) before weighting; a (B,) weight would broadcast to (B, B)
        sample_w = mx.nd.array(weights[label.asnumpy().astype(int)][:, None]) if weights is not None else None
        parts = [mx.gluon.utils.split_and_load(x, ctx) for x in (data, targets, label)]
        w_parts = mx.gluon.utils.split_and_load(sample_w, ctx) if sample_w is not None else [None] * len(ctx)
        with autograd.record():
            outputs = [net(x) for x in parts[0]]
            if layout is not None:  # other tasks' logits to -inf: the softmax is over the image's task
                outputs = [o + layout.mask_bias(y) for o, y in zip(outputs, parts[2])]
            losses = [loss_fn(o, t, w) if w is not None else loss_fn(o, t)
                      for o, t, w in zip(outputs, parts[1], w_parts)]
            # AMP: dynamic loss scaling (overflowing steps are skipped); the scaling is itself an
            # operation, so it must be recorded or backward finds no graph behind the scaled loss
            backward_of = amp_scaled(losses, trainer) if config.dtype != "float32" else losses
        autograd.backward(backward_of)
        trainer.step(data.shape[0] * num_workers)
        total_loss += sum(float(l.sum().asscalar()) for l in losses)
        correct += sum(int((o.argmax(axis=1) == y.astype("float32")).sum().asscalar())
                       for o, y in zip(outputs, parts[2]))
        seen += data.shape[0]
        bar.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{correct / seen:.3f}")
    elapsed = time.time() - start
    return {"train_loss": total_loss / max(seen, 1), "train_acc": correct / max(seen, 1),
            "img_per_s": seen / max(elapsed, 1e-9)}


def predict_loader(net, loader, ctx: Sequence, step: int, logits: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(N, K) softmax probabilities (or the raw outputs) and (N,) labels of every image, in loader order.

    Each batch is padded to `step` images (batch size x devices) so the hybridized graph keeps one
    static shape; the pad rows are dropped.
    """
    import mxnet as mx

    probs, labels = [], []
    for data, label in tqdm(loader, desc="val", unit="batch", leave=False, disable=None):
        parts = mx.gluon.utils.split_and_load(pad_batch(data, step), ctx)
        out = np.concatenate([(net(x) if logits else mx.nd.softmax(net(x), axis=-1)).asnumpy() for x in parts])
        probs.append(out[:data.shape[0]])
        labels.append(label.asnumpy().astype(np.int64))
    return np.concatenate(probs), np.concatenate(labels)


def validate(net, loader, ctx: Sequence, step: int, label_strings: Sequence[str]) -> dict[str, float]:
    """val_loss (cross-entropy), val_acc, val_map (official AP) and val_basic_precision."""
    probs, y = predict_loader(net, loader, ctx, step)
    return val_metrics(probs, y, label_strings)


def _validate(net, loader, ctx: Sequence, step: int, label_strings: Sequence[str], layout=None) -> dict:
    """`validate`, or for a multi-task run the per-task figures and their means."""
    if layout is None:
        return validate(net, loader, ctx, step, label_strings)
    from fashionai.multitask import task_metrics

    outputs, y = predict_loader(net, loader, ctx, step, logits=True)
    row = task_metrics(layout, outputs, y, label_strings)
    log.info("val mAP per task: %s", ", ".join(f"{t} {row[f'val_map/{t}']:.4f}" for t in layout.tasks))
    return row


def val_metrics(probs: np.ndarray, y: np.ndarray, label_strings: Sequence[str]) -> dict[str, float]:
    """The per-epoch val figures of (N, K) probabilities against class indices and label strings."""
    from fashionai.metrics import accuracy, basic_precision, official_ap

    loss = float(-np.mean(np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, None))))
    return {"val_loss": loss, "val_acc": accuracy(probs, y), "val_map": official_ap(probs, label_strings),
            "val_basic_precision": basic_precision(probs, label_strings)}


# --- data ---------------------------------------------------------------------------------------
def val_label_strings(dataset, prepared: Path, task: str) -> list[str]:
    """Full label strings (with `m`) of the val images, from the manifest by `prepared_path`.

    An image without a manifest row (hand-made folders) gets the plain label of its folder; one
    warning says how many.
    """
    from fashionai.prepare import read_manifest

    try:
        manifest = read_manifest(prepared)
        by_path = dict(zip(manifest["prepared_path"], manifest["label"]))
    except FileNotFoundError:
        by_path = {}
    labels, missing = [], 0
    for path, y in dataset.items:
        rel = PurePosixPath(*Path(path).relative_to(prepared).parts).as_posix()
        if rel in by_path:
            labels.append(by_path[rel])
        else:
            labels.append(label_string(task, int(y)))
            missing += 1
    if missing:
        log.warning("%d of %d val images have no row in %s/manifest.csv: using their folder's class "
                    "as the label (no 'maybe' classes)", missing, len(labels), prepared)
    return labels


def check_input(config: TrainConfig) -> None:
    """Refuse what `--input rec` cannot do (before anything is written): MXNet's ImageRecordIter
    has no weighted sampling, and a multi-task net reads several tasks' folders."""
    if config.input != "rec":
        return
    if config.balance == "sampler":
        raise ValueError("--input rec cannot draw class-balanced batches (MXNet's ImageRecordIter has no "
                         "weighted sampler): use --balance weights, or --input folder")
    if config.tasks:
        raise ValueError("--tasks reads every task's class folders: use --input folder")


def _record_loaders(config: TrainConfig, num_devices: int, info: WorkerInfo):
    """make_loaders for `--input rec`: ImageRecordIter over the task's packs (fashionai pack); a
    distributed worker reads its part (`part_index`) of the training pack."""
    from fashionai import data

    check_input(config)
    prepared, step = Path(config.prepared), config.batch_size * num_devices
    common = dict(data_shape=config.data_shape, workers=config.workers, seed=config.seed)
    train = data.record_loader(prepared, config.task, "train", step, train=True, rank=info.rank,
                               num_workers=info.num_workers, min_scale=config.min_scale, jitter=config.jitter,
                               lighting=config.lighting, **common)
    val = data.record_loader(prepared, config.task, "val", step, train=False, **common)
    log.info("%s: %d train / %d val images from RecordIO packs, %d classes, %d decoding threads", config.task,
             len(train.items), len(val.items), config.num_classes, data.record_threads(config.workers))
    return train, val, data.labels_of(train), val_label_strings(val, prepared, config.task)


def make_loaders(config: TrainConfig, num_devices: int, info: WorkerInfo = WorkerInfo()):
    """(train loader, val loader, train labels, val label strings) for the config's task.

    A distributed worker trains on its shard (`ShardSampler`) and validates on the whole val split,
    so every worker computes the same val metrics from the same synchronised weights."""
    from fashionai import data

    if config.tasks:
        from fashionai import multitask

        return multitask.make_loaders(config, num_devices, info)
    if config.input == "rec":
        return _record_loaders(config, num_devices, info)
    prepared = Path(config.prepared)
    train_set = data.image_folder(data.split_dir(prepared, config.task, "train"), config.num_classes)
    val_set = data.image_folder(data.split_dir(prepared, config.task, "val"), config.num_classes)
    step = config.batch_size * num_devices
    augment = data.train_transform(config.data_shape, min_scale=config.min_scale, jitter=config.jitter,
                                   lighting=config.lighting)
    sampler = (ShardSampler(data.labels_of(train_set), info, config.seed, config.balance == "sampler")
               if info.num_workers > 1 else None)
    train = data.make_loader(train_set, augment, step, train=True, workers=config.workers,
                             balanced=config.balance == "sampler", sampler=sampler)
    train.shard_sampler = sampler  # _fit sets its epoch on a resume
    val = data.make_loader(val_set, data.eval_transform(config.data_shape), step, train=False,
                           workers=config.workers)
    log.info("%s: %d train / %d val images, %d classes", config.task, len(train_set), len(val_set),
             config.num_classes)
    return train, val, data.labels_of(train_set), val_label_strings(val_set, prepared, config.task)


# --- run directory ------------------------------------------------------------------------------
def run_dir_of(config: TrainConfig) -> Path:
    """`<out>/<task>/<name>`, or the run being resumed."""
    if config.resume:
        return Path(config.resume)
    if config.tasks:
        from fashionai.multitask import run_root

        return Path(config.out) / run_root(config) / config.name
    return Path(config.out) / config.task / config.name


def save_config(config: TrainConfig, run_dir: Path) -> None:
    atomic_write(run_dir / "config.json", json.dumps(config.to_dict(), indent=2) + "\n")


def write_metrics(rows: Sequence[dict], run_dir: Path) -> None:
    """Rewrite `metrics.csv` (one row per epoch) atomically; per-task columns (`val_map/<task>`, a
    multi-task run's) follow the standard ones."""
    buf = io.StringIO()
    extra = sorted({k for row in rows for k in row if "/" in k})
    writer = csv.DictWriter(buf, fieldnames=[*METRIC_COLUMNS, *extra], extrasaction="ignore",
                            lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(run_dir / "metrics.csv", buf.getvalue())


def read_metrics(run_dir: str | Path) -> list[dict[str, float]]:
    """The rows of a run's `metrics.csv` as floats (`epoch` as int); [] if there is none."""
    path = Path(run_dir) / "metrics.csv"
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return [{k: (int(v) if k == "epoch" else float(v)) for k, v in row.items()} for row in csv.DictReader(f)]


def save_checkpoint(net, trainer, state: dict, run_dir: Path) -> None:
    """last.params, last.states, then checkpoint.json (the commit point of a resume)."""
    atomic_save(run_dir / "last.params", net.save_parameters)
    atomic_save(run_dir / "last.states", trainer.save_states)
    atomic_write(run_dir / "checkpoint.json", json.dumps(state, indent=2) + "\n")


def read_checkpoint(run_dir: Path) -> dict:
    """checkpoint.json: the epoch to resume at, the best score, the early-stopping count."""
    path = run_dir / "checkpoint.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint to resume from (did the first epoch finish?)")
    return json.loads(path.read_text())


def load_checkpoint(run_dir: Path, net, trainer, ctx: Sequence) -> dict:
    """Restore weights and trainer state (momentum, update count); returns checkpoint.json.

    last.states pickles the whole optimizer, LR schedule included, so a resume with more --epochs
    would follow the old, shorter schedule's tail; the trainer keeps this config's schedule instead,
    which then continues from the saved update count.
    """
    state = read_checkpoint(run_dir)
    net.load_parameters(str(run_dir / "last.params"), ctx=list(ctx))
    schedule = trainer.optimizer.lr_scheduler
    trainer.load_states(str(run_dir / "last.states"))
    trainer.optimizer.lr_scheduler = schedule
    return state


def average_devices(net) -> None:
    """Give every device the mean of the devices' BatchNorm running statistics.

    Each device updates its own running mean/var from its slice of the batch; left apart,
    validation would mix the devices' statistics while save_parameters writes device 0's, so the
    logged val metrics would not be those of the saved weights. One average per epoch (what the
    distributed job does across workers) makes them identical everywhere.
    """
    from fashionai.distributed import device_mean

    for param in net.collect_params(".*running_mean|.*running_var").values():
        if len(param.list_ctx()) > 1:
            param.set_data(device_mean(param))


def prepare_run_dir(config: TrainConfig) -> Path:
    """Create the run directory (a new run must not reuse a non-empty one) and save the config."""
    run_dir = run_dir_of(config)
    if config.resume:
        saved = TrainConfig.load(run_dir / "config.json")
        changed = [f for f in ARCH_FIELDS if getattr(saved, f) != getattr(config, f)]
        if changed:
            raise ValueError(f"--resume {run_dir}: cannot change {changed} of a run; start a new run instead")
    elif run_dir.exists() and any(run_dir.iterdir()):
        raise FileExistsError(f"{run_dir} already holds a run; pick another --name or --resume {run_dir}")
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, run_dir)
    return run_dir


class RunWriter:
    """Writes the run directory after each epoch, at most every `every_s` seconds for fast epochs.

    metrics.csv is rewritten every epoch; the checkpoint, best.params and curves.png (a matplotlib
    figure: ~0.3 s) only when `every_s` has passed since the last write and at the end, so
    sub-second epochs (head training on cached features) are not dominated by file writes. The
    best epoch's weights are kept in memory until then, so best.params is still that epoch's.
    """

    def __init__(self, run_dir: Path, every_s: float = 10.0):
        self.run_dir, self.every_s = run_dir, every_s
        self.last_write = time.time()
        self.best: dict | None = None

    def epoch_done(self, net, trainer, state: dict, rows: list[dict], improved: bool) -> None:
        write_metrics(rows, self.run_dir)
        if improved:
            # structural names and reduced values: what save_parameters would write now
            self.best = {k: p._reduce() for k, p in net._collect_params_with_prefix().items()}
        if time.time() - self.last_write >= self.every_s:
            self.flush(net, trainer, state, rows)

    def flush(self, net, trainer, state: dict, rows: list[dict], final: bool = False) -> None:
        """best.params (if a better epoch came since), the checkpoint, curves.png."""
        import mxnet as mx

        from fashionai.plots import save_curves

        if self.best is not None:
            best = self.best
            atomic_save(self.run_dir / "best.params", lambda f: mx.nd.save(f, best))
            self.best = None
        elif final and not (self.run_dir / "best.params").is_file():
            atomic_save(self.run_dir / "best.params", net.save_parameters)  # every val mAP undefined
        if rows:
            save_checkpoint(net, trainer, state, self.run_dir)
            save_curves(rows, self.run_dir / "curves.png")
        self.last_write = time.time()


def _log_to(run_dir: Path) -> logging.Handler:
    """Append the package's log records to `<run_dir>/train.log` for the duration of the run."""
    handler = logging.FileHandler(run_dir / "train.log", mode="a")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    logger = logging.getLogger("fashionai")
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    return handler


def _epoch_line(row: dict) -> str:
    return (f"[Epoch {row['epoch']}] train: loss={row['train_loss']:.4f} acc={row['train_acc']:.4f} | "
            f"val: loss={row['val_loss']:.4f} acc={row['val_acc']:.4f} mAP={row['val_map']:.4f} "
            f"BP={row['val_basic_precision']:.4f} | lr={row['lr']:.3g} | {row['img_per_s']:.1f} img/s | "
            f"{row['epoch_s']:.1f} s")


def _better(score: float, best: float) -> bool:
    return not math.isnan(score) and (math.isnan(best) or score > best)


# --- fit ----------------------------------------------------------------------------------------
def fit(config: TrainConfig) -> Path:
    """Train `config.task` and return the run directory (see the module docstring for its files)."""
    from fashionai.devices import resolve_devices

    config = check_config(config)
    ctx = resolve_devices(config.devices, config.num_gpus)
    check_dtype(config.dtype, ctx)  # before anything is written
    kv, info = start_job(config)
    if not info.is_chief:  # only rank 0 writes the run directory; the others train and validate
        _fit(config, run_dir_of(config), ctx, kv, info)
        return run_dir_of(config)
    run_dir = prepare_run_dir(config)
    handler = _log_to(run_dir)
    try:
        _fit(config, run_dir, ctx, kv, info)
    finally:
        logging.getLogger("fashionai").removeHandler(handler)
        handler.close()
    return run_dir


def start_job(config: TrainConfig) -> tuple[Any, WorkerInfo]:
    """(created kvstore, this worker) of a distributed run (`--kvstore dist_*` under the launcher);
    (None, rank 0 of 1) otherwise."""
    if not is_distributed(config.kvstore):
        return None, WorkerInfo()
    import mxnet as mx

    check_launched(config.kvstore)
    kv = mx.kv.create(config.kvstore)
    info = worker_info(kv)
    log.info("distributed worker %d of %d (%s)", info.rank, info.num_workers, config.kvstore)
    return kv, info


def _stage_trainer(net, config: TrainConfig, epoch: int, iters: int, ndev: int, kv, frozen: dict | None):
    """The trainer for `epoch`: the configured one before `config.epochs`, then (fine-tuning) one
    over the unfrozen net with LR x fine_tune_lr_mult on its own schedule, no warm-up."""
    if epoch >= config.epochs:
        from fashionai.features import unfreeze

        if frozen is not None:
            unfreeze(net, frozen)
        config = config.replace(lr=config.lr * config.fine_tune_lr_mult, epochs=config.fine_tune_epochs,
                                warmup_epochs=0, lr_steps=[])
    trainer = make_trainer(net, config, iters, ndev, kv)
    if config.dtype != "float32":
        from mxnet.contrib import amp

        amp.init_trainer(trainer)
    return trainer


def _head_stage(net, config: TrainConfig, ctx: Sequence):
    """The cached-feature head stage (`--cache-features`), or None."""
    if not config.cache_features:
        return None
    from fashionai import data
    from fashionai.features import HeadStage

    prepared = Path(config.prepared)
    train = data.image_folder(data.split_dir(prepared, config.task, "train"), config.num_classes).items
    val = data.image_folder(data.split_dir(prepared, config.task, "val"), config.num_classes).items
    return HeadStage(net, config, ctx, [Path(p) for p, _ in train], np.array([y for _, y in train]),
                     [Path(p) for p, _ in val], np.array([y for _, y in val]))


def _fit(config: TrainConfig, run_dir: Path, ctx: Sequence, kv=None, info: WorkerInfo = WorkerInfo()) -> None:
    from fashionai.features import freeze_backbone
    from fashionai.model import build_net

    seed_everything(config.seed)
    start_amp(config.dtype)
    train_loader, val_loader, train_labels, val_labels = make_loaders(config, len(ctx), info)
    net = build_net(config.model, config.num_classes, ctx=ctx, download=config.download,
                    pretrained="none" if config.resume else config.pretrained, root=config.mxnet_home or None)
    frozen = freeze_backbone(net) if config.freeze_backbone else None
    state = {"epoch": 0, "metric": BEST_METRIC, "best_score": math.nan, "best_epoch": -1, "bad_epochs": 0}
    if config.resume:
        state = read_checkpoint(run_dir)
    head = _head_stage(net, config, ctx) if state["epoch"] < config.epochs else None
    iters = head.iters_per_epoch() if head is not None else len(train_loader)
    trainer = _stage_trainer(net, config, state["epoch"], iters, len(ctx), kv, frozen)
    averager = AuxAverager(net, kv, info) if kv is not None else None
    if config.resume:
        load_checkpoint(run_dir, net, trainer, ctx)
        seed_everything(config.seed + state["epoch"])  # a fresh but reproducible stream per resume point
        log.info("resuming %s after epoch %d (best %s %.4f at epoch %d)", run_dir, state["epoch"] - 1,
                 BEST_METRIC, state["best_score"], state["best_epoch"])
    if train_loader.shard_sampler is not None:
        train_loader.shard_sampler.set_epoch(state["epoch"])  # a resumed job draws epoch e's order
    rows = [r for r in read_metrics(run_dir) if r["epoch"] < state["epoch"]]
    weights = class_weights(train_labels, config.num_classes) if config.balance == "weights" else None
    total = config.epochs + config.fine_tune_epochs
    log.info("training %s on %s: %s, %d epochs%s, batch %d x %d device(s) -> %s", config.model, config.task or config.tasks,
             config.pretrained if not config.resume else "resumed", config.epochs,
             f" + {config.fine_tune_epochs} fine-tuning" if config.fine_tune_epochs else "", config.batch_size,
             len(ctx), run_dir)
    writer = RunWriter(run_dir) if info.is_chief else None
    layout = None
    if config.tasks:
        from fashionai.multitask import HeadLayout

        layout = HeadLayout.of(config.tasks)
    first = state["epoch"]
    for epoch in range(first, total):
        if epoch == config.epochs and epoch != first:
            trainer = _stage_trainer(net, config, epoch, len(train_loader), len(ctx), kv, frozen)
            log.info("fine-tuning the whole net for %d epochs at lr %.3g", config.fine_tune_epochs,
                     config.lr * config.fine_tune_lr_mult)
        start = time.time()
        if head is not None and epoch < config.epochs:
            row = {"epoch": epoch, **head.train_epoch(trainer, weights)}
            row.update(val_metrics(head.val_probs(), head.val_y, val_labels))
        else:
            row = {"epoch": epoch, **train_one_epoch(net, train_loader, trainer, ctx, config, epoch, weights,
                                                     info.num_workers, layout)}
            if averager is not None:
                averager.average()  # same BatchNorm statistics on every worker: same val metrics
            elif len(ctx) > 1:
                average_devices(net)
            row.update(_validate(net, val_loader, ctx, config.batch_size * len(ctx), val_labels, layout))
        row.update(lr=trainer.learning_rate, epoch_s=time.time() - start)
        rows.append(row)
        log.info("%s", _epoch_line(row))
        improved = _better(row[BEST_METRIC], state["best_score"])
        if improved:
            state.update(best_score=row[BEST_METRIC], best_epoch=epoch, bad_epochs=0)
        else:
            state["bad_epochs"] += 1
        state["epoch"] = epoch + 1
        if writer is not None:
            writer.epoch_done(net, trainer, state, rows, improved)
        if config.patience and state["bad_epochs"] >= config.patience:
            log.info("early stop: no %s gain for %d epochs", BEST_METRIC, state["bad_epochs"])
            break
    if writer is not None:
        writer.flush(net, trainer, state, rows, final=True)
        if layout is not None:
            from fashionai.multitask import split_run

            split_run(run_dir, config, rows)
    log.info("done: best %s %.4f at epoch %d; run %s", BEST_METRIC, state["best_score"], state["best_epoch"],
             run_dir)
