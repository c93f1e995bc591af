"""A run's prediction as the user asked for it: `auto` engine, precision and TTA resolved per run
(fashionai.pipeline.auto_choice, fashionai.pipeline.tta_choice), then fashionai.inference.predict.
An OpenVINO net that fails to build is said in one warning line and MXNet fp32 predicts instead."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fashionai.core.runinfo import DEFAULT_WHICH
from fashionai.data.tta import num_views
from fashionai.inference.openvino_net import EngineError
from fashionai.inference.predict import predict_run
from fashionai.pipeline.auto_choice import resolve_choice
from fashionai.pipeline.precision import REFERENCE
from fashionai.pipeline.tta_choice import DEFAULT_TTA, resolve_tta

log = logging.getLogger(__name__)


def predict_resolved(run_dir: str | Path, image_paths: Sequence, *, precision: str = "fp32", tta: str = DEFAULT_TTA,
                     devices: str = "auto", batch_size: int = 32, which: str = DEFAULT_WHICH, engine: str = "mxnet",
                     **predict_kw) -> np.ndarray:
    """(N, K) probabilities of `run_dir` for `image_paths` with `engine`, `precision` and `tta`
    resolved first (`auto`: the run's measured, cached choice; library calls default to MXNet fp32,
    the command line to auto); `predict_kw` are predict_run's (scales, reduce)."""
    views = resolve_tta(run_dir, tta, which=which, devices=devices, batch_size=batch_size)
    work = len(image_paths) * num_views(views) * len(predict_kw.get("scales") or [None])
    chosen = resolve_choice(run_dir, precision, engine=engine, devices=devices, batch_size=batch_size, which=which,
                            views=work)
    how = dict(tta=views, devices=devices, batch_size=batch_size, which=which, **predict_kw)
    try:
        return predict_run(run_dir, image_paths, precision=chosen.precision, engine=chosen.engine, **how)
    except EngineError as err:
        log.warning("%s; running MXNet fp32 instead", err)
        return predict_run(run_dir, image_paths, precision=REFERENCE.precision, engine=REFERENCE.engine, **how)
