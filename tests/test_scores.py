"""Scoring submission files end to end against hand-computed figures, and per-class reports on disk."""

import json

import numpy as np
import pandas as pd
import pytest

from fashionai.cli import main
from fashionai.core.annotations import AnnotationError
from fashionai.scoring import scores, tables

SKIRT, COLLAR = "skirt_length_labels", "collar_design_labels"
# skirt: the metric text's worked example padded to 6 classes (AP 17/24, BasicPrecision 2/3);
# collar: two correct rows (AP 1, BasicPrecision 1).
ANSWERS = [
    (f"Images/{SKIRT}/a.jpg", SKIRT, "ynnnnn"),
    (f"Images/{SKIRT}/b.jpg", SKIRT, "ynnnnn"),
    (f"Images/{SKIRT}/c.jpg", SKIRT, "ynnnnn"),
    (f"Images/{SKIRT}/d.jpg", SKIRT, "ymnnnn"),
    (f"Images/{COLLAR}/e.jpg", COLLAR, "nnynn"),
    (f"Images/{COLLAR}/f.jpg", COLLAR, "nmnny"),
]
PROBS = {
    "a": "0.90000000;0.10000000;0.00000000;0.00000000;0.00000000;0.00000000",
    "b": "0.20000000;0.80000000;0.00000000;0.00000000;0.00000000;0.00000000",
    "c": "0.70000000;0.30000000;0.00000000;0.00000000;0.00000000;0.00000000",
    "d": "0.40000000;0.60000000;0.00000000;0.00000000;0.00000000;0.00000000",
    "e": "0.10000000;0.10000000;0.60000000;0.10000000;0.10000000",
    "f": "0.10000000;0.20000000;0.10000000;0.10000000;0.50000000",
}


def submission_lines():
    return [f"{image},{task},{PROBS[image[-5]]}" for image, task, _ in ANSWERS]


@pytest.fixture
def answers(tmp_path):
    path = tmp_path / "answers.csv"
    path.write_text("".join(f"{i},{t},{v}\r\n" for i, t, v in ANSWERS), encoding="utf-8-sig")
    return path


def write(tmp_path, lines, name="submission.csv"):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def test_score_submission_matches_hand_computed(tmp_path, answers):
    lines = submission_lines()
    sub = write(tmp_path, lines[::-1])  # another order: rows are matched by (image, task)
    report = scores.score_submission(sub, answers)
    by_task = {s.task: s for s in report.tasks}
    assert [s.task for s in report.tasks] == [SKIRT, COLLAR]
    assert by_task[SKIRT].rows == 4 and by_task[SKIRT].ap == pytest.approx(17 / 24)
    assert by_task[SKIRT].basic_precision == pytest.approx(2 / 3)
    assert by_task[COLLAR].ap == 1.0 and by_task[COLLAR].basic_precision == 1.0
    assert report.map == pytest.approx((17 / 24 + 1) / 2)
    assert report.basic_precision == pytest.approx((2 / 3 + 1) / 2)
    assert json.loads(json.dumps(report.to_dict()))["map"] == pytest.approx(report.map)


@pytest.mark.parametrize("edit,where,match", [
    (lambda ls: ls[:-1], "answers.csv:6", "has no row"),
    (lambda ls: ls + [f"Images/{COLLAR}/zz.jpg,{COLLAR},{PROBS['e']}"], "submission.csv:7", "not in the answers"),
    (lambda ls: ls + [ls[0]], "submission.csv:7", "repeats line 1"),
    (lambda ls: [ls[0].replace(";0.00000000", "", 1)] + ls[1:], "submission.csv:1", "5 probabilities"),
    (lambda ls: ls[:1] + [ls[1].replace("0.80000000", "abc")] + ls[2:], "submission.csv:2", "not a number"),
    (lambda ls: ls[:2] + [ls[2].replace("0.70000000", "1.70000000")] + ls[3:], "submission.csv:3", r"\[0, 1\]"),
    (lambda ls: ls[:3] + [ls[3].rsplit(",", 1)[0]] + ls[4:], "submission.csv:4", "expected 3 columns"),
])
def test_bad_submission_names_file_and_line(tmp_path, answers, edit, where, match):
    sub = write(tmp_path, edit(submission_lines()))
    with pytest.raises(AnnotationError, match=match) as err:
        scores.score_submission(sub, answers)
    assert where in str(err.value)


def test_repeated_answer_row_is_an_error(tmp_path):
    image, task, label = ANSWERS[0]
    answers = write(tmp_path, [f"{image},{task},{label}"] * 2, "answers.csv")
    with pytest.raises(AnnotationError, match="answers.csv:2: .* repeats line 1"):
        scores.score_submission(write(tmp_path, submission_lines()[:1]), answers)


