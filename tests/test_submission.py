"""Submission rows, the checker (every rule against a hand-broken file), atomic writes, saved probs."""

import numpy as np
import pytest

from fashionai.cli import main
from fashionai.core.annotations import AnnotationError, read_questions
from fashionai.scoring import probs as saved
from fashionai.scoring import submission as sub

# Deliberately not grouped by task, so order preservation is tested across tasks.
QUESTIONS = [
    ("Images/skirt_length_labels/a.jpg", "skirt_length_labels"),
    ("Images/collar_design_labels/b.jpg", "collar_design_labels"),
    ("Images/skirt_length_labels/c.jpg", "skirt_length_labels"),
    ("Images/collar_design_labels/d.jpg", "collar_design_labels"),
]
SKIRT = np.array([[0.1, 0.2, 0.3, 0.1, 0.2, 0.1], [0, 0, 0, 0, 0, 1.0]])
COLLAR = np.array([[0.5, 0.5, 0, 0, 0], [0.2, 0.2, 0.2, 0.2, 0.2]])
GOOD = [
    "Images/skirt_length_labels/a.jpg,skirt_length_labels,"
    "0.10000000;0.20000000;0.30000000;0.10000000;0.20000000;0.10000000",
    "Images/collar_design_labels/b.jpg,collar_design_labels,0.50000000;0.50000000;0.00000000;0.00000000;0.00000000",
    "Images/skirt_length_labels/c.jpg,skirt_length_labels,"
    "0.00000000;0.00000000;0.00000000;0.00000000;0.00000000;1.00000000",
    "Images/collar_design_labels/d.jpg,collar_design_labels,0.20000000;0.20000000;0.20000000;0.20000000;0.20000000",
]


@pytest.fixture()
def questions(tmp_path):
    path = tmp_path / "question.csv"
    path.write_text("".join(f"{image},{task},?\r\n" for image, task in QUESTIONS))
    return path


def test_build_submission_keeps_question_order_and_format(questions):
    probs = {"skirt_length_labels": SKIRT, "collar_design_labels": COLLAR}
    assert sub.build_submission(read_questions(questions), probs) == GOOD


def test_rows_are_renormalised_before_formatting(questions):
    scaled = {"skirt_length_labels": SKIRT * 3, "collar_design_labels": COLLAR * 0.5}
    assert sub.build_submission(read_questions(questions), scaled) == GOOD
    thirds = sub.format_row("x.jpg", "neck_design_labels", sub.normalise([[1, 1, 1, 0, 0]], "neck_design_labels")[0])
    assert thirds == "x.jpg,neck_design_labels,0.33333333;0.33333333;0.33333333;0.00000000;0.00000000"


def test_build_submission_errors(questions):
    qs = read_questions(questions)
    with pytest.raises(ValueError, match="collar_design_labels"):
        sub.build_submission(qs, {"skirt_length_labels": SKIRT})
    with pytest.raises(ValueError, match="1 predictions for 2 question rows"):
        sub.build_submission(qs, {"skirt_length_labels": SKIRT[:1], "collar_design_labels": COLLAR})
    with pytest.raises(ValueError, match=r"expected \(N, 5\)"):
        sub.build_submission(qs, {"skirt_length_labels": SKIRT, "collar_design_labels": SKIRT})
    with pytest.raises(ValueError, match="not a probability vector"):
        sub.build_submission(qs, {"skirt_length_labels": SKIRT * np.nan, "collar_design_labels": COLLAR})


def test_round_trip_through_the_checker(questions, tmp_path):
    out = sub.write_submission(GOOD, tmp_path / "out" / "submission.csv", questions)
    assert out.read_bytes() == ("\n".join(GOOD) + "\n").encode()
    sub.check_submission(out, questions)  # does not raise
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["submission.csv"]  # no temp left


def test_write_task_files(tmp_path):
    paths = sub.write_task_files(GOOD, tmp_path)
    assert [p.name for p in paths] == ["skirt_length_labels.csv", "collar_design_labels.csv"]
    assert paths[1].read_text() == f"{GOOD[1]}\n{GOOD[3]}\n"


def _replace(line, old, new):
    def edit(rows):
        rows = list(rows)
        rows[line - 1] = rows[line - 1].replace(old, new, 1)
        return rows
    return edit


