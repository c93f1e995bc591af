"""The epoch loop: one loss step shared by every head, a training epoch, prediction over a loader,
the per-epoch val figures.

Every head (a single task's, a multi-task layout's, a cached-feature head) trains through `step`:
forward on each device's slice, softmax cross-entropy against soft targets (label smoothing,
mixup), optional per-sample weights, AMP loss scaling, backward, one trainer update.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from fashionai.core.metrics import accuracy, basic_precision, official_ap

if TYPE_CHECKING:
    import mxnet as mx

    from fashionai.training.config import TrainConfig


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


def loss_scaling(dtype: str) -> bool:
    """Whether training in `dtype` needs AMP's dynamic loss scaling: float16 only. Its 5-bit
    exponent flushes small gradients to zero without it; bfloat16 keeps float32's 8-bit exponent,
    so for it the scaling buys nothing and its per-step check that every gradient is finite
    (`multi_all_finite`) cost 21% of a BF16 ResNet50_v2 step (bench/bench_profile.py)."""
    return dtype == "float16"


def amp_scaled(losses: list, trainer) -> list:
    """The losses times AMP's current loss scale (call inside `autograd.record()`)."""
    from mxnet.contrib import amp

    with amp.scale_loss(losses, trainer) as scaled:
        return scaled


def softmax_loss() -> mx.gluon.loss.Loss:
    """The loss of every head: softmax cross-entropy against (B, K) soft targets."""
    import mxnet as mx

    return mx.gluon.loss.SoftmaxCrossEntropyLoss(sparse_label=False)


def step(model, loss_fn, xs: list, targets: list, weights: list, trainer, batch_size: int, *,
         scale_loss: bool = False, adjust: Callable[[list], list] | None = None) -> tuple[float, list]:
    """One update on a batch already split over the devices: forward, loss, backward, trainer.step.

    `weights` holds a (b, 1) per-sample weight per device or None (a (b,) weight would broadcast the
    (b, 1) loss to (b, b)); `adjust` may change the outputs before the loss (a multi-task layout
    masks other tasks' logits). With `scale_loss` (float16: `loss_scaling`) the loss is scaled by
    AMP's dynamic loss scale, inside
    `autograd.record()` (the scaling is itself an operation: outside it backward finds no graph).
    Returns the summed unscaled loss and the outputs.
    """
    from mxnet import autograd

    with autograd.record():
        outputs = [model(x) for x in xs]
        if adjust is not None:
            outputs = adjust(outputs)
        losses = [loss_fn(o, t, w) if w is not None else loss_fn(o, t) for o, t, w in zip(outputs, targets, weights)]
        backward_of = amp_scaled(losses, trainer) if scale_loss else losses
    autograd.backward(backward_of)
    trainer.step(batch_size)
    return sum(float(loss.sum().asscalar()) for loss in losses), outputs


def sample_weights(weights: np.ndarray | None, labels: np.ndarray, ctx: Sequence) -> list:
    """Per device a (b, 1) NDArray of the class weights of `labels`, or None per device."""
    import mxnet as mx

    if weights is None:
        return [None] * len(ctx)
    return mx.gluon.utils.split_and_load(mx.nd.array(weights[labels][:, None]), ctx)


def train_one_epoch(net, loader, trainer, ctx: Sequence, config: TrainConfig, epoch: int, head,
                    weights: np.ndarray | None = None, num_workers: int = 1) -> dict[str, float]:
    """One pass over `loader`; returns train_loss, train_acc (vs the unmixed labels), img_per_s.

    `head` (fashionai.training.layout) makes the targets and masks the outputs: a multi-task layout
    counts each image's loss and accuracy over its own task's outputs only. With `num_workers`
    distributed workers the servers sum every worker's gradients, so the step normalises by the
    global batch: the update is the mean over all workers' images."""
    import mxnet as mx

    use_mixup = config.mixup > 0 and epoch < config.epochs - config.mixup_off_epochs
    loss_fn = softmax_loss()
    total_loss, correct, seen, start = 0.0, 0, 0, time.time()
    bar = tqdm(loader, desc=f"epoch {epoch}", unit="batch", leave=False, disable=None)
    for data, label in bar:
        targets = head.targets(label, config.label_smoothing)
        if use_mixup:
            data, targets = mixup_batch(data, targets, config.mixup)
        xs, ts, ys = (mx.gluon.utils.split_and_load(x, ctx) for x in (data, targets, label))
        ws = sample_weights(weights, label.asnumpy().astype(int), ctx)
        loss, outputs = step(net, loss_fn, xs, ts, ws, trainer, data.shape[0] * num_workers,
                             scale_loss=loss_scaling(config.dtype), adjust=lambda outs: head.masked(outs, ys))
        total_loss += loss
        correct += sum(int((o.argmax(axis=1) == y.astype("float32")).sum().asscalar()) for o, y in zip(outputs, ys))
        seen += data.shape[0]
        bar.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{correct / seen:.3f}")
    elapsed = time.time() - start
    return {"train_loss": total_loss / max(seen, 1), "train_acc": correct / max(seen, 1),
            "img_per_s": seen / max(elapsed, 1e-9)}


def predict_loader(net, loader, ctx: Sequence, step: int, logits: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(N, K) softmax probabilities (or the raw outputs) and (N,) labels of every image, in loader order.

    Each batch is padded to `step` images (batch size x devices) so the hybridized graph keeps one
    static shape; the pad rows are dropped. All devices' forwards are launched before the first
    result is read (`asnumpy` waits), so several GPUs run side by side rather than in turn.
    """
    import mxnet as mx

    def forward(x):  # float32 either way: under BF16 AMP the raw outputs are bfloat16, which numpy cannot order
        out = mx.nd.amp_cast(net(x), dtype="float32")
        return out if logits else mx.nd.softmax(out, axis=-1)

    probs, labels = [], []
    for data, label in tqdm(loader, desc="val", unit="batch", leave=False, disable=None):
        parts = mx.gluon.utils.split_and_load(pad_batch(data, step), ctx)
        outs = [forward(x) for x in parts]  # every device's forward is queued before any is read back
        out = np.concatenate([o.asnumpy() for o in outs])
        probs.append(out[:data.shape[0]])
        labels.append(label.asnumpy().astype(np.int64))
    return np.concatenate(probs), np.concatenate(labels)


def validate(net, loader, ctx: Sequence, step: int, label_strings: Sequence[str]) -> dict[str, float]:
    """val_loss (cross-entropy), val_acc, val_map (official AP) and val_basic_precision."""
    probs, y = predict_loader(net, loader, ctx, step)
    return val_metrics(probs, y, label_strings)


def val_metrics(probs: np.ndarray, y: np.ndarray, label_strings: Sequence[str]) -> dict[str, float]:
    """The per-epoch val figures of (N, K) probabilities against class indices and label strings."""
    loss = float(-np.mean(np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, None))))
    return {"val_loss": loss, "val_acc": accuracy(probs, y), "val_map": official_ap(probs, label_strings),
            "val_basic_precision": basic_precision(probs, label_strings)}
