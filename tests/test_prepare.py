"""prepare: bad-row kinds, stratified seeded split, k-fold, warm-up, links, re-runs, strict, CLI."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from fashionai.cli import main
from fashionai.core.annotations import AnnotationError
from fashionai.data.imagecheck import check_image
from fashionai.data.manifest import MANIFEST_COLUMNS, read_manifest
from fashionai.data.prepare import prepare
from fashionai.data.split import stratified_split

SKIRT, COAT = "skirt_length_labels", "coat_length_labels"  # 6 and 8 classes


def _jpeg(path: Path, seed: int = 0, size: int = 16) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), pixels)


def _label(task: str, index: int, k: int = 6) -> str:
    return "".join("y" if i == index else "n" for i in range(k)) if task == SKIRT else \
        "".join("y" if i == index else "n" for i in range(8))


def _root(tmp_path: Path, rows: list[tuple[str, int]], web: list[tuple[str, int]] = ()) -> Path:
    """A data root whose label.csv has one valid row (and image) per (id, class) of the skirt task."""
    root = tmp_path / "data"
    lines = []
    for i, (name, cls) in enumerate(rows):
        _jpeg(root / "base" / "Images" / SKIRT / f"{name}.jpg", seed=i)
        lines.append(f"Images/{SKIRT}/{name}.jpg,{SKIRT},{_label(SKIRT, cls)}")
    _csv(root / "base" / "Annotations" / "label.csv", lines)
    if web:
        for i, (name, cls) in enumerate(web):
            _jpeg(root / "web" / "Images" / SKIRT / f"{name}.jpg", seed=1000 + i)
        _csv(root / "web" / "Annotations" / f"{SKIRT}.csv",
             [f"Images/{SKIRT}/{n}.jpg,{SKIRT},{_label(SKIRT, c)}" for n, c in web])
    return root


def _csv(path: Path, lines: list[str], crlf: bool = False, bom: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = ("\r\n" if crlf else "\n").join(lines) + ("\r\n" if crlf else "\n")
    path.write_bytes(("\ufeff" if bom else "").encode() + text.encode())


def _balanced(per_class: int, classes: int = 6) -> list[tuple[str, int]]:
    return [(f"c{c}_{i:02d}", c) for c in range(classes) for i in range(per_class)]


# --- bad rows -----------------------------------------------------------------------------------
def test_every_bad_row_kind_is_skipped_with_its_reason_and_the_manifest_has_every_line(tmp_path):
    root = tmp_path / "data"
    images = root / "base" / "Images"
    for i, name in enumerate(["a", "b", "c", "dup", "m"]):
        _jpeg(images / SKIRT / f"{name}.jpg", seed=i)
    _jpeg(images / COAT / "coat.jpg", seed=9)
    _jpeg(images / SKIRT / "big.jpg", seed=7, size=64)
    data = (images / SKIRT / "big.jpg").read_bytes()
    (images / SKIRT / "trunc.jpg").write_bytes(data[: len(data) // 2])
    (images / SKIRT / "text.jpg").write_bytes(b"not an image at all")
    (images / SKIRT / "pic.bmp").write_bytes((images / SKIRT / "a.jpg").read_bytes())
    (root / "secret.jpg").write_bytes((images / SKIRT / "a.jpg").read_bytes())
    s = f"Images/{SKIRT}"
    lines = [
        f"{s}/a.jpg,{SKIRT},ynnnnn",                 # 1 ok
        f"{s}/b.jpg,{SKIRT}",                        # 2 two columns
        f"{s}/b.jpg,{SKIRT},nynnnn,extra",           # 3 four columns
        f"{s}/b.jpg,hat_length_labels,nynnnn",       # 4 unknown task
        f"{s}/b.jpg,{SKIRT},nynn",                   # 5 label too short
        f"{s}/b.jpg,{SKIRT},nnnnnn",                 # 6 no y
        f"{s}/b.jpg,{SKIRT},yynnnn",                 # 7 two y
        f"{s}/b.jpg,{SKIRT},nyxnnn",                 # 8 other character
        f"Images/{COAT}/coat.jpg,{SKIRT},nynnnn",    # 9 path of another task
        f"../secret.jpg,{SKIRT},nynnnn",             # 10 leads out of base/
        f"{s}/../../../../etc/passwd.jpg,{SKIRT},nynnnn",  # 11 leads out of base/ (and the data root)
        f"{s}/missing.jpg,{SKIRT},nynnnn",           # 12 missing image
        f"{s}/trunc.jpg,{SKIRT},nynnnn",             # 13 truncated JPEG
        f"{s}/text.jpg,{SKIRT},nynnnn",              # 14 not an image
        f"{s}/dup.jpg,{SKIRT},nnynnn",               # 15 ok
        f"{s}/dup.jpg,{SKIRT},nnynnn",               # 16 duplicate of 15
        "",                                          # 17 blank: not a row
        f"{s}/./dup.jpg,{SKIRT},nnynnn",             # 18 same image, same label: duplicate
        f"{s}/m.jpg,{SKIRT},nmnnny",                 # 19 ok, maybe at 1
        f"{s}/pic.bmp,{SKIRT},nynnnn",               # 20 extension ImageFolderDataset skips
        f"{s}/b.jpg,{SKIRT},nynnnn",                 # 21 ok (b is fine; earlier b rows were bad)
        f"/etc/passwd.jpg,{SKIRT},nynnnn",           # 22 absolute: outside base/
    ]
    _csv(root / "base" / "Annotations" / "label.csv", lines, crlf=True, bom=True)
    summary = prepare(root, tmp_path / "out", workers=2)
    m = read_manifest(tmp_path / "out")

    assert list(m.columns) == list(MANIFEST_COLUMNS)
    assert m["line"].tolist() == [n for n in range(1, 23) if n != 17]
    assert set(m["source"]) == {"base/Annotations/label.csv"}
    reason = dict(zip(m["line"], m["reason"]))
    expected = {
        2: "expected 3 columns, found 2", 3: "expected 3 columns, found 4",
        4: "unknown task 'hat_length_labels'", 5: "has 4 characters, skirt_length_labels has 6 classes",
        6: "has no 'y'", 7: "has 2 'y'", 8: "characters other than y/n/m: 'x'",
        9: "does not match its task", 10: "leads outside base/", 11: "leads outside base/",
        12: "missing image", 13: "truncated", 14: "cannot identify image file",
        16: "duplicate of base/Annotations/label.csv:15", 18: "duplicate of base/Annotations/label.csv:15",
        20: "does not end in .jpg/.jpeg/.png", 22: "leads outside base/",
    }
    for line, text in expected.items():
        assert text in reason[line], (line, reason[line])
    ok = m[m["status"] == "ok"]
    assert ok["line"].tolist() == [1, 15, 19, 21]
    assert (m.loc[m["status"] == "skipped", "prepared_path"] == "").all()
    assert ok["reason"].eq("").all()
    maybe = ok[ok["line"] == 19].iloc[0]
    assert (maybe["label"], maybe["class_index"]) == ("nmnnny", 5)  # class = y; m kept in the label
    assert summary["skipped"] == 17 and summary["ok"] == 4 and summary["rows"] == 21
    assert summary["skipped_by_reason"] == {
        "wrong number of columns": 2, "path does not match its task": 1, "duplicate row": 2,
        "image does not decode": 2, "unknown task": 1, "label of the wrong length": 1,
        "label without y": 1, "label with several y": 1, "label with other characters": 1,
        "path outside its folder": 3, "missing image": 1, "unsupported file type": 1,
    }
    assert summary["first_skipped"][0] == "base/Annotations/label.csv:2: expected 3 columns, found 2"
    for path in ok["prepared_path"]:
        assert (tmp_path / "out" / path).is_file()


@pytest.mark.parametrize("name, described", [
    ("a\tb.jpg", "a tab (U+0009)"), ("a\x0bb.jpg", "(U+000B)"), ("a\x1fb.jpg", "(U+001F)"),
    ("a\x85b.jpg", "(U+0085)"), ("a\u2028b.jpg", "line separator (U+2028)"), ("a\x00b.jpg", "a NUL byte (U+0000)"),
])
def test_names_that_break_a_later_format_are_refused_with_file_and_line(tmp_path, name, described):
    """The RecordIO .lst is tab-separated and the manifest is read by lines: such a name is a bad row."""
    root = _root(tmp_path, _balanced(1))
    if "\x00" not in name:  # the file exists: the name, not a missing image, is the reason
        _jpeg(root / "base" / "Images" / SKIRT / name)
    with open(root / "base" / "Annotations" / "label.csv", "a") as f:
        f.write(f"Images/{SKIRT}/{name},{SKIRT},nynnnn\n")
    summary = prepare(root, tmp_path / "out", workers=1)
    row = read_manifest(tmp_path / "out").iloc[-1]
    assert (row["line"], row["status"], row["prepared_path"]) == (7, "skipped", "")
    assert described in row["reason"] and "breaks the tab- and line-separated files" in row["reason"]
    assert summary["skipped_by_reason"] == {"unusable character in the path": 1} and summary["ok"] == 6
    with pytest.raises(ValueError, match=r"label.csv:7: image path .* contains .*" + re.escape(described)):
        prepare(root, tmp_path / "strict", strict=True, workers=1)
    assert not (tmp_path / "strict").exists()


def test_opencv_misses_truncation_that_check_image_catches(tmp_path):
    _jpeg(tmp_path / "full.jpg", size=64)
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[:-2])  # only the end-of-image marker is missing
    assert cv2.imread(str(tmp_path / "cut.jpg")) is not None  # OpenCV decodes it with a warning
    assert check_image(tmp_path / "full.jpg") is None
    kind, reason = check_image(tmp_path / "cut.jpg")
    assert kind == "image does not decode" and "truncated" in reason


def _saved(path: Path, fmt: str, seed: int = 0, **kw) -> Path:
    from PIL import Image

    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (40, 32, 3), dtype=np.uint8)).save(path, fmt, **kw)
    return path


def test_what_mxnet_decodes_is_accepted_whatever_pillow_calls_it(tmp_path):
    """The rule is "decodes fully in Pillow (strict) and in MXNet's decoder", not a list of format
    names: an MPO (phone cameras' JPEG) was refused by name; a WebP named .jpg, which Pillow and the
    opencv-python wheel read but MXNet's decoder does not, would fail in training."""
    import mxnet as mx
    from PIL import Image

    second = Image.fromarray(np.zeros((40, 32, 3), np.uint8))
    mpo = _saved(tmp_path / "phone.jpg", "MPO", save_all=True, append_images=[second])
    with Image.open(mpo) as image:
        assert (image.format, getattr(image, "n_frames", 1)) == ("MPO", 2)
    tiff = _saved(tmp_path / "scan.jpg", "TIFF")
    webp = _saved(tmp_path / "web.jpg", "WEBP")
    gif = _saved(tmp_path / "anim.jpg", "GIF")
    assert check_image(mpo) is None and check_image(tiff) is None
    assert mx.image.imread(str(mpo)).shape == (40, 32, 3)
    assert cv2.imread(str(webp)) is not None  # opencv-python reads it: it is not the decoder training uses
    for path, fmt in ((webp, "WEBP"), (gif, "GIF")):
        with pytest.raises(mx.base.MXNetError):
            mx.image.imread(str(path))
        assert check_image(path) == (
            "image does not decode", f"image does not decode: {path} is {fmt}, which MXNet's decoder (used in "
            "training) cannot read")


def test_a_phone_camera_jpeg_is_prepared(tmp_path):
    root = _root(tmp_path, _balanced(1))
    second = _saved(tmp_path / "second.png", "PNG", seed=1)
    from PIL import Image

    with Image.open(second) as frame:
        _saved(root / "base" / "Images" / SKIRT / "phone.jpg", "MPO", seed=2, save_all=True, append_images=[frame])
    with open(root / "base" / "Annotations" / "label.csv", "a") as f:
        f.write(f"Images/{SKIRT}/phone.jpg,{SKIRT},nnnnny\n")
    summary = prepare(root, tmp_path / "out", workers=2, strict=True, val_fraction=0)
    assert summary["ok"] == 7 and (tmp_path / "out" / SKIRT / "train" / "5" / "phone.jpg").is_file()


def test_truncation_is_caught_even_after_gluoncv_makes_pillow_tolerant(tmp_path, monkeypatch):
    from PIL import ImageFile

    _jpeg(tmp_path / "full.jpg", size=64)
    (tmp_path / "cut.jpg").write_bytes((tmp_path / "full.jpg").read_bytes()[:-2])
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)  # what `import gluoncv.data` does
    kind, reason = check_image(tmp_path / "cut.jpg")
    assert "truncated" in reason
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # restored for whoever set it


