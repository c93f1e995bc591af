"""Image transforms: the training augmentation and "the val view", both read from one `View`.

The view (input size, crop ratio, normalisation) is fashionai.core.view.View, built once from the
run's record and passed whole. `eval_transform` is the single definition of the val view (the short
side resized to `view.short`, then a centre crop); prediction reproduces it exactly for TTA mode
`none` (fashionai.data.tta) and the RecordIO reader mirrors both
(fashionai.data.recordio.record_iter_args).
"""

from __future__ import annotations

import math
import random
from typing import TYPE_CHECKING

from fashionai.core.view import View

if TYPE_CHECKING:
    import mxnet as mx


def eval_transform(view: View) -> mx.gluon.Block:
    """HWC uint8 image -> (3, view.size, view.size) float32: resize short side, centre crop, normalise."""
    from mxnet.gluon.data.vision import transforms

    return transforms.Compose([
        transforms.Resize(view.short, keep_ratio=True),
        transforms.CenterCrop(view.size),
        transforms.ToTensor(),
        transforms.Normalize(view.mean, view.std),
    ])


AUGMENTS = ("crop", "shift", "imagenet")
SHIFT_ZOOM = 0.15  # `shift`: the short side resized to view.short x U(1, 1 + SHIFT_ZOOM) before the crop


class RandomCropAtEvalScale:
    """The val view's scale, anywhere in the image: resize the short side to `view.short` (as
    the evaluation transform does), then a view.size square crop at a uniformly random position over the
    whole resized image (the Gluon FashionAI tutorial's `resize=256, rand_crop=True`). Every test
    view (centre, corners, mirrors) is then a view training saw, at the same scale."""

    def __init__(self, view: View):
        self.size, self.short = view.size, view.short

    def short_side(self) -> int:
        """The short side the image is resized to before the crop."""
        return self.short

    def __call__(self, image: mx.nd.NDArray) -> mx.nd.NDArray:
        import mxnet as mx

        resized = mx.image.resize_short(image, self.short_side(), interp=1)
        return mx.image.random_crop(resized, (self.size, self.size))[0]


class ShiftedCrop(RandomCropAtEvalScale):
    """RandomCropAtEvalScale from an image up to `zoom` larger than the val view's scale: on a square
    image (most of the competition's) the val scale leaves no room to move, so the plain crop always
    cuts the same centre square; here the garment moves by up to zoom / (1 + zoom) of the side (13%)
    and grows by up to 15%, never losing more than that of its ends."""

    def __init__(self, view: View, zoom: float = SHIFT_ZOOM):
        super().__init__(view)
        self.zoom = zoom

    def short_side(self) -> int:
        return int(round(self.short * random.uniform(1.0, 1.0 + self.zoom)))


class FittedResizedCrop:
    """GluonCV's random resized crop (area share in `scale`, aspect in `ratio`, log-uniform), with
    the aspect narrowed to what fits the image at the drawn area. MXNet's own falls back, after 10
    draws that do not fit, to an unscaled centre patch of the output size: with `scale` near 1 that
    was most crops (at min_scale 1.0, 80% of them a 64 px patch of a 200 px image)."""

    def __init__(self, size: int, scale: tuple[float, float], ratio: tuple[float, float] = (3 / 4, 4 / 3)):
        self.size, self.scale, self.log_ratio = size, scale, (math.log(ratio[0]), math.log(ratio[1]))

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
    view: View, *, augment: str = "crop", min_scale: float = 0.08, jitter: float = 0.0, lighting: float = 0.0,
) -> mx.gluon.Block:
    """The training augmentation: `crop` (RandomCropAtEvalScale at the view's scale), `shift` (ShiftedCrop:
    up to SHIFT_ZOOM larger, so it moves on square images) or `imagenet` (GluonCV's ImageNet recipe:
    FittedResizedCrop with area share >= `min_scale`), then a left-right flip, optional
    colour jitter and PCA lighting noise, the view's normalisation."""
    from mxnet.gluon.data.vision import transforms

    if augment not in AUGMENTS:
        raise ValueError(f"augment must be one of {AUGMENTS}, got {augment!r}")
    crops = {"crop": lambda: RandomCropAtEvalScale(view), "shift": lambda: ShiftedCrop(view),
             "imagenet": lambda: FittedResizedCrop(view.size, (min_scale, 1.0))}
    crop = crops[augment]()
    steps = transforms.Compose([transforms.ToTensor(), transforms.Normalize(view.mean, view.std)])
    return Chain(Chain(crop, FlipJitterLighting(jitter, lighting)), steps)


JITTER_OPS = ("random_brightness", "random_contrast", "random_saturation")


class FlipJitterLighting:
    """A left-right mirror (probability 1/2), brightness / contrast / saturation factors drawn from
    [1 - jitter, 1 + jitter] in a random order, AlexNet's PCA lighting noise of std `lighting`:
    gluon's RandomFlipLeftRight, RandomColorJitter and RandomLighting, but every draw from Python's
    `random`, so seeding it per image (fashionai.data.loaders.SeededDataset) fixes the whole
    augmentation; reseeding MXNet's own generator cost ~1.5 ms per image. MXNet's image operators
    apply the drawn values (a `random_*` operator with min = max factor draws nothing)."""

    def __init__(self, jitter: float, lighting: float):
        self.jitter, self.lighting = jitter, lighting

    def __call__(self, image: mx.nd.NDArray) -> mx.nd.NDArray:
        import mxnet as mx

        if random.random() < 0.5:
            image = mx.nd.image.flip_left_right(image)
        if self.jitter > 0:
            for name in random.sample(JITTER_OPS, len(JITTER_OPS)):
                factor = random.uniform(max(0.0, 1 - self.jitter), 1 + self.jitter)
                image = getattr(mx.nd.image, name)(image, min_factor=factor, max_factor=factor)
        if self.lighting > 0:
            alpha = tuple(random.gauss(0.0, self.lighting) for _ in range(3))
            image = mx.nd.image.adjust_lighting(image.astype("float32"), alpha=alpha)
        return image


class Chain:
    """`second(first(x))`: the crops are plain callables, which gluon's Compose (Blocks only) refuses."""

    def __init__(self, first, second):
        self.first, self.second = first, second

    def __call__(self, image):
        return self.second(self.first(image))
