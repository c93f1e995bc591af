"""`--precision auto`: which precision predict runs for a run, decided by measuring them all on the
run's own val split, and the table that shows why.

`compare_precisions` measures every precision the machine can run (fashionai.inference.nets):
img/s on a fixed batch, val official AP, agreement with fp32. `choose_precision` takes the fastest
whose val mAP stays within `MAP_TOLERANCE` of fp32's and caches the decision in
`<run>/precision.json` (fashionai.pipeline.measured), keyed by the weights, devices, CPU and MXNet version.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fashionai.core.cpu import machine_name
from fashionai.core.devices import resolve_devices
from fashionai.core.io import params_fingerprint
from fashionai.core.runinfo import RunInfo
from fashionai.core.tasks import class_names
from fashionai.data.manifest import split_images
from fashionai.data.transforms import eval_transform
from fashionai.inference.nets import PRECISIONS, availability, check_precision, load_net
from fashionai.inference.predict import predict_paths
from fashionai.pipeline.measured import read_choice, save_choice
from fashionai.scoring.scores import evaluate_predictions
from fashionai.scoring.tables import format_table, save_table

if TYPE_CHECKING:
    import mxnet as mx

log = logging.getLogger(__name__)

CHOICES: tuple[str, ...] = (*PRECISIONS, "auto")
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
# Below this many views to predict, `auto` runs fp32 without a probe: on a ResNet50_v2 run with a
# real val split (~1,000 images) the probe (4 precisions on val + PROBE_IMAGES, int8 calibration)
# costs about what 4,000 fp32 views do (27 ms each, fused), and int8 at 5.3 ms a view (AMX) wins that
# back after ~5,000 views. The choice is cached per run, so later predictions reuse it for free.
AUTO_MIN_VIEWS = 5000
DECISION_FILE = "precision.json"
COMPARE_STEM = "precision_compare"
THROUGHPUT_SECONDS = 2.0  # timing budget per precision, split into 3-10 alternating rounds

COMPARE_COLUMNS = (("precision", "{}"), ("img_s", "{:.1f}"), ("speedup", "{:.2f}x"), ("val_map", "{:.4f}"),
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


def compare_precisions(
    run_dir: str | Path, *, devices: str = "auto", batch_size: int = 32, which: str = "best",
    precisions: Sequence[str] = PRECISIONS, seconds: float | None = None,
) -> list[dict]:
    """One row per precision, measured on the run's val split (TTA none):

    supported (and the reason when not), img/s on a fixed batch of `batch_size` on the first device,
    speed-up vs fp32, val official AP (the leaderboard metric) and accuracy, delta mAP vs fp32, and
    agreement with fp32's probabilities (share of equal argmax, max and mean |dp|).
    fp32 is always measured: it is the reference.
    """
    import mxnet as mx

    ctx = resolve_devices(devices)
    run = RunInfo.read(run_dir)
    images, labels = split_images(run.prepared, run.task, "val")
    probe = probe_images(run)
    precisions = ["fp32", *[p for p in precisions if p != "fp32"]]
    rows, nets, probs, probe_probs = [], {}, {}, {}
    for name in precisions:
        ok, why = availability(name, ctx)
        row = {"precision": name, "supported": ok, "reason": why}
        rows.append(row)
        if not ok:
            log.info("precision %s: not measured (%s)", name, why)
            continue
        try:
            net, _ = load_net(run_dir, name, ctx=ctx, which=which)
            how = dict(view=run.view, ctx=ctx, tta="none", batch_size=batch_size)
            probs[name] = predict_paths(net, images, **how)
            probe_probs[name] = predict_paths(net, probe, **how) if probe else probs[name]
        except (ValueError, OSError, mx.base.MXNetError) as err:  # e.g. int8 without train images
            if name == "fp32":
                raise
            row.update(supported=False, reason=str(err).strip().splitlines()[-1][:300])
            log.warning("precision %s: not usable here: %s", name, row["reason"])
            continue
        nets[name] = net
        report = evaluate_predictions(probs[name], labels, class_names(run.task))
        row.update(val_map=report["official_ap"], accuracy=report["accuracy"])
    speeds = measure_throughput(nets, _fixed_batch(images, run, batch_size, ctx[0]),
                                seconds=THROUGHPUT_SECONDS if seconds is None else seconds)
    _add_comparison(rows, speeds, probe_probs, len(probe))
    return rows


def _add_comparison(rows: list[dict], speeds: dict[str, float], probe_probs: dict[str, np.ndarray],
                    probe_count: int) -> None:
    """Each measured row gets its speed and its distance from fp32 (the first row): delta val mAP,
    and agreement on the probe images."""
    ref = rows[0]
    for row in rows:
        if row["precision"] in speeds:
            row.update(img_s=speeds[row["precision"]], speedup=speeds[row["precision"]] / speeds["fp32"],
                       delta_map=row["val_map"] - ref["val_map"], probe_images=probe_count,
                       **_agreement(probe_probs[row["precision"]], probe_probs["fp32"]))
            log.info("precision %s: %.1f img/s (%.2fx fp32), val mAP %.4f (%+.4f), argmax agreement %.4f, "
                     "max |dp| %.2e", row["precision"], row["img_s"], row["speedup"], row["val_map"],
                     row["delta_map"], row["argmax_agreement"], row["max_abs_dp"])


def verdict(row: dict, ref: dict, tolerance: float = MAP_TOLERANCE) -> str:
    """'' when `row`'s precision may be taken, else why not: unsupported, its val mAP moves more than
    `tolerance` from fp32's (either way: on a small val split that is noise as much as a gain), or it
    disagrees with fp32 on the probe images (argmax or probabilities: what a saturated val split
    cannot show)."""
    if not row.get("supported") or row.get("img_s") is None:
        return f"not supported: {row.get('reason') or 'not measured'}"
    if row["precision"] == "fp32":
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
    """(precision, why): the fastest measured row that passes `verdict` (fp32 always does, so there
    is always an answer). Each row gets its `verdict`: 'taken', 'eligible, slower', or the refusal."""
    ref = next(r for r in rows if r["precision"] == "fp32")
    if ref.get("val_map") is None or math.isnan(ref["val_map"]):
        for row in rows:
            row["verdict"] = "taken" if row is ref else "fp32's val mAP is undefined"
        return "fp32", "fp32's val mAP is undefined (no scorable val rows), so no precision can be checked against it"
    refusals = {row["precision"]: verdict(row, ref, tolerance) for row in rows}
    eligible = [r for r in rows if not refusals[r["precision"]]]
    best = max(eligible, key=lambda r: r["img_s"])
    for row in rows:
        row["verdict"] = "taken" if row is best else refusals[row["precision"]] or "eligible, slower"
    why = (f"{best['precision']} is the fastest ({best['img_s']:.1f} img/s, {best['img_s'] / ref['img_s']:.2f}x fp32) "
           f"with val mAP {best['val_map']:.4f} within {tolerance} of fp32's {ref['val_map']:.4f}"
           + (f" and agreement with fp32 on {best['probe_images']} images" if best is not ref else ""))
    refused = [f"{p} ({r})" for p, r in refusals.items() if r]
    if refused:
        why += f"; refused: {', '.join(refused)}"
    return best["precision"], why


@dataclass(frozen=True)
class Decision:
    """What `auto` runs for a run, why, and the measurements it was decided from."""

    precision: str
    reason: str
    table: list[dict] = field(default_factory=list)
    cached: bool = False


def _decision_key(params: Path, ctx: Sequence, tolerance: float) -> dict:
    import mxnet as mx

    return {"params": params_fingerprint(params), "devices": [str(c) for c in ctx], "machine": machine_name(),
            "tolerance": tolerance, "mxnet": mx.__version__}


def _val_missing(run_dir: Path) -> str:
    """Why the run's val split cannot be measured ('' when it can)."""
    try:
        run = RunInfo.read(run_dir)
        images, _ = split_images(run.prepared, run.task, "val")
    except (FileNotFoundError, ValueError) as err:
        return str(err)
    missing = [p for p in images if not p.is_file()]
    return f"{len(missing)} val image(s) missing, e.g. {missing[0]}" if missing else ""


