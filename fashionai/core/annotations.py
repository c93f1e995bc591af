"""Reading FashionAI CSV files (labels, warm-up labels, questions) with file:line error messages.

All three kinds have no header and 3 columns `ImageName,AttrKey,AttrValues`; the released files
may carry a UTF-8 BOM and CRLF line endings. Readers here never drop a line silently: each line
comes back with its number, and parsing errors name `file:line`.

Image paths follow one rule wherever they are read (`image_path_problem`: prepare's label rows,
every question file): `Images/<task>/<file>` relative to the folder the file belongs to, never
leading out of it, with no character that breaks a later line- or tab-separated format.
"""

from __future__ import annotations

import csv
import io
import posixpath
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from fashionai.core.tasks import Label, LabelError, check_task, parse_label


class AnnotationError(ValueError):
    """A CSV line (or whole file) that cannot be used; the message starts with `file:line:`."""


# Unicode categories that end or split a line or a tab-separated field: control characters (tab,
# newline, NUL, ...) and the line and paragraph separators.
UNSAFE_CATEGORIES = ("Cc", "Zl", "Zp")
_CHARACTER_NAMES = {"\t": "a tab", "\n": "a newline", "\r": "a carriage return", "\x00": "a NUL byte"}


def unsafe_character(text: str) -> str | None:
    """The first character of `text` that would break a later format, described; None if none.

    RecordIO's `.lst` is `index<TAB>label<TAB>path` and the manifest, submissions and logs are read
    line by line: a tab or a line break in a name splits a record there.
    """
    for ch in text:
        if unicodedata.category(ch) in UNSAFE_CATEGORIES:
            name = _CHARACTER_NAMES.get(ch) or unicodedata.name(ch, "a control character").lower()
            return f"{name} (U+{ord(ch):04X})"
    return None


def image_path_problem(image: str, task: str, folder: str) -> tuple[str, str] | None:
    """(kind, reason) when `image` is not a usable `Images/<task>/<file>` inside `folder`; else None.

    `image` is relative to `folder` (named as the message should name it: `base/`, the images
    root): an absolute path or one that leads out of it with `..` is refused, since a CSV may come
    from anyone and nothing outside the data is read or written into a prepared root or a
    submission. The same rule serves label rows (prepare) and question rows (predict, submit,
    check-submission).
    """
    bad = unsafe_character(image)
    if bad:
        return ("unusable character in the path",
                f"image path {image!r} contains {bad}, which breaks the tab- and line-separated files "
                "made from it (manifest, RecordIO list, submission); rename the file and its row")
    normal = posixpath.normpath(image)
    if posixpath.isabs(image) or normal.split("/")[0] == "..":
        return "path outside its folder", f"image path {image!r} leads outside {folder}"
    if normal.split("/")[:2] != ["Images", task] or len(normal.split("/")) != 3:
        return ("path does not match its task",
                f"image path {image!r} does not match its task (expected Images/{task}/<file>)")
    return None


@dataclass(frozen=True)
class CsvLine:
    """One non-blank line of a CSV file, split into fields, with where it came from."""

    source: Path
    line: int
    fields: tuple[str, ...]

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}"


@dataclass(frozen=True)
class LabelRow:
    """A valid label line: image path (relative to the folder above Annotations/), task, label."""

    source: Path
    line: int
    image: str
    task: str
    label: Label


@dataclass(frozen=True)
class QuestionRow:
    """A question line: image path and task; the third field is the literal `?`."""

    source: Path
    line: int
    image: str
    task: str


def read_csv_lines(path: str | Path) -> list[CsvLine]:
    """All non-blank lines of `path` (BOM and CRLF tolerated); raise AnnotationError if none."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise AnnotationError(f"{path}: cannot be read as UTF-8 text ({err})") from err
    lines = []
    for number, raw in enumerate(io.StringIO(text, newline=None), start=1):
        stripped = raw.strip()
        if not stripped:
            continue
        fields = next(csv.reader([stripped]))
        lines.append(CsvLine(path, number, tuple(f.strip() for f in fields)))
    if not lines:
        raise AnnotationError(f"{path}: the file is empty")
    return lines


def _image_and_task(line: CsvLine) -> tuple[str, str]:
    if len(line.fields) != 3:
        raise AnnotationError(f"{line.where}: expected 3 columns, found {len(line.fields)}")
    image, task, _ = line.fields
    try:
        check_task(task)
    except ValueError as err:
        raise AnnotationError(f"{line.where}: {err}") from None
    return image, task


def parse_label_line(line: CsvLine) -> LabelRow:
    """Validate one label line (columns, task, label string); raise AnnotationError naming file:line."""
    image, task = _image_and_task(line)
    try:
        label = parse_label(task, line.fields[2])
    except LabelError as err:
        raise AnnotationError(f"{line.where}: {err}") from None
    return LabelRow(line.source, line.line, image, task, label)


def parse_question_line(line: CsvLine) -> QuestionRow:
    """Validate one question line (3 columns, known task, third field `?`, an image path inside the
    images root by `image_path_problem`, no comma: the submission repeats the path unquoted)."""
    image, task = _image_and_task(line)
    if line.fields[2] != "?":
        raise AnnotationError(f"{line.where}: question rows end in '?', found {line.fields[2]!r}")
    problem = image_path_problem(image, task, "the images root (the question file's ../ or --images-root)")
    if problem:
        raise AnnotationError(f"{line.where}: {problem[1]}")
    if "," in image:
        raise AnnotationError(f"{line.where}: image path {image!r} contains a comma, which would split the "
                              "submission's columns")
    return QuestionRow(line.source, line.line, image, task)


def read_labels(path: str | Path) -> list[LabelRow]:
    """Every line of a label CSV, strictly: the first bad line raises AnnotationError."""
    return [parse_label_line(line) for line in read_csv_lines(path)]


def read_questions(path: str | Path) -> list[QuestionRow]:
    """Every line of a question CSV in file order, strictly."""
    return [parse_question_line(line) for line in read_csv_lines(path)]
