"""TTA views against hand-made numpy slices and flips."""

import mxnet as mx
import numpy as np
import pytest

from fashionai.data import tta


def _batch(b=2, c=3, h=6, w=8):
    return np.arange(b * c * h * w, dtype=np.float32).reshape(b, c, h, w)


def _cut(x, mode, crop):
    """`tta.cut_views` of each (C, H, W) image of `x`, back in (B * V, C, crop, crop) image-major rows."""
    views = [tta.cut_views(mx.nd.array(img.transpose(1, 2, 0)), mode, crop).asnumpy() for img in x]
    return np.concatenate(views).transpose(0, 3, 1, 2)


def test_view_boxes_hand_computed():
    boxes = tta.view_boxes(6, 8, 4, "ten-crop")
    # centre (6-4)//2=1, (8-4)//2=2; corners at 0 and H-crop=2, W-crop=4
    expected = [(1, 2), (0, 0), (0, 4), (2, 0), (2, 4)]
    assert [(b.y, b.x) for b in boxes] == expected * 2
    assert [b.flip for b in boxes] == [False] * 5 + [True] * 5
    assert tta.view_boxes(6, 8, 4, "none") == boxes[:1]
    assert tta.view_boxes(6, 8, 4, "flip") == [boxes[0], boxes[5]]
    assert tta.view_boxes(6, 8, 4, "five-crop") == boxes[:5]


def test_ten_crop_equals_hand_slices_image_major():
    x = _batch()
    out = _cut(x, "ten-crop", 4)
    assert out.shape == (2 * 10, 3, 4, 4)
    for b in range(2):
        crops = [
            x[b, :, 1:5, 2:6],  # centre
            x[b, :, 0:4, 0:4],  # top-left
            x[b, :, 0:4, 4:8],  # top-right
            x[b, :, 2:6, 0:4],  # bottom-left
            x[b, :, 2:6, 4:8],  # bottom-right
        ]
        crops += [c[:, :, ::-1] for c in crops]
        for v, crop in enumerate(crops):
            np.testing.assert_array_equal(out[b * 10 + v], crop)


def test_flip_and_five_crop_layout():
    x = _batch(b=3)
    flip = _cut(x, "flip", 4)
    assert flip.shape == (6, 3, 4, 4)
    np.testing.assert_array_equal(flip[4], x[2, :, 1:5, 2:6])
    np.testing.assert_array_equal(flip[5], x[2, :, 1:5, 2:6][:, :, ::-1])
    five = _cut(x, "five-crop", 4)
    np.testing.assert_array_equal(five[1 * 5 + 4], x[1, :, 2:6, 4:8])


def test_ten_crop_is_the_tutorials_set_of_views():
    """The tutorial crops the corners of the mirrored image: same views, other order (W - crop even)."""
    x = _batch(b=1, h=7, w=10)
    ours = _cut(x, "ten-crop", 4)
    img, mirror = x[0], x[0][:, :, ::-1]
    tutorial = [
        im[:, y:y + 4, xx:xx + 4] for im in (img, mirror) for y, xx in [(1, 3), (0, 0), (3, 0), (0, 6), (3, 6)]
    ]
    key = lambda a: a.tobytes()  # noqa: E731
    assert sorted(map(key, ours)) == sorted(map(key, tutorial))


def test_none_is_mxnet_center_crop_on_odd_sizes():
    rng = np.random.default_rng(0)
    hwc = rng.integers(0, 255, (7, 10, 3)).astype(np.uint8)
    centre = mx.image.center_crop(mx.nd.array(hwc, dtype="uint8"), (4, 4))[0].asnumpy()
    ours = tta.cut_views(mx.nd.array(hwc, dtype="uint8"), "none", 4).asnumpy()[0]
    np.testing.assert_array_equal(ours, centre)


def test_bad_mode_and_crop():
    with pytest.raises(ValueError, match="ten-crop"):
        tta.cut_views(mx.nd.zeros((8, 8, 3)), "twelve-crop", 4)
    with pytest.raises(ValueError, match="larger than the image"):
        tta.cut_views(mx.nd.zeros((8, 8, 3)), "five-crop", 9)
    with pytest.raises(ValueError, match="H, W, C"):
        tta.cut_views(mx.nd.zeros((1, 8, 8, 3)), "none", 4)


def test_reduce_views_mean_and_max():
    probs = np.array([[0.2, 0.8], [0.6, 0.4], [0.5, 0.5], [0.9, 0.1]])
    np.testing.assert_allclose(tta.reduce_views(probs, 2, "mean"), [[0.4, 0.6], [0.7, 0.3]])
    # max per class: [0.6, 0.8] -> /1.4 ; [0.9, 0.5] -> /1.4
    np.testing.assert_allclose(tta.reduce_views(probs, 2, "max"), [[0.6 / 1.4, 0.8 / 1.4], [0.9 / 1.4, 0.5 / 1.4]])
    with pytest.raises(ValueError, match="groups of 3"):
        tta.reduce_views(probs, 3)
    with pytest.raises(ValueError, match="median"):
        tta.reduce_views(probs, 2, "median")


@pytest.mark.parametrize("mode", ["flip", "ten-crop"])
def test_views_normalised_once_equal_each_view_normalised(tmp_path, mode):
    """image_views normalises the resized image once and cuts the views from it: exactly the
    numbers of cutting the uint8 views first and normalising each (the evaluation transform's order)."""
    import cv2

    from fashionai.core.view import MEAN, STD, View

    path = tmp_path / "odd.png"
    cv2.imwrite(str(path), np.random.default_rng(0).integers(0, 256, (45, 61, 3), dtype=np.uint8))
    stacks, failures = tta.load_views([path], [37, 40], View(32, 1.0), mode)
    image = tta.load_image(path)
    expected = []
    for scale in (37, 40):
        resized = mx.nd.image.resize(image, size=scale, keep_ratio=True, interp=1)
        views = tta.cut_views(resized, mode, 32)  # uint8, then each view normalised
        expected.append(mx.nd.image.normalize(mx.nd.image.to_tensor(views), mean=MEAN, std=STD).asnumpy())
    assert failures == [] and stacks[0].dtype == np.float32
    np.testing.assert_array_equal(stacks[0].asnumpy(), np.concatenate(expected))
