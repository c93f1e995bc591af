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

import numpy as np

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


def as_array(image) -> np.ndarray:
    """An HWC image as a numpy array (the folders' datasets decode to NDArray, the cache keeps numpy)."""
    return image.asnumpy() if hasattr(image, "asnumpy") else np.asarray(image)


def resize_short(image: np.ndarray, short: int) -> np.ndarray:
    """mx.image.resize_short(image, short, interp=1) on a numpy image: the same sizes and OpenCV's
    bilinear resize (the same pixels); an image already that size is returned as it is."""
    import cv2

    h, w = image.shape[:2]
    new_h, new_w = (short * h // w, short) if h > w else (short, short * w // h)
    if (new_h, new_w) == (h, w):
        return image
    return cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)


class RandomCropAtEvalScale:
    """The val view's scale, anywhere in the image: resize the short side to `view.short` (as
    the evaluation transform does), then a view.size square crop at a uniformly random position over the
    whole resized image (the Gluon FashionAI tutorial's `resize=256, rand_crop=True`). Every test
    view (centre, corners, mirrors) is then a view training saw, at the same scale.

    Numpy in, numpy out, the position drawn as mx.image.random_crop draws it (Python's `random`);
    `cache_short` is the largest short side it resizes to, the size a cache of resized images
    (fashionai.data.loaders.CachedImages) may keep them at without changing a crop."""

    def __init__(self, view: View):
        self.size, self.short = view.size, view.short

    @property
    def cache_short(self) -> int | None:
        return self.short

    def short_side(self) -> int:
        """The short side the image is resized to before the crop."""
        return self.short

    def __call__(self, image) -> np.ndarray:
        resized = resize_short(as_array(image), self.short_side())
        h, w = resized.shape[:2]
        x0, y0 = random.randint(0, w - self.size), random.randint(0, h - self.size)
        return resized[y0:y0 + self.size, x0:x0 + self.size]


class ShiftedCrop(RandomCropAtEvalScale):
    """RandomCropAtEvalScale from an image up to `zoom` larger than the val view's scale: on a square
    image (most of the competition's) the val scale leaves no room to move, so the plain crop always
    cuts the same centre square; here the garment moves by up to zoom / (1 + zoom) of the side (13%)
    and grows by up to 15%, never losing more than that of its ends."""

    def __init__(self, view: View, zoom: float = SHIFT_ZOOM):
        super().__init__(view)
        self.zoom = zoom

    @property
    def cache_short(self) -> int | None:
        return int(round(self.short * (1.0 + self.zoom)))

    def short_side(self) -> int:
        return int(round(self.short * random.uniform(1.0, 1.0 + self.zoom)))


class FittedResizedCrop:
    """GluonCV's random resized crop (area share in `scale`, aspect in `ratio`, log-uniform), with
    the aspect narrowed to what fits the image at the drawn area. MXNet's own falls back, after 10
    draws that do not fit, to an unscaled centre patch of the output size: with `scale` near 1 that
    was most crops (at min_scale 1.0, 80% of them a 64 px patch of a 200 px image)."""

    def __init__(self, size: int, scale: tuple[float, float], ratio: tuple[float, float] = (3 / 4, 4 / 3)):
        self.size, self.scale, self.log_ratio = size, scale, (math.log(ratio[0]), math.log(ratio[1]))

    @property
    def cache_short(self) -> int:
        """The short side an image may be kept at with every crop still cut from at least `size`
        pixels a side (then shrunk to it, never enlarged): the smallest crop, area share scale[0] at
        the most uneven aspect, has sides of at least sqrt(scale[0] x that aspect) of the image's
        short side (96 px for the demo's 64 px at 0.6). The same boxes, scaled, from the same draws;
        not pixel for pixel as from the full image (two shrinks instead of one). It keeps a demo
        epoch as fast as `crop`'s."""
        aspect = math.exp(max(abs(r) for r in self.log_ratio))  # the crop's long side over its short side
        return math.ceil(self.size / math.sqrt(self.scale[0] / aspect))

    def box(self, height: int, width: int) -> tuple[int, int, int, int]:
        """(x0, y0, crop width, crop height) of one draw (Python's `random`, seeded by `fit`)."""
        area = random.uniform(*self.scale) * height * width
        ratio = math.exp(random.uniform(*self.log_ratio))
        ratio = min(max(ratio, area / height ** 2), width ** 2 / area)  # w = sqrt(area r) <= W, h <= H
        w = min(width, max(1, round(math.sqrt(area * ratio))))
        h = min(height, max(1, round(math.sqrt(area / ratio))))
        # the position as a share of the room left, so that a kept smaller copy (cache_short) gets
        # the same box, scaled, from the same draws
        return round(random.random() * (width - w)), round(random.random() * (height - h)), w, h

    def __call__(self, image) -> np.ndarray:
        import cv2

        image = as_array(image)
        x0, y0, w, h = self.box(*image.shape[:2])
        patch = image[y0:y0 + h, x0:x0 + w]
        if (w, h) == (self.size, self.size):
            return patch
        return cv2.resize(patch, (self.size, self.size), interpolation=cv2.INTER_LINEAR)


