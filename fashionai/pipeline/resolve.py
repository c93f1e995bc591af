"""A run's prediction as the user asked for it: `auto` precision and `auto` TTA resolved per run
(fashionai.pipeline.precision, fashionai.pipeline.tta_choice), then fashionai.inference.predict."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fashionai.core.runinfo import DEFAULT_WHICH
from fashionai.data.tta import num_views
from fashionai.inference.predict import predict_run
from fashionai.pipeline.precision import resolve_precision
from fashionai.pipeline.tta_choice import DEFAULT_TTA, resolve_tta


def predict_resolved(run_dir: str | Path, image_paths: Sequence, *, precision: str = "fp32", tta: str = DEFAULT_TTA,
                     devices: str = "auto", batch_size: int = 32, which: str = DEFAULT_WHICH,
                     **predict_kw) -> np.ndarray:
    """(N, K) probabilities of `run_dir` for `image_paths` with `precision` and `tta` resolved first
    (`auto`: the run's measured, cached choice; library calls default to fp32, the command line to
    auto); `predict_kw` are predict_run's (scales, reduce)."""
    views = resolve_tta(run_dir, tta, which=which, devices=devices, batch_size=batch_size)
    work = len(image_paths) * num_views(views) * len(predict_kw.get("scales") or [None])
    chosen = resolve_precision(run_dir, precision, devices=devices, batch_size=batch_size, which=which, views=work)
    return predict_run(run_dir, image_paths, precision=chosen, tta=views, devices=devices, batch_size=batch_size,
                       which=which, **predict_kw)