def test_rows_giving_one_image_different_labels_are_all_skipped_naming_each_other(tmp_path):
    root = _root(tmp_path, [("a", 0), ("c", 3), ("d", 1), ("e", 2)])
    s, csv = f"Images/{SKIRT}", "base/Annotations/label.csv"
    _csv(root / "base" / "Annotations" / "label.csv", [
        f"{s}/a.jpg,{SKIRT},ynnnnn",    # 1 a: conflicts with 3
        f"{s}/e.jpg,{SKIRT},nnynnn",    # 2 ok
        f"{s}/a.jpg,{SKIRT},nnynnn",    # 3 a: conflicts with 1
        f"{s}/c.jpg,{SKIRT},nnnynn",    # 4 ok (identical repeats keep the first)
        f"{s}/c.jpg,{SKIRT},nnnynn",    # 5 duplicate of 4
        f"{s}/d.jpg,{SKIRT},nynnnn",    # 6 d: conflicts with 8
        f"{s}/./d.jpg,{SKIRT},nynnnn",  # 7 d: conflicts with 8
        f"{s}/d.jpg,{SKIRT},nymnnn",    # 8 d: the same class, another 'm': still not the same label
    ])
    summary = prepare(root, tmp_path / "out", workers=1)
    m = read_manifest(tmp_path / "out")
    reason = dict(zip(m["line"], m["reason"]))
    assert m.loc[m["status"] == "ok", "line"].tolist() == [2, 4]
    assert reason[1] == f"conflicting labels for one image: ynnnnn here, nnynnn at {csv}:3"
    assert reason[3] == f"conflicting labels for one image: nnynnn here, ynnnnn at {csv}:1"
    assert reason[5] == f"duplicate of {csv}:4"
    assert reason[6] == reason[7] == f"conflicting labels for one image: nynnnn here, nymnnn at {csv}:8"
    assert reason[8] == f"conflicting labels for one image: nymnnn here, nynnnn at {csv}:6, nynnnn at {csv}:7"
    assert summary["skipped_by_reason"] == {"conflicting labels": 5, "duplicate row": 1}


