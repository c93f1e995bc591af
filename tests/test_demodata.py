"""The demo-data generator: FashionAI formats, counts, images, determinism, learnability, CLI.

Most tests read the session fixture `demo_data` (tests/conftest.py: seed 0, 8 train, 3 test and
3 warm-up images per class, long side 96-160 px); the expectations below are computed by hand
from those numbers.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from fashionai.cli import main
from fashionai.core.annotations import read_labels, read_questions
from fashionai.core.tasks import TASK_NAMES, num_classes
from fashionai.demodata.generate import MARKER, make_demo_data

TRAIN, TEST, WARMUP = 8, 3, 3  # per class, as the demo_data fixture makes them
SKIRT = "skirt_length_labels"
IMAGE_PATH = re.compile(r"^Images/(?P<task>[a-z_]+)/(?P<id>[0-9a-f]{32})\.jpg$")
CSVS = ("base/Annotations/label.csv", "web/Annotations/skirt_length_labels.csv",
        "rank/Tests/question.csv", "rank/Tests/answers.csv")


def _labels(root: Path) -> dict[str, list]:
    """Label rows per split; no warm-up file (no skirt task or none asked for) reads as no rows."""
    warmup = root / CSVS[1]
    return {"train": read_labels(root / CSVS[0]), "warmup": read_labels(warmup) if warmup.exists() else [],
            "test": read_labels(root / CSVS[3])}


def _hashes(root: Path) -> dict[str, str]:
    """Every file's hash but the marker's (it records when the folder was made)."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != MARKER}


def _tiny(out: Path, **kw) -> dict:
    args = dict(train_per_class=2, test_per_class=1, warmup_per_class=1, min_size=48, max_size=64,
                tasks=(SKIRT, "collar_design_labels"))
    return make_demo_data(out, **{**args, **kw})


# --- layout and formats -------------------------------------------------------------------------
def test_every_csv_parses_with_the_project_readers_and_has_plain_lines(demo_data):
    assert sorted(p.name for p in demo_data.iterdir()) == [".fashionai-demo-data", "base", "demo.json", "rank", "web"]
    for name in CSVS:
        raw = (demo_data / name).read_bytes()
        assert b"\r" not in raw and raw.endswith(b"\n") and not raw.startswith(b"\xef\xbb\xbf")
        assert not raw.startswith(b"ImageName")  # no header
    questions = read_questions(demo_data / CSVS[2])
    assert len(questions) == TEST * sum(num_classes(t) for t in TASK_NAMES)
    labels = _labels(demo_data)
    assert {r.task for r in labels["warmup"]} == {SKIRT}
    for rows in labels.values():
        for row in rows:
            match = IMAGE_PATH.match(row.image)
            assert match and match["task"] == row.task


def test_class_counts_per_task_and_split(demo_data):
    labels = _labels(demo_data)
    summary = json.loads((demo_data / "demo.json").read_text())
    for task in TASK_NAMES:
        k = num_classes(task)
        for split, per_class in (("train", TRAIN), ("test", TEST), ("warmup", WARMUP)):
            if split == "warmup" and task != SKIRT:
                assert task not in {r.task for r in labels["warmup"]}
                continue
            counts = Counter(r.label.index for r in labels[split] if r.task == task)
            assert [counts[c] for c in range(k)] == [per_class] * k, (task, split)
            assert summary["tasks"][task][split] == [per_class] * k
    assert summary["rows"] == {"train": 432, "warmup": 18, "test": 162}  # 54 classes x 8 / x 3; 6 x 3
    assert summary["images"] == 612


def test_questions_are_grouped_by_task_and_answers_align(demo_data):
    questions = read_questions(demo_data / CSVS[2])
    answers = read_labels(demo_data / CSVS[3])
    assert [(q.image, q.task) for q in questions] == [(a.image, a.task) for a in answers]
    order = list(dict.fromkeys(q.task for q in questions))
    assert order == list(TASK_NAMES)  # each task's rows are one contiguous block, in task order
    assert [q.task for q in questions] == sorted((q.task for q in questions), key=order.index)


def test_ids_are_unique_across_base_web_and_rank(demo_data):
    ids = [IMAGE_PATH.match(r.image)["id"] for rows in _labels(demo_data).values() for r in rows]
    assert len(ids) == 612 and len(set(ids)) == 612
    on_disk = [p.stem for p in demo_data.glob("*/Images/*/*.jpg")]
    assert sorted(on_disk) == sorted(ids)  # no stray or missing image files


