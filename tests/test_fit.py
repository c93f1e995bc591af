"""fit: the model learns, 1 vs 2 devices, best/last checkpoints, early stopping, the CLI and the
scripts/train_*.sh wrappers.

The learning runs train on their own, bigger single-task demo data (100 images per skirt class, val
fraction 0.2: 480 train / 120 val images); everything that only needs real run-directory files uses
the session's tiny `prepared_data`.
"""

import math
import os
import subprocess
import sys
from pathlib import Path

import mxnet as mx
import numpy as np
import pytest

from fashionai.cli import main
from fashionai.core.metrics import official_ap
from fashionai.core.tasks import TASK_NAMES, num_classes
from fashionai.model import load_run
from fashionai.training import layout
from fashionai.training.checkpoint import FitState
from fashionai.training.config import TrainConfig
from fashionai.training.fit import fit
from fashionai.training.inputs import make_loaders
from fashionai.training.loop import validate
from fashionai.training.rundir import best_row, read_metrics

from conftest import TASK, TINY, best_epoch, first_argmax
from conftest import read_checkpoint_json as _checkpoint

ROOT = Path(__file__).resolve().parents[1]
CHANCE = 1 / num_classes(TASK)  # balanced val split: accuracy of guessing
RUN_FILES = ("config.json", "train.log", "metrics.csv", "best.params", "last.params", "last.states",
             "checkpoint.json", "curves.png")

# The learning setting, spelled out rather than taken from TrainConfig.demo (whose values may change):
# from scratch, 32 px, the scale-keeping crop (`crop`: the class is where the hem ends).
# Validated over seeds 0, 1, 2, last epoch, val acc / official mAP (chance 0.17; random scores get
# mAP 0.17 +- 0.05 on this val split, at most 0.34 in 500 draws):
#   1 device x 16:  0.67 / 0.84,  0.85 / 0.93,  0.73 / 0.89
#   2 devices x 8:  0.73 / 0.88,  0.70 / 0.88,  0.73 / 0.87
LEARN = dict(model="cifar_resnet20_v1", data_shape=32, pretrained="none", workers=0, epochs=8, optimizer="nag",
             lr=0.1, momentum=0.9, wd=1e-4, lr_mode="cosine", warmup_epochs=1, lr_steps=[], augment="crop",
             min_scale=0.9, jitter=0.0, lighting=0.0, label_smoothing=0.0, mixup=0.0, balance="none",
             head_lr_mult=1.0, patience=0, seed=0)
MIN_ACC = 2 * CHANCE  # 0.33: 40 of 120 val images, 5 standard deviations above chance's 20
MIN_MAP = 0.6
# 1 vs 2 devices: at most the spread between seeds of one setting. Re-validated after the augmentation
# draws moved to Python's random (one thread per test worker; seeds 0 / 1 / 2, last epoch, val acc /
# mAP): 1 x 16: 0.77 / 0.88, 0.83 / 0.92, 0.72 / 0.87; 2 x 8: 0.47 / 0.69, 0.79 / 0.93, 0.75 / 0.90.
# One-context minus two-context: acc +0.30 / +0.03 / -0.03, mAP +0.19 / -0.01 / -0.04 (seed 0, the
# one used, is the far draw; both of its runs are still far above chance).
ACC_TOL, MAP_TOL = 0.35, 0.25


def _revalidate(run_dir, which):
    """Val metrics of `<which>.params`, recomputed on one CPU context the way `fit` validates."""
    net, _ = load_run(run_dir, ctx=[mx.cpu()], which=which)
    config = TrainConfig.load(Path(run_dir) / "config.json")
    loaders = make_loaders(config, 1)
    return validate(net, loaders.val, [mx.cpu()], config.batch_size, loaders.val_labels)


# --- fixtures -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def learn_data(tmp_path_factory):
    """Skirt-length demo data big enough to learn from in a few epochs (~1 s to make)."""
    from fashionai.demodata.generate import make_demo_data
    from fashionai.data.prepare import prepare

    root = tmp_path_factory.mktemp("learn")
    make_demo_data(root / "data", train_per_class=100, test_per_class=1, warmup_per_class=0, min_size=64,
                   max_size=96, seed=0, tasks=[TASK])
    prepare(root / "data", root / "prepared", workers=2, val_fraction=0.2)
    return root / "prepared"


