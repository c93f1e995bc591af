"""`--augment shift`: on a square image the val-scale crop cannot move; the shifted crop does."""

from __future__ import annotations

import random

import numpy as np

from fashionai.core.view import View
from fashionai.data.recordio import record_iter_args
from fashionai.data.transforms import SHIFT_ZOOM, RandomCropAtEvalScale, ShiftedCrop

VIEW = View(32, 1.0)


def _left_columns(crop, draws: int = 100) -> set[float]:
    """The source column at each crop's left edge, over `draws` crops of a square column-index image."""
    import mxnet as mx

    image = mx.nd.array(np.tile(np.arange(100, dtype=np.float32)[None, :, None], (100, 1, 3)))
    random.seed(0)
    lefts = set()
    for _ in range(draws):
        out = crop(image)
        assert out.shape == (32, 32, 3)
        lefts.add(round(float(out[0, 0, 0])))
    return lefts


def test_the_val_scale_crop_of_a_square_image_is_always_the_whole_image():
    assert len(_left_columns(RandomCropAtEvalScale(VIEW))) == 1  # one position: the whole image


def test_the_shifted_crop_moves_over_a_square_image_by_up_to_its_zoom():
    lefts = _left_columns(ShiftedCrop(VIEW))
    whole = _left_columns(RandomCropAtEvalScale(VIEW)).pop()
    # resized to 32..36 px, a 32 px crop starts at column 0..4 of it: source columns 0 to ~4/36 x 100
    assert len(lefts) >= 4 and min(lefts) <= whole + 1 and max(lefts) <= 100 * SHIFT_ZOOM / (1 + SHIFT_ZOOM) + 2


def test_the_record_reader_shifts_the_same_way():
    args = record_iter_args(VIEW, train=True, augment="shift")
    assert args["rand_crop"] and args["max_random_scale"] == 1 + SHIFT_ZOOM and args["resize"] == VIEW.short