def test_an_input_without_a_usable_row_fails_and_replaces_nothing(tmp_path):
    root = _root(tmp_path, _balanced(2), web=[("w1", 0)])
    out = tmp_path / "out"
    prepare(root, out, workers=1)
    before = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    label_csv = root / "base" / "Annotations" / "label.csv"
    good = label_csv.read_text()
    cases = {
        "every row bad": ("\n".join(line.replace("jpg", "png") for line in good.splitlines()),
                          r"(?s)label.csv: no usable row among its 12 \(missing image: 12\).*label.csv:1: missing image"),
        "a header alone": ("ImageName,AttrKey,AttrValues\n", r"label.csv: no usable row among its 1 \(unknown task: 1\)"),
        "blank lines only": ("\n\n", "label.csv: the file is empty"),
    }
    for text, message in cases.values():
        label_csv.write_text(text)
        with pytest.raises(ValueError, match=message):
            prepare(root, out, overwrite=True, workers=1)
        assert main(["prepare", "--data", str(root), "--out", str(out), "--overwrite", "-j", "1"]) == 2
    label_csv.write_text(good)
    warmup = root / "web" / "Annotations" / f"{SKIRT}.csv"
    warmup.write_text(f"Images/{SKIRT}/w1.jpg,{SKIRT},nnnnnn\n")  # base is fine, the warm-up file is not
    with pytest.raises(ValueError, match=rf"{SKIRT}.csv: no usable row among its 1 \(label without y: 1\)"):
        prepare(root, out, overwrite=True, workers=1)
    with pytest.raises(ValueError, match="no rows of the selected tasks"):
        prepare(root, out, overwrite=True, workers=1, tasks=[COAT])
    after = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before and sorted(os.listdir(tmp_path)) == ["data", "out"]