def test_maybe_labels_are_adjacent_second_classes(demo_data):
    labels = _labels(demo_data)
    summary = json.loads((demo_data / "demo.json").read_text())
    for split, rows in labels.items():
        for task in {r.task for r in rows}:
            mine = [r.label for r in rows if r.task == task]
            with_m = [lab for lab in mine if lab.maybe]
            assert len(with_m) == round(0.05 * len(mine)) == summary["tasks"][task][f"{split}_maybe"]
            for lab in with_m:
                assert lab.values.count("y") == 1 and len(lab.maybe) == 1
                assert abs(lab.maybe[0] - lab.index) == 1 and (lab.index == 0 or lab.maybe[0] != 0)
    # round(0.05 x rows) per task, by hand: train 8 x K rows -> 2+3+2+2+2+4+2+4; test 3 x K -> 1 each but
    # neckline (round(1.5) = 2); warm-up 18 rows -> 1
    assert [sum(bool(r.label.maybe) for r in labels[s]) for s in ("train", "test", "warmup")] == [21, 9, 1]


def test_images_decode_as_jpeg_with_varied_sizes(demo_data):
    sizes = set()
    for path in demo_data.glob("*/Images/*/*.jpg"):
        data = path.read_bytes()
        assert data[:3] == b"\xff\xd8\xff"  # a JPEG, as the extension says
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        assert img is not None and img.ndim == 3
        assert 96 <= max(img.shape[:2]) <= 160
        sizes.add(img.shape[:2])
    assert len(sizes) > 100  # long side and aspect both vary


# --- determinism, options, errors ---------------------------------------------------------------
def test_same_seed_same_bytes_other_seed_different(tmp_path):
    first, again, other = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    _tiny(first), _tiny(again), _tiny(other, seed=1)
    assert _hashes(first) == _hashes(again)
    hashes, other_hashes = _hashes(first), _hashes(other)
    assert len(hashes) == 22 + 11 + 6 + 4 + 1  # train, test, warm-up images (11 classes), 4 CSVs, demo.json
    images = {k for k in hashes if "/Images/" in k}
    assert len(images) == 39 and images.isdisjoint(other_hashes)  # another seed, other ids
    assert (first / CSVS[0]).read_bytes() != (other / CSVS[0]).read_bytes()


def test_a_task_subset_draws_the_same_images_as_the_full_set(demo_data, tmp_path):
    only = make_demo_data(tmp_path / "skirt", tasks=[SKIRT], train_per_class=TRAIN, test_per_class=TEST,
                          warmup_per_class=WARMUP, min_size=96, max_size=160)
    assert only["tasks"][SKIRT]["train"] == [TRAIN] * 6
    full_lines = (demo_data / CSVS[0]).read_text().splitlines()
    assert (tmp_path / "skirt" / CSVS[0]).read_text().splitlines() == [l for l in full_lines if f",{SKIRT}," in l]
    for path in (tmp_path / "skirt").glob("*/Images/*/*.jpg"):
        assert path.read_bytes() == (demo_data / path.relative_to(tmp_path / "skirt")).read_bytes()


def test_no_warmup_without_the_skirt_task(tmp_path):
    summary = make_demo_data(tmp_path / "d", tasks=["neck_design_labels"], train_per_class=1,
                             test_per_class=1, min_size=48, max_size=48, maybe_fraction=0.0)
    assert summary["rows"] == {"train": 5, "warmup": 0, "test": 5}
    assert not (tmp_path / "d" / "web").exists()
    assert all("m" not in r.label.values for r in read_labels(tmp_path / "d" / CSVS[0]))
    img = cv2.imread(str(next((tmp_path / "d").glob("base/Images/*/*.jpg"))))
    assert max(img.shape[:2]) == 48


def test_existing_output_is_refused_unless_overwrite(tmp_path):
    out = tmp_path / "demo"
    _tiny(out)
    (out / "stale.txt").write_text("from an earlier run")
    with pytest.raises(FileExistsError, match="--overwrite"):
        _tiny(out, seed=3)
    assert (out / "stale.txt").exists()
    _tiny(out, seed=3, overwrite=True)
    assert not (out / "stale.txt").exists() and json.loads((out / "demo.json").read_text())["params"]["seed"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["demo"]  # no temp or old folder left behind
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    (mine / "demo.json").write_text("{}")  # a file of that name is no licence: only the marker is
    with pytest.raises(FileExistsError, match="has no .fashionai-demo-data, so it is not demo data"):
        _tiny(mine, overwrite=True)
    assert sorted(p.name for p in mine.iterdir()) == ["demo.json", "notes.txt"]
    (tmp_path / "empty").mkdir()
    _tiny(tmp_path / "empty")  # an empty folder is fine without --overwrite


@pytest.mark.parametrize("bad, message", [
    (dict(min_size=200, max_size=100), "min_size <= max_size"),
    (dict(maybe_fraction=1.5), "maybe_fraction"),
    (dict(train_per_class=0), "per class"),
    (dict(quality=0), "quality"),
    (dict(tasks=["skirt"]), "unknown task"),
    (dict(style="studio"), "style must be one of"),
])
def test_bad_arguments_raise_value_errors(tmp_path, bad, message):
    with pytest.raises(ValueError, match=message):
        _tiny(tmp_path / "x", **bad)
    assert not (tmp_path / "x").exists()


# --- learnability -------------------------------------------------------------------------------
def _hog_features(root: Path, subset: str, rows, size: int) -> np.ndarray:
    """HOG of a size x size grey downsample: edges, so invariant to the random garment colours."""
    hog = cv2.HOGDescriptor((size, size), (16, 16), (8, 8), (8, 8), 9)
    out = []
    for row in rows:
        img = cv2.imread(str(root / subset / row.image), cv2.IMREAD_GRAYSCALE)
        out.append(hog.compute(cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)).ravel())
    return np.array(out)


