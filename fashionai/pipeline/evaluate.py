"""A trained run scored on its own val split: the report (`evaluate_run`) and the TTA modes side by
side (`compare_tta`). The precisions' table is fashionai.pipeline.precision.compare_precisions.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

from fashionai.core.runinfo import RunInfo
from fashionai.core.tasks import class_names
from fashionai.data.manifest import split_images
from fashionai.data.tta import TTA_MODES
from fashionai.inference.predict import predict_run
from fashionai.pipeline.auto_choice import resolve_choice
from fashionai.pipeline.tta_choice import DEFAULT_TTA, resolve_tta
from fashionai.scoring.scores import evaluate_predictions, worst_predictions

log = logging.getLogger(__name__)

GALLERY = 16  # worst val predictions shown in `<stem>_mistakes.png`

TTA_COLUMNS = (("tta", "{}"), ("views", "{:d}"), ("ms_per_image", "{:.2f}"), ("img_s", "{:.1f}"),
               ("relative_cost", "{:.2f}x"), ("val_map", "{:.4f}"), ("delta_map", "{:+.4f}"),
               ("accuracy", "{:.4f}"))


def val_split(run_dir: str | Path) -> tuple[str, list[Path], list[str]]:
    """(task, image files, label strings) of the run's val split, the rows `prepare` kept
    (fashionai.data.manifest.split_images says what is raised when they are gone)."""
    run = RunInfo.read(run_dir)
    images, labels = split_images(run.prepared, run.task, "val")
    return run.task, images, labels


def evaluate_run(
    run_dir: str | Path, *, tta: str = DEFAULT_TTA, devices: str = "auto", batch_size: int = 32,
    precision: str = "fp32", engine: str = "mxnet",
) -> dict:
    """Score a trained run on its val split (the rows `prepare` kept): `evaluate_predictions` + run info.

    `precision` and `engine` are predict's (MXNet fp32 by default: the reference the others are
    judged by; `auto`: what predict would run).
    """
    task, images, labels = val_split(run_dir)
    chosen = resolve_choice(run_dir, precision, engine=engine, devices=devices, batch_size=batch_size)
    tta = resolve_tta(run_dir, tta, devices=devices, batch_size=batch_size)
    probs = predict_run(run_dir, images, tta=tta, devices=devices, batch_size=batch_size, precision=chosen.precision,
                        engine=chosen.engine)
    report = evaluate_predictions(probs, labels, class_names(task))
    worst = worst_predictions(probs, labels, class_names(task), images, GALLERY)
    return {"run": str(run_dir), "task": task, "split": "val", "tta": tta, "precision": chosen.precision,
            "engine": chosen.engine, **report, "worst": worst}


def compare_tta(
    run_dir: str | Path, *, modes: Sequence[str] | None = None, devices: str = "auto", batch_size: int = 32,
    precision: str = "fp32", engine: str = "mxnet",
) -> list[dict]:
    """Per TTA mode: views, wall time of `evaluate_run` on the val split, img/s, cost relative to
    `none`, val official AP and accuracy. Answers "is ten-crop worth 10x the compute?" on the run's
    own data.

    The time is that of a whole evaluation (load, decode, views, net, metrics), i.e. what a predict
    of the same images costs. MXNet's one-off start-up (thread pool, first kernels; the precision's
    calibration or choice) would land on the first mode, so a short unreported prediction runs first.
    """
    modes = list(TTA_MODES) if modes is None else list(modes)
    _, images, _ = val_split(run_dir)
    chosen = resolve_choice(run_dir, precision, engine=engine, devices=devices, batch_size=batch_size)
    how = dict(devices=devices, batch_size=batch_size, precision=chosen.precision, engine=chosen.engine)
    predict_run(run_dir, images[:2], tta="none", **how)
    rows = []
    for mode in modes:
        start = time.perf_counter()
        report = evaluate_run(run_dir, tta=mode, **how)
        seconds = time.perf_counter() - start
        rows.append({
            "tta": mode, "views": TTA_MODES[mode], "images": report["rows"], "seconds": seconds,
            "ms_per_image": 1000 * seconds / report["rows"], "img_s": report["rows"] / seconds,
            "val_map": report["official_ap"], "accuracy": report["accuracy"],
        })
        log.info("tta %s: %.1f ms/image, val official AP %.4f", mode, rows[-1]["ms_per_image"],
                 report["official_ap"])
    base = next((r for r in rows if r["tta"] == "none"), rows[0])
    for row in rows:
        row["relative_cost"] = row["seconds"] / base["seconds"]
        row["delta_map"] = row["val_map"] - base["val_map"]
    return rows