def test_empty_or_missing_csv_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="base/Annotations/label.csv"):
        prepare(tmp_path / "nowhere", tmp_path / "out")
    _csv(tmp_path / "data" / "base" / "Annotations" / "label.csv", ["", "  "])
    with pytest.raises(AnnotationError, match="empty"):
        prepare(tmp_path / "data", tmp_path / "out")
    assert not (tmp_path / "out").exists()


# --- split --------------------------------------------------------------------------------------
def test_holdout_val_counts_per_class_round_half_up_and_keep_one_in_train():
    classes = [0] * 10 + [1] * 5 + [2] * 2 + [3] * 1
    for fraction, want in [(0.2, [2, 1, 0, 0]), (0.5, [5, 3, 1, 0]), (0.9, [9, 4, 1, 0]), (0.0, [0, 0, 0, 0])]:
        is_val = stratified_split(classes, seed=3, val_fraction=fraction)
        assert np.bincount(np.asarray(classes)[is_val], minlength=4).tolist() == want, fraction


def test_holdout_is_seeded_and_stable_across_machines():
    classes = [0] * 5 + [1] * 5
    first = stratified_split(classes, seed=0, val_fraction=0.4)
    assert np.array_equal(first, stratified_split(classes, seed=0, val_fraction=0.4))
    # Pinned: numpy's PCG64 streams are platform-independent, so this is the split everywhere.
    assert np.flatnonzero(first).tolist() == [2, 4, 6, 9]
    assert not np.array_equal(first, stratified_split(classes, seed=1, val_fraction=0.4))


