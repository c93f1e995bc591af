"""Prediction with TTA: the evaluation transform's view, constant images, devices, decode errors."""

import json
import shutil
from pathlib import Path

import cv2
import mxnet as mx
import numpy as np
import pytest

from fashionai.cli import main
from fashionai.core.tasks import num_classes
from fashionai.core.view import View
from fashionai.data import transforms, tta
from fashionai.data.tta import ImageDecodeError
from fashionai.inference import predict
from fashionai.model import load_run
from fashionai.pipeline import submit
from fashionai.pipeline.submit import make_submission
from fashionai.scoring.probs import load_probs
from fashionai.scoring.submission import SubmissionError, check_submission

K = 5
SIZES = [(90, 70), (64, 64), (71, 100), (100, 73)]  # (H, W): portrait, square, landscape, odd
VIEW = View(32, 0.875)  # the crop ratio predict defaulted to when these tests were written


def _tiny_net(ctx=mx.cpu()):
    """A small conv net with seeded random weights: enough to tell views apart."""
    net = mx.gluon.nn.HybridSequential()
    net.add(mx.gluon.nn.Conv2D(4, 3, padding=1, activation="relu"), mx.gluon.nn.MaxPool2D(4),
            mx.gluon.nn.Flatten(), mx.gluon.nn.Dense(K))
    mx.random.seed(7)
    net.initialize(mx.init.Xavier(magnitude=3), ctx=ctx)
    return net