@pytest.fixture(scope="module")
def learned_one(learn_data, tmp_path_factory):
    """8 epochs on one CPU context, batch 16."""
    out = tmp_path_factory.mktemp("learned")
    return fit(TrainConfig(task=TASK, prepared=str(learn_data), out=str(out), name="one", devices="cpu",
                           batch_size=16, **LEARN))


@pytest.fixture(scope="module")
def learned_two(learn_data, tmp_path_factory):
    """The same run on two CPU contexts with batch 8 each: the same global batch of 16."""
    out = tmp_path_factory.mktemp("learned")
    return fit(TrainConfig(task=TASK, prepared=str(learn_data), out=str(out), name="two", devices="cpu:2",
                           batch_size=8, **LEARN))


# --- learning -----------------------------------------------------------------------------------
def test_the_model_learns_far_above_chance(learned_one):
    """The point of training: val accuracy and official mAP far above what guessing scores."""
    rows = read_metrics(learned_one)
    assert [r["epoch"] for r in rows] == list(range(LEARN["epochs"]))  # patience 0: no early stop
    last = rows[-1]
    config = TrainConfig.load(learned_one / "config.json")
    labels = make_loaders(config, 1).val_labels
    rng = np.random.default_rng(0)
    random_map = np.mean([official_ap(rng.random((len(labels), num_classes(TASK))), labels) for _ in range(200)])
    assert random_map < 0.3  # what random scores get on this val split (~0.17)
    assert last["val_acc"] >= MIN_ACC, rows
    assert last["val_map"] >= max(MIN_MAP, 3 * random_map), rows
    assert last["train_loss"] < 0.85 * math.log(num_classes(TASK)), rows  # it fits, not just the val split
    assert rows[0]["val_acc"] < last["val_acc"]  # learnt during the run, not at initialisation


def test_two_cpu_contexts_learn_as_well_as_one(learned_one, learned_two):
    """Data-parallel training: 2 devices x batch 8 must learn like 1 x 16 (same global batch).

    Not bit-identical: BatchNorm normalises each 8-image device slice on its own, so the runs part
    ways after the first step, like two seeds; the bar is "far above chance, and no worse than one
    context beyond the seed-to-seed spread". A broken split (labels paired with the wrong images)
    fails it. The bound is one-sided: the 8-image BatchNorm slices regularise, and here the two-context
    run scored 0.17-0.21 val accuracy *above* the one-context run (whose 2-thread reductions also
    vary from run to run: 0.58-0.63), so a two-sided bound failed on a run that learnt better.
    """
    assert "batch 8 x 2 device(s)" in (learned_two / "train.log").read_text()  # really split over 2
    one, two = read_metrics(learned_one)[-1], read_metrics(learned_two)[-1]
    assert two["val_acc"] >= MIN_ACC and two["val_map"] >= MIN_MAP, two
    assert one["val_acc"] - two["val_acc"] <= ACC_TOL, (one, two)
    assert one["val_map"] - two["val_map"] <= MAP_TOL, (one, two)
    assert len(read_metrics(learned_two)) == LEARN["epochs"]


def test_best_params_are_the_best_val_map_epoch_and_last_params_the_last(learned_one):
    """best.params is what predict/submit use: it must hold the epoch with the highest val mAP
    (ties: the lower val loss, then the later epoch), and evaluating it must reproduce that epoch's
    logged metrics; patience counts the epochs since the score last rose."""
    rows = read_metrics(learned_one)
    state = _checkpoint(learned_one)
    best = best_epoch(rows)
    assert state["best_epoch"] == best and state["best_score"] == rows[best]["val_map"]
    assert state["epoch"] == len(rows) and state["metric"] == "val_map"
    assert state["bad_epochs"] == len(rows) - 1 - first_argmax([r["val_map"] for r in rows])
    for which, epoch in (("best", best), ("last", len(rows) - 1)):
        got = _revalidate(learned_one, which)
        for key in ("val_loss", "val_acc", "val_map", "val_basic_precision"):
            assert got[key] == pytest.approx(rows[epoch][key], rel=1e-5, abs=1e-7), (which, key)
    best_p, last_p = mx.nd.load(str(learned_one / "best.params")), mx.nd.load(str(learned_one / "last.params"))
    identical = all(np.array_equal(best_p[k].asnumpy(), last_p[k].asnumpy()) for k in best_p)
    assert identical == (best == len(rows) - 1)  # two files only when the best epoch is not the last


