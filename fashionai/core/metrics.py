"""Scores of class probabilities: the official FashionAI AP/mAP, BasicPrecision and plain metrics.

Pure numpy (scikit-learn for the textbook metrics); no MXNet, no I/O. Arrays: `probs` is (N, K)
with one row per image of one task and K = the task's class count; `labels` are the full label
strings (`y`/`n`/`m` per class, e.g. ``"nnmyn"``); `y_index` is the (N,) int array of `y` positions.

The official AP of one task (the leaderboard metric, after the organisers' metric text; README,
"Which mAP"):

- every row i gets p_i = max_k probs[i, k] and a_i = argmax_k probs[i, k] (the first maximum when a
  row has tied maxima, numpy's rule); the label character at a_i makes the row *correct* (`y`),
  *wrong* (`n`) or *not counted* (`m`);
- for a threshold t the rows with p_i >= t are output and
  ``P(t) = #correct(p >= t) / (#correct(p >= t) + #wrong(p >= t))``;
- the thresholds are the distinct values of p (equal maxima form one threshold), so
  ``AP = mean over t in T of P(t)``,  T = {distinct p_i} minus the thresholds where P is 0/0.

Corners the organisers did not document, chosen here:
- a threshold whose output rows all hit `m` (P = 0/0) is skipped: it is left out of the mean,
  neither counted as 0 nor as 1 (it says nothing about precision);
- a task where that holds at every threshold (every argmax hits `m`) has no AP: `nan`;
- the task mAP averages the tasks that have an AP (a task with `nan` is left out, `nan` if none);
- probabilities are compared exactly as given (after `%.8f` rounding in a submission file, rows
  that print the same maximum tie); any monotone rescaling that keeps each row's argmax and the
  order of the maxima gives the same AP, so the scores need not sum to 1.

Computed with one sort and cumulative counts: O(N log N), no loop over thresholds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

LabelStrings = Sequence[str]


def _check_probs(probs: np.ndarray, n: int | None = None) -> np.ndarray:
    """Return `probs` as a float64 (N, K) array; raise ValueError on wrong shape or non-finite values."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[0] == 0 or probs.shape[1] < 2:
        raise ValueError(f"probs must be a non-empty (N, K>=2) array, got shape {probs.shape}")
    if n is not None and probs.shape[0] != n:
        raise ValueError(f"probs has {probs.shape[0]} rows but there are {n} labels")
    if not np.isfinite(probs).all():
        bad = int(np.flatnonzero(~np.isfinite(probs).all(axis=1))[0])
        raise ValueError(f"probs row {bad} has a non-finite value: {probs[bad].tolist()}")
    return probs


def label_matrix(labels: LabelStrings, k: int) -> np.ndarray:
    """The (N, K) array of label characters of `labels`; raise ValueError on a length or character error.

    Vectorised (one fixed-width unicode array viewed as single characters) because training calls
    the official AP on every validation epoch; full label validation stays in `tasks.parse_label`.
    """
    arr = np.asarray(list(labels), dtype=str)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError("labels must be a non-empty sequence of label strings")
    lengths = np.char.str_len(arr)
    if (lengths != k).any():
        bad = int(np.flatnonzero(lengths != k)[0])
        raise ValueError(f"label {bad} {arr[bad]!r} has {lengths[bad]} characters, expected {k}")
    chars = arr.astype(f"<U{k}").view("<U1").reshape(arr.size, k)
    valid = np.isin(chars, ("y", "n", "m"))
    if not valid.all():
        bad = int(np.flatnonzero(~valid.all(axis=1))[0])
        raise ValueError(f"label {bad} {arr[bad]!r} has characters other than y/n/m")
    return chars


def label_indices(labels: LabelStrings, k: int) -> np.ndarray:
    """The (N,) class indices (the `y` position) of `labels`; raise ValueError unless each has one `y`."""
    is_y = label_matrix(labels, k) == "y"
    counts = is_y.sum(axis=1)
    if (counts != 1).any():
        bad = int(np.flatnonzero(counts != 1)[0])
        raise ValueError(f"label {bad} {list(labels)[bad]!r} has {counts[bad]} 'y', exactly one expected")
    return is_y.argmax(axis=1)