def test_cli_scores_a_submission(tmp_path, answers, capsys):
    sub = write(tmp_path, submission_lines())
    assert main(["evaluate", "--submission", str(sub), "--answers", str(answers)]) == 0
    out = capsys.readouterr().out
    assert "official FashionAI mAP" in out
    assert f"{(17 / 24 + 1) / 2:.4f}" in out and "0.7083" in out


def test_cli_bad_input_exits_non_zero(tmp_path, answers):
    sub = write(tmp_path, submission_lines()[:-1])
    assert main(["evaluate", "--submission", str(sub), "--answers", str(answers)]) == 2
    assert main(["evaluate", "--submission", str(sub)]) == 2
    assert main(["evaluate", "--submission", str(tmp_path / "nope.csv"), "--answers", str(answers)]) == 2


PRED_PROBS = np.array([[0.6, 0.3, 0.1], [0.5, 0.2, 0.3], [0.2, 0.3, 0.5], [0.1, 0.7, 0.2]])
PRED_LABELS = ["ynn", "nny", "ynm", "nyn"]  # argmax hits y, n, m, y
NAMES = ("Invisible", "Shirt Collar", "Peter Pan")


def test_evaluate_predictions_and_save_report(tmp_path):
    report = scores.evaluate_predictions(PRED_PROBS, PRED_LABELS, NAMES)
    assert report["rows"] == 4
    # p_max .7 y, .6 y, .5 n (row 1), .5 m (row 2): thresholds .7 -> 1, .6 -> 1, .5 -> 2/3
    assert report["official_ap"] == pytest.approx((1 + 1 + 2 / 3) / 3)
    assert report["basic_precision"] == pytest.approx(2 / 3)
    assert report["accuracy"] == pytest.approx(2 / 4)  # plain accuracy counts the `m` hit wrong
    assert report["ranking_ap"] == pytest.approx((1 + 1 / 2 + 1 / 3 + 1) / 4)
    assert report["confusion"] == [[1, 0, 1], [0, 1, 0], [1, 0, 0]]
    assert [c["support"] for c in report["classes"]] == [2, 1, 1]

    paths = tables.save_report({"task": "collar_design_labels", **report}, tmp_path / "run", "eval_val")
    table = pd.read_csv(paths["csv"])
    assert list(table["class"]) == list(NAMES)
    assert table["precision"].tolist() == pytest.approx([0.5, 1.0, 0.0])
    assert json.loads(paths["json"].read_text())["official_ap"] == pytest.approx(report["official_ap"])
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [
        "eval_val.csv", "eval_val.json", "eval_val_confusion.png"]  # no temp files left


def test_scoring_reads_numbers_and_a_bom_as_check_submission_does(tmp_path, answers):
    """score_submission reads submissions too: other scripts' digits are not numbers, a BOM is named."""
    arabic = "".join(chr(0x0660 + int(c)) if c.isdigit() else c for c in "0.80000000")
    lines = submission_lines()
    sub = write(tmp_path, lines[:1] + [lines[1].replace("0.80000000", arabic)] + lines[2:])
    with pytest.raises(AnnotationError, match=r"submission.csv:2: \[number\] not a plain number .*ARABIC-INDIC DIGIT"):
        scores.score_submission(sub, answers)
    sub.write_bytes(b"\xef\xbb\xbf" + ("\n".join(lines) + "\n").encode())
    with pytest.raises(AnnotationError, match=r"submission.csv:1: \[bom\] the file starts with a UTF-8 byte order mark"):
        scores.score_submission(sub, answers)
    assert main(["evaluate", "--submission", str(sub), "--answers", str(answers)]) == 2


@pytest.mark.parametrize("edit, rule", [
    (lambda ls: ls[:2] + [""] + ls[2:], "3: [blank-line]"),
    (lambda ls: ls[:1] + [" " + ls[1]] + ls[2:], "2: [answers]"),  # a padded image name is another image
    (lambda ls: ls[:1] + ['"' + ls[1].replace(",", '","') + '"'] + ls[2:], "2: [answers]"),  # quoted fields
    (lambda ls: ls[:1] + [ls[1].replace("0.80000000", "8e-01")] + ls[2:], "2: [fixed-point]"),
    (lambda ls: ls[:1] + [ls[1].replace("0.80000000", "0.90000000")] + ls[2:], "2: [sum-to-one]"),
])
def test_scoring_refuses_what_check_submission_refuses(tmp_path, answers, edit, rule):
    """One parser of one format: evaluate --submission applies check-submission's line rules."""
    sub = write(tmp_path, edit(submission_lines()))
    with pytest.raises(AnnotationError) as err:
        scores.score_submission(sub, answers)
    assert f"submission.csv:{rule}" in str(err.value)