def test_kfold_folds_partition_the_eligible_rows_stratified():
    classes = np.array([0] * 6 + [1] * 4 + [2] * 1)
    masks = [stratified_split(classes, seed=0, folds=3, fold=i) for i in range(3)]
    assert np.array_equal(sum(m.astype(int) for m in masks), [1] * 10 + [0])  # each once; singleton never
    for m in masks:
        assert np.bincount(classes[m], minlength=3)[0] == 2
        assert np.bincount(classes[m], minlength=3)[1] in (1, 2)


def test_prepare_split_is_stratified_deterministic_and_independent_of_row_order(tmp_path):
    rows = _balanced(10)
    root = _root(tmp_path, rows)
    s1 = prepare(root, tmp_path / "p1", seed=5, workers=1, tasks=[SKIRT])
    assert s1["tasks"][SKIRT]["val"] == [1] * 6 and s1["tasks"][SKIRT]["train"] == [9] * 6
    _csv(root / "base" / "Annotations" / "label.csv",
         [f"Images/{SKIRT}/{n}.jpg,{SKIRT},{_label(SKIRT, c)}" for n, c in reversed(rows)])
    prepare(root, tmp_path / "p2", seed=5, workers=2, tasks=[SKIRT])
    prepare(root, tmp_path / "p3", seed=6, workers=2, tasks=[SKIRT])
    split = {k: dict(zip(read_manifest(tmp_path / k)["image"], read_manifest(tmp_path / k)["split"]))
             for k in ("p1", "p2", "p3")}
    assert split["p1"] == split["p2"]
    assert split["p1"] != split["p3"]


def test_folds_through_prepare_and_bad_fold_options(tmp_path):
    root = _root(tmp_path, _balanced(4))
    vals = set()
    for fold in range(4):
        s = prepare(root, tmp_path / f"f{fold}", folds=4, fold=fold, workers=1, tasks=SKIRT)
        assert s["tasks"][SKIRT]["val"] == [1] * 6
        m = read_manifest(tmp_path / f"f{fold}")
        vals |= set(m.loc[m["split"] == "val", "image"])
    assert len(vals) == 24
    for bad in [dict(folds=4), dict(fold=1), dict(folds=1, fold=0), dict(folds=3, fold=3), dict(val_fraction=1.0)]:
        with pytest.raises(ValueError):
            prepare(root, tmp_path / "bad", **bad)


