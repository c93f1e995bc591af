"""Scores: a submission file against ground truth (as the leaderboard would), and one task's
predictions with every figure a person wants beside the official AP.

`score_submission` is what the leaderboard computes: per task the official AP and BasicPrecision,
overall their unweighted means over the tasks present in the answers (see `fashionai.core.metrics`).
`evaluate_predictions` adds the per-class table, accuracy, ranking AP and the confusion matrix.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from fashionai.core import metrics
from fashionai.core.annotations import AnnotationError, LabelRow, read_labels
from fashionai.core.io import json_safe
from fashionai.core.tasks import TASK_NAMES
from fashionai.scoring.submission import SubmissionError, check_values, read_lines, split_row

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (image, task): how a submission row is matched to its answer


@dataclass(frozen=True)
class TaskScore:
    """One task's leaderboard figures."""

    task: str
    rows: int
    ap: float
    basic_precision: float


@dataclass(frozen=True)
class Report:
    """A submission's score: per task figures and their unweighted means (the leaderboard's mAP)."""

    submission: str
    answers: str
    tasks: tuple[TaskScore, ...]
    map: float
    basic_precision: float

    def to_dict(self) -> dict:
        return json_safe(asdict(self))


# --- submission files ---------------------------------------------------------------------------
def _answers_by_key(answers_path: str | Path) -> dict[Key, LabelRow]:
    """Ground-truth rows keyed by (image, task), in file order; a repeated key is an error."""
    answers: dict[Key, LabelRow] = {}
    for row in read_labels(answers_path):
        key = (row.image, row.task)
        if key in answers:
            raise AnnotationError(
                f"{row.source}:{row.line}: {row.image} {row.task} repeats line {answers[key].line}"
            )
        answers[key] = row
    return answers


def read_submission(submission_path: str | Path, answers: dict[Key, LabelRow]) -> dict[str, np.ndarray]:
    """Submission probabilities per task, (N, K) in the answers' row order. Each line is read under
    the same rules as `check-submission` (fashionai.scoring.submission: split_row, check_values), so
    a file this accepts is one the leaderboard takes; rows may come in any order, matched to the
    answers by (image, task). Extra, repeated and missing rows are errors naming file:line (the
    answers' line for a missing row)."""
    source, lines = read_lines(submission_path)
    found: dict[Key, tuple[int, list[float]]] = {}
    for number, line in enumerate(lines, start=1):
        def fail(rule: str, detail: str, number=number):
            raise SubmissionError(source, number, rule, detail)

        image, task, values = split_row(line, number, fail)
        key = (image, task)
        if key not in answers:
            fail("answers", f"{image} {task} is not in the answers")
        if key in found:
            fail("duplicate", f"{image} {task} repeats line {found[key][0]}")
        found[key] = (number, check_values(values, task, fail))
    missing = [row for key, row in answers.items() if key not in found]
    if missing:
        first = missing[0]
        raise AnnotationError(
            f"{first.source}:{first.line}: {first.image} {first.task} has no row in "
            f"{submission_path} ({len(missing)} answer rows missing)"
        )
    return {task: np.array([found[key][1] for key in answers if key[1] == task])
            for task in dict.fromkeys(task for _, task in answers)}


def score_submission(submission_path: str | Path, answers_path: str | Path) -> Report:
    """Score a submission file against label-format answers the way the leaderboard would."""
    answers = _answers_by_key(answers_path)
    probs = read_submission(submission_path, answers)
    scores = []
    for task in sorted(probs, key=TASK_NAMES.index):
        labels = [row.label.values for key, row in answers.items() if key[1] == task]
        scores.append(TaskScore(
            task, len(labels), metrics.official_ap(probs[task], labels),
            metrics.basic_precision(probs[task], labels),
        ))
    report = Report(
        str(submission_path), str(answers_path), tuple(scores),
        metrics.mean_over_tasks([s.ap for s in scores]),
        metrics.mean_over_tasks([s.basic_precision for s in scores]),
    )
    log.info("%s: official mAP %.4f, BasicPrecision %.4f over %d tasks",
             submission_path, report.map, report.basic_precision, len(scores))
    return report


def format_submission_report(report: Report) -> str:
    """The leaderboard-style table: per task rows, AP, BasicPrecision, then the overall line."""
    lines = [
        "official FashionAI mAP (leaderboard metric; per-task threshold-averaged precision, "
        "'m' ignored, unweighted mean over tasks)",
        f"{'task':<24} {'rows':>6} {'AP':>8} {'BasicPrec':>9}",
    ]
    for s in report.tasks:
        lines.append(f"{s.task:<24} {s.rows:>6} {s.ap:>8.4f} {s.basic_precision:>9.4f}")
    rows = sum(s.rows for s in report.tasks)
    lines.append(f"{'mAP (official)':<24} {rows:>6} {report.map:>8.4f} {report.basic_precision:>9.4f}")
    return "\n".join(lines)


# --- predictions of one task --------------------------------------------------------------------
def evaluate_predictions(probs: np.ndarray, labels: Sequence[str], class_names: Sequence[str]) -> dict:
    """Every metric of one task's predictions: overall figures, the per-class table, the confusion matrix.

    probs: (N, K); labels: N full label strings (so `m` counts as on the leaderboard).
    """
    labels = list(labels)
    k = len(class_names)
    y = metrics.label_indices(labels, k)
    table = metrics.per_class_report(probs, y, k)
    classes = [
        {"index": i, "class": name, "precision": float(table["precision"][i]),
         "recall": float(table["recall"][i]), "f1": float(table["f1"][i]),
         "support": int(table["support"][i])}
        for i, name in enumerate(class_names)
    ]
    return {
        "rows": len(labels),
        "official_ap": metrics.official_ap(probs, labels),
        "basic_precision": metrics.basic_precision(probs, labels),
        "accuracy": metrics.accuracy(probs, y),
        "ranking_ap": metrics.ranking_ap(probs, y),
        "classes": classes,
        "confusion": metrics.confusion(probs, y, k).tolist(),
    }


def worst_predictions(probs: np.ndarray, labels: Sequence[str], class_names: Sequence[str],
                      images: Sequence[str | Path], count: int) -> list[dict]:
    """The `count` rows whose true class got the lowest probability (fastai's top losses), worst
    first: image, true class, predicted class and the probabilities of both."""
    y = metrics.label_indices(list(labels), len(class_names))
    p_true = probs[np.arange(len(y)), y]
    order = np.argsort(p_true, kind="stable")[:count]
    return [{"image": str(images[i]), "true": class_names[y[i]], "predicted": class_names[int(probs[i].argmax())],
             "p_predicted": float(probs[i].max()), "p_true": float(p_true[i])} for i in order]


def format_prediction_report(report: dict) -> str:
    """The per-class table and the overall figures of `evaluate_predictions`, as printable text."""
    lines = [f"{'#':>2} {'class':<24} {'precision':>9} {'recall':>7} {'f1':>6} {'support':>7}"]
    for c in report["classes"]:
        lines.append(f"{c['index']:>2} {c['class']:<24} {c['precision']:>9.4f} {c['recall']:>7.4f} "
                     f"{c['f1']:>6.4f} {c['support']:>7}")
    lines.append(f"rows {report['rows']}  official AP {report['official_ap']:.4f}  BasicPrecision "
                 f"{report['basic_precision']:.4f}  accuracy {report['accuracy']:.4f}  ranking AP "
                 f"(tutorial's 'mAP', not official) {report['ranking_ap']:.4f}")
    return "\n".join(lines)
