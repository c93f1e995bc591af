"""Datasets, transforms and loaders of the prepared class folders (fashionai.data.loaders, .transforms)."""

import collections

import mxnet as mx
import numpy as np
import pytest

from fashionai.core.tasks import num_classes
from fashionai.core.view import IMAGENET_CROP_RATIO, MEAN, STD, View
from fashionai.data import loaders, transforms

TASK = "collar_design_labels"
VIEW = View(32, 0.875)  # what these tests ran at when the transforms defaulted the crop ratio


def test_image_folder_labels_are_the_class_folders(prepared_data):
    folder = loaders.image_folder(loaders.split_dir(prepared_data, TASK, "train"), num_classes(TASK))
    assert folder.synsets == [str(i) for i in range(num_classes(TASK))]
    assert all(f"/{label}/" in path for path, label in folder.items)
    assert loaders.labels_of(folder).tolist() == [label for _, label in folder.items]


def test_folders_that_are_not_a_prepared_split_are_refused(prepared_data, tmp_path):
    with pytest.raises(FileNotFoundError, match="fashionai prepare"):
        loaders.split_dir(prepared_data, "skirt_length_labels", "test")
    (tmp_path / "0").mkdir()
    (tmp_path / "2").mkdir()
    with pytest.raises(ValueError, match=r"class folders \['0', '2'\], expected \['0', '1'\]"):
        loaders.image_folder(tmp_path, 2)


def test_training_batches_are_whole_and_evaluation_keeps_every_image(prepared_data):
    folder = loaders.image_folder(loaders.split_dir(prepared_data, TASK, "train"), num_classes(TASK))
    train = loaders.make_loader(folder, transforms.train_transform(VIEW), 16, train=True)
    shapes = [data.shape for data, _ in train]
    assert shapes == [(16, 3, 32, 32)] * (len(folder) // 16)  # the partial batch is dropped (static shapes)
    evaluate = loaders.make_loader(folder, transforms.eval_transform(VIEW), 16, train=False)
    labels = np.concatenate([label.asnumpy() for _, label in evaluate])
    assert labels.tolist() == loaders.labels_of(folder).tolist()  # every image once, in order
    with pytest.raises(ValueError, match="fewer than one batch"):
        loaders.make_loader(folder, transforms.train_transform(VIEW), len(folder) + 1, train=True)


def test_the_balanced_sampler_draws_classes_equally():
    labels = [0] * 90 + [1] * 10
    np.random.seed(0)
    sampler = loaders.BalancedSampler(labels)
    drawn = collections.Counter(labels[i] for _ in range(20) for i in sampler)
    assert len(sampler) == 100 and abs(drawn[0] / sum(drawn.values()) - 0.5) < 0.05


def test_the_val_view_is_resize_centre_crop_normalise():
    image = mx.nd.array(np.full((40, 80, 3), 128, dtype=np.uint8), dtype="uint8")
    out = transforms.eval_transform(VIEW)(image)
    assert out.shape == (3, 32, 32) and View(224, 0.875).short == 256
    expected = (128 / 255 - np.array(MEAN)) / np.array(STD)
    np.testing.assert_allclose(out.asnumpy()[:, 0, 0], expected, rtol=1e-5)


def test_worker_counts_come_from_the_cores():
    cores = loaders.usable_cores()
    assert loaders.loader_workers(loaders.AUTO_WORKERS) == min(loaders.MAX_AUTO_PROCESSES, cores)
    assert loaders.loader_workers(0) == 0 and loaders.loader_workers(3) == 3


def test_items_dataset_reads_like_an_image_folder(prepared_data):
    folder = loaders.image_folder(loaders.split_dir(prepared_data, TASK, "val"), num_classes(TASK))
    items = loaders.ItemsDataset(folder.items[:3])
    assert len(items) == 3 and items.items == folder.items[:3]
    image, label = items[0]
    np.testing.assert_array_equal(image.asnumpy(), folder[0][0].asnumpy())
    assert label == folder[0][1]


def test_imagenet_crops_fit_the_drawn_area_even_at_min_scale_one():
    """MXNet's own random resized crop falls back to an unscaled centre patch when a draw does not
    fit (at min_scale 1.0: 80% of crops were a 64 px patch of a 200 px image); ours narrows the
    aspect instead, so every crop keeps at least the asked share of the image."""
    import random

    from fashionai.data.transforms import FittedResizedCrop

    random.seed(0)
    for scale in ((1.0, 1.0), (0.6, 1.0), (0.08, 1.0)):
        crop = FittedResizedCrop(64, scale)
        for _ in range(300):
            x0, y0, w, h = crop.box(200, 120)
            assert 0 <= x0 and x0 + w <= 120 and 0 <= y0 and y0 + h <= 200
            assert w * h >= 0.97 * scale[0] * 200 * 120  # rounding aside, the drawn area
    assert FittedResizedCrop(64, (1.0, 1.0)).box(200, 120) == (0, 0, 120, 200)  # the whole image


def test_the_crop_ratio_sets_the_val_views_short_side():
    """View.short: ImageNet's 256 for 224 at 0.875; the whole short side at 1.0; nonsense refused."""
    from fashionai.data.transforms import eval_transform

    shorts = (View(224, IMAGENET_CROP_RATIO).short, View(224, 0.875).short, View(64, 1.0).short, View(64, 0.5).short)
    assert shorts == (256, 256, 64, 128)
    for bad in (0, -0.5, 1.01, True, "1"):
        with pytest.raises(ValueError, match="crop_ratio"):
            View(64, bad)
    column = mx.nd.array(np.tile(np.arange(100, dtype=np.float32)[None, :, None], (100, 1, 3)))  # column index
    whole, cut = (eval_transform(View(50, r))(column.astype("uint8")) for r in (1.0, 0.5))
    assert whole.shape == cut.shape == (3, 50, 50)
    # at 1.0 the view spans the image's first to last column; at 0.5 only its middle half
    span = [float(v[0, 0, -1].asscalar() - v[0, 0, 0].asscalar()) for v in (whole, cut)]
    assert span[0] > 1.8 * span[1]


def test_the_crop_augment_is_the_val_scale_anywhere_in_the_image():
    """`crop` (the tutorial's): short side resized as for evaluation, then a data_shape square at a
    random position; over many draws the positions reach both ends of the long side."""
    import mxnet as mx

    from fashionai.data.transforms import RandomCropAtEvalScale

    image = mx.nd.array(np.tile(np.arange(200, dtype=np.float32)[:, None, None], (1, 100, 3)))  # row index
    crop = RandomCropAtEvalScale(VIEW)
    tops = set()
    for _ in range(200):
        out = crop(image)
        assert out.shape == (32, 32, 3)
        tops.add(float(out[0, 0, 0].asscalar()))
    long_side = 200 * VIEW.short // 100  # 72: the long side after the short side's resize
    lowest_top = (long_side - 32) * 200 / long_side  # the bottom crop's first row, in source rows (~111)
    assert min(tops) < 5 and max(tops) > 0.9 * lowest_top  # crops reach the top and the bottom