# --- warm-up, naming, tasks, links ---------------------------------------------------------------
def test_warmup_rows_go_to_train_with_prefixed_names(tmp_path):
    root = _root(tmp_path, _balanced(2), web=[("c0_00", 3), ("w1", 0)])  # web shares id c0_00
    s = prepare(root, tmp_path / "out", workers=1, tasks="length")
    m = read_manifest(tmp_path / "out")
    web = m[m["source"] == f"web/Annotations/{SKIRT}.csv"]
    assert web["split"].tolist() == ["train", "train"]
    assert web["prepared_path"].tolist() == [f"{SKIRT}/train/3/web_c0_00.jpg", f"{SKIRT}/train/0/web_w1.jpg"]
    # 2 base images per class (0.1 of 2 rounds to 0 val) plus the two warm-up images
    assert s["tasks"][SKIRT]["warmup"] == 2 and s["tasks"][SKIRT]["train"] == [3, 2, 2, 3, 2, 2]
    no_web = prepare(root, tmp_path / "out2", warmup=False, workers=1, tasks="length")
    assert no_web["rows"] == 12 and set(read_manifest(tmp_path / "out2")["source"]) == {"base/Annotations/label.csv"}


def test_unselected_tasks_are_recorded_not_counted_as_bad(tmp_path):
    root = _root(tmp_path, _balanced(2))
    with open(root / "base" / "Annotations" / "label.csv", "a") as f:
        f.write(f"Images/{COAT}/x.jpg,{COAT},nnnnnnny\n")
    s = prepare(root, tmp_path / "out", strict=True, workers=1, tasks=[SKIRT])
    m = read_manifest(tmp_path / "out")
    assert len(m) == 13 and s["skipped"] == 0 and s["not_selected"] == 1
    assert m.iloc[-1]["reason"] == "task not selected (--tasks)" and m.iloc[-1]["status"] == "skipped"
    assert list(s["tasks"]) == [SKIRT]


def test_every_class_folder_exists_so_imagefolderdataset_labels_match(tmp_path):
    root = _root(tmp_path, [("a", 0), ("b", 4), ("c", 4)])  # classes 1, 2, 3, 5 have no image
    prepare(root, tmp_path / "out", workers=1, tasks=[SKIRT])
    from mxnet.gluon.data.vision import ImageFolderDataset

    train = ImageFolderDataset(str(tmp_path / "out" / SKIRT / "train"))
    assert train.synsets == ["0", "1", "2", "3", "4", "5"]
    assert sorted(label for _, label in train.items) == [0, 4, 4]
    assert sorted(os.listdir(tmp_path / "out" / SKIRT / "val")) == ["0", "1", "2", "3", "4", "5"]


def test_images_are_hard_linked_else_symlinked_else_copied(tmp_path, monkeypatch):
    root = _root(tmp_path, _balanced(1))
    src = root / "base" / "Images" / SKIRT / "c2_00.jpg"
    s = prepare(root, tmp_path / "hard", workers=1, tasks=[SKIRT])
    assert s["link_mode"] == "hardlink"
    assert os.path.samefile(src, tmp_path / "hard" / SKIRT / "train" / "2" / "c2_00.jpg")

    def refuse(*args, **kwargs):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", refuse)
    assert prepare(root, tmp_path / "sym", workers=1, tasks=[SKIRT])["link_mode"] == "symlink"
    assert (tmp_path / "sym" / SKIRT / "train" / "2" / "c2_00.jpg").resolve() == src.resolve()
    monkeypatch.setattr(os, "symlink", refuse)
    assert prepare(root, tmp_path / "copy", workers=1, tasks=[SKIRT])["link_mode"] == "copy"
    copied = tmp_path / "copy" / SKIRT / "train" / "2" / "c2_00.jpg"
    assert not copied.is_symlink() and copied.read_bytes() == src.read_bytes()