BROKEN = {
    "header": (lambda r: ["ImageName,AttrKey,AttrValues"] + r, 1),
    "blank-line": (lambda r: r[:2] + [""] + r[2:], 3),
    "columns": (_replace(2, ",0.5", ";0.5"), 2),
    "duplicate": (lambda r: r[:1] + r[:1] + r[2:], 2),
    "order-path": (_replace(3, "c.jpg", "z.jpg"), 3),
    "order-swapped": (lambda r: [r[0], r[2], r[1], r[3]], 2),
    "class-count": (_replace(4, ";0.20000000", "", ), 4),
    "number": (_replace(2, "0.50000000;0.50000000", "0.50000000;half"), 2),
    "finite": (_replace(2, "0.50000000;0.50000000", "nan;0.50000000"), 2),
    "range": (_replace(3, "0.00000000;1.00000000", "-0.50000000;1.50000000"), 3),
    "fixed-point": (_replace(1, "0.10000000;0.20000000;0.30000000", "1e-01;0.20000000;0.30000000"), 1),
    "sum-to-one": (_replace(4, "0.20000000;0.20000000;0.20000000", "0.30000000;0.20000000;0.20000000"), 4),
    "row-count-missing": (lambda r: r[:3], 4),
    "row-count-extra": (lambda r: r + ["Images/skirt_length_labels/e.jpg,skirt_length_labels,1;0;0;0;0;0"], 5),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_every_rule_rejects_a_hand_broken_file(case, questions, tmp_path):
    edit, line = BROKEN[case]
    rows = edit(GOOD)
    rule = case.removesuffix("-path").removesuffix("-swapped").removesuffix("-missing").removesuffix("-extra")
    broken = tmp_path / "broken.csv"
    broken.write_text("".join(f"{r}\n" for r in rows))
    with pytest.raises(sub.SubmissionError) as err:
        sub.check_submission(broken, questions)
    assert (err.value.rule, err.value.line) == (rule, line)
    assert f"broken.csv:{line}: [{rule}]" in str(err.value)
    target = tmp_path / "submission.csv"
    with pytest.raises(sub.SubmissionError):
        sub.write_submission(rows, target, questions)
    assert not target.exists()
    assert main(["check-submission", str(broken), "--questions", str(questions)]) != 0


def test_failed_write_keeps_the_previous_file(questions, tmp_path):
    target = sub.write_submission(GOOD, tmp_path / "submission.csv", questions)
    with pytest.raises(sub.SubmissionError):
        sub.write_submission(GOOD[:3], target, questions)
    assert target.read_text() == "\n".join(GOOD) + "\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_sum_tolerance_and_crlf(questions, tmp_path):
    near = _replace(4, "0.20000000;0.20000000;0.20000000", "0.20005000;0.20000000;0.20000000")(GOOD)
    sub.check_submission(near, questions)  # off by 5e-5 <= 1e-4
    far = _replace(4, "0.20000000;0.20000000;0.20000000", "0.20020000;0.20000000;0.20000000")(GOOD)
    with pytest.raises(sub.SubmissionError, match="sum-to-one"):
        sub.check_submission(far, questions)
    crlf = tmp_path / "crlf.csv"
    crlf.write_bytes("".join(f"{r}\r\n" for r in GOOD).encode())
    sub.check_submission(crlf, questions)


def test_check_submission_cli_ok(questions, tmp_path, capsys):
    good = sub.write_submission(GOOD, tmp_path / "s.csv", questions)
    assert main(["check-submission", str(good), "--questions", str(questions)]) == 0
    assert "4 rows" in capsys.readouterr().out


def test_saved_probs_round_trip_align_and_ensemble(tmp_path):
    images = ["x.jpg", "y.jpg"]
    path = saved.save_probs(tmp_path / "p" / "skirt_run1", "skirt_length_labels", images, SKIRT, run="r1")
    assert path.name == "skirt_run1.npy" and path.with_suffix(".json").is_file()
    task, got_images, probs = saved.load_probs(path)
    assert (task, got_images) == ("skirt_length_labels", images)
    np.testing.assert_allclose(probs, SKIRT, atol=1e-7)
    np.testing.assert_array_equal(saved.align(images, probs, ["y.jpg", "x.jpg"]), probs[::-1])
    with pytest.raises(ValueError, match="z.jpg"):
        saved.align(images, probs, ["z.jpg"])
    a, b = np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]])
    np.testing.assert_allclose(saved.ensemble([a, b]), [[0.5, 0.5]])
    np.testing.assert_allclose(saved.ensemble([a, b], [3, 1]), [[0.75, 0.25]])
    with pytest.raises(ValueError, match="one non-negative weight per member"):
        saved.ensemble([a, b], [1])