def test_prediction_sees_the_views_training_validated_on(learned_one):
    """`predict_run` (TTA none) on the val images reproduces the val mAP that fit logged for the same
    weights: prediction cuts its views at the run's own crop ratio, not a library default."""
    from fashionai.core.tasks import class_names
    from fashionai.data.manifest import split_images
    from fashionai.inference.predict import predict_run
    from fashionai.scoring.scores import evaluate_predictions

    config = TrainConfig.of_run(learned_one)
    assert config.crop_ratio == TrainConfig().crop_ratio != 0.875  # the default, not the functions' legacy value
    images, labels = split_images(config.prepared, TASK, "val")
    probs = predict_run(learned_one, images, tta="none", devices="cpu", which="last")
    report = evaluate_predictions(probs, labels, class_names(TASK))
    assert report["official_ap"] == pytest.approx(read_metrics(learned_one)[-1]["val_map"], abs=1e-6)


def test_two_device_checkpoint_reproduces_its_logged_val_metrics(learned_two):
    """A multi-device run's logged val metrics must be those of the weights it saves (what predict uses)."""
    rows = read_metrics(learned_two)
    got = _revalidate(learned_two, "last")
    assert got["val_loss"] == pytest.approx(rows[-1]["val_loss"], rel=1e-5)

# --- early stopping -----------------------------------------------------------------------------


def test_patience_stops_after_that_many_epochs_without_a_val_map_gain(prepared_data, tmp_path, monkeypatch):
    """--patience ends a run that stopped improving; ties and undefined (NaN) scores are no gain.
    The best weights are the highest val mAP's; among equal scores the lower val loss's (a tie
    with a lower loss becomes the best weights but is still no gain), among equal both the later's.

    The val figures are scripted (real training and validation underneath) so that the stopping epoch
    is known exactly: NaN, 0.5 (best), 0.5 with a lower loss (best weights, 1 bad), 0.4 (2 bad: stop),
    and 0.9 never reached.
    """
    scores = iter([(math.nan, 3.0), (0.5, 2.0), (0.5, 1.5), (0.4, 1.0), (0.9, 0.5), (0.9, 0.5)])
    real = layout.validate

    def scripted(*args, **kwargs):
        score, loss = next(scores)
        return {**real(*args, **kwargs), "val_map": score, "val_loss": loss}

    monkeypatch.setattr(layout, "validate", scripted)
    run = fit(TrainConfig(task=TASK, prepared=str(prepared_data), out=str(tmp_path), name="stop", epochs=6,
                          patience=2, **TINY))
    rows = read_metrics(run)
    assert [r["epoch"] for r in rows] == [0, 1, 2, 3]
    assert math.isnan(rows[0]["val_map"])
    state = {k: v for k, v in _checkpoint(run).items() if k not in ("files", "sha1")}
    assert state == {"epoch": 4, "metric": "val_map", "best_score": 0.5, "best_epoch": 2, "bad_epochs": 2,
                     "best_loss": 1.5}
    assert _checkpoint(run)["files"]["best"] == "best-0002.params" and best_row(rows)["epoch"] == 2
    log = (run / "train.log").read_text()
    assert "early stop" in log and "[Epoch 4]" not in log
    best, last = mx.nd.load(str(run / "best.params")), mx.nd.load(str(run / "last.params"))
    assert any(not np.array_equal(best[k].asnumpy(), last[k].asnumpy()) for k in best)  # epoch 2's, kept


def test_the_best_epoch_rule():
    """Highest score; ties: lower val loss, then the later epoch; NaN never best; patience on rises only."""
    state = FitState()
    assert not state.record(0, math.nan, 1.0) and state.best_epoch == -1
    assert state.record(1, 0.7, 2.0) and state.record(2, 0.7, 2.0) and state.best_epoch == 2
    assert not state.record(3, 0.7, 2.5) and state.best_epoch == 2 and state.bad_epochs == 2
    assert state.record(4, 0.8, 9.0) and (state.best_epoch, state.bad_epochs) == (4, 0)
    rows = [{"epoch": e, "val_map": m, "val_loss": v} for e, m, v in
            [(0, math.nan, 0.1), (1, 0.7, 2.0), (2, 0.7, 2.0), (3, 0.7, 2.5)]]
    assert best_row(rows)["epoch"] == 2


