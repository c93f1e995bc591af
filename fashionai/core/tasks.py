"""The 8 FashionAI attribute tasks, their classes in order, and label-string parsing.

This module is the single source of truth for task names, class counts and class order; every
other module asks it instead of repeating the table. Facts from the competition's data
(see docs/design.md, "The data"): a label string has one character per class, `y` = the class,
`n` = not, `m` = "maybe" (a plausible second class, ignored by the official metric).
"""

from __future__ import annotations

from dataclasses import dataclass

TASKS: dict[str, tuple[str, ...]] = {
    "skirt_length_labels": (
        "Invisible", "Short Length", "Knee Length", "Midi Length", "Ankle Length", "Floor Length",
    ),
    "coat_length_labels": (
        "Invisible", "High Waist Length", "Regular Length", "Long Length", "Micro Length",
        "Knee Length", "Midi Length", "Ankle&Floor Length",
    ),
    "collar_design_labels": (
        "Invisible", "Shirt Collar", "Peter Pan", "Puritan Collar", "Rib Collar",
    ),
    "lapel_design_labels": (
        "Invisible", "Notched", "Collarless", "Shawl Collar", "Plus Size Shawl",
    ),
    "neck_design_labels": (
        "Invisible", "Turtle Neck", "Ruffle Semi-High Collar", "Low Turtle Neck", "Draped Collar",
    ),
    "neckline_design_labels": (
        "Invisible", "Strapless Neck", "Deep V Neckline", "Straight Neck", "V Neckline",
        "Square Neckline", "Off Shoulder", "Round Neckline", "Sweat Heart Neck",
        "One Shoulder Neckline",
    ),
    "pant_length_labels": (
        "Invisible", "Short Pant", "Mid Length", "3/4 Length", "Cropped Pant", "Full Length",
    ),
    "sleeve_length_labels": (
        "Invisible", "Sleeveless", "Cup Sleeves", "Short Sleeves", "Elbow Sleeves", "3/4 Sleeves",
        "Wrist Length", "Long Sleeves", "Extra Long Sleeves",
    ),
}

TASK_NAMES: tuple[str, ...] = tuple(TASKS)

# The split top entries used for multi-task heads: garment lengths vs neck/collar designs.
TASK_GROUPS: dict[str, tuple[str, ...]] = {
    "length": tuple(t for t in TASK_NAMES if t.endswith("_length_labels")),
    "design": tuple(t for t in TASK_NAMES if t.endswith("_design_labels")),
    "all": TASK_NAMES,
}

LABEL_CHARS = frozenset("ynm")


class LabelError(ValueError):
    """A label string that is not a valid FashionAI label for its task."""


def check_task(task: str) -> str:
    """Return `task` if it is one of the 8 tasks, else raise a ValueError listing them."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; valid tasks: {', '.join(TASK_NAMES)}")
    return task


def num_classes(task: str) -> int:
    """Number of classes K of `task` (the length of its label strings)."""
    return len(TASKS[check_task(task)])


def class_names(task: str) -> tuple[str, ...]:
    """Class names of `task`, index 0..K-1 in the competition's order."""
    return TASKS[check_task(task)]


def expand_tasks(spec: str) -> tuple[str, ...]:
    """Turn a group name (`length`, `design`, `all`) or a comma list of task names into tasks."""
    if spec in TASK_GROUPS:
        return TASK_GROUPS[spec]
    return tuple(check_task(t.strip()) for t in spec.split(",") if t.strip())


@dataclass(frozen=True)
class Label:
    """A parsed label: the class index (the `y` position) and the `m` positions."""

    task: str
    values: str
    index: int
    maybe: tuple[int, ...]


def parse_label(task: str, values: str) -> Label:
    """Parse a label string like `nnmyn` for `task`; raise LabelError saying exactly what is wrong."""
    k = num_classes(task)
    if len(values) != k:
        raise LabelError(f"label {values!r} has {len(values)} characters, {task} has {k} classes")
    bad = sorted(set(values) - LABEL_CHARS)
    if bad:
        raise LabelError(f"label {values!r} has characters other than y/n/m: {''.join(bad)!r}")
    ys = [i for i, c in enumerate(values) if c == "y"]
    if not ys:
        raise LabelError(f"label {values!r} has no 'y'")
    if len(ys) > 1:
        raise LabelError(f"label {values!r} has {len(ys)} 'y' (positions {ys}); exactly one expected")
    maybe = tuple(i for i, c in enumerate(values) if c == "m")
    return Label(task=task, values=values, index=ys[0], maybe=maybe)


def label_string(task: str, index: int, maybe: tuple[int, ...] = ()) -> str:
    """The label string with `y` at `index` and `m` at `maybe` (the inverse of parse_label)."""
    k = num_classes(task)
    if not 0 <= index < k or index in maybe or any(not 0 <= m < k for m in maybe):
        raise LabelError(f"invalid class index {index} / maybe {maybe} for {task} ({k} classes)")
    chars = ["n"] * k
    chars[index] = "y"
    for m in maybe:
        chars[m] = "m"
    return "".join(chars)