def _images(tmp_path, sizes=SIZES, seed=0, ext="png"):
    rng = np.random.default_rng(seed)
    paths = []
    for i, (h, w) in enumerate(sizes):
        path = tmp_path / f"img{i}.{ext}"
        cv2.imwrite(str(path), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        paths.append(path)
    return paths


def _softmax(net, x):
    return mx.nd.softmax(net(x), axis=-1).asnumpy()


@pytest.mark.parametrize("data_shape", [32, 64])  # 36 - 32 = 4 and 73 - 64 = 9 (odd) around the crop
def test_none_is_the_evaluation_transform(tmp_path, data_shape):
    paths = _images(tmp_path)
    view = View(data_shape, 0.875)  # the crop ratio predict defaulted to when this test was written
    transform = transforms.eval_transform(view)
    expected = mx.nd.stack(*[transform(mx.image.imread(str(p))) for p in paths])
    stacks, failures = tta.load_views(paths, [view.short], view, "none")
    views = mx.nd.concat(*stacks, dim=0)
    assert failures == [] and views.shape == (4, 3, data_shape, data_shape)
    np.testing.assert_array_equal(views.asnumpy(), expected.asnumpy())
    net = _tiny_net()
    probs = predict.predict_paths(net, paths, view=view, ctx=mx.cpu(), batch_size=3)
    np.testing.assert_allclose(probs, _softmax(net, expected), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("tta,scales,reduce", [
    ("flip", None, "mean"), ("five-crop", None, "max"), ("ten-crop", None, "mean"), ("ten-crop", [40, 48], "mean"),
])
def test_constant_image_tta_equals_no_tta(tmp_path, tta, scales, reduce):
    path = tmp_path / "grey.png"
    cv2.imwrite(str(path), np.full((60, 45, 3), (30, 140, 220), dtype=np.uint8))
    net = _tiny_net()
    plain = predict.predict_paths(net, [path], view=VIEW, ctx=mx.cpu())
    augmented = predict.predict_paths(net, [path], view=VIEW, ctx=mx.cpu(), tta=tta, scales=scales, reduce=reduce)
    np.testing.assert_allclose(augmented, plain, rtol=1e-5, atol=1e-7)
    assert abs(plain.sum() - 1) < 1e-6


def test_flip_is_the_mean_with_the_mirrored_image(tmp_path):
    """End to end: `flip` = mean of `none` on the image and on its mirror (PNG, so lossless)."""
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (72, 40, 3), dtype=np.uint8)  # 36 x 64 after resizing: even margins
    cv2.imwrite(str(tmp_path / "a.png"), image)
    cv2.imwrite(str(tmp_path / "m.png"), image[:, ::-1])
    net = _tiny_net()
    a, m = predict.predict_paths(net, [tmp_path / "a.png", tmp_path / "m.png"], view=VIEW, ctx=mx.cpu())
    flip = predict.predict_paths(net, [tmp_path / "a.png"], view=VIEW, ctx=mx.cpu(), tta="flip")
    np.testing.assert_allclose(flip[0], (a + m) / 2, atol=1e-4)
    assert np.abs(a - m).max() > 1e-3  # the mirror really is another input


def test_batching_and_devices_do_not_change_results(tmp_path):
    paths = _images(tmp_path)
    ctx = [mx.cpu(0), mx.cpu(1)]
    net = _tiny_net(ctx)
    one = predict.predict_paths(net, paths, view=VIEW, ctx=[mx.cpu(0)], tta="ten-crop", batch_size=1)
    two = predict.predict_paths(net, paths, view=VIEW, ctx=ctx, tta="ten-crop", batch_size=20)
    assert one.shape == (4, K)
    np.testing.assert_allclose(one, two, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(one.sum(axis=1), 1, atol=1e-6)


def test_undecodable_images_are_all_listed(tmp_path):
    paths = _images(tmp_path, sizes=[(40, 40)] * 3)
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    paths[1:1] = [tmp_path / "broken.jpg"]
    paths.append(tmp_path / "missing.jpg")
    with pytest.raises(tta.ImageDecodeError) as err:
        predict.predict_paths(_tiny_net(), paths, view=VIEW, ctx=mx.cpu(), batch_size=1)
    assert [p for p, _ in err.value.failures] == [str(tmp_path / "broken.jpg"), str(tmp_path / "missing.jpg")]
    assert "broken.jpg" in str(err.value) and "missing.jpg" in str(err.value)


def test_bad_scale_and_mode(tmp_path):
    paths = _images(tmp_path, sizes=[(40, 40)])
    with pytest.raises(ValueError, match="smaller than the crop size"):
        predict.predict_paths(_tiny_net(), paths, view=VIEW, ctx=mx.cpu(), scales=[30])
    with pytest.raises(ValueError, match="unknown TTA mode"):
        predict.predict_paths(_tiny_net(), paths, view=VIEW, ctx=mx.cpu(), tta="twelve-crop")


# --- trained runs ---------------------------------------------------------------------------------
def _questions(tmp_path, task, count, extra_task=None):
    """rank/Tests/question.csv and rank/Images/<task>/*.jpg, like the competition's test folder."""
    rank = tmp_path / "rank"
    (rank / "Tests").mkdir(parents=True)
    (rank / "Images" / task).mkdir(parents=True)
    rng = np.random.default_rng(3)
    lines = []
    for i in range(count):
        name = f"Images/{task}/q{i}.jpg"
        cv2.imwrite(str(rank / name), rng.integers(0, 256, (80 + 7 * i, 64, 3), dtype=np.uint8))
        lines.append(f"{name},{task},?")
    if extra_task:
        lines.append(f"Images/{extra_task}/x.jpg,{extra_task},?")
    (rank / "Tests" / "question.csv").write_text("\n".join(lines) + "\n")
    return rank / "Tests" / "question.csv"


def _gpu_copy(run_dir, tmp_path):
    """The fixture run with its config saying it was trained on a GPU."""
    copy = tmp_path / "gpu_run"
    shutil.copytree(run_dir, copy)
    config = json.loads((copy / "config.json").read_text())
    config.update({"devices": "gpu:0", "num_gpus": 1})
    (copy / "config.json").write_text(json.dumps(config))
    return copy


def test_predict_run_on_cpu_of_a_gpu_trained_run(trained_run, tmp_path):
    task = json.loads((trained_run / "config.json").read_text())["task"]
    questions = _questions(tmp_path, task, 3)
    names, files = predict.question_images(questions, task)
    assert names == [f"Images/{task}/q{i}.jpg" for i in range(3)]
    assert files[0] == tmp_path / "rank" / names[0]
    gpu_run = _gpu_copy(trained_run, tmp_path)
    probs = predict.predict_run(gpu_run, files, tta="flip", devices="auto")
    same = predict.predict_run(trained_run, files, tta="flip", devices="cpu")
    assert probs.shape == (3, num_classes(task))
    np.testing.assert_allclose(probs, same, rtol=1e-5, atol=1e-7)


def _values(path):
    return np.array([[float(v) for v in line.split(",")[2].split(";")] for line in path.read_text().splitlines()])


def test_submit_save_and_merge_probs(trained_run, tmp_path):
    task = json.loads((trained_run / "config.json").read_text())["task"]
    questions = _questions(tmp_path, task, 3)
    out, probs_dir = tmp_path / "sub", tmp_path / "probs"
    assert main(["submit", "--runs", str(trained_run), "--questions", str(questions), "--out", str(out),
                 "--tta", "flip", "--save-probs", str(probs_dir), "--precision", "fp32"]) == 0
    check_submission(out / "submission.csv", questions)
    assert (out / f"{task}.csv").read_text() == (out / "submission.csv").read_text()
    saved = sorted(probs_dir.glob("*.npy"))
    assert len(saved) == 1 and load_probs(saved[0])[1] == [f"Images/{task}/q{i}.jpg" for i in range(3)]
    # from the saved probabilities alone, and as a 2-member ensemble with the run: the same file
    make_submission(questions, tmp_path / "merged", prob_files=saved)
    make_submission(questions, tmp_path / "ens", runs=[trained_run], prob_files=saved, weights=[1, 3], tta="flip")
    for other in ("merged", "ens"):  # equal up to the float32 the probabilities are saved in
        np.testing.assert_allclose(_values(tmp_path / other / "submission.csv"), _values(out / "submission.csv"),
                                   atol=2e-8)


def test_submit_names_missing_tasks_and_writes_nothing(trained_run, tmp_path):
    task = json.loads((trained_run / "config.json").read_text())["task"]
    other = "neck_design_labels" if task != "neck_design_labels" else "skirt_length_labels"
    questions = _questions(tmp_path, task, 2, extra_task=other)
    with pytest.raises(ValueError, match=other):
        make_submission(questions, tmp_path / "sub", runs=[trained_run])
    assert not (tmp_path / "sub").exists()
    with pytest.raises(SubmissionError):
        check_submission(["x.jpg,skirt_length_labels,1;0;0;0;0;0"], questions)


def test_question_paths_outside_the_images_root_fail_before_any_prediction(trained_run, tmp_path, monkeypatch):
    """`../..` in question.csv was read and written into a "validated" submission: now the question
    file's line is named, and no net runs, nothing is written."""
    task = json.loads((trained_run / "config.json").read_text())["task"]
    questions = _questions(tmp_path, task, 2)
    secret = tmp_path / "secret.jpg"
    shutil.copy(tmp_path / "rank" / f"Images/{task}/q0.jpg", secret)  # a readable image outside the root
    with open(questions, "a") as f:
        f.write(f"Images/{task}/../../../secret.jpg,{task},?\n")
    monkeypatch.setattr(submit, "predict_resolved", lambda *a, **k: pytest.fail("a net ran"))
    monkeypatch.setattr(predict, "predict_run", lambda *a, **k: pytest.fail("a net ran"))
    where = r"question.csv:3: image path .* leads outside the images root"
    with pytest.raises(ValueError, match=where):
        predict.question_images(questions, task)
    with pytest.raises(ValueError, match=where):
        make_submission(questions, tmp_path / "sub", runs=[trained_run])
    assert main(["submit", "--runs", str(trained_run), "--questions", str(questions), "--out", str(tmp_path / "sub"),
                 "--precision", "fp32"]) == 2
    assert main(["predict", "--run", str(trained_run), "--questions", str(questions), "--precision", "fp32"]) == 2
    assert not (tmp_path / "sub").exists()


def test_predict_cli_writes_npy_and_csv(trained_run, tmp_path, capsys):
    task = json.loads((trained_run / "config.json").read_text())["task"]
    paths = _images(tmp_path, sizes=[(50, 40), (40, 60)], ext="jpg")
    args = ["predict", "--run", str(trained_run), "--images", *map(str, paths), "--tta", "five-crop",
            "--precision", "fp32"]  # the default, auto, would measure and cache its choice in the run
    assert main(args + ["--out", str(tmp_path / "p.npy")]) == 0
    got_task, images, probs = load_probs(tmp_path / "p.npy")
    assert (got_task, images) == (task, [str(p) for p in paths])
    assert main(args + ["--out", str(tmp_path / "p.csv")]) == 0
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert [line.split(",")[:2] for line in lines] == [[str(p), task] for p in paths]
    np.testing.assert_allclose([[float(v) for v in line.split(",")[2].split(";")] for line in lines], probs, atol=1e-7)
    assert f"2 images, {task}, tta five-crop" in capsys.readouterr().out


# --- precision ------------------------------------------------------------------------------------
def test_precision_flag_defaults():
    from fashionai.cli import build_parser, predict_kw

    parser = build_parser()
    predict_args = parser.parse_args(["predict", "--run", "r", "--images", "a.jpg"])
    submit_args = parser.parse_args(["submit", "--runs", "r", "--questions", "q.csv", "--precision", "int8"])
    assert predict_kw(predict_args)["precision"] == "auto" and predict_kw(submit_args)["precision"] == "int8"
    assert parser.parse_args(["evaluate", "--run", "r"]).precision == "fp32"  # scoring: the reference


def test_predict_and_submit_pass_the_precision_through(trained_run, tmp_path, monkeypatch):
    task = json.loads((trained_run / "config.json").read_text())["task"]
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    paths = _images(tmp_path, sizes=[(50, 40), (40, 60), (64, 64)], ext="jpg")
    assert main(["predict", "--run", str(run), "--images", *map(str, paths), "--precision", "fused", "--tta", "flip",
                 "--out", str(tmp_path / "fused.npy")]) == 0
    fused = load_probs(tmp_path / "fused.npy")[2]
    np.testing.assert_allclose(fused, predict.predict_run(run, paths, tta="flip", which="last"), atol=1e-4)
    assert json.loads((tmp_path / "fused.json").read_text())["precision"] == "fused"

    seen = []
    monkeypatch.setattr(submit, "predict_resolved", lambda run_dir, files, **kw: seen.append(kw) or np.full(
        (len(files), num_classes(task)), 1 / num_classes(task)))
    questions = _questions(tmp_path, task, 2)
    assert main(["submit", "--runs", str(run), "--questions", str(questions), "--out", str(tmp_path / "sub"),
                 "--precision", "int8"]) == 0
    # the defaults: flip views of the last epoch's weights (fashionai.pipeline.tta_choice)
    assert seen[0]["precision"] == "int8" and seen[0]["tta"] == "flip" and seen[0]["which"] == "last"


def test_decoding_ahead_in_threads_gives_the_same_probabilities_and_failures(trained_run, tmp_path, monkeypatch):
    """Prediction decodes the next images in threads while the net runs (issue: one image at a time
    in the main thread capped every engine): same numbers, same order, every bad image reported."""
    from fashionai.inference import predict as module

    config = json.loads((trained_run / "config.json").read_text())
    images = sorted((Path(config["prepared"]) / config["task"]).glob("*/*/*.jpg"))[:12]
    net, run = load_run(trained_run, mx.cpu())
    threaded = module.predict_views(net, images, view=run.view, ctx=mx.cpu(), tta="flip", batch_size=4)
    monkeypatch.setattr(module, "decode_threads", lambda images, per_step: 0)
    inline = module.predict_views(net, images, view=run.view, ctx=mx.cpu(), tta="flip", batch_size=4)
    np.testing.assert_array_equal(threaded, inline)
    monkeypatch.undo()
    bad = [tmp_path / "a.jpg", tmp_path / "b.jpg"]
    for path in bad:
        path.write_bytes(b"not an image")
    with pytest.raises(ImageDecodeError) as err:
        module.predict_views(net, [images[0], bad[0], *images[1:6], bad[1]], view=run.view, ctx=mx.cpu(),
                             tta="flip", batch_size=4)
    assert [p for p, _ in err.value.failures] == [str(b) for b in bad]
