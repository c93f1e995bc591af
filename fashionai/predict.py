"""Class probabilities (softmax) of a trained net for a list of images, with TTA, on any contexts.

Preprocessing, per scale `s` (default `data.resize_size(data_shape)`, the evaluation transform's):
decode with OpenCV (`mx.image.imread`, RGB), resize the short side to `s` with the same operator
and interpolation as the evaluation transform (`transforms.Resize(s, keep_ratio=True)`), then cut
the long side down to an `s` x `s` square whose centre `data_shape` crop is exactly the evaluation
transform's centre crop. Images of any size then stack into one (B, s, s, 3) batch, and
`tta.make_views` slices the views from the whole batch. Consequence: corner crops of a non-square
image come from that square, not from the ends of its long side.

`batch_size` counts network inputs (views) per forward pass on each device, so memory does not grow
with the TTA mode: each step takes `max(1, batch_size // views) * len(ctx)` images, split across the
devices. `tta="none"` gives exactly the evaluation transform's view.

`precision` (fp32, fused, bf16, int8, auto; see `fashionai.precision`) picks the numeric form of
the net; `predict_run` defaults to fp32, the command line to auto.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from fashionai.annotations import read_questions
from fashionai.tasks import check_task
from fashionai.tta import make_views, num_views, reduce_views

if TYPE_CHECKING:
    import mxnet as mx

log = logging.getLogger(__name__)


class ImageDecodeError(ValueError):
    """Images that could not be read; `failures` lists (path, reason) for every one of them."""

    def __init__(self, failures: list[tuple[str, str]]):
        lines = "\n".join(f"  {path}: {reason}" for path, reason in failures)
        super().__init__(f"{len(failures)} image(s) could not be decoded; nothing was written:\n{lines}")
        self.failures = failures


def check_scales(scales: Sequence[int] | None, data_shape: int) -> list[int]:
    """The short-side sizes to predict at (default: the evaluation transform's); each >= data_shape."""
    from fashionai.data import resize_size

    scales = [resize_size(data_shape)] if not scales else [int(s) for s in scales]
    small = [s for s in scales if s < data_shape]
    if small:
        raise ValueError(f"TTA scales {small} are smaller than the crop size {data_shape}")
    return scales


def load_image(path: str | Path) -> mx.nd.NDArray:
    """(H, W, 3) uint8 RGB; MXNetError if the file is missing or not an image (raised here, not later:
    MXNet runs operators asynchronously, so the read is awaited)."""
    import mxnet as mx

    image = mx.image.imread(str(path))
    image.wait_to_read()
    return image


def square_for_views(image: mx.nd.NDArray, scale: int, crop: int) -> mx.nd.NDArray:
    """(H, W, 3) -> (scale, scale, 3): short side resized to `scale`, long side cut so that the
    square's centre `crop` equals `mx.image.center_crop` of the whole resized image."""
    import mxnet as mx

    resized = mx.nd.image.resize(image, size=scale, keep_ratio=True, interp=1)
    h, w = resized.shape[:2]
    y0 = (h - crop) // 2 - (scale - crop) // 2
    x0 = (w - crop) // 2 - (scale - crop) // 2
    return resized[y0:y0 + scale, x0:x0 + scale]


def _load_squares(paths: Sequence, scales: list[int], crop: int) -> tuple[list, list[tuple[str, str]]]:
    """Per scale a (B, s, s, 3) uint8 batch of the decodable images, and (path, reason) failures."""
    import mxnet as mx

    per_scale: list[list] = [[] for _ in scales]
    failures = []
    for path in paths:
        try:
            image = load_image(path)
        except mx.base.MXNetError as err:
            reason = str(err).strip().splitlines()[-1]
            failures.append((str(path), reason))
            continue
        for squares, scale in zip(per_scale, scales):
            squares.append(square_for_views(image, scale, crop))
    if failures:
        return [], failures
    return [mx.nd.stack(*squares) for squares in per_scale], []


def _views(squares: list, mean, std, mode: str, crop: int) -> mx.nd.NDArray:
    """Per-scale (b, s, s, 3) uint8 -> (b * S * V, 3, crop, crop) normalised, image-major."""
    import mxnet as mx

    groups = []
    for batch in squares:
        tensor = mx.nd.image.normalize(mx.nd.image.to_tensor(batch), mean=mean, std=std)
        views = make_views(tensor, mode, crop)
        groups.append(views.reshape((batch.shape[0], -1, 3, crop, crop)))
    return mx.nd.concat(*groups, dim=1).reshape((-1, 3, crop, crop))


def _forward(net, squares: list, ctx: list, mode: str, crop: int) -> np.ndarray:
    """Softmax of every view, (B * S * V, K) image-major; images split across the devices."""
    import mxnet as mx

    from fashionai.data import MEAN, STD

    count = squares[0].shape[0]
    used = ctx[:count]
    parts = [mx.gluon.utils.split_and_load(batch, used, even_split=False) for batch in squares]
    outputs = []
    for i in range(len(used)):
        views = _views([p[i] for p in parts], MEAN, STD, mode, crop)
        logits = net(views)
        if logits.dtype != np.float32:  # a bf16 graph's output: softmax and asnumpy in float32
            logits = mx.nd.amp_cast(logits, dtype="float32")
        outputs.append(mx.nd.softmax(logits, axis=-1))
    return np.concatenate([out.asnumpy() for out in outputs])


def predict_paths(
    net, paths: Sequence[str | Path], *, data_shape: int, ctx, tta: str = "none",
    scales: Sequence[int] | None = None, reduce: str = "mean", batch_size: int = 32,
) -> np.ndarray:
    """(N, K) probabilities, rows in `paths` order. Every undecodable image is collected and
    reported in one ImageDecodeError (after the first failure the net is no longer run).

    A plain net is hybridized here (static_alloc, static_shape); one from `precision.load_net` is
    run as it is, since re-hybridizing would drop its backend (the fused oneDNN graph).
    """
    from fashionai.precision import precision_of

    ctx = list(ctx) if isinstance(ctx, (list, tuple)) else [ctx]
    if not paths:
        raise ValueError("no images to predict")
    scales = check_scales(scales, data_shape)
    views = num_views(tta) * len(scales)
    per_step = max(1, batch_size // views) * len(ctx)
    if precision_of(net) is None:
        net.hybridize(static_alloc=True, static_shape=True)
    results, failures = [], []
    with tqdm(total=len(paths), unit="img", desc=f"predict ({tta})", leave=False) as bar:
        for start in range(0, len(paths), per_step):
            squares, bad = _load_squares(paths[start:start + per_step], scales, data_shape)
            failures += bad
            if not failures:
                results.append(reduce_views(_forward(net, squares, ctx, tta, data_shape), views, reduce))
            bar.update(min(per_step, len(paths) - start))
    if failures:
        raise ImageDecodeError(failures)
    return np.concatenate(results)


def read_run_config(run_dir: str | Path) -> dict:
    """The run's `config.json` (to learn its task without loading the net)."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file; is {run_dir} a run directory (fashionai train)?")
    return json.loads(path.read_text())


def predict_run(
    run_dir: str | Path, image_paths: Sequence[str | Path], *, tta: str = "none", devices: str = "auto",
    batch_size: int = 32, which: str = "best", scales: Sequence[int] | None = None, reduce: str = "mean",
    precision: str = "fp32",
) -> np.ndarray:
    """(N, K) probabilities of a trained run on `devices` (whatever the run was trained on), in
    `precision` (`auto`: the run's measured choice, see `precision.choose_precision`)."""
    from fashionai.devices import resolve_devices
    from fashionai.precision import load_net, resolve_precision

    ctx = resolve_devices(devices)
    precision = resolve_precision(run_dir, precision, devices=devices, batch_size=batch_size, which=which)
    net, config = load_net(run_dir, precision, ctx=ctx, which=which)
    log.info("predicting %d images with %s (%s, %s) on %s, tta %s", len(image_paths), run_dir, which, precision,
             ctx, tta)
    return predict_paths(
        net, image_paths, data_shape=int(config["data_shape"]), ctx=ctx, tta=tta, scales=scales,
        reduce=reduce, batch_size=batch_size,
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