# --- CLI and scripts ----------------------------------------------------------------------------


def _tiny_flags(prepared, out, name):
    return ["--preset", "demo", "--prepared", str(prepared), "--out", str(out), "--name", name, "--epochs", "1",
            "--data-shape", "32", "--batch-size", "16", "--model", "cifar_resnet20_v1", "--devices", "cpu"]


def test_cli_train_writes_a_complete_run_directory(prepared_data, tmp_path, capsys):
    """`fashionai train` end to end: exit 0 and every file the later stages read."""
    assert main(["train", "--task", TASK, *_tiny_flags(prepared_data, tmp_path, "cli")]) == 0
    run = tmp_path / TASK / "cli"
    for name in RUN_FILES:
        assert (run / name).is_file(), name
    log = (run / "train.log").read_text()
    assert "[Epoch 0] train: loss=" in log and "img/s" in log and "mAP=" in log
    assert len(read_metrics(run)) == 1
    assert f"{run}: best val mAP" in capsys.readouterr().out
    assert main(["train", "--task", "no_such_task", "--prepared", str(prepared_data), "--out", str(tmp_path)]) == 2


def _script(name, *args, **env):
    return subprocess.run([str(ROOT / "scripts" / name), *map(str, args)], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "PY": sys.executable, **env}, cwd=str(Path.home()))


def test_train_task_sh_trains_the_given_task(prepared_data, tmp_path):
    """scripts/train_task.sh TASK [flags] is `fashionai train --task TASK [flags]` from anywhere."""
    done = _script("train_task.sh", TASK, *_tiny_flags(prepared_data, tmp_path, "sh"))
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / TASK / "sh"
    assert (run / "checkpoint.json").is_file() and (run / "best.params").is_file()
    assert f"{run}: best val mAP" in done.stdout
    usage = _script("train_task.sh")
    assert usage.returncode == 2 and "usage: scripts/train_task.sh TASK" in usage.stderr


def test_train_all_sh_stops_at_the_first_failing_task_and_names_it(tmp_path):
    """A broken flag must stop the 8-task loop at once, saying which task failed."""
    done = _script("train_all.sh", "--no-such-flag", "--out", tmp_path, NAME="bogus")
    assert done.returncode != 0
    assert f"train_all: {TASK_NAMES[0]} failed" in done.stderr and "--no-such-flag" in done.stderr
    assert TASK_NAMES[1] not in done.stderr  # stopped: the second task never started
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_train_all_sh_trains_the_tasks_in_turn_and_summarises_their_best_map(prepared_data, tmp_path):
    """The whole loop under one name, then one summary line per task from checkpoint.json. Three tasks
    (TASKS), the last given first, stand for the 8 of the default list: each task is one process of
    ~6 s here; that the default list is all 8 in order is the stop-at-first-failure test's."""
    tasks = [TASK_NAMES[7], TASK_NAMES[0], TASK_NAMES[3]]
    flags = _tiny_flags(prepared_data, tmp_path, "ignored")
    flags = flags[:flags.index("--name")] + flags[flags.index("--name") + 2:]  # the script names the runs
    done = _script("train_all.sh", *flags, "--batch-size", "8", NAME="all", TASKS=" ".join(tasks))
    assert done.returncode == 0, done.stderr[-3000:]
    assert [line.split(": ")[1].split()[0] for line in done.stderr.splitlines()
            if line.startswith("train_all: ") and "(run name all)" in line] == tasks
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(tasks)
    lines = done.stdout.split("train_all: best val mAP")[1].splitlines()[1:]  # the summary
    assert [line.split()[0] for line in lines] == tasks, lines
    for task in tasks:
        run = tmp_path / task / "all"
        state = _checkpoint(run)
        line = next(line for line in lines if line.startswith(task + " "))
        assert str(run) in line and f"at epoch {state['best_epoch']:>3d}" in line
        if not math.isnan(state["best_score"]):
            assert f"{state['best_score']:.4f}" in line


class _AlwaysOverflow:
    """AMP's loss scaler as Trainer.update sees it, reporting an overflow at every step (what float16
    does when a step overflows): the update must be skipped."""

    loss_scale = 1.0

    def has_overflow(self, params):
        return True


