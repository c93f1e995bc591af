"""`--precision auto` / `--engine auto`: which (engine, precision) pair predict runs for a run,
decided by measuring the candidates on the run's own val split, and the table that shows why.

The candidates are MXNet's precisions (fp32, fused, bf16, int8; fashionai.inference.nets) and
OpenVINO's (fp32, bf16, int8; fashionai.inference.openvino_net), as far as `--engine` and
`--precision` leave them open; MXNet fp32 is the reference every other is judged by and the
fallback. `compare_precisions` measures every candidate the machine can run: img/s on a fixed
batch, val official AP, agreement with MXNet fp32. `choose_precision` takes the fastest that passes
the guard (`verdict`) and caches the decision in `<run>/precision.json`
(fashionai.pipeline.measured), keyed by the weights, devices, CPU, candidates and engine versions.
Whether a probe is worth running at all is fashionai.pipeline.payback's measured rule.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from fashionai.core.devices import resolve_devices
from fashionai.core.runinfo import RunInfo
from fashionai.core.tasks import class_names
from fashionai.data.manifest import split_images
from fashionai.data.transforms import eval_transform
from fashionai.inference.nets import PRECISIONS, check_precision, engine_availability, load_net
from fashionai.inference.openvino_net import ENGINES, OV_PRECISIONS, check_engine
from fashionai.inference.predict import predict_paths
from fashionai.scoring.scores import evaluate_predictions
from fashionai.scoring.tables import format_table, save_table

if TYPE_CHECKING:
    import mxnet as mx

log = logging.getLogger(__name__)

CHOICES: tuple[str, ...] = (*PRECISIONS, "auto")
ENGINE_CHOICES: tuple[str, ...] = (*ENGINES, "auto")


class Choice(NamedTuple):
    """An (engine, precision) pair: what prediction runs."""

    engine: str
    precision: str

    @property
    def label(self) -> str:
        """MXNet's precisions by their own names (as before there was a choice of engine), the
        others as `<engine>-<precision>`."""
        return self.precision if self.engine == "mxnet" else f"{self.engine}-{self.precision}"


REFERENCE = Choice("mxnet", "fp32")  # what every candidate is judged by, and the fallback
MAP_TOLERANCE = 0.005  # auto: largest |val mAP - fp32 val mAP| a faster precision may have
# The label-free guard: a faster precision must also agree with fp32 on many images, so that a val
# split too small to tell precisions apart (every one at AP 1.0) cannot let a lossy one through.
# Thresholds from 21 demo-preset runs (3 tasks x 3 seeds x 2 recipes, plus 3; bench/RESULTS.md,
# "Precision guard"), each precision's test mAP on held-out questions beside fp32's: bf16 never moved
# it by more than 0.007 (agreement 0.969-1.0, mean |dp| <= 0.003); int8 lost 0.005-0.025 on 7 runs,
# all with agreement below 0.98, and the 3 runs at or above 0.98 changed it by -0.0004..+0.009.
# The val mAP check alone let 4 of those 7 losses through.
PROBE_IMAGES = 256  # training images (the eval view) the agreement is measured on
MIN_AGREEMENT = 0.98  # share of probe images whose argmax is fp32's
MAX_MEAN_DP = 0.01  # mean |probability change| over the probe images' classes (bf16: <= 0.003)
COMPARE_STEM = "precision_compare"
THROUGHPUT_SECONDS = 2.0  # timing budget per precision, split into 3-10 alternating rounds

COMPARE_COLUMNS = (("engine", "{}"), ("precision", "{}"), ("img_s", "{:.1f}"), ("speedup", "{:.2f}x"), ("val_map", "{:.4f}"),
                   ("delta_map", "{:+.4f}"), ("argmax_agreement", "{:.4f}"), ("max_abs_dp", "{:.2e}"),
                   ("mean_abs_dp", "{:.2e}"), ("verdict", "{}"))

# --- measuring and choosing ----------------------------------------------------------------------


def measure_throughput(nets: dict[str, mx.gluon.Block], batch: mx.nd.NDArray, *,
                       seconds: float = THROUGHPUT_SECONDS) -> dict[str, float]:
    """Images per second of each net on the fixed `batch`, after two warm-up passes.

    About `seconds` per net, in 3 to 10 rounds that alternate between the nets; each net keeps its
    best round. Other processes on the machine only ever slow a round down (with OpenMP threads
    waiting at barriers, by a lot), so the best of many short rounds taken turn about estimates the
    uncontended speed, and a burst of load hits every precision alike rather than whichever ran
    during it.
    """
    per_pass = {}
    for name, net in nets.items():
        for _ in range(2):
            net(batch).wait_to_read()
        start = time.perf_counter()
        net(batch).wait_to_read()
        per_pass[name] = max(time.perf_counter() - start, 1e-6)
    rounds = max(3, min(10, int(seconds / max(per_pass.values()))))
    passes = {name: max(1, math.ceil(seconds / rounds / t)) for name, t in per_pass.items()}
    best = dict.fromkeys(nets, 0.0)
    for _ in range(rounds):
        for name, net in nets.items():
            start = time.perf_counter()
            for _ in range(passes[name]):
                net(batch).wait_to_read()
            best[name] = max(best[name], batch.shape[0] * passes[name] / (time.perf_counter() - start))
    return best


def _fixed_batch(images: Sequence[Path], run: RunInfo, batch_size: int, ctx) -> mx.nd.NDArray:
    """(batch_size, 3, S, S) evaluation views of the first val images, repeated to fill the batch."""
    import mxnet as mx

    transform = eval_transform(run.view)
    views = [transform(mx.image.imread(str(p))) for p in images[:batch_size]]
    return mx.nd.stack(*[views[i % len(views)] for i in range(batch_size)]).as_in_context(ctx)


def _agreement(probs: np.ndarray, ref: np.ndarray) -> dict:
    diff = np.abs(probs - ref)
    return {"argmax_agreement": float((probs.argmax(1) == ref.argmax(1)).mean()),
            "max_abs_dp": float(diff.max()), "mean_abs_dp": float(diff.mean())}


def probe_images(run: RunInfo, count: int = PROBE_IMAGES) -> list[Path]:
    """A seeded draw of up to `count` of the run's training images (no labels needed: the guard
    compares each precision with fp32); [] when the prepared split is gone."""
    try:
        images, _ = split_images(run.prepared, run.task, "train")
    except (FileNotFoundError, ValueError):
        return []
    order = np.random.default_rng(0).permutation(len(images))[:count]
    return [images[i] for i in sorted(order)]


def candidates(engine: str, precision: str) -> list[Choice]:
    """The (engine, precision) pairs `--engine` and `--precision` leave open (`auto` for either
    opens it), MXNet fp32 first: it is always measured, as the reference."""
    check_precision(precision, CHOICES)
    engines = ENGINES if engine == "auto" else (check_engine(engine),)
    out = [REFERENCE]
    for name in engines:
        offered = PRECISIONS if name == "mxnet" else OV_PRECISIONS
        for prec in offered if precision == "auto" else (precision,):
            if prec in offered and Choice(name, prec) not in out:
                out.append(Choice(name, prec))
    return out


def available(candidate: Choice, ctx) -> tuple[bool, str]:
    """(True, "") when `candidate` can run on `ctx` here, else (False, the reason)."""
    return engine_availability(candidate.engine, candidate.precision, ctx)


def _measure_one(run_dir, candidate: Choice, run: RunInfo, images, probe, labels, ctx, batch_size, which) -> dict:
    """Load `candidate` and predict the val and probe images: {"net", "val", "probe", "report"}."""
    net, _ = load_net(run_dir, candidate.precision, ctx=ctx, which=which, engine=candidate.engine)
    how = dict(view=run.view, ctx=ctx, tta="none", batch_size=batch_size)
    val = predict_paths(net, images, **how)
    return {"net": net, "val": val, "probe": predict_paths(net, probe, **how) if probe else val,
            "report": evaluate_predictions(val, labels, class_names(run.task))}


def compare_precisions(
    run_dir: str | Path, *, devices: str = "auto", batch_size: int = 32, which: str = "best",
    precisions: Sequence[str] = PRECISIONS, seconds: float | None = None,
    choices: Sequence[Choice] | None = None,
) -> list[dict]:
    """One row per candidate (`choices`, default MXNet's `precisions`), measured on the run's val
    split (TTA none):

    supported (and the reason when not), img/s on a fixed batch of `batch_size` on the first device,
    speed-up vs MXNet fp32, val official AP (the leaderboard metric) and accuracy, delta mAP, and
    agreement with MXNet fp32's probabilities (share of equal argmax, max and mean |dp|).
    MXNet fp32 is always measured: it is the reference.
    """
    import mxnet as mx

    ctx = resolve_devices(devices)
    run = RunInfo.read(run_dir)
    images, labels = split_images(run.prepared, run.task, "val")
    probe = probe_images(run)
    choices = [Choice("mxnet", p) for p in precisions] if choices is None else list(choices)
    choices = [REFERENCE, *[c for c in choices if c != REFERENCE]]
    rows, nets, probe_probs = [], {}, {}
    for candidate in choices:
        ok, why = available(candidate, ctx)
        row = {"engine": candidate.engine, "precision": candidate.precision, "candidate": candidate.label,
               "supported": ok, "reason": why}
        rows.append(row)
        if not ok:
            log.info("%s %s: not measured (%s)", candidate.engine, candidate.precision, why)
            continue
        try:
            done = _measure_one(run_dir, candidate, run, images, probe, labels, ctx, batch_size, which)
        except (ValueError, OSError, RuntimeError, mx.base.MXNetError) as err:  # e.g. int8 without train images
            if candidate == REFERENCE:
                raise
            row.update(supported=False, reason=str(err).strip().splitlines()[-1][:300])
            log.warning("%s %s: not usable here: %s", candidate.engine, candidate.precision, row["reason"])
            continue
        nets[candidate.label], probe_probs[candidate.label] = done["net"], done["probe"]
        row.update(val_map=done["report"]["official_ap"], accuracy=done["report"]["accuracy"])
    speeds = measure_throughput(nets, _fixed_batch(images, run, batch_size, ctx[0]),
                                seconds=THROUGHPUT_SECONDS if seconds is None else seconds)
    _add_comparison(rows, speeds, probe_probs, len(probe))
    return rows


def _add_comparison(rows: list[dict], speeds: dict[str, float], probe_probs: dict[str, np.ndarray],
                    probe_count: int) -> None:
    """Each measured row gets its speed and its distance from MXNet fp32 (the first row): delta val
    mAP, and agreement on the probe images."""
    ref = rows[0]
    for row in rows:
        if row["candidate"] in speeds:
            row.update(img_s=speeds[row["candidate"]], speedup=speeds[row["candidate"]] / speeds[ref["candidate"]],
                       delta_map=row["val_map"] - ref["val_map"], probe_images=probe_count,
                       **_agreement(probe_probs[row["candidate"]], probe_probs[ref["candidate"]]))
            log.info("%s %s: %.1f img/s (%.2fx MXNet fp32), val mAP %.4f (%+.4f), argmax agreement %.4f, "
                     "max |dp| %.2e", row["engine"], row["precision"], row["img_s"], row["speedup"], row["val_map"],
                     row["delta_map"], row["argmax_agreement"], row["max_abs_dp"])


def row_label(row: dict) -> str:
    """The candidate a table row measured, as `Choice.label` names it (rows without an engine are MXNet's)."""
    return Choice(row.get("engine", "mxnet"), row["precision"]).label


def verdict(row: dict, ref: dict, tolerance: float = MAP_TOLERANCE) -> str:
    """'' when `row`'s candidate may be taken, else why not: unsupported, its val mAP moves more than
    `tolerance` from fp32's (either way: on a small val split that is noise as much as a gain), or it
    disagrees with MXNet fp32 on the probe images (argmax or probabilities: what a saturated val split
    cannot show)."""
    if not row.get("supported") or row.get("img_s") is None:
        return f"not supported: {row.get('reason') or 'not measured'}"
    if row_label(row) == REFERENCE.label:
        return ""
    delta = row["val_map"] - ref["val_map"]
    if math.isnan(delta) or abs(delta) > tolerance + 1e-12:
        return f"val mAP {delta:+.4f} beyond +-{tolerance}"
    if row["argmax_agreement"] < MIN_AGREEMENT:
        return f"argmax agrees with fp32 on {row['argmax_agreement']:.1%} of {row['probe_images']} images (< {MIN_AGREEMENT:.0%})"
    if row["mean_abs_dp"] > MAX_MEAN_DP:
        return f"mean |probability change| {row['mean_abs_dp']:.3f} > {MAX_MEAN_DP}"
    return ""


def pick_precision(rows: Sequence[dict], tolerance: float = MAP_TOLERANCE) -> tuple[str, str]:
    """(candidate label, why): the fastest measured row that passes `verdict` (MXNet fp32 always
    does, so there is always an answer); `Choice.label` names it (`fused`, `openvino-int8`). Each row
    gets its `verdict`: 'taken', 'eligible, slower', or the refusal."""
    ref = next(r for r in rows if row_label(r) == REFERENCE.label)
    if ref.get("val_map") is None or math.isnan(ref["val_map"]):
        for row in rows:
            row["verdict"] = "taken" if row is ref else "fp32's val mAP is undefined"
        return "fp32", "fp32's val mAP is undefined (no scorable val rows), so no precision can be checked against it"
    refusals = {row_label(row): verdict(row, ref, tolerance) for row in rows}
    eligible = [r for r in rows if not refusals[row_label(r)]]
    best = max(eligible, key=lambda r: r["img_s"])
    for row in rows:
        row["verdict"] = "taken" if row is best else refusals[row_label(row)] or "eligible, slower"
    why = (f"{row_label(best)} is the fastest ({best['img_s']:.1f} img/s, {best['img_s'] / ref['img_s']:.2f}x fp32) "
           f"with val mAP {best['val_map']:.4f} within {tolerance} of fp32's {ref['val_map']:.4f}"
           + (f" and agreement with fp32 on {best['probe_images']} images" if best is not ref else ""))
    refused = [f"{p} ({r})" for p, r in refusals.items() if r]
    if refused:
        why += f"; refused: {', '.join(refused)}"
    return row_label(best), why


def parse_label(label: str) -> Choice:
    """The Choice a `Choice.label` names (`fused` -> mxnet fused, `openvino-int8` -> openvino int8)."""
    engine, _, precision = label.rpartition("-")
    return Choice(engine or "mxnet", precision)


def save_comparison(rows: Sequence[dict], run_dir: str | Path, **meta) -> dict[str, Path]:
    """`<run>/precision_compare.json` + `.csv`."""
    return save_table(rows, run_dir, COMPARE_STEM, **meta)


def format_comparison(rows: Sequence[dict]) -> str:
    """The comparison as a text table; the verdict says why each precision was taken or refused."""
    return format_table([{**r, "verdict": r.get("verdict") or r.get("reason") or ""} for r in rows], COMPARE_COLUMNS)
