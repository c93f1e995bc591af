"""`fashionai pack` and `--input rec`: RecordIO packs read by MXNet's ImageRecordIter give the folder
path's val images and labels, full training batches of fresh crops, every worker its part; stale or
broken packs are refused by name; a run trains end to end on them.

Every test works on its own copy of one task of the session's `prepared_data` (which must not change):
the task folder plus manifest.csv, packed at a small short side so decoding stays cheap.
"""

import collections
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from fashionai.cli import build_parser, main, train_config
from fashionai.core.tasks import num_classes
from fashionai.core.view import View
from fashionai.data import loaders, pack, recordio, transforms
from fashionai.data.manifest import label_strings
from fashionai.training.config import TrainConfig, check_config
from fashionai.training.distributed import WorkerInfo
from fashionai.training.fit import fit
from fashionai.training.inputs import make_loaders
from fashionai.training.rundir import read_metrics

TASK = "skirt_length_labels"
K = num_classes(TASK)
SHAPE = 64  # data_shape of the comparisons; packed at its eval resize, 73 px
VIEW = View(SHAPE, 0.875)  # the crop ratio the loaders defaulted to when these tests were written
# (a): rec val view vs folder eval view, normalised tensors. Measured on the session data at 64 px:
# per-image mean |difference| 0.041-0.065, correlation 0.9865-0.9975 (JPEG quality 90 re-encode, and
# OpenCV's decoder in im2rec vs MXNet's); quality 100 halves the difference (0.017-0.033).
MAX_MEAN_ABS = 0.1
MIN_CORR = 0.97
REPACK = r"run `fashionai pack --prepared .* --tasks skirt_length_labels` again"


def _copy_task(prepared_data: Path, root: Path) -> Path:
    """A prepared root holding a copy of TASK and the manifest (what make_loaders reads)."""
    shutil.copytree(prepared_data / TASK, root / TASK)
    shutil.copy2(prepared_data / "manifest.csv", root / "manifest.csv")
    return root


@pytest.fixture
def prepared(prepared_data, tmp_path) -> Path:
    return _copy_task(prepared_data, tmp_path / "prepared")


@pytest.fixture(scope="module")
def packed(prepared_data, tmp_path_factory) -> Path:
    """A packed copy the tests only read."""
    root = _copy_task(prepared_data, tmp_path_factory.mktemp("packed") / "prepared")
    pack.pack(root, TASK, short_side=VIEW.short, threads=2)
    return root


def _arrays(loader) -> tuple[np.ndarray, np.ndarray]:
    """One epoch as (images, labels); copied batch by batch (the iterator reuses its buffers)."""
    batches = [(x.asnumpy(), y.asnumpy()) for x, y in loader]
    return np.concatenate([x for x, _ in batches]), np.concatenate([y for _, y in batches])


def _divisor(n: int, most: int = 12) -> int:
    return next(b for b in range(most, 0, -1) if n % b == 0)


# --- packing ------------------------------------------------------------------------------------
def test_pack_writes_list_rec_idx_and_sidecar(packed):
    """Labels in the .lst are the class folder names; val keeps the folder order, train is a fixed
    shuffle of it; the sidecar records the settings and the count."""
    for split in recordio.SPLITS:
        files = recordio.PackFiles.of(packed, TASK, split)
        listed = recordio.list_split(files.folder, K)
        items = recordio.read_lst(files.lst)
        assert all(rel.split("/")[0] == str(label) for rel, label in items)
        assert sorted(items) == sorted(listed)
        assert items == (listed if split == "val" else recordio.pack_order(listed, "train"))
        meta = json.loads(files.meta.read_text())
        assert (meta["count"], meta["short_side"], meta["quality"]) == (len(items), VIEW.short, 90)
        assert files.rec.stat().st_size == meta["rec_bytes"] > 0
    _, _, again = recordio.check_pack(packed, TASK, "train")
    assert again == recordio.read_lst(recordio.PackFiles.of(packed, TASK, "train").lst)


