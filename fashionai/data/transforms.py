"""Image transforms: the training augmentation and "the val view", with the normalisation defined once.

The normalisation constants are ImageNet's statistics, which the model-zoo weights were trained
with. `eval_transform` is the single definition of the val view; prediction reproduces it exactly
for TTA mode `none` (fashionai.data.tta) and the RecordIO reader mirrors both
(fashionai.data.recordio.record_iter_args).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import mxnet as mx


MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
CROP_FRACTION = 0.875  # evaluation: resize the short side to data_shape / 0.875, then centre-crop


def resize_size(data_shape: int) -> int:
    """Short side the evaluation transform resizes to before its centre crop (256 for 224)."""
    return int(data_shape / CROP_FRACTION)


def eval_transform(data_shape: int) -> mx.gluon.Block:
    """HWC uint8 image -> (3, data_shape, data_shape) float32: resize short side, centre crop, normalise."""
    from mxnet.gluon.data.vision import transforms

    return transforms.Compose([
        transforms.Resize(resize_size(data_shape), keep_ratio=True),
        transforms.CenterCrop(data_shape),
        transforms.ToTensor(),
        transforms.Normalize(MEAN, STD),
    ])


def train_transform(
    data_shape: int, *, min_scale: float = 0.08, jitter: float = 0.4, lighting: float = 0.1,
) -> mx.gluon.Block:
    """The GluonCV ImageNet training augmentation: random resized crop, flip, colour jitter, PCA
    lighting noise, normalise. `min_scale` is the smallest crop area share (0.08 in GluonCV)."""
    from mxnet.gluon.data.vision import transforms

    steps = [transforms.RandomResizedCrop(data_shape, scale=(min_scale, 1.0)), transforms.RandomFlipLeftRight()]
    if jitter > 0:
        steps.append(transforms.RandomColorJitter(brightness=jitter, contrast=jitter, saturation=jitter))
    if lighting > 0:
        steps.append(transforms.RandomLighting(lighting))
    steps += [transforms.ToTensor(), transforms.Normalize(MEAN, STD)]
    return transforms.Compose(steps)
