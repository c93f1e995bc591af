"""When `auto` may spend a probe: the measured cost of probing against what the fastest engine and
precision would save on the views about to be predicted, on the machine at hand.

A probe (fashionai.pipeline.auto_choice.choose_precision) runs every candidate over the run's val
split and probe images, calibrates int8 and compiles OpenVINO: seconds to minutes. It pays back
only when `views x (fp32's seconds per view - the best passing candidate's)` exceeds it. Both come
from measurements on this machine: every probe records, per CPU model, net and input size, each
candidate's seconds per view, which candidates passed the guard, and how long the probe took per
view it ran, in `costs.json` under the user's cache folder (`FASHIONAI_CACHE`, default
`~/.cache/fashionai`). A machine that has never probed that net has no figures: then the probe runs
when the job is at least as big as the probe itself would be (`views >= the probe's views`), the
one rule that needs no figures and spends at most as much on measuring as on predicting.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from fashionai.core.cpu import machine_name
from fashionai.core.io import write_json

log = logging.getLogger(__name__)

CACHE_VARIABLE = "FASHIONAI_CACHE"
COSTS_FILE = "costs.json"
PASSED = ("taken", "eligible, slower")  # verdicts of candidates that passed the guard


def costs_path(env=None) -> Path:
    """`$FASHIONAI_CACHE/costs.json`, default `~/.cache/fashionai/costs.json`."""
    env = os.environ if env is None else env
    folder = env.get(CACHE_VARIABLE) or str(Path.home() / ".cache" / "fashionai")
    return Path(folder) / COSTS_FILE


def cost_key(model: str, size: int) -> str:
    """What per-view costs depend on: the CPU model, the net and its input size."""
    return f"{machine_name()} | {model} | {size}px"


def read_costs(key: str) -> dict | None:
    """The figures recorded for `key`, or None (no probe yet, or an unreadable file)."""
    try:
        return json.loads(costs_path().read_text()).get(key)
    except (OSError, ValueError, AttributeError):
        return None


def record_costs(key: str, table: Sequence[dict], probe_seconds: float, probe_views: int) -> None:
    """Save a probe's figures under `key`: per candidate seconds per view (from its img/s) and
    whether it passed, and the probe's seconds per view run. A failure to write is a debug line:
    the figures save time later, nothing depends on them."""
    measured = [(r.get("candidate") or r["precision"], r) for r in table if r.get("img_s")]  # MXNet-only rows: no candidate
    path = costs_path()
    try:
        saved = json.loads(path.read_text()) if path.is_file() else {}
        old = saved.get(key) or {}
        saved[key] = {  # a probe of fewer candidates updates theirs and keeps the others'
            "per_view": {**old.get("per_view", {}), **{label: 1.0 / r["img_s"] for label, r in measured}},
            "passed": {**old.get("passed", {}), **{label: r.get("verdict") in PASSED for label, r in measured}},
            "probe_s_per_view": probe_seconds / max(probe_views, 1)}
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, saved)
    except (OSError, ValueError) as err:
        log.debug("could not record the probe's costs in %s: %s", path, err)


def probe_pays(key: str, views: int, probe_views: int, reference: str) -> tuple[bool, str]:
    """(whether probing before predicting `views` views pays back, why), from this machine's
    recorded figures (module docstring); `probe_views` is what this run's probe would run."""
    costs = read_costs(key)
    if not costs or reference not in costs.get("per_view", {}):
        pays = views >= probe_views
        return pays, (f"{views} views {'>=' if pays else '<'} the {probe_views} a probe runs (no costs measured "
                      f"on this machine for this net yet)")
    per_view = costs["per_view"]
    passed = costs.get("passed", {})
    best = min((per_view[c] for c, ok in passed.items() if ok and c in per_view), default=per_view[reference])
    saving = views * (per_view[reference] - best)
    probe = probe_views * costs["probe_s_per_view"]
    pays = saving > probe
    return pays, (f"{views} views would save {saving:.1f} s against a probe of ~{probe:.1f} s "
                  f"({1000 * per_view[reference]:.1f} -> {1000 * best:.1f} ms per view, measured here)")