def test_rec_val_matches_the_folder_eval_view(packed):
    """(a) Same images, labels and order as ImageFolderDataset + eval_transform, within JPEG tolerance;
    a second epoch is identical; the label strings come from the manifest as for the folder."""
    rec = recordio.record_loader(packed, TASK, "val", 4, train=False, view=VIEW, workers=2)
    folder = loaders.image_folder(loaders.split_dir(packed, TASK, "val"), K)
    plain = loaders.make_loader(folder, transforms.eval_transform(VIEW), 4, train=False)
    assert rec.items == folder.items and len(rec) == len(plain)
    x_rec, y_rec = _arrays(rec)
    x_dir, y_dir = _arrays(plain)
    assert y_rec.dtype == y_dir.dtype == np.int64
    assert y_rec.tolist() == y_dir.tolist() == [y for _, y in folder.items]
    assert x_rec.shape == x_dir.shape == (len(folder.items), 3, SHAPE, SHAPE)
    mean_abs = np.abs(x_rec - x_dir).mean(axis=(1, 2, 3))
    corr = np.array([np.corrcoef(a.ravel(), b.ravel())[0, 1] for a, b in zip(x_rec, x_dir)])
    assert mean_abs.max() < MAX_MEAN_ABS and corr.min() > MIN_CORR, (mean_abs, corr)
    x_again, y_again = _arrays(rec)
    assert np.array_equal(x_again, x_rec) and np.array_equal(y_again, y_rec)
    assert label_strings(rec, packed, TASK) == label_strings(folder, packed, TASK)


def test_rec_train_batches_cover_the_list_and_crops_change(packed, tmp_path):
    """(b) Full (B, 3, S, S) batches; one epoch's labels are the .lst's multiset; epochs are reshuffled;
    the same image gets a new crop every time it is drawn."""
    split = recordio.RecordSplit(packed, TASK, "train")
    batch = _divisor(len(split))
    loader = recordio.record_loader(packed, TASK, "train", batch, train=True, view=VIEW, workers=2,
                                min_scale=0.3, jitter=0.2, lighting=0.1)
    assert len(loader) == len(split) // batch
    labels = []
    for _ in range(2):
        epoch = [(x.shape, x.dtype, y.asnumpy()) for x, y in loader]
        assert len(epoch) == len(loader)
        assert {(shape, dtype) for shape, dtype, _ in epoch} == {((batch, 3, SHAPE, SHAPE), np.float32)}
        labels.append(np.concatenate([y for *_, y in epoch]))
        assert collections.Counter(labels[-1].tolist()) == collections.Counter(y for _, y in split.items)
    assert labels[0].tolist() != labels[1].tolist()  # a new order each epoch

    # one image copied into every training slot: whatever differs between samples is augmentation
    same = tmp_path / "same"
    image = next((packed / TASK / "train" / "0").iterdir())
    for k in range(K):
        (same / TASK / "train" / str(k)).mkdir(parents=True)
    for i in range(8):
        shutil.copy(image, same / TASK / "train" / "0" / f"copy{i}.jpg")
    pack.pack_split(same, TASK, "train", short_side=VIEW.short, threads=2)
    crops = recordio.record_loader(same, TASK, "train", 4, train=True, view=VIEW, workers=2,
                               min_scale=0.3, jitter=0.0, lighting=0.0)
    first, _ = _arrays(crops)
    second, _ = _arrays(crops)
    views = np.concatenate([first, second]).reshape(len(first) * 2, -1)
    assert len({v.tobytes() for v in views}) == len(views)  # every draw a different crop


def test_rec_train_parts_for_distributed_workers(packed):
    """Each worker reads its own contiguous part of the pack (ImageRecordIter's num_parts/part_index,
    sized as recordio.part_sizes says) and all run the same number of steps."""
    split = recordio.RecordSplit(packed, TASK, "train")
    sizes = recordio.part_sizes(len(split), 3)
    assert sum(sizes) == len(split)
    start = 0
    for rank, size in enumerate(sizes):
        loader = recordio.record_loader(packed, TASK, "train", 1, train=True, view=View(16, 0.875), workers=1,
                                        rank=rank, num_workers=3)
        assert len(loader) == min(sizes)
        _, labels = _arrays(loader)
        part = collections.Counter(y for _, y in split.items[start:start + size])
        assert not collections.Counter(labels.tolist()) - part
        start += size


