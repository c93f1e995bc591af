"""Saved probabilities and ensembles: `submit --save-probs` writes each run's (N, K) test
probabilities as `.npy` + a `.json` sidecar (task, images, meta), and `submit --from-probs` averages
saved files of one task, aligned to the questions' image order, before the submission is built.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fashionai.core.io import atomic_save, write_json
from fashionai.scoring.submission import normalise


def save_probs(path: str | Path, task: str, images: Sequence[str], probs: np.ndarray, **meta) -> Path:
    """Write `<path>.npy` (N, K) and its `<path>.json` (task, images, meta), both atomically."""
    path = Path(path).with_suffix(".npy")
    probs = normalise(probs, task).astype(np.float32)
    if len(images) != len(probs):
        raise ValueError(f"{len(images)} images for {len(probs)} probability rows")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_save(path, lambda tmp: np.save(tmp, probs))
    write_json(path.with_suffix(".json"), {"task": task, "images": [str(i) for i in images], **meta}, indent=1)
    return path


def load_probs(path: str | Path) -> tuple[str, list[str], np.ndarray]:
    """(task, images, probs (N, K)) saved by `save_probs`."""
    path = Path(path).with_suffix(".npy")
    sidecar = path.with_suffix(".json")
    for p in (path, sidecar):
        if not p.is_file():
            raise FileNotFoundError(f"{p}: no such file (saved probabilities come as .npy + .json)")
    meta = json.loads(sidecar.read_text())
    probs = np.load(path)
    if len(meta["images"]) != len(probs):
        raise ValueError(f"{path}: {len(probs)} rows but {len(meta['images'])} images in {sidecar}")
    return meta["task"], meta["images"], normalise(probs, meta["task"])


def align(images: Sequence[str], probs: np.ndarray, wanted: Sequence[str], source: str = "") -> np.ndarray:
    """Rows of `probs` (one per `images`) reordered to `wanted`; raise if one is missing."""
    index = {image: i for i, image in enumerate(images)}
    missing = [w for w in wanted if w not in index]
    if missing:
        raise ValueError(f"{source}: no probabilities for {len(missing)} image(s), e.g. {missing[0]}")
    return probs[[index[w] for w in wanted]]


def ensemble(members: Sequence[np.ndarray], weights: Sequence[float] | None = None) -> np.ndarray:
    """Weighted mean of several (N, K) probability arrays of one task (equal weights by default)."""
    if not members:
        raise ValueError("nothing to ensemble")
    weights = [1.0] * len(members) if weights is None else list(weights)
    if len(weights) != len(members) or min(weights) < 0 or sum(weights) <= 0:
        raise ValueError(f"need one non-negative weight per member ({len(members)}), got {weights}")
    shapes = {m.shape for m in members}
    if len(shapes) != 1:
        raise ValueError(f"members disagree in shape: {sorted(shapes)}")
    return sum(w * m for w, m in zip(weights, members)) / sum(weights)


def prob_file_task(path: str | Path) -> str:
    """The task of a saved probability file, read from its sidecar without loading the array."""
    sidecar = Path(path).with_suffix(".json")
    if not sidecar.is_file():
        raise FileNotFoundError(f"{sidecar}: no such file (saved probabilities come as .npy + .json)")
    return json.loads(sidecar.read_text())["task"]
