"""`View`: the image a run's net expects, as one value (timm's `resolve_data_config`).

Input size, crop ratio and normalisation used to travel as loose arguments through a dozen
modules, and a function that was not given the crop ratio silently used ImageNet's 0.875 while new
runs train at 1.0. A `View` is built once from the run's record (`RunInfo.view`, `TrainConfig.view`)
and passed whole to every transform, loader and predictor; none of them defaults it.

The val view: resize the short side to `short` (= size / crop_ratio), then a centre crop of
size x size, scaled to 0..1 and normalised per channel with `mean` / `std`.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

# ImageNet's statistics, which the model-zoo weights were trained with.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
# ImageNet's crop ratio (resize 256, crop 224: GluonCV, the Gluon FashionAI tutorial): what every run
# made before `crop_ratio` was a setting used (core.runinfo.RUN_LEGACY); new runs default to 1.0.
IMAGENET_CROP_RATIO = 0.875
MIN_SIZE = 8  # px: the smallest input size a config may ask for


def check_crop_ratio(crop_ratio: float) -> float:
    """`crop_ratio` if it is a share in (0, 1]; ValueError otherwise."""
    if isinstance(crop_ratio, bool) or not isinstance(crop_ratio, (int, float)) or not 0 < crop_ratio <= 1:
        raise ValueError(f"crop_ratio must be a number in (0, 1], got {crop_ratio!r}")
    return float(crop_ratio)


def _channels(name: str, values: tuple[float, ...], positive: bool) -> tuple[float, float, float]:
    """`values` as three floats (one per RGB channel); ValueError otherwise."""
    values = tuple(values)
    if len(values) != 3 or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in values) \
            or (positive and min(values) <= 0):
        raise ValueError(f"{name} must be three {'positive ' if positive else ''}numbers (R, G, B), got {values!r}")
    return tuple(float(v) for v in values)


@dataclass(frozen=True)
class View:
    """What the net sees: `size` x `size` px crops of an image whose short side was resized to
    `short`, normalised with `mean` / `std`. Validated at construction."""

    size: int
    crop_ratio: float
    mean: tuple[float, float, float] = MEAN
    std: tuple[float, float, float] = STD

    def __post_init__(self) -> None:
        if isinstance(self.size, bool) or not isinstance(self.size, numbers.Integral) or self.size < MIN_SIZE:
            raise ValueError(f"the input size must be a whole number of px >= {MIN_SIZE}, got {self.size!r}")
        object.__setattr__(self, "size", int(self.size))
        object.__setattr__(self, "crop_ratio", check_crop_ratio(self.crop_ratio))
        object.__setattr__(self, "mean", _channels("mean", self.mean, positive=False))
        object.__setattr__(self, "std", _channels("std", self.std, positive=True))

    @property
    def short(self) -> int:
        """The short side the val view resizes to before its centre crop (256 for 224 at 0.875;
        the size itself at 1.0, where the crop keeps the whole short side)."""
        return int(self.size / self.crop_ratio + 1e-6)
