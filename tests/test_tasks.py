"""The task table and label-string parsing, including every error kind."""

import pytest

from fashionai.core import tasks
from fashionai.core.annotations import AnnotationError, read_csv_lines, read_labels, read_questions


def test_table_matches_the_competition():
    counts = {t: tasks.num_classes(t) for t in tasks.TASK_NAMES}
    assert counts == {
        "skirt_length_labels": 6, "coat_length_labels": 8, "collar_design_labels": 5,
        "lapel_design_labels": 5, "neck_design_labels": 5, "neckline_design_labels": 10,
        "pant_length_labels": 6, "sleeve_length_labels": 9,
    }
    assert tasks.class_names("skirt_length_labels")[5] == "Floor Length"
    assert tasks.class_names("sleeve_length_labels")[0] == "Invisible"
    assert set(tasks.TASK_GROUPS["length"]) | set(tasks.TASK_GROUPS["design"]) == set(tasks.TASK_NAMES)


def test_unknown_task_lists_valid_ones():
    with pytest.raises(ValueError, match="skirt_length_labels"):
        tasks.num_classes("skirt")


def test_parse_label_with_maybe():
    label = tasks.parse_label("collar_design_labels", "nmyn n".replace(" ", ""))
    assert label.index == 2 and label.maybe == (1,)
    assert tasks.label_string("collar_design_labels", 2, (1,)) == "nmynn"


@pytest.mark.parametrize(
    "values, message",
    [
        ("nnyn", "has 4 characters, collar_design_labels has 5"),
        ("nnnnn", "no 'y'"),
        ("ynynn", "2 'y'"),
        ("nnyxn", "other than y/n/m: 'x'"),
        ("NNYNN", "other than y/n/m"),
        ("", "has 0 characters"),
    ],
)
def test_parse_label_errors(values, message):
    with pytest.raises(tasks.LabelError, match=message.replace("(", r"\(").replace(")", r"\)")):
        tasks.parse_label("collar_design_labels", values)


def test_expand_tasks():
    assert tasks.expand_tasks("design") == tasks.TASK_GROUPS["design"]
    assert tasks.expand_tasks("skirt_length_labels, pant_length_labels") == (
        "skirt_length_labels", "pant_length_labels")
    with pytest.raises(ValueError):
        tasks.expand_tasks("skirt_length_labels,nope")


def test_csv_reader_bom_crlf_and_line_numbers(tmp_path):
    f = tmp_path / "label.csv"
    f.write_bytes(
        b"\xef\xbb\xbfImages/skirt_length_labels/a.jpg,skirt_length_labels,nnynnn\r\n\r\n"
        b"Images/skirt_length_labels/b.jpg,skirt_length_labels,nnnnmy\r\n"
    )
    rows = read_labels(f)
    assert [(r.line, r.image, r.label.index, r.label.maybe) for r in rows] == [
        (1, "Images/skirt_length_labels/a.jpg", 2, ()),
        (3, "Images/skirt_length_labels/b.jpg", 5, (4,)),
    ]


def test_csv_reader_errors_name_file_and_line(tmp_path):
    f = tmp_path / "label.csv"
    f.write_text("Images/x/a.jpg,skirt_length_labels,nnynnn\nImages/x/b.jpg,skirt_length_labels\n")
    with pytest.raises(AnnotationError, match=r"label.csv:2: expected 3 columns, found 2"):
        read_labels(f)
    f.write_text("Images/x/a.jpg,hat_labels,nny\n")
    with pytest.raises(AnnotationError, match=r"label.csv:1: unknown task 'hat_labels'"):
        read_labels(f)
    f.write_text("Images/x/a.jpg,skirt_length_labels,nnyn\n")
    with pytest.raises(AnnotationError, match=r"label.csv:1: label 'nnyn' has 4 characters"):
        read_labels(f)
    f.write_text("\n \n")
    with pytest.raises(AnnotationError, match="empty"):
        read_csv_lines(f)
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_csv_lines(tmp_path / "missing.csv")


def test_questions(tmp_path):
    f = tmp_path / "question.csv"
    f.write_text("Images/skirt_length_labels/a.jpg,skirt_length_labels,?\n"
                 "Images/pant_length_labels/b.jpg,pant_length_labels,?\n")
    assert [q.task for q in read_questions(f)] == ["skirt_length_labels", "pant_length_labels"]
    f.write_text("Images/skirt_length_labels/a.jpg,skirt_length_labels,nnnnny\n")
    with pytest.raises(AnnotationError, match="question.csv:1: question rows end in '\\?'"):
        read_questions(f)