def train_transform(
    view: View, *, augment: str = "crop", min_scale: float = 0.08, jitter: float = 0.0, lighting: float = 0.0,
) -> Chain:
    """The training augmentation: `crop` (RandomCropAtEvalScale at the view's scale), `shift` (ShiftedCrop:
    up to SHIFT_ZOOM larger, so it moves on square images) or `imagenet` (GluonCV's ImageNet recipe:
    FittedResizedCrop with area share >= `min_scale`), then a left-right flip, optional
    colour jitter and PCA lighting noise, the view's normalisation: HWC image -> (3, S, S) float32
    numpy. All numpy: the same steps as MXNet image operators cost ~0.9 ms per image in operator
    calls alone, more than mobilenet0.25 at 64 px takes to train on it (0.8 ms); here ~0.17 ms
    from a kept copy (fashionai.data.loaders.CachedImages)."""
    if augment not in AUGMENTS:
        raise ValueError(f"augment must be one of {AUGMENTS}, got {augment!r}")
    crops = {"crop": lambda: RandomCropAtEvalScale(view), "shift": lambda: ShiftedCrop(view),
             "imagenet": lambda: FittedResizedCrop(view.size, (min_scale, 1.0))}
    crop = crops[augment]()
    return Chain(crop, Chain(FlipJitterLighting(jitter, lighting), Normalized(view)))


def cache_short(transform: Chain) -> int | None:
    """The short side a train_transform's images may be kept at in memory without changing its
    crops (its crop's `cache_short`); None: it needs the full image."""
    return transform.first.cache_short


GRAY = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601 luma, as MXNet's image operators
PCA_EIGVAL = np.array([55.46, 4.794, 1.148], dtype=np.float32)  # AlexNet's ImageNet RGB PCA (mx.image)
PCA_EIGVEC = np.array([[-0.5675, 0.7192, 0.4009], [-0.5808, -0.0045, -0.8140], [-0.5836, -0.6948, 0.4203]],
                      dtype=np.float32)


def _brightness(image: np.ndarray, factor: float) -> np.ndarray:
    return image * factor


def _contrast(image: np.ndarray, factor: float) -> np.ndarray:
    return image * factor + float((image @ GRAY).mean()) * (1.0 - factor)


def _saturation(image: np.ndarray, factor: float) -> np.ndarray:
    return image * factor + (image @ GRAY)[..., None] * (1.0 - factor)


JITTER_OPS = {"brightness": _brightness, "contrast": _contrast, "saturation": _saturation}


class FlipJitterLighting:
    """A left-right mirror (probability 1/2), brightness / contrast / saturation factors drawn from
    [1 - jitter, 1 + jitter] in a random order, AlexNet's PCA lighting noise of std `lighting`:
    gluon's RandomFlipLeftRight, RandomColorJitter and RandomLighting, in numpy on float32 with each
    step clipped to 0..255 as the operators saturate uint8, every draw from Python's `random`, so
    seeding it per image (fashionai.data.loaders.SeededDataset) fixes the whole augmentation.
    Saturation blends with each pixel's luma: MXNet 1.9.1's `random_saturation` takes 0.114 x blue
    for it (its loop assigns where it should add, image_random-inl.h), so it darkened more than it
    desaturated."""

    def __init__(self, jitter: float, lighting: float):
        self.jitter, self.lighting = jitter, lighting

    def __call__(self, image: np.ndarray) -> np.ndarray:
        if random.random() < 0.5:
            image = image[:, ::-1]
        image = image.astype(np.float32)
        if self.jitter > 0:
            for name in random.sample(sorted(JITTER_OPS), len(JITTER_OPS)):
                factor = random.uniform(max(0.0, 1 - self.jitter), 1 + self.jitter)
                image = _saturate(JITTER_OPS[name](image, factor))
        if self.lighting > 0:
            alpha = np.array([random.gauss(0.0, self.lighting) for _ in range(3)], dtype=np.float32)
            image = _saturate(image + PCA_EIGVEC @ (alpha * PCA_EIGVAL))
        return image


def _saturate(image: np.ndarray) -> np.ndarray:
    """`image` clipped to 0..255 in place: np.clip took 16.5 us on a 64 px image in numpy 1.23,
    minimum and maximum in place 7.4 us (the jitter clips three times per image)."""
    np.minimum(image, 255.0, out=image)
    return np.maximum(image, 0.0, out=image)


class Normalized:
    """HWC 0..255 -> CHW float32 normalised by the view's mean and std (gluon's ToTensor + Normalize)."""

    def __init__(self, view: View):
        self.mean = np.asarray(view.mean, dtype=np.float32)[:, None, None]
        self.std = np.asarray(view.std, dtype=np.float32)[:, None, None]

    def __call__(self, image: np.ndarray) -> np.ndarray:
        chw = np.ascontiguousarray(np.asarray(image, dtype=np.float32).transpose(2, 0, 1)) / 255.0
        return (chw - self.mean) / self.std


class Chain:
    """`second(first(x))`: the crops are plain callables, which gluon's Compose (Blocks only) refuses."""

    def __init__(self, first, second):
        self.first, self.second = first, second

    def __call__(self, image):
        return self.second(self.first(image))
