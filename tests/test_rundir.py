"""The run directory: resume trains the missing epochs once, keeps the best and the LR schedule,
refuses to change the architecture; a run name is never reused."""


import pytest

from fashionai.training.config import TrainConfig
from fashionai.training.fit import fit
from fashionai.training.rundir import read_metrics

from conftest import first_argmax
from conftest import read_checkpoint_json as _checkpoint

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
    assert state["best_epoch"] == first_argmax(maps) and state["best_score"] == max(maps)
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
    for change in ({"model": "resnet18_v1b"}, {"data_shape": 48}):
        with pytest.raises(ValueError, match="cannot change"):
            fit(base.replace(resume=str(part), **change))
    assert (part / "config.json").read_text() == saved


def test_a_new_run_refuses_a_used_run_directory(resumed):
    """Two runs with one --name must not mix their files."""
    full, _, _ = resumed
    config = TrainConfig.load(full / "config.json")
    with pytest.raises(FileExistsError, match="--resume"):
        fit(config)
