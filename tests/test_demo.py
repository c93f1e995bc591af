"""The demo wires every stage together: data -> prepare -> train -> submit -> score, rerunnable."""

import json

import pytest

from fashionai.pipeline.demo import MARKER, clear_workdir, format_demo, run_demo
from fashionai.scoring.submission import check_submission

TASKS = ["skirt_length_labels", "collar_design_labels"]


def test_demo_end_to_end_writes_a_valid_scored_submission_and_reruns(tmp_path):
    work = tmp_path / "demo"
    kw = dict(tasks=TASKS, train_per_class=6, test_per_class=2, tta="flip", members=2,
              train_overrides={"epochs": 1, "data_shape": 32, "batch_size": 8, "warmup_epochs": 0})
    result = run_demo(work, **kw)
    questions = work / "data" / "rank" / "Tests" / "question.csv"
    check_submission(result.submission, questions)  # raises if the leaderboard would reject it
    assert [s.task for s in result.report.tasks] == TASKS
    counts = json.loads((work / "data" / "demo.json").read_text())["tasks"]
    assert [s.rows for s in result.report.tasks] == [sum(counts[t]["test"]) for t in TASKS]
    assert json.loads((work / "data" / "demo.json").read_text())["params"]["style"] == "shop"
    assert 0.0 <= result.report.map <= 1.0
    assert set(result.runs) == set(TASKS) and all(len(runs) == 2 for runs in result.runs.values())
    assert all((r / "best.params").is_file() for runs in result.runs.values() for r in runs)
    # two nets per task on seeds 0 and 1, both in the submission
    assert [r.name for r in result.runs["skirt_length_labels"]] == ["demo", "demo-2"]
    assert [json.loads((r / "config.json").read_text())["seed"] for r in result.runs["skirt_length_labels"]] == [0, 1]
    text = format_demo(result)
    assert "mAP (official)" in text and "skirt_length_labels" in text
    (work / "runs" / "stale.txt").write_text("from an earlier demo")
    run_demo(work, **kw)  # a rerun replaces the previous demo's folders
    assert not (work / "runs" / "stale.txt").exists()


def test_demo_refuses_a_folder_it_did_not_make(tmp_path):
    (tmp_path / "mine.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="not made by `fashionai demo`"):
        clear_workdir(tmp_path)
    assert (tmp_path / "mine.txt").read_text() == "user data"
    clear_workdir(tmp_path / "fresh")
    assert (tmp_path / "fresh" / MARKER).is_file()


def test_demo_clears_only_its_own_folders_never_through_a_link(tmp_path):
    work, yours = tmp_path / "demo", tmp_path / "yours"
    clear_workdir(work)
    assert json.loads((work / MARKER).read_text())["made_by"] == "fashionai demo"
    yours.mkdir()
    (yours / "notes.txt").write_text("user data")
    (work / "runs").symlink_to(yours)
    with pytest.raises(FileExistsError, match="runs is a link or a file"):
        clear_workdir(work)
    assert (yours / "notes.txt").read_text() == "user data" and (work / "runs").is_symlink()
    (work / "runs").unlink()
    (work / "prepared" / "x").mkdir(parents=True)
    (work / "keep.txt").write_text("beside the demo's parts")
    clear_workdir(work)
    assert sorted(p.name for p in work.iterdir()) == [MARKER, "keep.txt"]


def test_the_summary_shows_the_weights_the_submission_uses():
    from fashionai.pipeline.demo import submitted_row

    rows = [{"epoch": 0, "val_map": 0.5, "val_loss": 1.0}, {"epoch": 1, "val_map": 0.9, "val_loss": 0.5},
            {"epoch": 2, "val_map": 0.7, "val_loss": 0.6}]
    assert submitted_row(rows, "last")["epoch"] == 2  # what `submit` loads by default
    assert submitted_row(rows, "best")["epoch"] == 1


def test_shared_nets_train_one_per_task_group_that_has_two_tasks():
    from fashionai.pipeline.demo import training_groups

    names = ["neck_design_labels", "skirt_length_labels", "collar_design_labels", "pant_length_labels",
             "coat_length_labels"]
    assert training_groups(names, shared=True) == [
        ["skirt_length_labels", "coat_length_labels", "pant_length_labels"],
        ["collar_design_labels", "neck_design_labels"]]
    assert training_groups(TASKS, shared=True) == [["skirt_length_labels"], ["collar_design_labels"]]
    assert training_groups(names[:2], shared=False) == [["skirt_length_labels"], ["neck_design_labels"]]