def outcomes(probs: np.ndarray, labels: LabelStrings) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(p_max, correct, wrong) per row: the row's top probability and whether its argmax hits `y` / `n`.

    Rows whose argmax hits `m` are neither correct nor wrong.
    """
    labels = list(labels)
    probs = _check_probs(probs, len(labels))
    chars = label_matrix(labels, probs.shape[1])
    argmax = probs.argmax(axis=1)
    hit = chars[np.arange(len(labels)), argmax]
    return probs.max(axis=1), hit == "y", hit == "n"


def official_ap(probs: np.ndarray, labels: LabelStrings) -> float:
    """The official FashionAI AP of one task (see the module docstring); `nan` if it has none.

    probs: (N, K); labels: N full label strings of length K.
    """
    p_max, correct, wrong = outcomes(probs, labels)
    order = np.argsort(-p_max, kind="stable")
    p_sorted = p_max[order]
    n_correct = np.cumsum(correct[order])
    n_wrong = np.cumsum(wrong[order])
    # Rows are sorted by falling p_max; the last row of each run of equal p_max values closes the
    # threshold t = that value: the cumulative counts there are the rows with p_max >= t.
    ends = np.append(np.flatnonzero(p_sorted[1:] != p_sorted[:-1]), p_sorted.size - 1)
    counted = n_correct[ends] + n_wrong[ends]
    keep = counted > 0
    if not keep.any():
        return math.nan
    return float(np.mean(n_correct[ends][keep] / counted[keep]))


def basic_precision(probs: np.ndarray, labels: LabelStrings) -> float:
    """Top-1 precision, nothing withheld, `m` hits ignored: correct / (correct + wrong); `nan` if 0/0."""
    _, correct, wrong = outcomes(probs, labels)
    counted = int(correct.sum() + wrong.sum())
    return float(correct.sum() / counted) if counted else math.nan


def mean_over_tasks(values: Sequence[float]) -> float:
    """Unweighted mean of per-task figures, tasks without one (`nan`) left out; `nan` when none has one."""
    defined = [v for v in values if not math.isnan(v)]
    return float(np.mean(defined)) if defined else math.nan


def official_map(
    per_task: Mapping[str, tuple[np.ndarray, LabelStrings]],
) -> tuple[float, dict[str, float]]:
    """(mAP, {task: AP}): the unweighted mean of the per-task official APs, tasks without an AP left out.

    Unweighted: a task with 100 rows weighs as much as one with 10,000, as on the leaderboard.
    """
    if not per_task:
        raise ValueError("official_map needs at least one task")
    aps = {task: official_ap(probs, labels) for task, (probs, labels) in per_task.items()}
    return mean_over_tasks(list(aps.values())), aps


def mean_basic_precision(
    per_task: Mapping[str, tuple[np.ndarray, LabelStrings]],
) -> tuple[float, dict[str, float]]:
    """(mean, {task: BasicPrecision}): the leaderboard's BasicPrecision, an unweighted mean over tasks."""
    if not per_task:
        raise ValueError("mean_basic_precision needs at least one task")
    bps = {task: basic_precision(probs, labels) for task, (probs, labels) in per_task.items()}
    return mean_over_tasks(list(bps.values())), bps


def _check_index(probs: np.ndarray, y_index: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    probs = _check_probs(probs)
    y = np.asarray(y_index, dtype=np.int64).reshape(-1)
    if y.size != probs.shape[0]:
        raise ValueError(f"probs has {probs.shape[0]} rows but y_index has {y.size}")
    if (y < 0).any() or (y >= probs.shape[1]).any():
        raise ValueError(f"y_index values must lie in 0..{probs.shape[1] - 1}")
    return probs, y


def ranking_ap(probs: np.ndarray, y_index: Sequence[int]) -> float:
    """The Gluon tutorial's "mAP": mean of 1 / (rank of the true class in its row); NOT the official mAP.

    Label-ranking average precision with one positive per row (scikit-learn); a class tied with the
    true one counts as ranked above it. `m` is ignored.
    """
    from sklearn.metrics import label_ranking_average_precision_score  # lazy: sklearn import is slow

    probs, y = _check_index(probs, y_index)
    one_hot = np.zeros(probs.shape, dtype=np.int64)
    one_hot[np.arange(y.size), y] = 1
    return float(label_ranking_average_precision_score(one_hot, probs))


def accuracy(probs: np.ndarray, y_index: Sequence[int]) -> float:
    """Plain top-1 accuracy (argmax == y; an argmax on `m` counts as wrong here)."""
    from sklearn.metrics import accuracy_score

    probs, y = _check_index(probs, y_index)
    return float(accuracy_score(y, probs.argmax(axis=1)))


def per_class_report(
    probs: np.ndarray, y_index: Sequence[int], k: int | None = None,
) -> dict[str, np.ndarray]:
    """Per class precision, recall, f1 and support (K arrays each); 0 where a class is never predicted."""
    from sklearn.metrics import precision_recall_fscore_support

    probs, y = _check_index(probs, y_index)
    k = probs.shape[1] if k is None else k
    precision, recall, f1, support = precision_recall_fscore_support(
        y, probs.argmax(axis=1), labels=np.arange(k), zero_division=0,
    )
    return {"precision": precision, "recall": recall, "f1": f1, "support": support}


def confusion(probs: np.ndarray, y_index: Sequence[int], k: int | None = None) -> np.ndarray:
    """(K, K) confusion matrix: row = true class, column = argmax class."""
    from sklearn.metrics import confusion_matrix

    probs, y = _check_index(probs, y_index)
    k = probs.shape[1] if k is None else k
    return confusion_matrix(y, probs.argmax(axis=1), labels=np.arange(k))