def test_symlinked_images_are_followed_so_every_prepared_image_is_readable(tmp_path, monkeypatch):
    """A relative link hard-linked as a link dangles in the prepared root; links are followed (also
    out of the data root) and the file they point to is placed, per image the cheapest way."""
    root = _root(tmp_path, _balanced(1))
    images = root / "base" / "Images" / SKIRT
    _jpeg(images / "real.jpg", seed=50)
    _jpeg(tmp_path / "elsewhere" / "far.jpg", seed=51)  # outside the data root: followed
    (images / "near.jpg").symlink_to("real.jpg")
    (images / "far.jpg").symlink_to(os.path.relpath(tmp_path / "elsewhere" / "far.jpg", images))
    (images / "gone.jpg").symlink_to("nothing.jpg")
    with open(root / "base" / "Annotations" / "label.csv", "a") as f:
        f.writelines(f"Images/{SKIRT}/{n}.jpg,{SKIRT},nnnnny\n" for n in ("near", "far", "gone"))
    real_link = os.link

    def other_disk(src, dst, **kw):  # the far image's disk refuses hard links into ours
        if Path(src).name == "far.jpg":
            raise OSError(18, "Invalid cross-device link")
        real_link(src, dst, **kw)

    monkeypatch.setattr(os, "link", other_disk)
    summary = prepare(root, tmp_path / "out", workers=1, val_fraction=0)
    m = read_manifest(tmp_path / "out").set_index("line")
    assert summary["link_mode"] == "hardlink 7, symlink 1"
    assert m.loc[9, "status"] == "skipped" and "a symbolic link to nothing.jpg, which is not a file" in m.loc[9, "reason"]
    ok = m[m["status"] == "ok"]
    assert len(ok) == 8
    for path in ok["prepared_path"]:
        placed = tmp_path / "out" / path
        assert cv2.imread(str(placed)) is not None, path
        assert not placed.is_symlink() or Path(os.readlink(placed)).is_absolute()
    assert os.path.samefile(tmp_path / "out" / ok.loc[7, "prepared_path"], images / "real.jpg")
    assert os.path.samefile(tmp_path / "out" / ok.loc[8, "prepared_path"], tmp_path / "elsewhere" / "far.jpg")
    monkeypatch.setattr(os, "link", real_link)
    os.rename(tmp_path / "out", tmp_path / "moved")  # hard links do not depend on where they sit
    assert cv2.imread(str(tmp_path / "moved" / ok.loc[7, "prepared_path"])) is not None


# --- strict and re-runs --------------------------------------------------------------------------
def test_strict_fails_and_writes_nothing(tmp_path):
    root = _root(tmp_path, _balanced(2))
    with open(root / "base" / "Annotations" / "label.csv", "a") as f:
        f.write(f"Images/{SKIRT}/gone.jpg,{SKIRT},nnnnny\n")
    with pytest.raises(ValueError, match=r"label.csv:13: missing image"):
        prepare(root, tmp_path / "out", strict=True, workers=1)
    assert main(["prepare", "--data", str(root), "--out", str(tmp_path / "out"), "--strict", "-j", "1"]) == 2
    assert not (tmp_path / "out").exists() and os.listdir(tmp_path) == ["data"]


def test_rerun_refuses_then_overwrite_replaces_cleanly(tmp_path):
    root = _root(tmp_path, _balanced(2))
    out = tmp_path / "out"
    prepare(root, out, workers=1)
    with pytest.raises(FileExistsError, match="--overwrite"):
        prepare(root, out, workers=1)
    gone = root / "base" / "Images" / SKIRT / "c0_00.jpg"
    assert (out / SKIRT / "train" / "0" / "c0_00.jpg").exists()
    gone.unlink()
    s = prepare(root, out, overwrite=True, workers=1)
    assert s["skipped_by_reason"] == {"missing image": 1}
    assert not (out / SKIRT / "train" / "0" / "c0_00.jpg").exists()  # nothing left from run 1
    assert sorted(os.listdir(tmp_path)) == ["data", "out"]  # no temp or old folders left
    assert len(read_manifest(out)) == 12


