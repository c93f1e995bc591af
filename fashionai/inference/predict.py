"""Class probabilities (softmax) of a trained net for a list of images, with TTA, on any contexts.

Preprocessing, per scale `s` (default `view.short`, the evaluation transform's for the run's `View`):
decode with OpenCV (`mx.image.imread`, RGB), resize the short side to `s` with the same operator
and interpolation as the evaluation transform (`transforms.Resize(s, keep_ratio=True)`), then cut
the TTA mode's views from the whole resized image (`data.tta.image_views`); the views of all images
stack into one batch.

`batch_size` counts network inputs (views) per forward pass on each device, so memory does not grow
with the TTA mode: each step takes `max(1, batch_size // views) * len(ctx)` images, split across the
devices. `tta="none"` gives exactly the evaluation transform's view.

`precision` (fp32, fused, bf16, int8; see fashionai.inference.nets) picks the numeric form of the
net and `engine` (mxnet, openvino; fashionai.inference.openvino_net) what runs it; `predict_run`
defaults to MXNet fp32. The command line's `auto` is resolved to one of them first
(fashionai.pipeline.precision).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from fashionai.core.annotations import read_questions
from fashionai.core.cpu import usable_cores
from fashionai.core.devices import context_list, resolve_devices
from fashionai.core.tasks import check_task
from fashionai.core.view import View
from fashionai.data.tta import ImageDecodeError, check_scales, decode_loader, num_views, reduce_views
from fashionai.inference.nets import load_net, precision_of

log = logging.getLogger(__name__)


def decode_threads(images: int, per_step: int) -> int:
    """Threads decoding ahead of the net: one per core, none when everything fits in one step
    (nothing to overlap); images were decoded one at a time in the main thread before."""
    return 0 if images <= per_step else usable_cores()


def _forward(net, stacks: list, ctx: list) -> np.ndarray:
    """Softmax of every view, (B * S * V, K) image-major; the images split across the devices."""
    import mxnet as mx

    used = ctx[:len(stacks)]
    per = -(-len(stacks) // len(used))
    outputs = []
    for i, c in enumerate(used):
        group = stacks[i * per:(i + 1) * per]
        if not group:
            continue
        logits = net(mx.nd.concat(*group, dim=0).as_in_context(c))
        if logits.dtype != np.float32:  # a bf16 graph's output: softmax and asnumpy in float32
            logits = mx.nd.amp_cast(logits, dtype="float32")
        outputs.append(mx.nd.softmax(logits, axis=-1))
    return np.concatenate([out.asnumpy() for out in outputs])


def predict_views(
    net, paths: Sequence[str | Path], *, view: View, ctx, tta: str = "none",
    scales: Sequence[int] | None = None, batch_size: int = 32,
) -> np.ndarray:
    """(N, S * V, K) probabilities of every view of every image (`data.tta` order, cut and normalised
    as `view` says), rows in `paths` order. Images are decoded by threads ahead of the net
    (`decode_threads`). Every undecodable image is collected and reported in one ImageDecodeError
    (after the first failure the net is no longer run).

    A plain net is hybridized here (static_alloc, static_shape); one from `nets.load_net` is
    run as it is, since re-hybridizing would drop its backend (the fused oneDNN graph).
    """
    ctx = context_list(ctx)
    if not paths:
        raise ValueError("no images to predict")
    scales = check_scales(scales, view)
    views = num_views(tta) * len(scales)
    per_step = max(1, batch_size // views) * len(ctx)
    if precision_of(net) is None:
        net.hybridize(static_alloc=True, static_shape=True)
    results, failures = [], []
    steps = decode_loader(paths, scales, view, tta, per_step, decode_threads(len(paths), per_step))
    with tqdm(total=len(paths), unit="img", desc=f"predict ({tta})", leave=False) as bar:
        for items in steps:
            stacks = [x for kind, x in items if kind == "ok"]
            failures += [x for kind, x in items if kind == "bad"]
            if not failures:
                probs = _forward(net, stacks, ctx)
                results.append(probs.reshape(len(stacks), views, probs.shape[-1]))
            bar.update(len(items))
    if failures:
        raise ImageDecodeError(failures)
    return np.concatenate(results)


def predict_paths(
    net, paths: Sequence[str | Path], *, view: View, ctx, tta: str = "none",
    scales: Sequence[int] | None = None, reduce: str = "mean", batch_size: int = 32,
) -> np.ndarray:
    """(N, K) probabilities, rows in `paths` order: `predict_views` reduced over each image's views.

    `tta` defaults to the evaluation transform's single view: this is the primitive that a run's
    prediction (`predict_run`) builds on.
    """
    views = predict_views(net, paths, view=view, ctx=ctx, tta=tta, scales=scales, batch_size=batch_size)
    return reduce_views(views.reshape(-1, views.shape[-1]), views.shape[1], reduce)


def predict_run(
    run_dir: str | Path, image_paths: Sequence[str | Path], *, tta: str, devices: str = "auto",
    batch_size: int = 32, which: str = "best", scales: Sequence[int] | None = None, reduce: str = "mean",
    precision: str = "fp32", engine: str = "mxnet",
) -> np.ndarray:
    """(N, K) probabilities of a trained run on `devices` (whatever the run was trained on), in
    `precision` (fp32, fused, bf16 or int8) on `engine` (mxnet or openvino); `auto` for either is
    decided by fashionai.pipeline.precision first."""
    if precision == "auto" or engine == "auto":
        raise ValueError("precision and engine 'auto' are resolved per run by fashionai.pipeline.auto_choice."
                         "resolve_choice before predicting; pass the pair it chose")
    ctx = resolve_devices(devices)
    net, run = load_net(run_dir, precision, ctx=ctx, which=which, engine=engine)
    log.info("predicting %d images with %s (%s, %s on %s) on %s, tta %s", len(image_paths), run_dir, which,
             precision, engine, ctx, tta)
    return predict_paths(
        net, image_paths, view=run.view, ctx=ctx, tta=tta, scales=scales, reduce=reduce, batch_size=batch_size,
    )


def question_images(
    questions_path: str | Path, task: str, images_root: str | Path | None = None,
) -> tuple[list[str], list[Path]]:
    """The question file's images of `task` in file order, as written there and as files.

    Image names are relative to the folder above `Tests/` (`rank/`), the default `images_root`.
    """
    check_task(task)
    root = Path(questions_path).resolve().parent.parent if images_root is None else Path(images_root)
    names = [q.image for q in read_questions(questions_path) if q.task == task]
    if not names:
        raise ValueError(f"{questions_path} has no questions for {task}")
    return names, [root / name for name in names]
