"""`--engine auto` / `--precision auto` resolved per run: measured once (fashionai.pipeline.precision),
kept in `<run>/precision.json` (fashionai.pipeline.measured), and probed only when the probe pays
back on the job at hand (fashionai.pipeline.payback).

MXNet fp32 is the reference and the fallback: an engine asked for by name that is not installed or
cannot run here is said in one warning line and MXNet fp32 runs instead, never another engine.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fashionai.core.cpu import machine_name
from fashionai.core.devices import resolve_devices
from fashionai.core.io import params_fingerprint
from fashionai.core.runinfo import RunInfo
from fashionai.data.manifest import split_images
from fashionai.inference.nets import require
from fashionai.inference.openvino_net import openvino_version
from fashionai.pipeline import precision as measure
from fashionai.pipeline.measured import read_choice, save_choice
from fashionai.pipeline.payback import cost_key, probe_pays, record_costs
from fashionai.pipeline.precision import MAP_TOLERANCE, REFERENCE, Choice, candidates, parse_label

log = logging.getLogger(__name__)

DECISION_FILE = "precision.json"


@dataclass(frozen=True)
class Decision:
    """What `auto` runs for a run (engine and precision), why, and the measurements it was decided from."""

    precision: str
    reason: str
    table: list[dict] = field(default_factory=list)
    cached: bool = False
    engine: str = "mxnet"

    @property
    def choice(self) -> Choice:
        return Choice(self.engine, self.precision)


def _decision_key(params: Path, ctx: Sequence, tolerance: float, choices: Sequence[Choice]) -> dict:
    import mxnet as mx

    key = {"params": params_fingerprint(params), "devices": [str(c) for c in ctx], "machine": machine_name(),
           "tolerance": tolerance, "mxnet": mx.__version__}
    if any(c.engine != "mxnet" for c in choices):  # MXNet-only decisions keep the key they always had
        key.update(candidates=[c.label for c in choices], openvino=openvino_version())
    return key


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
                    tolerance: float = MAP_TOLERANCE, engine: str = "mxnet", precision: str = "auto"
                    ) -> Decision | None:
    """The decision saved in `<run>/precision.json` if it was made for these weights, devices, CPU,
    tolerance, candidates and engine versions; else None."""
    run_dir = Path(run_dir)
    path, params = run_dir / DECISION_FILE, run_dir / f"{which}.params"
    if not path.is_file() or not params.is_file():
        return None
    key = _decision_key(params, resolve_devices(devices), tolerance, candidates(engine, precision))
    saved = read_choice(path, key)
    if saved is None:
        return None
    log.info("auto: %s %s for %s (cached in %s: %s)", saved.get("engine", "mxnet"), saved["precision"], run_dir,
             path, saved["reason"])
    return Decision(saved["precision"], saved["reason"], saved.get("table", []), cached=True,
                    engine=saved.get("engine", "mxnet"))


def choose_precision(
    run_dir: str | Path, *, devices: str = "auto", batch_size: int = 32, which: str = "best",
    tolerance: float = MAP_TOLERANCE, refresh: bool = False, engine: str = "mxnet", precision: str = "auto",
) -> Decision:
    """The fastest candidate (`precision.candidates(engine, precision)`) that passes the guard on the
    run's own val split (`precision.pick_precision`).

    Measured once (`precision.compare_precisions`) and saved in `<run>/precision.json` with the
    table, keyed by the params file (name, SHA-1; its mtime is recorded), devices, CPU model,
    tolerance, candidates and engine versions; later calls with the same key reuse it unless
    `refresh`. Without a val split to measure on it answers MXNet fp32 with a warning and saves
    nothing: a choice is never guessed. Each probe's costs go to the machine's record
    (fashionai.pipeline.payback).
    """
    run_dir = Path(run_dir)
    params = run_dir / f"{which}.params"
    if not params.is_file():
        raise FileNotFoundError(f"{params}: no such file; the run has no {which} checkpoint yet")
    ctx = resolve_devices(devices)
    choices = candidates(engine, precision)
    others = {c.label: measure.available(c, ctx) for c in choices if c != REFERENCE}
    if not any(ok for ok, _ in others.values()):  # e.g. GPUs: nothing to measure against
        why = "; ".join(f"{name}: {reason}" for name, (_, reason) in others.items())
        log.info("auto: MXNet fp32 for %s (the only one that runs here: %s)", run_dir, why)
        return Decision("fp32", f"the only precision that runs on {', '.join(map(str, ctx))} ({why})")
    cached = None if refresh else cached_decision(run_dir, devices=devices, which=which, tolerance=tolerance,
                                                  engine=engine, precision=precision)
    if cached is not None:
        return cached
    missing = _val_missing(run_dir)
    if missing:
        log.warning("auto: cannot measure on %s's val split (%s); running fp32", run_dir, missing)
        return Decision("fp32", f"val split not available ({missing}); fp32 without measuring")
    start = time.perf_counter()
    table = measure.compare_precisions(run_dir, devices=devices, batch_size=batch_size, which=which, choices=choices)
    label, why = measure.pick_precision(table, tolerance)
    chosen = parse_label(label)
    _record(run_dir, table, time.perf_counter() - start, len(choices))
    save_choice(run_dir / DECISION_FILE, {"engine": chosen.engine, "precision": chosen.precision, "reason": why,
                                          "batch_size": batch_size, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                          "table": table}, _decision_key(params, ctx, tolerance, choices))
    log.info("auto: %s %s for %s: %s (saved in %s)", chosen.engine, chosen.precision, run_dir, why,
             run_dir / DECISION_FILE)
    return Decision(chosen.precision, why, table, engine=chosen.engine)


def probe_views(run_dir: Path, count: int) -> int:
    """Network inputs a probe of `count` candidates runs on this run: its val and probe images each."""
    run = RunInfo.read(run_dir)
    images, _ = split_images(run.prepared, run.task, "val")
    return (len(images) + len(measure.probe_images(run))) * count


def _record(run_dir: Path, table: list[dict], seconds: float, count: int) -> None:
    """The probe's costs, for the payback rule of later jobs on this machine."""
    run = RunInfo.read(run_dir)
    record_costs(cost_key(run.model, run.view.size), table, seconds, probe_views(run_dir, count))


