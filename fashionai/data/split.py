"""The seeded, stratified train/val split of one task's images (hold-out or k-fold).

Seeded and computed from class labels only, so the same rows give the same split on any machine.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np


def stratified_split(
    classes: Sequence[int], *, seed: int = 0, val_fraction: float = 0.1,
    folds: int | None = None, fold: int | None = None,
) -> np.ndarray:
    """Boolean mask of the val rows: stratified by class, seeded, identical on any machine.

    A class with 1 image stays in train; a class with n >= 2 keeps at least one image in train.
    Hold-out (no `folds`): each class sends round-half-up(n * val_fraction) images to val, capped at
    n - 1, chosen by a generator seeded with (seed, class) so a class's split does not depend on the
    others. Hand-written because sklearn's StratifiedShuffleSplit refuses a split with fewer val rows
    than classes (small tasks, demo data) and can send both images of a 2-image class to val.
    K-fold: sklearn's StratifiedKFold over the classes with >= 2 images; fold `fold` is val.
    """
    classes = np.asarray(classes, dtype=int)
    is_val = np.zeros(len(classes), dtype=bool)
    labels, counts = np.unique(classes, return_counts=True)
    if folds is None:
        for label, count in zip(labels, counts):
            members = np.flatnonzero(classes == label)
            n_val = min(count - 1, math.floor(count * val_fraction + 0.5))
            chosen = np.random.default_rng([seed, int(label)]).permutation(members)[:n_val]
            is_val[chosen] = True
        return is_val
    from sklearn.model_selection import StratifiedKFold

    eligible = np.flatnonzero(np.isin(classes, labels[counts >= 2]))
    if len(eligible) < folds:
        return is_val  # too few images to hold any out; all stay in train (the caller warns)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "least populated class has fewer than K members"
        try:
            _, val = list(splitter.split(np.zeros(len(eligible)), classes[eligible]))[fold]
        except ValueError as err:
            raise ValueError(f"cannot make {folds} stratified folds: {err}; use fewer --folds") from None
    is_val[eligible[val]] = True
    return is_val