def test_an_overflowing_amp_step_changes_no_weight_on_two_devices():
    """Trainer settings of a several-device run (kvstore device): AMP's overflow check must come
    before the update. With MXNet's default (update_on_kvstore=True for `device`) the update ran
    inside the kvstore push and the check could only skip a step already taken."""
    from fashionai.training.fit import make_trainer

    ctx = [mx.cpu(0), mx.cpu(1)]
    net = _TinyNet()
    net.initialize(mx.init.Xavier(), ctx=ctx)
    config = TrainConfig(task=TASK, optimizer="sgd", lr=0.5, lr_mode="step", lr_steps=[], warmup_epochs=0,
                         epochs=1, head_lr_mult=1.0)
    trainer = make_trainer(net, config, iters_per_epoch=1, num_devices=2)
    trainer._amp_loss_scaler = _AlwaysOverflow()  # what amp.init_trainer attaches
    trainer._amp_original_scale = trainer._scale
    before = {name: p.data(ctx[0]).asnumpy().copy() for name, p in net.collect_params().items()}
    xs = gluon_split(mx.nd.ones((4, 3)), ctx)
    with mx.autograd.record():
        losses = [net(x).sum() for x in xs]
    mx.autograd.backward(losses)
    trainer.step(4)
    for name, p in net.collect_params().items():
        for c in ctx:
            np.testing.assert_array_equal(p.data(c).asnumpy(), before[name], err_msg=f"{name} on {c}")


def gluon_split(batch, ctx):
    return mx.gluon.utils.split_and_load(batch, ctx)


class _TinyNet(mx.gluon.HybridBlock):
    """Features and an `output` head, named as the model zoo's nets are (make_trainer finds the head)."""

    def __init__(self):
        super().__init__()
        self.features = mx.gluon.nn.Dense(4, in_units=3)
        self.output = mx.gluon.nn.Dense(2, in_units=4)

    def hybrid_forward(self, F, x):
        return self.output(self.features(x))


def test_an_epoch_far_slower_than_the_others_is_called_stalled():
    from fashionai.training.fit import stall_note

    assert stall_note([2.0, 2.0, 3.0, 19.0]) is None  # 19 < 10 x median 2.0
    assert stall_note([2.0, 30.0]) is None  # too few epochs to tell
    note = stall_note([2.0, 2.0, 3.0, 698.0])
    assert note.startswith("took 698 s, 349x the median of the epochs before it: a step stalled")


def test_validation_launches_every_device_before_reading_any(monkeypatch):
    """Several GPUs run side by side only when each one's forward is queued before the first result
    is read back (asnumpy waits for it): the order of events per batch must be forward, forward,
    read, read."""
    from fashionai.training.loop import predict_loader

    ctx = [mx.cpu(0), mx.cpu(1)]
    net = _TinyNet()
    net.initialize(mx.init.Xavier(), ctx=ctx)
    events = []
    real_forward, real_asnumpy = _TinyNet.forward, mx.nd.NDArray.asnumpy
    monkeypatch.setattr(_TinyNet, "forward", lambda self, x: events.append("forward") or real_forward(self, x))
    monkeypatch.setattr(mx.nd.NDArray, "asnumpy",
                        lambda self: events.append(f"read {self.shape[-1]}") or real_asnumpy(self))
    loader = [(mx.nd.ones((4, 3)), mx.nd.array([0, 1, 0, 1]))]
    probs, labels = predict_loader(net, loader, ctx, step=4)
    assert probs.shape == (4, 2) and labels.tolist() == [0, 1, 0, 1]
    outputs = [e for e in events if e in ("forward", "read 2")]  # reads of the (N, 2) outputs
    assert outputs == ["forward", "forward", "read 2", "read 2"]


def test_the_batch_rule_is_said_where_there_are_several_devices():
    from fashionai.training.fit import batch_rule

    config = TrainConfig(task=TASK, batch_size=32, lr=0.01)
    assert batch_rule(config, 1, 1) is None
    assert batch_rule(config, 4, 2) == (
        "batch rule: 32 per device x 4 device(s) x 2 worker(s) = 256 images per step, 8x fewer steps per epoch "
        "than on one device; the LR is used as given (0.01): for one device's schedule per image, scale it "
        "linearly (--lr 0.08, with --warmup-epochs)")
