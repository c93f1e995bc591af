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
        tops.add(float(out[0, 0, 0]))
    long_side = 200 * VIEW.short // 100  # 72: the long side after the short side's resize
    lowest_top = (long_side - 32) * 200 / long_side  # the bottom crop's first row, in source rows (~111)
    assert min(tops) < 5 and max(tops) > 0.9 * lowest_top  # crops reach the top and the bottom


def _photo(seed: int = 0, shape=(40, 56, 3)) -> np.ndarray:
    return np.random.RandomState(seed).randint(0, 256, shape).astype(np.uint8)


def test_the_numpy_resize_is_mxnets_resize_short():
    image = _photo(shape=(57, 90, 3))
    for short in (32, 57, 73):
        mine = transforms.resize_short(image, short)
        theirs = mx.image.resize_short(mx.nd.array(image, dtype="uint8"), short, interp=1).asnumpy()
        assert mine.shape == theirs.shape
        assert np.abs(mine.astype(int) - theirs.astype(int)).max() <= 1


@pytest.mark.parametrize("name, op", [("brightness", "random_brightness"), ("contrast", "random_contrast")])
def test_the_numpy_jitter_is_mxnets_operator(name, op):
    """Brightness and contrast as MXNet's image operators compute them on uint8 (which floor)."""
    image = _photo()
    for factor in (0.8, 1.17):
        mine = np.clip(transforms.JITTER_OPS[name](image.astype(np.float32), factor), 0, 255)
        theirs = getattr(mx.nd.image, op)(mx.nd.array(image, dtype="uint8"), min_factor=factor,
                                          max_factor=factor).asnumpy()
        assert np.abs(mine - theirs).max() < 1.0


def test_saturation_blends_towards_each_pixels_luma():
    """0: every channel becomes the pixel's luma (grey); 1: unchanged; MXNet 1.9.1's own operator
    darkens instead (its luma is 0.114 x blue), which is why this one is not compared with it."""
    image = _photo().astype(np.float32)
    grey = transforms._saturation(image, 0.0)
    luma = image @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    np.testing.assert_allclose(grey, np.repeat(luma[..., None], 3, axis=2), rtol=1e-5)
    np.testing.assert_allclose(transforms._saturation(image, 1.0), image)


def test_the_lighting_noise_is_mxnets_pca_lighting():
    image = _photo()
    alpha = (0.1, -0.05, 0.02)
    theirs = mx.nd.image.adjust_lighting(mx.nd.array(image, dtype="float32"), alpha=alpha).asnumpy()
    mine = image.astype(np.float32) + transforms.PCA_EIGVEC @ (np.array(alpha, np.float32) * transforms.PCA_EIGVAL)
    np.testing.assert_allclose(mine, theirs, atol=1e-3)


def test_the_training_transform_normalises_like_gluons_totensor_and_normalize():
    image = _photo(shape=(32, 32, 3))
    view = View(32, 1.0)
    out = transforms.Normalized(view)(image)
    gluon = mx.gluon.data.vision.transforms
    theirs = gluon.Normalize(view.mean, view.std)(gluon.ToTensor()(mx.nd.array(image, dtype="uint8"))).asnumpy()
    assert out.dtype == np.float32 and out.shape == (3, 32, 32)
    np.testing.assert_allclose(out, theirs, atol=1e-5)


class _CountingDataset:
    def __init__(self, images):
        self.images, self.items, self.reads = images, [(f"{i}.jpg", i % 2) for i in range(len(images))], 0

    def __getitem__(self, idx):
        self.reads += 1
        return mx.nd.array(self.images[idx], dtype="uint8"), self.items[idx][1]

    def __len__(self):
        return len(self.images)


def test_kept_images_are_decoded_once_and_are_what_the_crop_would_resize_to():
    source = _CountingDataset([_photo(i, (50, 70, 3)) for i in range(3)])
    crop = transforms.RandomCropAtEvalScale(View(32, 0.875))
    kept = loaders.keep_in_memory(source, loaders.ResizeShort(transforms.cache_short(
        transforms.train_transform(View(32, 0.875)))), processes=1)
    assert isinstance(kept, loaders.CachedImages) and kept.items == source.items
    for _ in range(3):
        for i in range(3):
            image, label = kept[i]
            assert label == i % 2 and image.shape[0] == crop.short
    assert source.reads == 3
    # a crop of the kept image is the crop of the decoded one: same draws, same pixels
    import random

    random.seed(5)
    a = crop(kept[1][0])
    random.seed(5)
    b = crop(source[1][0])
    np.testing.assert_array_equal(a, b)


def test_images_are_kept_only_where_they_fit_in_memory(tmp_path, monkeypatch):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       1000 kB\nMemAvailable:    400 kB\n")
    assert loaders.available_memory(meminfo) == 400 * 1024
    assert loaders.available_memory(tmp_path / "missing") == 0
    share = int(loaders.CACHE_MEMORY_SHARE * 400 * 1024)
    assert loaders.cache_fits(10, share // 10, 1, available=400 * 1024)
    assert not loaders.cache_fits(10, share // 10, 2, available=400 * 1024)  # each process keeps a copy
    source = _CountingDataset([_photo()])
    assert loaders.keep_in_memory(source, None, 1) is source
    monkeypatch.setattr(loaders, "available_memory", lambda: 0)  # nothing known: decode every epoch
    assert loaders.keep_in_memory(source, loaders.ResizeShort(32), 1) is source


def test_an_imagenet_crop_is_kept_at_the_size_its_smallest_crop_needs():
    """`--augment imagenet` keeps each image shrunk to where its smallest crop (area 0.6, aspect 4:3)
    still has 32 px a side: the crops then cut the same boxes from fewer pixels and look the same;
    an image already smaller is kept as it is."""
    import math
    import random

    crop = transforms.FittedResizedCrop(32, (0.6, 1.0))
    assert crop.cache_short == math.ceil(32 / math.sqrt(0.6 * 3 / 4)) == 48
    keep = loaders.ResizeShort(crop.cache_short)
    rows, cols = np.mgrid[0:150, 0:200]
    smooth = np.stack([rows, cols, (rows + cols) // 2], axis=-1).astype(np.uint8)  # no detail a shrink loses
    small = _photo(1, (40, 60, 3))
    assert keep(smooth).shape == (48, 64, 3) and keep(small) is small
    random.seed(1)
    assert min(min(crop.box(48, 48)[2:]) for _ in range(500)) >= 32  # never enlarged from the kept copy
    for seed in range(5):
        random.seed(seed)
        kept = crop(keep(smooth))
        random.seed(seed)
        full = crop(smooth)
        assert kept.shape == full.shape == (32, 32, 3)
        assert np.abs(kept.astype(int) - full.astype(int)).mean() < 2  # the same box: within 2 levels of 255