# --- question files -------------------------------------------------------------------------------
BAD_QUESTION_PATHS = {
    "dot-dot": ("Images/skirt_length_labels/../../../../etc/passwd.jpg", "leads outside the images root"),
    "absolute": ("/etc/passwd.jpg", "leads outside the images root"),
    "other-task": ("Images/collar_design_labels/b.jpg", "does not match its task"),
    "tab": ("Images/skirt_length_labels/a\tb.jpg", r"a tab \(U\+0009\)"),
    "control": ("Images/skirt_length_labels/a\x1bb.jpg", r"\(U\+001B\)"),
    "comma": ('"Images/skirt_length_labels/a,b.jpg"', "contains a comma"),
}


@pytest.mark.parametrize("case", sorted(BAD_QUESTION_PATHS))
def test_question_paths_follow_the_label_rows_rule_and_errors_name_the_line(case, tmp_path):
    """The shared path rule (core.annotations.image_path_problem) holds for questions: found by
    every reader, named by question.csv and its line, before anything is read or written."""
    image, match = BAD_QUESTION_PATHS[case]
    questions = tmp_path / "rank" / "Tests" / "question.csv"
    questions.parent.mkdir(parents=True)
    questions.write_text(f"Images/skirt_length_labels/a.jpg,skirt_length_labels,?\n{image},skirt_length_labels,?\n")
    with pytest.raises(AnnotationError, match=rf"question.csv:2: .*{match}"):
        read_questions(questions)
    good = tmp_path / "s.csv"
    good.write_text(f"{GOOD[0]}\n")
    assert main(["check-submission", str(good), "--questions", str(questions)]) == 2


@pytest.mark.parametrize("text", ["", "\n\n", "ImageName,AttrKey,AttrValues\n"])
def test_a_question_file_without_questions_fails_check_submission(text, tmp_path, caplog):
    questions = tmp_path / "question.csv"
    questions.write_text(text)
    good = tmp_path / "s.csv"
    good.write_text(f"{GOOD[0]}\n")
    assert main(["check-submission", str(good), "--questions", str(questions)]) == 2
    assert "question.csv" in caplog.text and ("empty" in caplog.text or "question.csv:1: unknown task" in caplog.text)


# --- numbers are ASCII decimals; a BOM is a BOM ----------------------------------------------------
ARABIC_INDIC = "".join(chr(0x0660 + int(c)) if c.isdigit() else c for c in "0.50000000")  # ٠.٥٠٠٠٠٠٠٠
FULLWIDTH = "".join(chr(0xFF10 + int(c)) if c.isdigit() else c for c in "0.50000000")


@pytest.mark.parametrize("value, named", [
    (ARABIC_INDIC, "ARABIC-INDIC DIGIT ZERO (U+0660)"), (FULLWIDTH, "FULLWIDTH DIGIT ZERO (U+FF10)"),
    (" 0.50000000", "a space"), ("0.5_0000000", "an underscore"),
])
def test_numbers_other_than_ascii_decimals_are_refused(value, named, questions, tmp_path):
    """float() takes other scripts' digits, spaces and underscores; the leaderboard need not."""
    assert float(value) == 0.5
    rows = _replace(2, "0.50000000;0.50000000", f"{value};0.50000000")(GOOD)
    broken = tmp_path / "broken.csv"
    broken.write_text("".join(f"{r}\n" for r in rows), encoding="utf-8")
    with pytest.raises(sub.SubmissionError) as err:
        sub.check_submission(broken, questions)
    assert (err.value.rule, err.value.line) == ("number", 2) and named in str(err.value)
    assert main(["check-submission", str(broken), "--questions", str(questions)]) == 2


def test_a_byte_order_mark_is_reported_as_such(questions, tmp_path):
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + "".join(f"{r}\n" for r in GOOD).encode())
    with pytest.raises(sub.SubmissionError) as err:
        sub.check_submission(bom, questions)
    assert (err.value.rule, err.value.line) == ("bom", 1) and "byte order mark (BOM)" in str(err.value)
    with pytest.raises(sub.SubmissionError, match=r"<rows>:1: \[bom\]"):
        sub.check_submission(["\ufeff" + GOOD[0]] + GOOD[1:], questions)
