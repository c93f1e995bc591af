"""Question file -> leaderboard submission rows; the checker; atomic writes.

A submission has one line per question row, in the question file's order, no header:
`Images/<task>/<id>.jpg,<task>,p0;p1;...;pK-1`, each probability written with `%.8f` in the task's
class order (`fashionai.core.tasks`). `check_submission` enforces every rule the leaderboard relies on
and `write_submission` runs it on the rows in memory before anything touches the disk.

Sum-to-one tolerance: rows are renormalised before formatting, and `%.8f` rounds each of K <= 10
values by at most 5e-9, so a correct row sums to 1 within 5e-8. `SUM_TOLERANCE` = 1e-4 leaves room
for files written by other tools with fewer decimals while still catching unnormalised scores.
Saved probabilities and ensembles are `fashionai.scoring.probs`.
"""

from __future__ import annotations

import logging
import math
import re
import unicodedata
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from fashionai.core.annotations import AnnotationError, QuestionRow, read_questions
from fashionai.core.io import atomic_write
from fashionai.core.tasks import TASK_NAMES, num_classes

log = logging.getLogger(__name__)

SUM_TOLERANCE = 1e-4
FIXED_POINT = re.compile(r"[0-9]+(\.[0-9]+)?")  # what `%.8f` writes for a value in [0, 1]; `\d` takes any script's digits
BOM = "\ufeff"


class SubmissionError(AnnotationError):
    """A submission that breaks a rule; `line` is 1-based (0: the whole file), `rule` names the rule.
    An AnnotationError (file:line first) like every other CSV line this project refuses."""

    def __init__(self, source: str, line: int, rule: str, detail: str):
        super().__init__(f"{source}:{line}: [{rule}] {detail}")
        self.source, self.line, self.rule = source, line, rule


# --- building rows ------------------------------------------------------------------------------
def normalise(probs: np.ndarray, task: str) -> np.ndarray:
    """(N, K) non-negative finite scores -> rows summing to 1; raise ValueError on anything else."""
    probs = np.asarray(probs, dtype=np.float64)
    k = num_classes(task)
    if probs.ndim != 2 or probs.shape[1] != k:
        raise ValueError(f"{task}: probabilities of shape {probs.shape}, expected (N, {k})")
    bad = ~(np.isfinite(probs).all(axis=1) & (probs >= 0).all(axis=1) & (probs.sum(axis=1) > 0))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{task}: row {row} is not a probability vector: {probs[row].tolist()}")
    return probs / probs.sum(axis=1, keepdims=True)


def format_row(image: str, task: str, probs: Sequence[float]) -> str:
    """One submission line (no newline): `image,task,p0;...;pK-1` with `%.8f`."""
    return f"{image},{task}," + ";".join("%.8f" % p for p in probs)


def build_submission(questions: Sequence[QuestionRow], probs_by_task: Mapping[str, np.ndarray]) -> list[str]:
    """Submission lines in question order; `probs_by_task[task]` is (N_task, K) in the order the
    task's rows appear in the question file. Every task asked must be given, with the right N."""
    asked = list(dict.fromkeys(q.task for q in questions))
    missing = [t for t in asked if t not in probs_by_task]
    if missing:
        raise ValueError(f"no predictions for task(s) in the question file: {', '.join(missing)}")
    normalised, cursor = {}, dict.fromkeys(asked, 0)
    for task in asked:
        count = sum(q.task == task for q in questions)
        normalised[task] = normalise(probs_by_task[task], task)
        if len(normalised[task]) != count:
            raise ValueError(f"{task}: {len(normalised[task])} predictions for {count} question rows")
    rows = []
    for q in questions:
        rows.append(format_row(q.image, q.task, normalised[q.task][cursor[q.task]]))
        cursor[q.task] += 1
    return rows


# --- checking -----------------------------------------------------------------------------------
def parse_number(text: str) -> float:
    """One probability as a submission writes it: ASCII characters only, no spaces or underscores.

    Python's float() also takes any script's digits (Arabic-Indic U+0660-0669, fullwidth
    U+FF10-FF19, ...), surrounding spaces and '1_0'; a leaderboard parser need not.
    Raises ValueError saying what is wrong.
    """
    odd = next((ch for ch in text if not ch.isascii()), None)
    if odd is not None:
        raise ValueError(f"{text!r} has {unicodedata.name(odd, 'a non-ASCII character')} (U+{ord(odd):04X}); "
                         "write ASCII digits 0-9")
    if text != text.strip() or "_" in text:
        raise ValueError(f"{text!r} has a space or an underscore")
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None


def bom_problem(first_line: str) -> str | None:
    """Why a file starting with `first_line` cannot be submitted as it is: a UTF-8 byte order mark."""
    if first_line.startswith(BOM):
        return ("the file starts with a UTF-8 byte order mark (BOM), which a reader takes as part of the first "
                "image name; save it as UTF-8 without BOM")
    return None


def read_lines(path_or_lines: str | Path | Sequence[str]) -> tuple[str, list[str]]:
    """(source name, lines) of a file (a final newline is allowed) or of lines given in memory."""
    if isinstance(path_or_lines, (str, Path)):
        path = Path(path_or_lines)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such submission file")
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as err:
            raise SubmissionError(str(path), 0, "encoding", f"not UTF-8 text ({err})") from None
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        return str(path), [line.removesuffix("\r") for line in lines]
    return "<rows>", list(path_or_lines)