# --- refusals -----------------------------------------------------------------------------------
def test_stale_pack_is_refused(prepared):
    """(c) An image added or removed after packing: the pack no longer matches its folder."""
    pack.pack(prepared, TASK, short_side=40, threads=2)
    train_dir = prepared / TASK / "train"
    source = next((train_dir / "0").iterdir())
    shutil.copy(source, train_dir / "1" / "added.jpg")
    with pytest.raises(recordio.StalePackError, match=REPACK) as err:
        recordio.RecordSplit(prepared, TASK, "train")
    assert "added 1/added.jpg" in str(err.value)
    (train_dir / "1" / "added.jpg").unlink()
    recordio.RecordSplit(prepared, TASK, "train")  # back as packed: accepted
    victim = next((prepared / TASK / "val" / "2").iterdir())
    victim.unlink()
    config = TrainConfig.demo(TASK, prepared, prepared / "runs", input="rec", data_shape=32, batch_size=4)
    with pytest.raises(ValueError, match=REPACK):
        make_loaders(check_config(config), 1)


def test_missing_pack_and_sampler_are_refused(prepared):
    """No pack: say which command makes it. --balance sampler: refused before anything is written."""
    config = check_config(TrainConfig.demo(TASK, prepared, prepared / "runs", input="rec", data_shape=32))
    with pytest.raises(FileNotFoundError, match="fashionai pack --prepared"):
        make_loaders(config, 1)
    with pytest.raises(ValueError, match="--balance weights"):
        check_config(TrainConfig.demo(TASK, prepared, prepared / "runs", input="rec", balance="sampler"))
    with pytest.raises(ValueError, match="input must be one of"):
        check_config(TrainConfig.demo(TASK, prepared, prepared / "runs", input="lmdb"))
    assert not (prepared / "runs").exists()


def test_corrupt_image_fails_the_pack_by_name(prepared):
    """(d) im2rec skips what OpenCV cannot read; pack counts, names the file, and publishes nothing."""
    victim = sorted((prepared / TASK / "val" / "1").iterdir())[0]
    victim.write_bytes(b"this is not a JPEG" * 20)
    with pytest.raises(ValueError, match=victim.name) as err:
        pack.pack(prepared, TASK, short_side=40, threads=2)
    assert "1 of" in str(err.value) and "fashionai pack --prepared" in str(err.value)
    val = recordio.PackFiles.of(prepared, TASK, "val")
    assert not val.rec.exists() and not val.meta.exists()
    assert recordio.PackFiles.of(prepared, TASK, "train").meta.is_file()  # the sound split is packed
    with pytest.raises(FileNotFoundError, match="fashionai pack"):
        recordio.RecordSplit(prepared, TASK, "val")


# --- end to end ---------------------------------------------------------------------------------
def test_fit_on_rec_writes_a_run(packed, tmp_path):
    """(e) A tiny run with --input rec (and --balance weights, which works on rec)."""
    config = TrainConfig.demo(TASK, packed, tmp_path / "runs", input="rec", epochs=1, data_shape=32,
                              batch_size=8, balance="weights", workers=2)
    run_dir = fit(config)
    rows = read_metrics(run_dir)
    assert [r["epoch"] for r in rows] == [0] and np.isfinite(rows[0]["val_loss"])
    assert json.loads((run_dir / "config.json").read_text())["input"] == "rec"
    assert "from RecordIO packs" in (run_dir / "train.log").read_text()


def test_make_loaders_rec_shapes(packed):
    """make_loaders' results for rec: loaders like the folder path's, labels and label strings, no
    shard sampler (the iterator reads its own part)."""
    config = check_config(TrainConfig.demo(TASK, packed, packed / "runs", input="rec", data_shape=32,
                                           batch_size=4))
    train, val, train_labels, val_labels, sampler = make_loaders(config, 2, WorkerInfo())
    assert train.batch_size == val.batch_size == 8 and sampler is None
    assert sorted(train_labels.tolist()) == sorted(y for _, y in train.items)
    assert len(val_labels) == len(val.items) and sum(x.shape[0] for x, _ in val) == len(val.items)


