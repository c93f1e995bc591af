"""`--tta auto`: which test-time views a run predicts with, chosen on its own val split.

All four modes are scored from one pass: ten-crop's views hold the others (`none` is view 0,
`flip` views 0 and 5, `five-crop` views 0-4), so each image is run once with 10 views and every
mode's val official AP follows by averaging subsets. The mode with the highest val AP wins; ties
go to fewer views, so `auto` is never worse than `none` on the val split. The choice is cached in
`<run>/tta.json` (fashionai.pipeline.measured), keyed by the weights file's content (SHA-1) and the
run's view (input size, crop ratio).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fashionai.core.devices import resolve_devices
from fashionai.core.io import params_fingerprint
from fashionai.core.metrics import official_ap
from fashionai.core.runinfo import RunInfo
from fashionai.data.manifest import split_images
from fashionai.data.tta import TTA_MODES, check_mode
from fashionai.inference.nets import load_net
from fashionai.inference.predict import predict_views
from fashionai.pipeline.measured import KEY_PARAMS, read_choice, save_choice

log = logging.getLogger(__name__)

TTA_CHOICES: tuple[str, ...] = (*TTA_MODES, "auto")
# What predict, submit, evaluate and the demo use unless told otherwise. Chosen by test mAP on
# held-out demo data (bench/RESULTS.md, "Score"): the mirror added 0.01 on average, corner crops
# (five-/ten-crop) cost 0.03-0.2 on every task measured, for this project's and the tutorial's
# training crops alike (where a garment ends is the answer; a corner crop cuts it off).
DEFAULT_TTA = "flip"
DECISION_FILE = "tta.json"
SUBSETS = {"none": [0], "flip": [0, 5], "five-crop": [0, 1, 2, 3, 4], "ten-crop": list(range(10))}


@dataclass(frozen=True)
class TtaDecision:
    """The mode `auto` uses for a run, why, the val AP of every mode, whether it came from the cache."""

    mode: str
    reason: str
    scores: dict[str, float] = field(default_factory=dict)
    cached: bool = False


def mode_scores(view_probs: np.ndarray, labels: Sequence[str]) -> dict[str, float]:
    """Val official AP of each mode from (N, 10, K) ten-crop view probabilities."""
    return {mode: official_ap(view_probs[:, views].mean(axis=1), labels) for mode, views in SUBSETS.items()}


def pick_tta(scores: dict[str, float]) -> tuple[str, str]:
    """(mode, why): the highest val AP, ties to fewer views; `none` when nothing can be told apart."""
    defined = {m: s for m, s in scores.items() if not math.isnan(s)}
    if not defined:
        return "none", "the val AP is undefined in every mode: the single view"
    best = max(defined, key=lambda m: (defined[m], -TTA_MODES[m]))
    shown = ", ".join(f"{m} {s:.4f}" for m, s in scores.items())
    return best, f"{best} has the best val AP ({shown}; ties go to fewer views)"


def choose_tta(run_dir: str | Path, *, which: str = "best", devices: str = "auto", batch_size: int = 32,
               refresh: bool = False) -> TtaDecision:
    """The TTA mode with the best val AP on the run's own val split (fp32), measured once and cached."""
    run = RunInfo.read(run_dir)
    key = {"params": {k: v for k, v in params_fingerprint(run.weights(which)).items() if k in KEY_PARAMS},
           "data_shape": run.view.size, "crop_ratio": run.view.crop_ratio}
    path = run.run_dir / DECISION_FILE
    saved = None if refresh else read_choice(path, key)
    if saved is not None:
        log.info("tta auto: %s for %s (cached in %s: %s)", saved["mode"], run.run_dir, path, saved["reason"])
        return TtaDecision(saved["mode"], saved["reason"], saved.get("scores", {}), cached=True)
    try:
        images, labels = split_images(run.prepared, run.task, "val")
    except (FileNotFoundError, ValueError) as err:
        log.warning("tta auto: cannot measure on %s's val split (%s); using none", run.run_dir, err)
        return TtaDecision("none", f"val split not available ({err}); the single view without measuring")
    ctx = resolve_devices(devices)
    net, _ = load_net(run.run_dir, "fp32", ctx=ctx, which=which)
    views = predict_views(net, images, view=run.view, ctx=ctx, tta="ten-crop", batch_size=batch_size)
    scores = mode_scores(views, labels)
    mode, why = pick_tta(scores)
    save_choice(path, {"mode": mode, "reason": why, "scores": scores}, key)
    log.info("tta auto: %s for %s: %s (saved in %s)", mode, run.run_dir, why, path)
    return TtaDecision(mode, why, scores)


def resolve_tta(run_dir: str | Path, tta: str, *, which: str = "best", devices: str = "auto",
                batch_size: int = 32) -> str:
    """`tta` itself, or for `auto` the run's choice (`choose_tta`, cached)."""
    if tta != "auto":
        return check_mode(tta)
    return choose_tta(run_dir, which=which, devices=devices, batch_size=batch_size).mode