def _looks_like_header(fields: list[str], first: QuestionRow) -> bool:
    """A first line that is not the first question, names no known task and carries no numbers
    (e.g. `ImageName,AttrKey,AttrValues`); other broken first lines get their own rule's message."""
    task = fields[1] if len(fields) > 1 else ""
    return (
        (fields[0], task) != (first.image, first.task)
        and task not in TASK_NAMES
        and not any(ch.isdigit() for ch in fields[-1])
    )


def split_row(line: str, number: int, fail) -> list[str]:
    """The 3 fields of a submission line, under the line rules every reader of a submission applies
    (check-submission and `evaluate --submission` alike): no byte order mark (line 1), no blank
    line, 3 columns split at commas as they are (no quoting, no padding: the leaderboard splits so)."""
    if number == 1 and bom_problem(line):
        fail("bom", bom_problem(line))
    if not line.strip():
        fail("blank-line", "blank line")
    fields = line.split(",")
    if len(fields) != 3:
        fail("columns", f"expected 3 columns, found {len(fields)} (comma-separated, no quoting)")
    return fields


def check_values(text: str, task: str, fail) -> list[float]:
    """The probabilities of one row under its rules: class count, numbers, finite, [0, 1], fixed
    point, sum to one."""
    values = text.split(";")
    k = num_classes(task)
    if len(values) != k:
        fail("class-count", f"{len(values)} probabilities, {task} has {k} classes")
    try:
        numbers = [parse_number(v) for v in values]
    except ValueError as err:
        fail("number", f"not a plain number among {text!r}: {err}")
    if not all(math.isfinite(x) for x in numbers):
        fail("finite", f"non-finite probability in {text!r}")
    if not all(0.0 <= x <= 1.0 for x in numbers):
        fail("range", f"probability outside [0, 1] in {text!r}")
    if not all(FIXED_POINT.fullmatch(v) for v in values):
        fail("fixed-point", f"write plain decimals (%.8f), not {text!r}")
    if abs(sum(numbers) - 1.0) > SUM_TOLERANCE:
        fail("sum-to-one", f"probabilities sum to {sum(numbers):.8f}, not 1 within {SUM_TOLERANCE}")
    return numbers


def check_submission(path_or_lines: str | Path | Sequence[str], questions_path: str | Path) -> None:
    """Raise SubmissionError at the first line breaking a rule; return None for a valid submission.

    Rules, in the order they are checked on each line: no byte order mark (line 1), no header (line 1),
    no blank line, 3 columns,
    no duplicate (image, task), image and task equal to the question row of the same number,
    the task's class count of probabilities, numbers (ASCII), finite, in [0, 1], fixed-point, sum to 1;
    then the row count equals the question file's.
    """
    questions = read_questions(questions_path)
    source, lines = read_lines(path_or_lines)
    seen: dict[tuple[str, str], int] = {}
    for number, line in enumerate(lines, start=1):
        def fail(rule: str, detail: str, number=number):
            raise SubmissionError(source, number, rule, detail)

        if number == 1 and bom_problem(line):
            fail("bom", bom_problem(line))
        if number == 1 and line.strip() and _looks_like_header(line.split(","), questions[0]):
            fail("header", f"the first line looks like a header ({line[:60]!r}); submissions have none")
        fields = split_row(line, number, fail)
        key = (fields[0], fields[1])
        if key in seen:
            fail("duplicate", f"{key[0]} {key[1]} repeats line {seen[key]}")
        seen[key] = number
        if number > len(questions):
            fail("row-count", f"extra row: the question file has {len(questions)} rows")
        q = questions[number - 1]
        if key != (q.image, q.task):
            fail("order", f"found {key[0]},{key[1]}; question line {q.line} is {q.image},{q.task}")
        check_values(fields[2], q.task, fail)
    if len(lines) < len(questions):
        q = questions[len(lines)]
        raise SubmissionError(
            source, len(lines) + 1, "row-count",
            f"{len(lines)} rows for {len(questions)} questions; first missing: {q.image},{q.task}",
        )


def write_submission(rows: Sequence[str], path: str | Path, questions_path: str | Path) -> Path:
    """Validate `rows` against the question file, then write them atomically to `path`."""
    check_submission(rows, questions_path)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, "".join(f"{row}\n" for row in rows))
    log.debug("wrote %s (%d rows, validated)", path, len(rows))
    return path


def write_task_files(rows: Sequence[str], out_dir: str | Path) -> list[Path]:
    """One `<task>.csv` per task with that task's rows (question order), as the tutorial writes them."""
    by_task: dict[str, list[str]] = {}
    for row in rows:
        by_task.setdefault(row.split(",")[1], []).append(row)
    paths = []
    for task, task_rows in by_task.items():
        paths.append(Path(out_dir) / f"{task}.csv")
        atomic_write(paths[-1], "".join(f"{row}\n" for row in task_rows))
    return paths


def write_prob_csv(path: str | Path, task: str, images: Sequence[str], probs: np.ndarray) -> Path:
    """Submission-format lines for any list of images (`predict --out x.csv`); not checked against a
    question file, since it need not answer one."""
    rows = [format_row(image, task, p) for image, p in zip(images, normalise(probs, task))]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, "".join(f"{row}\n" for row in rows))
    return Path(path)