def _named_engine(engine: str, precision: str, ctx) -> Choice | None:
    """For an engine and precision both given: the pair, or MXNet fp32 (said in one warning line)
    where that engine cannot run it here."""
    wanted = Choice(engine, precision)
    if engine == "mxnet":
        return wanted
    ok, why = measure.available(wanted, ctx)
    if ok:
        return wanted
    log.warning("engine %s (%s) cannot run here: %s; running MXNet fp32 instead", engine, precision, why)
    return REFERENCE


def _named_precision(precision: str, ctx) -> Choice:
    """A precision given with `--engine auto`: MXNet where it runs it (as before there was a choice
    of engine), else OpenVINO where that does; refused with MXNet's reason where neither can."""
    for candidate in [c for c in candidates("auto", precision) if c.precision == precision]:
        if measure.available(candidate, ctx)[0]:
            return candidate
    require(precision, ctx)  # raises, naming why MXNet cannot
    return REFERENCE


def resolve_choice(run_dir: str | Path, precision: str, *, engine: str = "mxnet", devices: str = "auto",
                   batch_size: int = 32, which: str = "best", views: int | None = None) -> Choice:
    """The (engine, precision) to run: the pair itself when both are given (`_named_engine`), the
    precision on the first engine that runs it when only it is (`_named_precision`), else the run's
    measured choice among the candidates the engine leaves open (`choose_precision`, cached).

    `views`, the network inputs the caller is about to predict, lets `auto` pay for itself: where
    fashionai.pipeline.payback says a probe would cost more than it saves, MXNet fp32 runs without
    one, unless an earlier probe's choice is cached.
    """
    if precision != "auto" and engine != "auto":
        return _named_engine(measure.check_engine(engine), measure.check_precision(precision), resolve_devices(devices))
    if precision != "auto":
        return _named_precision(measure.check_precision(precision), resolve_devices(devices))
    cached = cached_decision(run_dir, devices=devices, which=which, engine=engine, precision=precision)
    if cached is not None:
        return cached.choice
    if views is not None and not _val_missing(Path(run_dir)):
        run = RunInfo.read(run_dir)
        pays, why = probe_pays(cost_key(run.model, run.view.size), views,
                               probe_views(Path(run_dir), len(candidates(engine, precision))), REFERENCE.label)
        if not pays:
            log.info("auto: MXNet fp32 for %s without a probe: %s", run_dir, why)
            return REFERENCE
        log.info("auto: probing %s: %s", run_dir, why)
    return choose_precision(run_dir, devices=devices, batch_size=batch_size, which=which, engine=engine,
                            precision=precision).choice


def resolve_precision(run_dir: str | Path, precision: str, *, devices: str = "auto", batch_size: int = 32,
                      which: str = "best", views: int | None = None) -> str:
    """MXNet's precision for `precision` (`auto`: among MXNet's precisions, `resolve_choice`)."""
    return resolve_choice(run_dir, precision, engine="mxnet", devices=devices, batch_size=batch_size, which=which,
                          views=views).precision
