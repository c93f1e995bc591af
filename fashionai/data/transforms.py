"""Image transforms: the training augmentation and "the val view", with the normalisation defined once.

The normalisation constants are ImageNet's statistics, which the model-zoo weights were trained
with. `eval_transform` is the single definition of the val view (the short side resized to
data_shape / crop_ratio, then a centre crop); prediction reproduces it exactly
for TTA mode `none` (fashionai.data.tta) and the RecordIO reader mirrors both
(fashionai.data.recordio.record_iter_args).
"""

from __future__ import annotations

import math
import random
from typing import TYPE_CHECKING

from fashionai.core.runinfo import IMAGENET_CROP_RATIO, check_crop_ratio

if TYPE_CHECKING:
    import mxnet as mx


MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def resize_size(data_shape: int, crop_ratio: float = IMAGENET_CROP_RATIO) -> int:
    """Short side the evaluation transform resizes to before its centre crop (256 for 224 at 0.875;
    data_shape itself at 1.0, where the crop keeps the whole short side)."""
    return int(data_shape / check_crop_ratio(crop_ratio) + 1e-6)


def eval_transform(data_shape: int, crop_ratio: float = IMAGENET_CROP_RATIO) -> mx.gluon.Block:
    """HWC uint8 image -> (3, data_shape, data_shape) float32: resize short side, centre crop, normalise."""
    from mxnet.gluon.data.vision import transforms

    return transforms.Compose([
        transforms.Resize(resize_size(data_shape, crop_ratio), keep_ratio=True),
        transforms.CenterCrop(data_shape),
        transforms.ToTensor(),
        transforms.Normalize(MEAN, STD),
    ])


AUGMENTS = ("crop", "imagenet")


class RandomCropAtEvalScale:
    """The val view's scale, anywhere in the image: resize the short side to `resize_size(S)` (as
    the evaluation transform does), then an S x S crop at a uniformly random position over the
    whole resized image (the Gluon FashionAI tutorial's `resize=256, rand_crop=True`). Every test
    view (centre, corners, mirrors) is then a view training saw, at the same scale."""

    def __init__(self, data_shape: int, crop_ratio: float = IMAGENET_CROP_RATIO):
        self.size, self.short = data_shape, resize_size(data_shape, crop_ratio)

    def __call__(self, image: mx.nd.NDArray) -> mx.nd.NDArray:
        import mxnet as mx

        resized = mx.image.resize_short(image, self.short, interp=1)
        return mx.image.random_crop(resized, (self.size, self.size))[0]


class FittedResizedCrop:
    """GluonCV's random resized crop (area share in `scale`, aspect in `ratio`, log-uniform), with
    the aspect narrowed to what fits the image at the drawn area. MXNet's own falls back, after 10
    draws that do not fit, to an unscaled centre patch of the output size: with `scale` near 1 that
    was most crops (at min_scale 1.0, 80% of them a 64 px patch of a 200 px image)."""

    def __init__(self, data_shape: int, scale: tuple[float, float], ratio: tuple[float, float] = (3 / 4, 4 / 3)):
        self.size, self.scale, self.log_ratio = data_shape, scale, (math.log(ratio[0]), math.log(ratio[1]))

    def box(self, height: int, width: int) -> tuple[int, int, int, int]:
        """(x0, y0, crop width, crop height) of one draw (Python's `random`, seeded by `fit`)."""
        area = random.uniform(*self.scale) * height * width
        ratio = math.exp(random.uniform(*self.log_ratio))
        ratio = min(max(ratio, area / height ** 2), width ** 2 / area)  # w = sqrt(area r) <= W, h <= H
        w = min(width, max(1, round(math.sqrt(area * ratio))))
        h = min(height, max(1, round(math.sqrt(area / ratio))))
        return random.randint(0, width - w), random.randint(0, height - h), w, h

    def __call__(self, image: mx.nd.NDArray) -> mx.nd.NDArray:
        import mxnet as mx

        x0, y0, w, h = self.box(*image.shape[:2])
        return mx.image.fixed_crop(image, x0, y0, w, h, (self.size, self.size), interp=1)


def train_transform(
    data_shape: int, *, augment: str = "crop", crop_ratio: float = IMAGENET_CROP_RATIO, min_scale: float = 0.08,
    jitter: float = 0.0, lighting: float = 0.0,
) -> mx.gluon.Block:
    """The training augmentation: `crop` (RandomCropAtEvalScale at `crop_ratio`) or `imagenet` (GluonCV's ImageNet
    recipe: FittedResizedCrop with area share >= `min_scale`), then a left-right flip, optional
    colour jitter and PCA lighting noise, normalisation."""
    from mxnet.gluon.data.vision import transforms

    if augment not in AUGMENTS:
        raise ValueError(f"augment must be one of {AUGMENTS}, got {augment!r}")
    crop = (RandomCropAtEvalScale(data_shape, crop_ratio) if augment == "crop"
            else FittedResizedCrop(data_shape, (min_scale, 1.0)))
    steps = [transforms.RandomFlipLeftRight()]
    if jitter > 0:
        steps.append(transforms.RandomColorJitter(brightness=jitter, contrast=jitter, saturation=jitter))
    if lighting > 0:
        steps.append(transforms.RandomLighting(lighting))
    steps += [transforms.ToTensor(), transforms.Normalize(MEAN, STD)]
    return Chain(crop, transforms.Compose(steps))


class Chain:
    """`second(first(x))`: the crops are plain callables, which gluon's Compose (Blocks only) refuses."""

    def __init__(self, first, second):
        self.first, self.second = first, second

    def __call__(self, image):
        return self.second(self.first(image))