def test_cli_pack_and_train_flag(prepared, capsys):
    """(f) `fashionai pack` returns 0 and prints each split; `--input rec` parses."""
    assert main(["pack", "--prepared", str(prepared), "--tasks", TASK, "--short-side", "40", "-j", "2"]) == 0
    out = capsys.readouterr().out
    assert f"{TASK}/train:" in out and f"{TASK}/val:" in out
    assert recordio.check_pack(prepared, TASK, "val")[1]["short_side"] == 40
    assert main(["pack", "--prepared", str(prepared / "nowhere")]) == 2
    args = build_parser().parse_args(["train", "--task", TASK, "--input", "rec"])
    assert train_config(args).input == "rec" and TrainConfig().input == "auto"  # auto: test_input_auto_...


def test_workers_default_is_sized_from_the_cores():
    """-1 (the default): min(4, cores) loader processes; decoding threads one per core up to MXNet's
    own cap of half the cores; an explicit count is kept (within that cap)."""
    cores = loaders.usable_cores()
    assert TrainConfig().workers == loaders.AUTO_WORKERS
    assert loaders.loader_workers(-1) == min(4, cores) and loaders.loader_workers(3) == 3
    assert loaders.record_threads(-1) == loaders.record_threads(0) == max(cores // 2, 1)
    assert loaders.record_threads(1) == 1 and loaders.record_threads(10 * cores) == max(cores // 2, 1)


def test_input_auto_reads_packs_where_a_gpu_trains_and_they_are_fresh(packed, prepared):
    """--input auto (the default): RecordIO only where a GPU reads the batches and the packs are
    there; the folders on the CPU, for unpacked data and for what RecordIO cannot do."""
    from fashionai.training.inputs import input_kind

    auto = TrainConfig.demo(TASK, packed, packed / "runs", input="auto")
    assert input_kind(auto, pin_device=0) == "rec" and input_kind(auto, pin_device=-1) == "folder"
    assert input_kind(auto.replace(balance="sampler"), pin_device=0) == "folder"
    assert input_kind(auto.replace(prepared=str(prepared)), pin_device=0) == "folder"  # not packed
    assert input_kind(auto.replace(input="rec"), pin_device=-1) == "rec"  # what the user said


def test_loader_processes_grow_with_the_gpus():
    cores = loaders.usable_cores()
    assert loaders.loader_workers(-1, gpus=2) == min(8, cores) and loaders.loader_workers(-1, gpus=0) == min(4, cores)
    assert loaders.loader_workers(3, gpus=8) == 3


def test_bench_input_reports_both_paths(packed):
    """The benchmark helper runs both paths and reports their rates (figures: see the report)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    import bench_input

    result = bench_input.bench_input(packed, TASK, view=View(32, 0.875), images=8, batch_size=4, threads=1)
    assert result["folder_images"] >= 8 and result["rec_images"] >= 8
    assert result["ratio"] > 0 and result["cpu_ratio"] > 0


def test_batches_are_pinned_for_the_first_training_gpu_only(packed, monkeypatch):
    """Page-locked batches for the GPU that trains first (gpu:1 here), none on the CPU: both inputs.
    (MXNet pinned RecordIO batches for GPU 0 whatever the devices, opening a CUDA context there.)"""
    import mxnet as mx

    seen = []
    real_rec, real_loader = mx.io.ImageRecordIter, mx.gluon.data.DataLoader
    monkeypatch.setattr(mx.io, "ImageRecordIter",
                        lambda **kw: seen.append(("rec", kw["device_id"])) or real_rec(**{**kw, "device_id": -1}))
    monkeypatch.setattr(mx.gluon.data, "DataLoader", lambda *a, **kw: seen.append(
        ("folder", kw["pin_memory"], kw["pin_device_id"])) or real_loader(*a, **{**kw, "pin_memory": False}))
    for source in ("rec", "folder"):
        config = check_config(TrainConfig.demo(TASK, packed, packed / "runs", input=source, data_shape=32,
                                               batch_size=4, workers=0))
        make_loaders(config, 1, pin_device=1)
        make_loaders(config, 1)
    assert seen == [("rec", 1), ("rec", 1), ("rec", -1), ("rec", -1), ("folder", True, 1), ("folder", True, 1),
                    ("folder", False, 0), ("folder", False, 0)]