def test_overwrite_never_deletes_a_folder_that_is_not_prepared(tmp_path):
    """A `manifest.csv` of the user's own is no licence: only the marker prepare writes is."""
    root = _root(tmp_path, _balanced(1))
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    (mine / "manifest.csv").write_text("my,own,manifest\n")
    with pytest.raises(FileExistsError, match="has no .fashionai-prepared, so it is not a prepared folder"):
        prepare(root, mine, overwrite=True)
    assert main(["prepare", "--data", str(root), "--out", str(mine), "--overwrite"]) == 2
    with pytest.raises(ValueError, match="contains the data root"):
        prepare(root, tmp_path, overwrite=True)
    assert (mine / "notes.txt").read_text() == "keep" and sorted(os.listdir(tmp_path)) == ["data", "mine"]
    prepare(root, tmp_path / "made", workers=1)
    marker = json.loads((tmp_path / "made" / ".fashionai-prepared").read_text())
    assert marker["made_by"] == "fashionai prepare" and marker["time"]


def test_a_symlinked_out_is_refused_and_nothing_is_left_beside_it(tmp_path):
    root = _root(tmp_path, _balanced(1))
    prepare(root, tmp_path / "real", workers=1)
    before = sorted(p.relative_to(tmp_path).as_posix() for p in (tmp_path / "real").rglob("*"))
    (tmp_path / "link").symlink_to(tmp_path / "real")
    for out in (tmp_path / "link", tmp_path / "dangling"):
        if out.name == "dangling":
            out.symlink_to(tmp_path / "nowhere")
        assert main(["prepare", "--data", str(root), "--out", str(out), "--overwrite", "-j", "1"]) == 2
        assert main(["demo-data", str(out), "--overwrite", "--tasks", SKIRT, "--train-per-class", "1",
                     "--test-per-class", "1", "--min-size", "48", "--max-size", "48"]) == 2
    assert (tmp_path / "link").is_symlink() and (tmp_path / "dangling").is_symlink()
    assert sorted(os.listdir(tmp_path)) == ["dangling", "data", "link", "real"]  # no temp or old folders
    assert sorted(p.relative_to(tmp_path).as_posix() for p in (tmp_path / "real").rglob("*")) == before


@pytest.mark.parametrize("out", [".", "..", "data/..", "data/base"])
def test_out_holding_the_current_folder_or_the_data_root_fails_before_any_work(tmp_path, monkeypatch, out):
    root = _root(tmp_path, _balanced(1))
    (tmp_path / "notes.txt").write_text("keep")
    monkeypatch.chdir(tmp_path)
    listing = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    message = "the current folder or holds it" if out != "data/base" else "not a prepared folder"
    for overwrite in ([], ["--overwrite"]):
        with pytest.raises((ValueError, FileExistsError), match=message):
            prepare(root if out != "data/base" else "data", out, workers=1, overwrite=bool(overwrite))
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == listing


def test_out_below_the_current_folder_given_relatively_works(tmp_path, monkeypatch):
    _root(tmp_path, _balanced(1))
    monkeypatch.chdir(tmp_path)
    summary = prepare("data", "prepared", workers=1)
    assert summary["out"] == "prepared" and (tmp_path / "prepared" / "manifest.csv").is_file()
    prepare("data", "./prepared", workers=1, overwrite=True)
    assert sorted(os.listdir(tmp_path)) == ["data", "prepared"]


# --- CLI and demo data ---------------------------------------------------------------------------
def test_cli_prepare_prints_the_summary_table(tmp_path, capsys):
    root = _root(tmp_path, _balanced(10))
    out = tmp_path / "prepared"
    assert main(["prepare", "--data", str(root), "--out", str(out), "--tasks", SKIRT, "--seed", "1",
                 "--val-fraction", "0.2", "-j", "2"]) == 0
    printed = capsys.readouterr().out
    assert f"{SKIRT}" in printed and "0:8/2 1:8/2" in printed and "60 of 60 rows" in printed
    assert (out / "summary.json").is_file() and len(read_manifest(out)) == 60
    assert main(["prepare", "--data", str(root), "--out", str(out), "--fold", "1"]) == 2


def test_demo_data_prepares_cleanly(request):
    pytest.importorskip("fashionai.demodata.generate")
    prepared = request.getfixturevalue("prepared_data")
    m = read_manifest(prepared)
    ok = m[m["status"] == "ok"]
    assert len(ok) == len(m) and (ok["split"] == "val").any()
    for path in ok["prepared_path"][:20]:
        assert (prepared / path).is_file()