def cached_decision(run_dir: str | Path, *, devices: str = "auto", which: str = "best",
                    tolerance: float = MAP_TOLERANCE) -> Decision | None:
    """The decision saved in `<run>/precision.json` if it was made for these weights, devices, CPU,
    tolerance and MXNet version; else None."""
    run_dir = Path(run_dir)
    path, params = run_dir / DECISION_FILE, run_dir / f"{which}.params"
    if not path.is_file() or not params.is_file():
        return None
    saved = read_choice(path, _decision_key(params, resolve_devices(devices), tolerance))
    if saved is None:
        return None
    log.info("precision auto: %s for %s (cached in %s: %s)", saved["precision"], run_dir, path, saved["reason"])
    return Decision(saved["precision"], saved["reason"], saved.get("table", []), cached=True)


def choose_precision(
    run_dir: str | Path, *, devices: str = "auto", batch_size: int = 32, which: str = "best",
    tolerance: float = MAP_TOLERANCE, refresh: bool = False,
) -> Decision:
    """The fastest precision whose val mAP stays within `tolerance` of fp32 on the run's own val split.

    Measured once (`compare_precisions`) and saved in `<run>/precision.json` with the table, keyed by
    the params file (name, SHA-1; its mtime is recorded), devices, CPU model, tolerance and MXNet
    version; later calls with the same key reuse it unless `refresh`. Without a val split to measure
    on (e.g. the run dir was moved without its prepared data) it answers fp32 with a warning and
    saves nothing: a precision is never guessed.
    """
    run_dir = Path(run_dir)
    params = run_dir / f"{which}.params"
    if not params.is_file():
        raise FileNotFoundError(f"{params}: no such file; the run has no {which} checkpoint yet")
    ctx = resolve_devices(devices)
    others = {name: availability(name, ctx) for name in PRECISIONS if name != "fp32"}
    if not any(ok for ok, _ in others.values()):  # e.g. GPUs: nothing to measure against
        why = "; ".join(f"{name}: {reason}" for name, (_, reason) in others.items())
        log.info("precision auto: fp32 for %s (the only one that runs here: %s)", run_dir, why)
        return Decision("fp32", f"the only precision that runs on {', '.join(map(str, ctx))} ({why})")
    key = _decision_key(params, ctx, tolerance)
    path = run_dir / DECISION_FILE
    cached = None if refresh else cached_decision(run_dir, devices=devices, which=which, tolerance=tolerance)
    if cached is not None:
        return cached
    missing = _val_missing(run_dir)
    if missing:
        log.warning("precision auto: cannot measure on %s's val split (%s); running fp32", run_dir, missing)
        return Decision("fp32", f"val split not available ({missing}); fp32 without measuring")
    table = compare_precisions(run_dir, devices=devices, batch_size=batch_size, which=which)
    chosen, why = pick_precision(table, tolerance)
    save_choice(path, {"precision": chosen, "reason": why, "batch_size": batch_size,
                       "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "table": table}, key)
    log.info("precision auto: %s for %s: %s (saved in %s)", chosen, run_dir, why, path)
    return Decision(chosen, why, table)


def resolve_precision(run_dir: str | Path, precision: str, *, devices: str = "auto", batch_size: int = 32,
                      which: str = "best", views: int | None = None) -> str:
    """`precision` itself, or for `auto` the run's choice (`choose_precision`, cached).

    `views`, the network inputs the caller is about to predict, lets `auto` pay for itself: below
    AUTO_MIN_VIEWS a probe (every precision on the val split and PROBE_IMAGES images, int8's
    calibration) costs more than the fastest precision could save, so fp32 runs without one,
    unless an earlier probe's choice is cached.
    """
    check_precision(precision, CHOICES)
    if precision != "auto":
        return precision
    if views is not None and views < AUTO_MIN_VIEWS:
        cached = cached_decision(run_dir, devices=devices, which=which)
        if cached is not None:
            return cached.precision
        log.info("precision auto: fp32 for %s without a probe: %d views to predict are fewer than the %d a "
                 "probe pays back", run_dir, views, AUTO_MIN_VIEWS)
        return "fp32"
    return choose_precision(run_dir, devices=devices, batch_size=batch_size, which=which).precision


def save_comparison(rows: Sequence[dict], run_dir: str | Path, **meta) -> dict[str, Path]:
    """`<run>/precision_compare.json` + `.csv`."""
    return save_table(rows, run_dir, COMPARE_STEM, **meta)


def format_comparison(rows: Sequence[dict]) -> str:
    """The comparison as a text table; the verdict says why each precision was taken or refused."""
    return format_table([{**r, "verdict": r.get("verdict") or r.get("reason") or ""} for r in rows], COMPARE_COLUMNS)
