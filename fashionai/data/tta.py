"""Test-time views: several views of every image, the same views training's random crops show.

Used by prediction (fashionai.inference.predict) and by the feature cache of head training
(fashionai.training.features), which caches the same views; the view modes are defined here once.

`image_views` resizes an image's short side to the evaluation transform's size and cuts the views
from the whole resized image: corner crops reach the ends of its long side, as the Gluon FashionAI
tutorial's ten-crop does and as training's `crop` augmentation (a random crop anywhere at that
scale) does. (Until this was measured, the views came from a centred square: corner crops then sat
at positions training rarely showed, and lowered the score instead of raising it.) Layout
(image-major): an image's S scales x V views are consecutive rows; `reduce_views` averages them.
View order within an image (`view_boxes` gives the exact slices):

| mode        | V  | views, in order                                                             |
|-------------|----|-----------------------------------------------------------------------------|
| `none`      | 1  | centre                                                                      |
| `flip`      | 2  | centre, mirrored centre                                                     |
| `five-crop` | 5  | centre, top-left, top-right, bottom-left, bottom-right                      |
| `ten-crop`  | 10 | the five crops, then each of them mirrored left-right (view 5 + i = mirror of view i) |

View 0 is always the centre crop, i.e. exactly what `none` (and the evaluation transform) sees.
The centre crop starts at `((H - crop) // 2, (W - crop) // 2)`, as `mx.image.center_crop` does.
The tutorial's ten-crop takes the crops of the mirrored image; when `W - crop` is even that is the
same set of views (the top-left crop of the mirror is the mirror of the top-right crop), so means
agree; when it is odd the tutorial's mirrored centre is one pixel off. `cut_views` does the
slicing of one resized image.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from fashionai.core.view import View
from fashionai.data.transforms import as_array

if TYPE_CHECKING:
    import mxnet as mx

# Views per image of each mode (constants, not state).
TTA_MODES: dict[str, int] = {"none": 1, "flip": 2, "five-crop": 5, "ten-crop": 10}
REDUCTIONS: tuple[str, ...] = ("mean", "max")


class Box(NamedTuple):
    """One view: the crop's top-left corner (y, x) and whether it is mirrored left-right."""

    y: int
    x: int
    flip: bool


def check_mode(mode: str) -> str:
    """Return `mode` if it is a TTA mode, else raise a ValueError listing the valid ones."""
    if mode not in TTA_MODES:
        raise ValueError(f"unknown TTA mode {mode!r}; valid modes: {', '.join(TTA_MODES)}")
    return mode


def num_views(mode: str) -> int:
    """Views per image V of `mode`."""
    return TTA_MODES[check_mode(mode)]


