"""The run directory: resume trains the missing epochs once, keeps the best and the LR schedule,
refuses to change the architecture; a run folder holds one run, whichever command writes it; a
checkpoint is one consistent set, committed after every epoch; a killed run never blocks its name."""

import json

import mxnet as mx
import pytest
from conftest import TASK, TINY, best_epoch
from conftest import read_checkpoint_json as _checkpoint

from fashionai.core import io
from fashionai.training import checkpoint, rundir
from fashionai.training.config import TrainConfig, check_config
from fashionai.training.fit import fit
from fashionai.training.rundir import check_free, read_metrics

ONE_EPOCH = {**TINY, "warmup_epochs": 0}
RUN_FILES = ("config.json", "train.log", "metrics.csv", "best.params", "last.params", "last.states",
             "checkpoint.json", "curves.png")


# --- resume -------------------------------------------------------------------------------------
def test_resume_trains_the_missing_epochs_once_and_keeps_the_best(resumed):
    """A resumed run must end like one run: each epoch logged once, the best score carried over."""
    _, part, before = resumed
    assert before["epoch"] == 2
    rows = read_metrics(part)
    assert [r["epoch"] for r in rows] == [0, 1, 2, 3]
    state = _checkpoint(part)
    assert state["epoch"] == 4
    maps = [r["val_map"] for r in rows]
    assert state["best_epoch"] == best_epoch(rows) and state["best_score"] == max(maps)
    assert state["best_score"] >= before["best_score"]  # the first part's best is not forgotten
    if state["best_epoch"] < 2:
        assert state["best_epoch"] == before["best_epoch"]
    log = (part / "train.log").read_text()
    assert "resuming" in log and log.count("[Epoch 2]") == 1 and log.count("[Epoch 0]") == 1
    assert TrainConfig.load(part / "config.json").epochs == 4
    for name in RUN_FILES:
        assert (part / name).is_file(), name


def test_resume_with_more_epochs_continues_the_lr_schedule(resumed):
    """Raising --epochs on a resume must follow the longer run's schedule, not the old one's tail."""
    full, part, _ = resumed
    full_lr = [r["lr"] for r in read_metrics(full)]
    part_lr = [r["lr"] for r in read_metrics(part)]
    assert full_lr[2] > 0  # cosine over 4 epochs: still decaying at epoch 2
    assert part_lr[2:] == pytest.approx(full_lr[2:], rel=1e-6, abs=1e-9)


def test_resume_refuses_to_change_the_architecture(resumed, prepared_data):
    """Weights of one model / input size cannot continue as another: refused before anything is written."""
    _, part, _ = resumed
    saved = (part / "config.json").read_text()
    base = TrainConfig.load(part / "config.json")
    for change in ({"model": "resnet18_v1b"}, {"data_shape": 48}, {"crop_ratio": base.crop_ratio / 2}):
        with pytest.raises(ValueError, match="cannot change"):
            fit(base.replace(resume=str(part), **change))
    assert (part / "config.json").read_text() == saved


def test_a_new_run_refuses_a_used_run_directory(resumed):
    """Two runs with one --name must not mix their files."""
    full, _, _ = resumed
    config = TrainConfig.load(full / "config.json")
    with pytest.raises(FileExistsError, match="--resume"):
        fit(config)


# --- one run per folder -------------------------------------------------------------------------
def _fake_run(folder, *names):
    folder.mkdir(parents=True)
    for name in names:
        (folder / name).write_text("{}")
    return folder


def test_which_folders_a_new_run_may_take(tmp_path):
    check_free(tmp_path / "missing")
    check_free(_fake_run(tmp_path / "empty"))
    check_free(_fake_run(tmp_path / "started", "config.json", "train.log"))  # killed before epoch 0 ended
    for names in (("config.json", "checkpoint.json"), ("best.params",), ("notes.txt",), ("metrics.csv",)):
        with pytest.raises(FileExistsError, match="already holds a run"):
            check_free(_fake_run(tmp_path / "_".join(names), *names))
    split = _fake_run(tmp_path / "split", "config.json", "best.params")
    (split / "multitask.json").write_text(json.dumps({"multitask_run": str(tmp_path / "mt")}))
    check_free(split, owner=tmp_path / "mt")  # the multi-task run it was split from may replace it
    with pytest.raises(FileExistsError):
        check_free(split, owner=tmp_path / "other")
    with pytest.raises(FileExistsError):
        check_free(split)