def _test_accuracy(root: Path, task: str, size: int) -> tuple[float, float]:
    """(test accuracy of logistic regression on HOG features, trained on base/, scored on rank/,
    the share of the test set's most frequent class: what always guessing it scores)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    labels = _labels(root)
    train = [r for r in labels["train"] if r.task == task]
    test = [r for r in labels["test"] if r.task == task]
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=500))
    clf.fit(_hog_features(root, "base", train, size), [r.label.index for r in train])
    truth = [r.label.index for r in test]
    accuracy = float(np.mean(clf.predict(_hog_features(root, "rank", test, size)) == truth))
    return accuracy, max(Counter(truth).values()) / len(truth)


def test_a_linear_classifier_learns_every_task_far_above_chance(tmp_path):
    root = tmp_path / "learn"
    make_demo_data(root, train_per_class=16, test_per_class=6, warmup_per_class=0, min_size=64, max_size=96)
    ratios = {task: _test_accuracy(root, task, 32)[0] * num_classes(task) for task in TASK_NAMES}  # / chance
    assert min(ratios.values()) > 2.0, ratios


def test_shop_style_classes_are_learnable_from_their_details(tmp_path):
    """The shop style's small design details and body-relative hems still separate the classes: a
    linear model on 48 px HOG beats both chance (1/K) and always guessing the commonest class
    twice over in every task (measured 2.7-6.4x chance at seed 0)."""
    root = tmp_path / "shop"
    make_demo_data(root, train_per_class=12, test_per_class=6, warmup_per_class=0, min_size=64, max_size=80,
                   style="shop")
    scores = {task: _test_accuracy(root, task, 48) for task in TASK_NAMES}
    for task, (accuracy, commonest) in scores.items():
        assert accuracy > 2.0 / num_classes(task) and accuracy > 1.5 * commonest, (task, scores[task])


def test_shop_style_is_square_uneven_and_has_a_few_wrong_training_labels(tmp_path):
    summary = make_demo_data(tmp_path / "d", train_per_class=20, test_per_class=6, warmup_per_class=4,
                             min_size=64, max_size=80, style="shop", tasks=[SKIRT, "neckline_design_labels"])
    assert summary["params"]["style"] == "shop" and summary["params"]["label_noise"] == 0.03
    for task, k in ((SKIRT, 6), ("neckline_design_labels", 10)):
        train, test = summary["tasks"][task]["train"], summary["tasks"][task]["test"]
        assert 2.4 <= max(train) / min(train) <= 3.6 and abs(sum(train) - 20 * k) <= k  # 3:1, same total
        assert np.argmax(train) == np.argmax(test)  # one class order for every split
        assert summary["tasks"][task]["train_wrong"] == round(0.03 * sum(train))
        assert summary["tasks"][task]["test_wrong"] == 0  # the answers stay the truth
    shapes = [cv2.imread(str(p)).shape[:2] for p in (tmp_path / "d").glob("*/Images/*/*.jpg")]
    square = sum(h == w for h, w in shapes) / len(shapes)
    assert 0.6 < square < 0.9 and all(w <= h for h, w in shapes)  # mostly square, else portrait


# --- CLI ----------------------------------------------------------------------------------------
def test_cli_writes_refuses_and_overwrites(tmp_path, caplog):
    out = tmp_path / "cli"
    args = ["demo-data", str(out), "--tasks", "design", "--train-per-class", "1", "--test-per-class", "1",
            "--warmup-per-class", "1", "--min-size", "48", "--max-size", "64", "--seed", "7", "--style", "classic"]
    with caplog.at_level("INFO"):
        assert main(args) == 0
    assert "50 images (train 25, warm-up 0, test 25) for 4 task(s), seed 7, style classic" in caplog.text
    assert {r.task for r in read_labels(out / CSVS[0])} == {t for t in TASK_NAMES if "design" in t}
    assert main(args) == 2  # exists
    assert main(args + ["--overwrite", "--maybe-fraction", "0.2", "--quality", "80"]) == 0
    params = json.loads((out / "demo.json").read_text())["params"]
    assert params["seed"] == 7 and params["maybe_fraction"] == 0.2 and params["quality"] == 80
    assert main(args[:-2] + ["--overwrite"]) == 0  # the command's default is the shop style
    assert json.loads((out / "demo.json").read_text())["params"]["style"] == "shop"