def view_boxes(height: int, width: int, crop: int, mode: str) -> list[Box]:
    """The V crop boxes of `mode` on an image of `height` x `width`, in the documented order."""
    check_mode(mode)
    if crop > height or crop > width:
        raise ValueError(f"crop {crop} is larger than the image ({height} x {width})")
    centre = Box((height - crop) // 2, (width - crop) // 2, False)
    if mode == "none":
        return [centre]
    if mode == "flip":
        return [centre, centre._replace(flip=True)]
    bottom, right = height - crop, width - crop
    five = [centre, Box(0, 0, False), Box(0, right, False), Box(bottom, 0, False), Box(bottom, right, False)]
    if mode == "five-crop":
        return five
    return five + [box._replace(flip=True) for box in five]


def cut_views(image: mx.nd.NDArray | np.ndarray, mode: str, crop: int) -> mx.nd.NDArray:
    """(H, W, C) -> (V, crop, crop, C): the views of `mode` (`view_boxes`), in the documented order."""
    import mxnet as mx

    views = _cut(as_array(image), mode, crop)
    return mx.nd.array(views, dtype=views.dtype)


def _cut(image: np.ndarray, mode: str, crop: int) -> np.ndarray:
    """`cut_views` in numpy: slicing copies no pixel until the final stack, where NDArray slicing
    and flipping cost one engine operation per view (4x the time of the whole cut here)."""
    if image.ndim != 3:
        raise ValueError(f"cut_views expects an (H, W, C) image, got shape {image.shape}")
    views = []
    for box in view_boxes(*image.shape[:2], crop, mode):
        view = image[box.y:box.y + crop, box.x:box.x + crop]
        views.append(view[:, ::-1] if box.flip else view)
    return np.stack(views)


def reduce_views(probs: np.ndarray, views: int, reduce: str = "mean") -> np.ndarray:
    """(B * V, K) image-major view probabilities -> (B, K) per image, rows summing to 1.

    `max` takes each class's largest probability over the views and renormalises, so callers can
    treat every output as a distribution.
    """
    if reduce not in REDUCTIONS:
        raise ValueError(f"unknown TTA reduction {reduce!r}; valid: {', '.join(REDUCTIONS)}")
    if probs.ndim != 2 or probs.shape[0] % views:
        raise ValueError(f"probabilities of shape {probs.shape} do not split into groups of {views} views")
    grouped = probs.reshape(probs.shape[0] // views, views, probs.shape[1])
    out = grouped.mean(axis=1) if reduce == "mean" else grouped.max(axis=1)
    return out / out.sum(axis=1, keepdims=True)


# --- images to views ---------------------------------------------------------------------------
class ImageDecodeError(ValueError):
    """Images that could not be read; `failures` lists (path, reason) for every one of them."""

    def __init__(self, failures: list[tuple[str, str]]):
        lines = "\n".join(f"  {path}: {reason}" for path, reason in failures)
        super().__init__(f"{len(failures)} image(s) could not be decoded; nothing was written:\n{lines}")
        self.failures = failures


def check_scales(scales: Sequence[int] | None, view: View) -> list[int]:
    """The short-side sizes to predict at (none given: the val view's, `view.short`); each >= view.size."""
    scales = [view.short] if not scales else [int(s) for s in scales]
    small = [s for s in scales if s < view.size]
    if small:
        raise ValueError(f"TTA scales {small} are smaller than the crop size {view.size}")
    return scales


def load_image(path: str | Path) -> mx.nd.NDArray:
    """(H, W, 3) uint8 RGB; MXNetError if the file is missing or not an image (raised here, not later:
    MXNet runs operators asynchronously, so the read is awaited)."""
    import mxnet as mx

    image = mx.image.imread(str(path))
    image.wait_to_read()
    return image


def image_views(image: mx.nd.NDArray, scales: Sequence[int], view: View, mode: str) -> mx.nd.NDArray:
    """(H, W, 3) uint8 -> (S * V, 3, view.size, view.size) float32, normalised with the view's mean / std:
    for each scale, the short side resized to it (as the evaluation transform does), then the V views
    of `mode` (`view_boxes`) cut from the whole resized image, corners included, as training's random
    crops are (transforms.RandomCropAtEvalScale).

    The resized image is normalised once and the views cut from it: the same numbers as
    normalising each view (the normalisation is per pixel), at a fraction of the work for ten
    overlapping views."""
    import mxnet as mx

    per_scale = []
    for scale in scales:
        resized = mx.nd.image.resize(image, size=scale, keep_ratio=True, interp=1)
        chw = mx.nd.image.normalize(mx.nd.image.to_tensor(resized), mean=view.mean, std=view.std).asnumpy()
        per_scale.append(_cut(chw.transpose(1, 2, 0), mode, view.size).transpose(0, 3, 1, 2))
    return mx.nd.array(np.ascontiguousarray(np.concatenate(per_scale)), dtype=np.float32)


class ViewsDataset:
    """The test-time views of each image as a gluon Dataset, so a DataLoader can decode them in
    worker threads (`decode_loader`): item i is ("ok", its views) or ("bad", (path, reason))."""

    def __init__(self, paths: Sequence, scales: Sequence[int], view: View, mode: str):
        self.paths, self.scales, self.view, self.mode = list(paths), list(scales), view, mode

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[str, object]:
        stacks, failures = load_views([self.paths[i]], self.scales, self.view, self.mode)
        return ("ok", stacks[0]) if stacks else ("bad", failures[0])


def decode_loader(paths: Sequence, scales: Sequence[int], view: View, mode: str, images_per_step: int,
                  threads: int):
    """Steps of `images_per_step` images' views, decoded by `threads` threads ahead of the net (a
    gluon DataLoader over a thread pool: MXNet's image operators release the GIL), in `paths` order;
    each step a list of ViewsDataset items. 0 threads: decoded in this thread, as it is needed."""
    from mxnet.gluon.data import DataLoader

    return DataLoader(ViewsDataset(paths, scales, view, mode), batch_size=images_per_step, shuffle=False,
                      num_workers=threads, thread_pool=True, batchify_fn=list, prefetch=2 * threads or None)


def load_views(paths: Sequence, scales: Sequence[int], view: View, mode: str
               ) -> tuple[list[mx.nd.NDArray], list[tuple[str, str]]]:
    """Each decodable image's `image_views` (normalised, ready for the net), and (path, reason) of
    every image that is not."""
    import mxnet as mx

    stacks, failures = [], []
    for path in paths:
        try:
            image = load_image(path)
        except mx.base.MXNetError as err:
            failures.append((str(path), str(err).strip().splitlines()[-1]))
            continue
        stacks.append(image_views(image, scales, view, mode))
    return ([] if failures else stacks), failures