def test_a_multitask_run_checks_every_folder_it_will_split_into_before_training(prepared_data, tmp_path):
    """`train --tasks ... --name r` must not replace an existing runs/<task>/r at its end."""
    other = _fake_run(tmp_path / "collar_design_labels" / "r", "config.json", "checkpoint.json", "best.params")
    before = {p.name: p.read_text() for p in other.iterdir()}
    config = TrainConfig(tasks=f"{TASK},collar_design_labels", prepared=str(prepared_data), out=str(tmp_path),
                         name="r", epochs=1, **ONE_EPOCH)
    with pytest.raises(FileExistsError, match=str(other)):
        fit(config)
    assert {p.name: p.read_text() for p in other.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["collar_design_labels"]  # nothing trained or written


def test_a_run_killed_before_its_first_epoch_ended_does_not_block_its_name(prepared_data, tmp_path):
    config = TrainConfig(task=TASK, prepared=str(prepared_data), out=str(tmp_path), name="r", epochs=1, **ONE_EPOCH)
    started = _fake_run(tmp_path / TASK / "r", "config.json")
    (started / "train.log").write_text("the earlier attempt\n")
    assert fit(config) == started and _checkpoint(started)["epoch"] == 1
    assert (started / "train.log").read_text().startswith("the earlier attempt")  # its log is kept
    again = _fake_run(tmp_path / TASK / "again")
    rundir.save_config(check_config(config.replace(name="again")), again)  # what a killed run leaves
    assert fit(config.replace(name="again", resume=str(again))) == again  # resumed from epoch 0
    assert [r["epoch"] for r in read_metrics(again)] == [0]
    split = _fake_run(tmp_path / TASK / "split", "best.params", "last.params", "multitask.json", "metrics.csv")
    rundir.save_config(check_config(config.replace(name="split")), split)
    with pytest.raises(FileExistsError, match="cannot be resumed"):
        fit(config.replace(name="split", resume=str(split)))


@pytest.mark.parametrize("name", ["../escape", "a/b", "x\ty", ".."])
def test_a_run_name_is_one_folder_name(prepared_data, tmp_path, name):
    with pytest.raises(ValueError, match="one folder name"):
        fit(TrainConfig(task=TASK, prepared=str(prepared_data), out=str(tmp_path / "runs"), name=name, **TINY))
    assert not (tmp_path / "runs").exists() and not (tmp_path / "escape").exists()


# --- checkpoints --------------------------------------------------------------------------------
def _commits(monkeypatch):
    """Record the epoch of every checkpoint commit of the runs that follow."""
    epochs, real = [], checkpoint.commit

    def recording(run_dir, state, *args):
        epochs.append(state.epoch)
        return real(run_dir, state, *args)

    monkeypatch.setattr(rundir, "commit", recording)
    return epochs


def test_a_checkpoint_is_committed_after_every_epoch(prepared_data, tmp_path, monkeypatch):
    """Epochs of a second or more commit every time; sub-second ones at most every 10 s, but always
    the first and the last (here every TINY epoch is sub-second)."""
    config = TrainConfig(task=TASK, prepared=str(prepared_data), out=str(tmp_path), epochs=3, **TINY)
    epochs = _commits(monkeypatch)
    monkeypatch.setattr(rundir, "FAST_EPOCH_S", 0.0)  # every epoch counts as slow
    fit(config.replace(name="slow"))
    assert epochs == [1, 2, 3]
    epochs.clear()
    monkeypatch.setattr(rundir, "FAST_EPOCH_S", 1e9)
    fit(config.replace(name="fast"))
    assert epochs == [1, 3]


def test_a_kill_inside_a_commit_leaves_the_previous_checkpoint_whole(prepared_data, tmp_path, monkeypatch):
    """Killed after writing epoch 1's weights but before its checkpoint.json: the resume continues
    from epoch 0's committed set (the weights it names, by SHA-1), runs each epoch once, and the
    stable names and stray files are repaired."""
    config = TrainConfig(task=TASK, prepared=str(prepared_data), out=str(tmp_path), name="k", epochs=3, **TINY)
    monkeypatch.setattr(rundir, "FAST_EPOCH_S", 0.0)
    real = checkpoint.write_json

    def killed_at_epoch_1(path, value, *args):
        if path.name == checkpoint.CHECKPOINT and value["epoch"] == 2:
            raise KeyboardInterrupt("killed")
        return real(path, value, *args)

    monkeypatch.setattr(checkpoint, "write_json", killed_at_epoch_1)
    with pytest.raises(KeyboardInterrupt):
        fit(config)
    run = tmp_path / TASK / "k"
    committed = checkpoint.read_checkpoint(run)
    assert committed.state.epoch == 1 and committed.files["params"] == "epoch-0000.params"
    assert (run / "epoch-0001.params").is_file()  # the killed commit's weights: written, never named
    checkpoint.verify(run, committed)
    monkeypatch.setattr(checkpoint, "write_json", real)
    fit(config.replace(resume=str(run)))
    assert [r["epoch"] for r in read_metrics(run)] == [0, 1, 2]
    final = checkpoint.read_checkpoint(run)
    assert final.state.epoch == 3 and sorted(p.name for p in run.glob("epoch-*")) == [
        "epoch-0002.params", "epoch-0002.states"]
    for kind, alias in checkpoint.ALIASES.items():
        assert io.sha1_of(run / alias) == final.sha1[final.files[kind]], alias


def test_a_changed_checkpoint_file_is_refused_on_resume(prepared_data, tmp_path):
    config = TrainConfig(task=TASK, prepared=str(prepared_data), out=str(tmp_path), name="c", epochs=1, **ONE_EPOCH)
    run = fit(config)
    named = run / checkpoint.read_checkpoint(run).files["params"]
    params = mx.nd.load(str(named))
    mx.nd.save(str(named), {k: v + 1 for k, v in params.items()})
    with pytest.raises(ValueError, match="SHA-1 differs"):
        fit(config.replace(epochs=2, resume=str(run)))
    assert _checkpoint(run)["epoch"] == 1 and [r["epoch"] for r in read_metrics(run)] == [0]
