"""train --tensorboard: every number of metrics.csv as TensorBoard scalars in <run>/tensorboard/,
one point per epoch, a resumed run adding to the same folder."""

import struct
from pathlib import Path

import pytest
from conftest import TASK, TINY
from tensorboardX.proto.event_pb2 import Event

from fashionai.cli.train_command import TRAIN_HELP
from fashionai.training.config import TrainConfig, check_config
from fashionai.training.fit import fit
from fashionai.training.rundir import BOARD_DIR, board_scalars, read_metrics


def read_events(folder: Path) -> list[Event]:
    """Every event of every event file in `folder` (TFRecord framing: length, its CRC, data, its CRC)."""
    events = []
    for path in sorted(folder.iterdir()):
        data, at = path.read_bytes(), 0
        while at < len(data):
            (length,) = struct.unpack("<Q", data[at:at + 8])
            events.append(Event.FromString(data[at + 12:at + 12 + length]))
            at += 12 + length + 4
    return events


def logged(folder: Path) -> dict[str, dict[int, float]]:
    """{tag: {step: value}} of the scalars written to `folder`."""
    out: dict[str, dict[int, float]] = {}
    for event in read_events(folder):
        for value in event.summary.value:
            out.setdefault(value.tag, {})[event.step] = value.simple_value
    return out


def test_scalars_are_the_rows_numbers_but_the_epoch():
    assert board_scalars({"epoch": 3, "val_map": 0.5, "lr": 1, "note": "x", "flag": True}) == {"val_map": 0.5, "lr": 1.0}


def test_tensorboard_logs_every_epoch_of_metrics_csv_and_a_resume_appends(prepared_data, tmp_path):
    """Two epochs, then a resume to three: one point per epoch and column, equal to metrics.csv's."""
    assert "tensorboard" in TRAIN_HELP and TrainConfig().tensorboard is False  # off unless asked for
    config = check_config(TrainConfig.demo(TASK, prepared_data, tmp_path, **{**TINY, "warmup_epochs": 0},
                                           epochs=2, name="tb", tensorboard=True))
    run = fit(config)
    assert len(list((run / BOARD_DIR).iterdir())) == 1
    fit(config.replace(epochs=3, resume=str(run)))
    assert len(list((run / BOARD_DIR).iterdir())) == 2  # the resume's own file, in the same folder
    rows, tags = read_metrics(run), logged(run / BOARD_DIR)
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    assert set(tags) == set(rows[0]) - {"epoch"}
    for tag, points in tags.items():
        assert points == {r["epoch"]: pytest.approx(r[tag], rel=1e-6, nan_ok=True) for r in rows}, tag
    assert [tags["val_map"][r["epoch"]] for r in rows] == pytest.approx([r["val_map"] for r in rows], rel=1e-6)
