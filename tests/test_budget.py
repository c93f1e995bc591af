"""--budget-seconds: the epochs that fit a time budget, measured on the machine at hand."""

from __future__ import annotations

import json

from conftest import TASK, TINY
from fashionai.training.budget import budget_epochs
from fashionai.training.config import TrainConfig
from fashionai.training.fit import fit
from fashionai.training.rundir import read_metrics


def test_budget_epochs_are_the_whole_epochs_that_fit():
    # an epoch: 30 x 0.5 s training + 5 x 0.1 s validation = 15.5 s; 100 s hold 6 of them
    assert budget_epochs(100.0, 0.5, 0.1, 30, 5, most=40) == 6
    assert budget_epochs(100.0, 0.5, 0.1, 30, 5, most=4) == 4  # the budget only shortens a schedule
    assert budget_epochs(1.0, 0.5, 0.1, 30, 5, most=40) == 1  # at least one epoch


def test_a_budgeted_run_records_the_epochs_it_chose_and_trains_them(prepared_data, tmp_path):
    config = TrainConfig(task=TASK, prepared=str(prepared_data), out=str(tmp_path), name="b", epochs=50,
                         budget_s=2.0, **TINY)
    run = fit(config)
    saved = json.loads((run / "config.json").read_text())
    assert 1 <= saved["epochs"] < 50 and saved["budget_s"] == 2.0
    assert [row["epoch"] for row in read_metrics(run)] == list(range(saved["epochs"]))
    assert saved["warmup_epochs"] < saved["epochs"]
