"""Datasets, transforms and loaders of the prepared class folders (fashionai.data.loaders, .transforms)."""

import collections

import mxnet as mx
import numpy as np
import pytest

from fashionai.core.tasks import num_classes
from fashionai.data import loaders, transforms

TASK = "collar_design_labels"


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
    train = loaders.make_loader(folder, transforms.train_transform(32), 16, train=True)
    shapes = [data.shape for data, _ in train]
    assert shapes == [(16, 3, 32, 32)] * (len(folder) // 16)  # the partial batch is dropped (static shapes)
    evaluate = loaders.make_loader(folder, transforms.eval_transform(32), 16, train=False)
    labels = np.concatenate([label.asnumpy() for _, label in evaluate])
    assert labels.tolist() == loaders.labels_of(folder).tolist()  # every image once, in order
    with pytest.raises(ValueError, match="fewer than one batch"):
        loaders.make_loader(folder, transforms.train_transform(32), len(folder) + 1, train=True)


def test_the_balanced_sampler_draws_classes_equally():
    labels = [0] * 90 + [1] * 10
    np.random.seed(0)
    sampler = loaders.BalancedSampler(labels)
    drawn = collections.Counter(labels[i] for _ in range(20) for i in sampler)
    assert len(sampler) == 100 and abs(drawn[0] / sum(drawn.values()) - 0.5) < 0.05


def test_the_val_view_is_resize_centre_crop_normalise():
    image = mx.nd.array(np.full((40, 80, 3), 128, dtype=np.uint8), dtype="uint8")
    out = transforms.eval_transform(32)(image)
    assert out.shape == (3, 32, 32) and transforms.resize_size(224) == 256
    expected = (128 / 255 - np.array(transforms.MEAN)) / np.array(transforms.STD)
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
